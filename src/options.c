#include "options.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "inpath.h"

typedef enum { T_PATH, T_INT, T_FLOAT, T_BOOL, T_CHOICE } OptType;

typedef struct {
  const char *key;
  OptType type;
  size_t offset, size;
  const char *def;
  const char *choices; /* T_CHOICE: '|'-separated; T_INT: allowed list or NULL */
  double min, max;
  const char *help;
} OptSpec;

#define F(field) offsetof(Options, field), sizeof(((Options *)0)->field)
static const OptSpec specs[] = {
    {"model", T_PATH, F(model), "", NULL, 0, 0, "model: Hugging Face directory or llama2.c .bin"},
    {"tokens", T_PATH, F(tokens), "", NULL, 0, 0, "evaluation tokens, raw little-endian uint32"},
    {"calib", T_PATH, F(calib), "", NULL, 0, 0, "calibration tokens, raw little-endian uint32"},
    {"output", T_PATH, F(output), "", NULL, 0, 0, "output file or directory"},
    {"report", T_PATH, F(report), "", NULL, 0, 0, "JSON report file (optional)"},
    {"quantized", T_PATH, F(quantized), "", NULL, 0, 0,
     "quantized HDF5 to evaluate (eval: also its KL divergence from the full-precision model, run in the same pass)"},
    {"compare", T_PATH, F(compare), "", NULL, 0, 0,
     "eval: a second quantized HDF5 evaluated on the same sequences with quantized: its perplexity and KL divergence, and the paired "
     "differences compare - quantized"},
    {"logits", T_PATH, F(logits), "", NULL, 0, 0, "eval: write all logits as raw float32 [nseq][seqlen][vocab] (for tests)"},
    {"tokenizer", T_PATH, F(tokenizer), "", NULL, 0, 0,
     "export: the SentencePiece tokenizer.model (default: the one in the model directory)"},
    {"format", T_CHOICE, F(format), "auto", "auto|gguf", 0, 0, "export: output format; auto = from the output's extension (.gguf)"},
    {"mlp_block", T_CHOICE, F(mlp_block), "auto", "auto|32|256", 0, 0,
     "export without quantized (F32): pad the MLP width with zeros to a multiple of this (auto = 32; 256 lets llama.cpp's quantizer put "
     "every layer in a K-quant); with quantized the layers' own block decides"},
    {"input", T_PATH, F(input), "", NULL, 0, 0, "layer: HDF5 file with datasets W (rows x cols) and H (cols x cols)"},
    {"method", T_CHOICE, F(method), "rtn", "rtn|gptq|aptq", 0, 0,
     "quantization method (quantize without method: aptq, at avg_bits = 3.5 unless bits, R, avg_bits or grid is given)"},
    {"q_form", T_CHOICE, F(q_form), "rowshared", "rowshared|kron|gptq|relaxed", 0, 0,
     "aptq: q_proj Hessian through the softmax Jacobian: rowshared = token-weighted input Hessian, kron = input x per-head output factor, "
     "gptq = layer inputs, relaxed = BoA/aespa: input x the head's un-rotated key covariance (score error)"},
    {"k_form", T_CHOICE, F(k_form), "rowshared", "rowshared|kron|gptq|relaxed", 0, 0,
     "aptq: k_proj Hessian through the softmax Jacobian (s = s' terms): rowshared = token-weighted input Hessian, kron = input x "
     "per-kv-group output factor, gptq = layer inputs, relaxed = BoA/aespa: input x the group's un-rotated query covariance"},
    {"v_form", T_CHOICE, F(v_form), "kron", "kron|gptq|relaxed", 0, 0,
     "aptq: v_proj Hessian, kron = attention-mixed inputs x W_O^T W_O per kv group, gptq = layer inputs, relaxed = BoA/aespa: the "
     "attention-mixed inputs' covariance per kv group (mean over its heads), one Hessian per head's rows"},
    {"aptq_shrink", T_FLOAT, F(aptq_shrink), "0", NULL, 0, 1,
     "aptq: shrink each attention-aware factor toward GPTQ's, lambda in [0, 1]: input factors toward the layer-input Hessian, output "
     "factors toward the identity, each at unit mean diagonal (0 = the forms as they are, 1 = GPTQ's Hessians)"},
    {"R", T_PATH, F(R), "", NULL, 0, 0,
     "mixed precision: fraction(s) of the quantized parameters at 4 bits, the rest at 2 (comma-separated list = a sweep, one output per "
     "value); bits is then ignored"},
    {"avg_bits", T_PATH, F(avg_bits), "", NULL, 0, 0,
     "mixed precision (recommended; the default of quantize without method): a budget in average code bits per weight (scales and zeros "
     "not counted), each layer at 2, 3, 4 or 8 bits chosen by the knapsack (Fisher sensitivity x squared RTN error); comma-separated "
     "list = a sweep, one output per value; bits and allocation are then not used (grid = ggml: widths 2, 3, 4, 5, 6, 8 on llama.cpp's "
     "types, the budget in llama.cpp's bits per weight)"},
    {"allocation", T_CHOICE, F(allocation), "trace", "trace|knapsack|random|blockwise", 0, 0,
     "mixed precision: trace = most sensitive layers (mean Hessian trace) at 4 bits; knapsack = bits in {2,3,4,8} minimising the predicted "
     "loss; random (seed); blockwise = whole blocks, first first"},
    {"sensitivity", T_CHOICE, F(sensitivity), "fisher", "fisher|layer", 0, 0,
     "mixed precision: what trace and knapsack rank layers by: fisher = mean trace of the Gauss-Newton Hessian of the model's loss w.r.t. "
     "the layer (full-precision model; estimated as fisher_method says); layer = mean trace of the Hessian each layer's solve "
     "uses (APTQ paper), from a 4-bit measuring pass"},
    {"fisher_nseq", T_INT, F(fisher_nseq), "16", NULL, 1, INT_MAX,
     "sensitivity = fisher: calibration sequences used (evenly spaced over the set; all if fewer)"},
    {"fisher_probes", T_INT, F(fisher_probes), "1", NULL, 1, 1024,
     "sensitivity = fisher: random probes per layer and sequence (fisher_method = backward: label sets per sequence, one backward pass "
     "each)"},
    {"fisher_method", T_CHOICE, F(fisher_method), "backward", "probes|backward", 0, 0,
     "sensitivity = fisher: how the trace is estimated: probes = Hutchinson weight perturbations through forward passes (cost grows as "
     "the square of the depth); backward = squared weight gradients of the loss at labels sampled from the model (one forward and one "
     "backward per sequence: linear in depth; same expectation)"},
    {"scale_dtype", T_CHOICE, F(scale_dtype), "fp32", "fp32|fp16", 0, 0,
     "quantization scales: fp32, or rounded to fp16 as they are made (exact GPTQ-format export, tools/export_gptq.py)"},
    {"grid", T_CHOICE, F(grid), "minmax", "minmax|q4_0|q4_1|q8_0|q6_k|q3_k|q4_k|q5_k|q2_k|ggml", 0, 0,
     "quantization grid: minmax (GPTQ's), or the grid llama.cpp decodes (docs/gguf.md): q4_0 = 4-bit symmetric, q8_0 = 8-bit symmetric, "
     "q4_1 = 4-bit with fp16 min = -scale*zero (each sets group_size 32 and fp16 scales); the K-quants q6_k = 6-bit, q3_k = 3-bit "
     "symmetric, group scales d*sc per 256-column super-block (each sets group_size 16 and static groups); q4_k = 4-bit, q5_k = "
     "5-bit (groups of 32), q2_k = 2-bit (groups of 16): scale * code - min with scales d*sc and mins dmin*m per super-block "
     "(static groups); ggml = mixed precision (avg_bits or R) with every layer on the llama.cpp type of its width: 2 q2_k, 3 q3_k, "
     "4 q4_k, 5 q5_k, 6 q6_k, 8 q8_0, avg_bits counted as llama.cpp's bits per weight (docs/mixed.md#ggml)"},
    {"grid_search", T_CHOICE, F(grid_search), "hessian", "none|llama|hessian", 0, 0,
     "grid = q4_k | q5_k | q2_k | q3_k | q6_k (or their layers under grid = ggml) with gptq or aptq: how each sub-block's scale "
     "(and min) are chosen before the sweep: hessian = as llama.cpp's quantizer with an importance matrix, the layer Hessian's "
     "diagonal (make_qkx3_quants, make_qp_quants; q3_k, q6_k: make_qx_quants, scales of either sign); llama = as llama.cpp's "
     "without one (make_qkx2_quants; make_q3_quants, make_qx_quants); none = GPTQ's min/max range (docs/gguf.md; rtn keeps "
     "min/max)."},
    {"checkpoint", T_PATH, F(checkpoint), "", NULL, 0, 0,
     "quantize (gptq, aptq): directory where the state after every finished block is kept, for resume"},
    {"resume", T_BOOL, F(resume), "no", NULL, 0, 0,
     "quantize: continue the run whose state is in checkpoint (same options, any rank count)"},
    {"hessian_reduce", T_CHOICE, F(hessian_reduce), "auto", "auto|allreduce|scatter|stream", 0, 0,
     "GPTQ: how layer-input Hessians are summed over ranks: scatter = each rank's partial sum MPI_Reduce_scatter-ed straight into the "
     "ScaLAPACK layout (no rank holds the reduced matrix; only where the factor runs on ScaLAPACK); stream = the same while they "
     "accumulate, a few sequences at a time (no rank holds a d x d matrix at all); allreduce = every rank gets it whole; auto = stream "
     "above 8192 columns on 4 or more ranks, else scatter wherever the factor uses ScaLAPACK"},
    {"stream_tokens", T_INT, F(stream_tokens), "4096", NULL, 1, INT_MAX,
     "GPTQ, streamed Hessians (hessian_reduce): calibration tokens each rank buffers between two reductions into the grid (at least one "
     "sequence); each reduction moves d^2 doubles per rank, the buffer holds tokens x d floats"},
    {"activations", T_CHOICE, F(activations), "float32", "float32|bf16", 0, 0,
     "GPTQ: how the calibration activations are kept between blocks (each rank holds its own sequences): bf16 halves the largest buffer of "
     "the pass; each block's output is rounded to bf16"},
    {"max_memory", T_PATH, F(max_memory), "", NULL, 0, 0,
     "quantize, bench: refuse to start when the predicted peak memory per rank exceeds this (e.g. 8G, 512M)"},
    {"shape", T_CHOICE, F(shape), "7b", "7b|13b|70b|tiny|8b", 0, 0,
     "bench, synth: LLaMA shape of the synthetic blocks or checkpoint (7b: 4096/11008/32 heads, vocab 32000; 13b: 5120/13824/40; 70b: "
     "8192/28672/64 heads, 8 kv heads; 8b: Llama 3.1 8B, 4096/14336/32 heads, 8 kv heads, vocab 128256; tiny: the embedded default's "
     "128/384, vocab 512)"},
    {"blocks", T_INT, F(blocks), "1", NULL, 1, 1024,
     "bench: number of synthetic decoder blocks; synth: decoder blocks (default: the shape's)"},
    {"shard_size", T_PATH, F(shard_size), "5GB", NULL, 0, 0,
     "synth with shape: largest safetensors shard (transformers' max_shard_size: 5GB = 5e9 bytes; KB/MB/GB powers of 1000, KiB/MiB/GiB "
     "of 1024)"},
    {"vocab", T_INT, F(vocab), "", NULL, 2, INT_MAX, "synth: vocabulary size (default: the shape's)"},
    {"act_order", T_BOOL, F(act_order), "no", NULL, 0, 0, "GPTQ: solve columns in order of descending diag(H)"},
    {"static_groups", T_BOOL, F(static_groups), "no", NULL, 0, 0, "GPTQ: group grids from the unquantized weights, fixed before the solve"},
    {"mse", T_BOOL, F(mse), "no", NULL, 0, 0, "grid search for the clipping range (quant.py mse)"},
    {"keep_attention", T_BOOL, F(keep_attention), "no", NULL, 0, 0,
     "GPTQ, true-sequential: keep each calibration sequence's attention output (float32, as large as the float32 activations) from the "
     "o_proj group's forward, so that the gate/up group's skips attention (about 16% less forward work at 7B)"},
    {"true_sequential", T_BOOL, F(true_sequential), "yes", NULL, 0, 0, "GPTQ: later groups of a block see the quantized earlier groups"},
    {"damp", T_FLOAT, F(damp), "0.01", NULL, 0, 10, "GPTQ: damping as a fraction of mean(diag H)"},
    {"block_size", T_INT, F(block_size), "128", NULL, 1, 65536, "GPTQ: columns per lazy batch update"},
    {"factor", T_CHOICE, F(factor), "auto", "auto|lapack|scalapack|node", 0, 0,
     "Hessian factorization: ScaLAPACK on a BLACS grid, or LAPACK on every rank; auto = ScaLAPACK for d >= 8192, or d >= 2048 on 4 or more "
     "ranks; node = LAPACK on each node's first rank with the cores of all its ranks (threaded OpenBLAS: U may differ in the last bits "
     "from one thread's)"},
    {"factor_algorithm", T_CHOICE, F(factor_algorithm), "trtri", "trtri|potri", 0, 0,
     "how U = chol(H^-1) is formed: potrf of the reversed H and trtri (2d^3/3 flops), or potrf, potri, potrf (4d^3/3)"},
    {"hessian_form", T_CHOICE, F(hessian_form), "gptq", "gptq|kron", 0, 0,
     "layer: gptq = H on the columns only; kron = H (columns) x H_out (rows of each head), head-wise simultaneous quantization"},
    {"nb", T_INT, F(nb), "64", NULL, 1, 4096, "ScaLAPACK block size"},
    {"seqlen", T_INT, F(seqlen), "256", NULL, 2, 1 << 20, "tokens per sequence"},
    {"nseq", T_INT, F(nseq), "", NULL, 1, INT_MAX, "number of sequences"},
    {"bits", T_INT, F(bits), "4", "2|3|4|5|6|8", 2, 8, "bit width of the quantized weights (6: grid = q6_k, 5: grid = q5_k)"},
    {"group_size", T_INT, F(group_size), "0", NULL, 0, INT_MAX, "columns per quantization group; 0 = one group per row"},
    {"sym", T_BOOL, F(sym), "no", NULL, 0, 0, "symmetric quantization grid"},
    {"overwrite", T_BOOL, F(overwrite), "no", NULL, 0, 0, "replace an existing output file"},
    {"seed", T_INT, F(seed), "1234", NULL, 0, INT_MAX, "random seed (synth, generate, allocation = random)"},
    {"temperature", T_FLOAT, F(temperature), "1.0", NULL, 0, 100, "sampling temperature (generate); 0 = greedy"},
    {"threads", T_INT, F(threads), "1", NULL, 1, 1024, "threads per rank: BLAS, and the GPTQ row chunks"},
};
#undef F
enum { NSPECS = sizeof specs / sizeof specs[0] };

