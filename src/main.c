/* aptq: attention-aware post-training quantization of LLaMA-family models.
 *
 *   mpirun -n P aptq SUBCOMMAND [DECK] [--key=value ...]
 *
 * Every rank parses the same options; each subcommand is collective. An
 * error either is agreed by all ranks (printed once, exit 1 everywhere) or
 * is local to one rank mid-phase (printed by that rank, MPI_Abort). */
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "heap.h"
#include "options.h"

static const struct {
  const char *name;
  int (*run)(const Options *, MPI_Comm);
  const char *help;
} commands[] = {
    {"quantize", cmd_quantize, "quantize a model: model, output, method, bits, group_size [calib, nseq, seqlen]"},
    {"eval", cmd_eval, "perplexity and, of a quantized model, KL divergence: model, tokens, nseq, seqlen [quantized, compare, report]"},
    {"recon", cmd_recon,
     "reconstruction error of a quantized model per block (attention output, block update): model, quantized, tokens, nseq, seqlen "
     "[report]"},
    {"layer", cmd_layer, "GPTQ solve of one layer: input (HDF5 with W, H), output, bits, group_size, act_order, sym [damp, block_size]"},
    {"generate", cmd_generate, "sample token sequences from a model: model, nseq, seqlen, output [seed, temperature]"},
    {"bench", cmd_bench,
     "time and memory of the quantize pass on synthetic LLaMA-shaped blocks: shape (7b|13b|70b|tiny), nseq, seqlen, output [blocks, "
     "report, max_memory]"},
    {"export", cmd_export, "a quantized result as one GGUF file for llama.cpp: model, quantized, output (FILE.gguf) [tokenizer]"},
    {"synth", cmd_synth, "write the embedded default model (HF layout, seeded weights): output [seed]"},
};
enum { NCOMMANDS = sizeof commands / sizeof commands[0] };

static void usage(void) {
  printf("aptq %s: attention-aware post-training quantization for LLaMA-family models\n\n", APTQ_VERSION);
  printf("usage: mpirun -n P aptq SUBCOMMAND [DECK] [--key=value ...]\n\nsubcommands:\n");
  for (int i = 0; i < NCOMMANDS; i++) printf("  %-10s %s\n", commands[i].name, commands[i].help);
  printf("  %-10s this text\n  %-10s print the version\n\n", "help", "version");
  options_print_help();
  printf("\nEvery key is documented in docs/options.md.\n");
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm comm = MPI_COMM_WORLD;
  MPI_Comm_rank(comm, &rank);
  int status = 0;
  if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    if (rank == 0) usage();
    status = argc < 2;
  } else if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
    if (rank == 0) printf("aptq %s\n", APTQ_VERSION);
  } else {
    int which = -1;
    for (int i = 0; i < NCOMMANDS; i++)
      if (!strcmp(argv[1], commands[i].name)) which = i;
    Options o;
    int rc =
        which < 0 ? aptq_error("unknown subcommand '%s'; run 'aptq help' for the list", argv[1]) : options_parse(&o, argc - 2, argv + 2);
    rc = aptq_agree(comm, rc);
    if (!rc) {
      openblas_set_num_threads(o.threads);
#ifdef _OPENMP
      omp_set_num_threads(o.threads);
#endif
      rc = commands[which].run(&o, comm);
      aptq_restore_signal_handlers();
    }
    if (rc && !aptq_error_reported()) aptq_fatal(comm); /* one rank failed alone: take all down */
    if (rc) aptq_print_traceback();
    heap_audit_print_peak(stderr); /* APTQ_HEAP_AUDIT=2 */
    status = rc ? 1 : 0;
  }
  MPI_Finalize();
  return status;
}
