/* Run options: one plain struct. Values come from the built-in defaults, then
 * the input deck (`key = value` lines, # comments), then `--key=value` on the
 * command line. Every key is documented in docs/options.md. */
#ifndef APTQ_OPTIONS_H
#define APTQ_OPTIONS_H

enum { OPT_PATH_MAX = 4096 };

typedef struct {
  char model[OPT_PATH_MAX];       /* HF directory or llama2.c .bin */
  char tokens[OPT_PATH_MAX];      /* evaluation tokens (uint32) */
  char calib[OPT_PATH_MAX];       /* calibration tokens (uint32) */
  char output[OPT_PATH_MAX];      /* quantized HDF5 / generated files */
  char report[OPT_PATH_MAX];      /* JSON report */
  char quantized[OPT_PATH_MAX];   /* HDF5 to evaluate */
  char compare[OPT_PATH_MAX];     /* eval: a second quantized HDF5, paired with quantized */
  char logits[OPT_PATH_MAX];      /* eval: dump float32 logits here (tests) */
  char tokenizer[OPT_PATH_MAX];   /* export: SentencePiece tokenizer.model */
  char format[8];                 /* export: auto | gguf */
  char mlp_block[8];              /* export (F32): auto | 32 | 256, the MLP padding */
  char grid[8];                   /* minmax | q4_0 | ... | q2_k | ggml */
  char grid_search[8];            /* none | llama | hessian */
  char input[OPT_PATH_MAX];       /* layer: HDF5 with W and H */
  char method[16];                /* rtn | gptq | aptq */
  char factor[16];                /* auto | lapack | scalapack */
  char factor_algorithm[16];      /* trtri | potri */
  char hessian_form[16];          /* layer: gptq | kron */
  char v_form[16];                /* aptq: kron | gptq */
  char q_form[16];                /* aptq: rowshared | kron | gptq */
  char k_form[16];                /* aptq: rowshared | kron | gptq */
  char R[256];                    /* mixed precision: comma-separated fractions at 4 bits */
  char avg_bits[256];             /* mixed precision: comma-separated budgets in average bits per weight */
  char allocation[16];            /* trace | knapsack | random | blockwise */
  char sensitivity[16];           /* layer | fisher: what the allocation ranks by */
  int fisher_nseq, fisher_probes; /* sensitivity = fisher: sequences and probes per sequence */
  char fisher_method[16];         /* sensitivity = fisher: probes | backward */
  char scale_dtype[8];            /* fp32 | fp16 */
  char checkpoint[OPT_PATH_MAX];  /* directory for checkpoints after every block ("" = none) */
  int resume;                     /* continue from the checkpoint */
  char hessian_reduce[16];        /* auto | allreduce | scatter | stream */
  int stream_tokens;              /* hessian_reduce = stream: tokens buffered between flushes */
  char activations[16];           /* float32 | bf16 */
  char max_memory[32];            /* refuse a run predicted to exceed this per rank ("" = no limit) */
  char shape[16];                 /* bench, synth: 7b | 13b | 70b | tiny | 8b */
  int blocks;                     /* bench, synth: decoder blocks */
  int vocab;                      /* synth: vocabulary size */
  char shard_size[32];            /* synth: largest shard, "5GB" */
  int act_order, static_groups, mse, true_sequential;
  int keep_attention; /* true-sequential: o_proj's inputs kept for the gate/up group's forward */
  double damp;
  double aptq_shrink; /* aptq: λ of the factors' shrinkage toward GPTQ's (shrink.h) */
  int block_size, nb;
  int seqlen, nseq;
  int bits, group_size, sym;
  int overwrite;
  int seed;
  double temperature;
  int threads;
} Options;

/* Fill defaults, read the deck (may be NULL) and apply argv overrides.
 * argv holds only the arguments after the subcommand. */
int options_parse(Options *o, int argc, char **argv);
/* Error naming the key if it was not given. */
int options_require(const Options *o, const char *key);
/* The position of a choice key's value in its list of choices (docs/
 * options.md order, e.g. method: rtn 0, gptq 1, aptq 2), for the enums of
 * plan.h; -1 for a key that is not a choice. */
int options_choice(const Options *o, const char *key);
/* Was the key given (deck or command line)? */
int options_given(const char *key);
/* The input deck given to the last options_parse ("" if none). */
const char *options_deck(void);
/* One "key = value" line per option into buf (for metadata and reports);
 * iterate with index 0.. until it returns 0. */
int options_item(const Options *o, int index, const char **key, char *value, int value_size);
void options_print_help(void);

#endif