static int given[NSPECS];
static char raw[NSPECS][OPT_PATH_MAX];

static const OptSpec *find(const char *key, int *index) {
  for (int i = 0; i < NSPECS; i++)
    if (strcmp(specs[i].key, key) == 0) {
      *index = i;
      return &specs[i];
    }
  return NULL;
}

/* Position of value in a '|'-separated list, or -1. */
static int list_index(const char *list, const char *value) {
  size_t n = strlen(value);
  int i = 0;
  for (const char *p = list; *p; i++) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len == n && strncmp(p, value, n) == 0) return i;
    if (!bar) break;
    p = bar + 1;
  }
  return -1;
}

static int in_list(const char *list, const char *value) { return list_index(list, value) >= 0; }

int options_choice(const Options *o, const char *key) {
  int i;
  const OptSpec *s = find(key, &i);
  if (!s || s->type != T_CHOICE) return -1;
  return list_index(s->choices, (const char *)o + s->offset);
}

static int set_value(Options *o, const OptSpec *s, const char *value, const char *where) {
  char *field = (char *)o + s->offset;
  char *end;
  switch (s->type) {
    case T_PATH:
      if (strlen(value) >= s->size) return aptq_error("%s: value of '%s' is too long (max %zu characters)", where, s->key, s->size - 1);
      strcpy(field, value);
      return 0;
    case T_CHOICE:
      if (!in_list(s->choices, value))
        return aptq_error("%s: bad value '%s' for '%s'; expected one of %s", where, value, s->key, s->choices);
      strcpy(field, value);
      return 0;
    case T_BOOL:
      if (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "1")) *(int *)field = 1;
      else if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "0")) *(int *)field = 0;
      else return aptq_error("%s: bad value '%s' for '%s'; expected yes or no", where, value, s->key);
      return 0;
    case T_INT: {
      errno = 0;
      long v = strtol(value, &end, 10);
      if (errno || end == value || *end || v < s->min || v > s->max)
        return aptq_error("%s: bad value '%s' for '%s'; expected an integer in [%.0f, %.0f]", where, value, s->key, s->min, s->max);
      if (s->choices && !in_list(s->choices, value))
        return aptq_error("%s: bad value '%s' for '%s'; expected one of %s", where, value, s->key, s->choices);
      *(int *)field = (int)v;
      return 0;
    }
    case T_FLOAT: {
      errno = 0;
      double v = strtod(value, &end);
      if (errno || end == value || *end || !(v >= s->min && v <= s->max))
        return aptq_error("%s: bad value '%s' for '%s'; expected a number in [%g, %g]", where, value, s->key, s->min, s->max);
      *(double *)field = v;
      return 0;
    }
  }
  return 0;
}

/* Where each given key was set: 1 + the deck line, FROM_COMMAND_LINE, or
 * FROM_GRID (a setting that grid implies, apply_grid). A key may be given
 * once in the deck and once on the command line (which overrides it),
 * never twice in the same place. */
enum { FROM_COMMAND_LINE = -1, FROM_GRID = -2 };

static int apply(Options *o, const char *key, const char *value, const char *where, int line) {
  int index;
  const OptSpec *s = find(key, &index);
  if (!s) return aptq_error("%s: unknown key '%s'; the keys are listed in docs/options.md and by 'aptq help'", where, key);
  if (!value[0]) return aptq_error("%s: empty value for '%s'", where, key);
  if (line == FROM_COMMAND_LINE && given[index] == FROM_COMMAND_LINE)
    return aptq_error("command line: --%s given twice ('%s', then '%s'); give each key once", key, raw[index], value);
  if (line != FROM_COMMAND_LINE && line != FROM_GRID && given[index] > 0)
    return aptq_error(
        "%s: key '%s' was already given on line %d ('%s'); give each key once in a deck (--%s=... on the command line "
        "overrides it)",
        where, key, given[index] - 1, raw[index], key);
  CHECK(set_value(o, s, value, where));
  given[index] = line < 0 ? line : line + 1;
  snprintf(raw[index], sizeof raw[index], "%s", value);
  return 0;
}

/* grid = q4_0 | q4_1 | q8_0 | q6_k | q3_k | q4_k | q5_k | q2_k: the settings of llama.cpp's
 * block type (docs/gguf.md), set unless given otherwise (then refused). The
 * K-quants' scales are d * sc (quant_kgrid_row), fixed per super-block
 * before the sweep: static groups. */
/* grid = ggml: the width, group size, symmetry and scales are each
 * layer's (plan_layer_params), chosen by the mixed precision; static
 * groups for all. */
static int apply_grid_ggml(Options *o) {
  static const char *const per_layer[] = {"bits", "group_size", "sym", "scale_dtype"};
  for (int k = 0; k < 4; k++) {
    int index = 0;
    find(per_layer[k], &index);
    if (given[index])
      return aptq_error("grid = ggml puts each layer on the llama.cpp type of its width (q2_k .. q8_0), which sets its %s; drop %s = %s",
                        per_layer[k], per_layer[k], raw[index]);
  }
  if (!o->R[0] && !o->avg_bits[0])
    return aptq_error(
        "grid = ggml is mixed precision (each layer on the llama.cpp type of its width): give avg_bits (e.g. avg_bits = 4.5, "
        "counted as llama.cpp's bits per weight) or R, or use one grid (q4_k, ...) for every layer");
  if (o->mse) return aptq_error("grid = ggml fixes each layer's scales on its llama.cpp type; mse = yes searches another grid: drop mse");
  int index = 0;
  find("static_groups", &index);
  if (given[index] && !o->static_groups)
    return aptq_error(
        "grid = ggml needs static_groups = yes (the K-quants' super-block scales are fixed before the sweep); drop "
        "static_groups");
  return apply(o, "static_groups", "yes", "grid", FROM_GRID);
}

static int apply_grid(Options *o) {
  if (!strcmp(o->grid, "ggml")) return apply_grid_ggml(o);
  static const struct {
    const char *grid, *bits, *group_size, *sym, *scale_dtype, *static_groups;
  } g[] = {{"q4_0", "4", "32", "yes", "fp16", NULL},  {"q4_1", "4", "32", "no", "fp16", NULL},   {"q8_0", "8", "32", "yes", "fp16", NULL},
           {"q6_k", "6", "16", "yes", "fp32", "yes"}, {"q3_k", "3", "16", "yes", "fp32", "yes"}, {"q4_k", "4", "32", "no", "fp32", "yes"},
           {"q5_k", "5", "32", "no", "fp32", "yes"},  {"q2_k", "2", "16", "no", "fp32", "yes"}};
  for (size_t i = 0; i < sizeof g / sizeof *g; i++) {
    if (strcmp(o->grid, g[i].grid)) continue;
    const char *key[5] = {"bits", "group_size", "sym", "scale_dtype", "static_groups"},
               *want[5] = {g[i].bits, g[i].group_size, g[i].sym, g[i].scale_dtype, g[i].static_groups};
    int same[5] = {o->bits == atoi(g[i].bits), o->group_size == atoi(g[i].group_size), o->sym == (g[i].sym[0] == 'y'),
                   !strcmp(o->scale_dtype, g[i].scale_dtype), o->static_groups};
    for (int k = 0; k < 5; k++) {
      int index = 0;
      if (!want[k]) continue;
      find(key[k], &index);
      if (given[index] && !same[k])
        return aptq_error("grid = %s needs %s = %s, but %s = %s was given; drop %s or the grid", o->grid, key[k], want[k], key[k],
                          raw[index], key[k]);
      CHECK(apply(o, key[k], want[k], "grid", FROM_GRID));
    }
    if (o->R[0] || o->avg_bits[0])
      return aptq_error("grid = %s is one %s-bit type for every layer, but %s asks for mixed precision; drop %s or the grid", o->grid,
                        g[i].bits, o->R[0] ? "R" : "avg_bits", o->R[0] ? "R" : "avg_bits");
    if (o->mse && i >= 5)
      return aptq_error(
          "grid = %s fixes each super-block's scales and mins from the group ranges; mse = yes searches another grid: drop mse", o->grid);
    if (o->act_order && !o->static_groups)
      return aptq_error("grid = %s needs groups of %s consecutive columns, but act_order regroups them: add static_groups = yes", o->grid,
                        g[i].group_size);
  }
  return 0;
}

static char deck_path[OPT_PATH_MAX]; /* the deck of the last options_parse */

const char *options_deck(void) { return deck_path; }

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = 0;
  return s;
}

static int read_deck(Options *o, const char *path) {
  struct stat st; /* before the open: opening a FIFO would wait for a writer */
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return aptq_error("input deck '%s' is a directory; give the deck file (key = value lines) instead", path);
  CHECK(inpath_check(path, "input deck", "give the deck file (key = value lines)"));
  FILE *f = fopen(path, "r");
  if (!f) return aptq_error("cannot open input deck '%s': %s", path, strerror(errno));
  char line[OPT_PATH_MAX + 256], where[OPT_PATH_MAX + 64];
  int lineno = 0, rc = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    lineno++;
    snprintf(where, sizeof where, "deck %s line %d", path, lineno);
    if (!strchr(line, '\n') && !feof(f)) {
      rc = aptq_error("%s: line too long", where);
      break;
    }
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *s = trim(line);
    if (!*s) continue;
    char *eq = strchr(s, '=');
    if (!eq) {
      rc = aptq_error("%s: expected 'key = value', got '%s'", where, s);
      break;
    }
    *eq = 0;
    char *key = trim(s), *value = trim(eq + 1);
    if (!*key) {
      rc = aptq_error("%s: missing key before '='", where);
      break;
    }
    rc = apply(o, key, value, where, lineno);
  }
  if (!rc && ferror(f)) rc = aptq_error("cannot read input deck '%s': %s", path, strerror(errno));
  fclose(f);
  return rc;
}

int options_parse(Options *o, int argc, char **argv) {
  memset(o, 0, sizeof *o);
  memset(given, 0, sizeof given);
  for (int i = 0; i < NSPECS; i++) {
    raw[i][0] = 0;
    if (specs[i].def[0]) {
      CHECK(set_value(o, &specs[i], specs[i].def, "built-in default"));
      snprintf(raw[i], sizeof raw[i], "%s", specs[i].def);
    }
  }
  const char *deck = NULL;
  deck_path[0] = 0;
  for (int i = 0; i < argc; i++) {
    if (strncmp(argv[i], "--", 2) != 0) {
      if (deck) return aptq_error("two input decks given ('%s' and '%s'); give one deck and override keys with --key=value", deck, argv[i]);
      deck = argv[i];
    }
  }
  if (deck) snprintf(deck_path, sizeof deck_path, "%s", deck);
  if (deck) CHECK(read_deck(o, deck));
  for (int i = 0; i < argc; i++) {
    if (strncmp(argv[i], "--", 2) != 0) continue;
    char buf[OPT_PATH_MAX + 64];
    if (strlen(argv[i]) >= sizeof buf) return aptq_error("command line argument too long: %.40s...", argv[i]);
    strcpy(buf, argv[i] + 2);
    char *eq = strchr(buf, '=');
    if (!eq) return aptq_error("command line: expected --key=value, got '%s'", argv[i]);
    *eq = 0;
    CHECK(apply(o, buf, eq + 1, "command line", FROM_COMMAND_LINE));
  }
  CHECK(apply_grid(o));
  int index = 0;
  find("grid_search", &index);
  if (given[index] && strcmp(o->grid, "q4_k") && strcmp(o->grid, "q5_k") && strcmp(o->grid, "q2_k") && strcmp(o->grid, "q3_k") &&
      strcmp(o->grid, "q6_k") && strcmp(o->grid, "ggml"))
    return aptq_error(
        "grid_search = %s chooses the sub-blocks of grid = q4_k, q5_k, q2_k, q3_k, q6_k or ggml, but this run has grid = %s; drop "
        "grid_search",
        raw[index], o->grid);
  return 0;
}

int options_given(const char *key) {
  int index;
  return find(key, &index) ? given[index] != 0 : 0;
}

int options_require(const Options *o, const char *key) {
  int index;
  if (!find(key, &index)) return aptq_error("internal: unknown option '%s'", key);
  if (!given[index] && !specs[index].def[0])
    return aptq_error("missing required key '%s'; give it in the deck ('%s = ...') or on the command line (--%s=...)", key, key, key);
  return 0;
}

int options_item(const Options *o, int index, const char **key, char *value, int value_size) {
  if (index < 0 || index >= NSPECS) return 0;
  *key = specs[index].key;
  snprintf(value, (size_t)value_size, "%s", raw[index]);
  return 1;
}

void options_print_help(void) {
  printf("keys (deck 'key = value' or --key=value):\n");
  for (int i = 0; i < NSPECS; i++)
    printf("  %-12s %s%s%s%s\n", specs[i].key, specs[i].help, specs[i].def[0] ? " [default " : "", specs[i].def,
           specs[i].def[0] ? "]" : "");
}
