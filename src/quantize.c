/* aptq quantize: the whole data path from checkpoint to quantized HDF5,
 * told in phases: the inputs checked (options, outputs, model, calibration),
 * the memory predicted, then one pass into one file (output.c: RTN, or the
 * sequential pass of pass.c) or, with R, the mixed-precision sweep
 * (sweep.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "fisher.h"
#include "heap.h"
#include "ksearch.h"
#include "memory.h"
#include "model.h"
#include "outpath.h"
#include "output.h"
#include "plan.h"
#include "quant.h"
#include "quantize.h"
#include "sweep.h"
#include "tokens.h"

/* GPTQ semantics: a group_size that does not divide a layer's width leaves
 * a narrower last group. Say so, since exporters may expect equal groups. */
static void note_partial_groups(const Model *m, int group_size) {
  if (!group_size) return;
  for (int k = 0; k < LIN_COUNT; k++) {
    const TensorRef *t = &m->linear[0][k];
    if (t->cols % group_size)
      printf("aptq quantize: note: group_size %d leaves a last group of %lld columns in %s (%lld columns)\n", group_size,
             (long long)(t->cols % group_size), linear_names[k], (long long)t->cols);
  }
}

/* OUT.h5 → OUT-R0.75.h5 (avg_bits: OUT-b3.5.h5) for one value of a sweep
 * (the extension kept). */
static void sweep_path(const char *path, const char *tag, double R, char *out, size_t size) {
  const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
  if (!dot || (slash && dot < slash)) dot = path + strlen(path);
  snprintf(out, size, "%.*s-%s%g%s", (int)(dot - path), path, tag, R, dot);
}

/* The run's outputs (and reports): one, or one per value of R (or of
 * avg_bits). */
typedef struct {
  double R[RATIO_MAX]; /* the values of R, or of avg_bits */
  int nR, n;
  char (*out)[OPT_PATH_MAX], (*rep)[OPT_PATH_MAX];
} Outputs;

/* Collective: the option checks of quantize, R, and every output path
 * checked before any work. */
static int plan_outputs(const Options *o, const Plan *p, Outputs *w, MPI_Comm comm) {
  double limit;
  CHECK(aptq_agree(
      comm, options_require(o, "model") || options_require(o, "output") || (o->max_memory[0] && memory_parse(o->max_memory, &limit))));
  w->nR = 0;
  const char *key = p->avg_budget ? "avg_bits" : "R";
  if (o->R[0] && o->avg_bits[0])
    CHECK(aptq_agree(comm, aptq_error("R and avg_bits both given: give avg_bits (a budget in average bits, widths 2/3/4/8) or R (the "
                                      "paper's fraction at 4 bits), not both")));
  if (p->avg_budget && options_given("allocation") && p->allocation != (Allocation)options_choice(o, "allocation"))
    CHECK(aptq_agree(comm, aptq_error("avg_bits is allocated by the knapsack, but allocation = %s was given; drop allocation, or use R "
                                      "for the %s allocation",
                                      o->allocation, o->allocation)));
  if (p->mixed) {
    CHECK(aptq_agree(comm, p->avg_budget ? avg_bits_parse(o->avg_bits, w->R, &w->nR) : ratio_parse(o->R, w->R, &w->nR)));
    if (p->method == METHOD_RTN)
      CHECK(aptq_agree(comm, aptq_error("%s (mixed precision) needs method = gptq or aptq: the allocation and the solve use calibration "
                                        "Hessians; add --method=aptq and calib",
                                        key)));
    if (o->checkpoint[0] || o->resume)
      CHECK(aptq_agree(comm, aptq_error("checkpoint with %s is not supported: run one value per job (jobs/sweep-R.sbatch --array) "
                                        "without checkpoint, or quantize at fixed bits with checkpoint",
                                        key)));
  }
  w->n = p->mixed ? w->nR : 1;
  w->out = aptq_malloc(sizeof *w->out * (size_t)w->n, "output paths");
  w->rep = aptq_malloc(sizeof *w->rep * (size_t)w->n, "output paths");
  CHECK(aptq_agree(comm, !w->out || !w->rep));
  for (int j = 0; j < w->n; j++) {
    if (w->nR > 1) {
      sweep_path(o->output, p->avg_budget ? "b" : "R", w->R[j], w->out[j], OPT_PATH_MAX);
      if (o->report[0]) sweep_path(o->report, p->avg_budget ? "b" : "R", w->R[j], w->rep[j], OPT_PATH_MAX);
      else w->rep[j][0] = 0;
    } else {
      snprintf(w->out[j], OPT_PATH_MAX, "%s", o->output);
      snprintf(w->rep[j], OPT_PATH_MAX, "%s", o->report);
    }
  }
  /* R values that print alike (%g) would name the same files */
  for (int j = 0; j < w->n; j++)
    for (int i = 0; i < j; i++)
      if (!strcmp(w->out[i], w->out[j]))
        CHECK(aptq_agree(comm, aptq_error("%s: values %.17g and %.17g both name output '%s'; give values that differ in the first 6 "
                                          "significant digits",
                                          key, w->R[i], w->R[j], w->out[j])));
  for (int j = 0; j < w->n; j++) {
    CHECK(output_check(w->out[j], "output", o->overwrite, o, comm));
    if (w->rep[j][0]) CHECK(output_check(w->rep[j], "report", o->overwrite, o, comm));
  }
  return 0;
}

/* Collective: the model (validated, fingerprinted) and the calibration
 * tokens (RTN needs none; when given they are validated and hashed). */
static int load_inputs(const Options *o, const Plan *p, Model *m, TokenShard *calib, MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  CHECK(aptq_agree(comm, model_open(o->model, m)));
  /* the relaxed q/k forms (BoA/aespa) bound the score error of the projection
   * output itself: Qwen3's per-head q/k norms between them are not in it */
  if (m->cfg.qk_norm && p->method == METHOD_APTQ && (p->form[LIN_Q] == FORM_RELAXED || p->form[LIN_K] == FORM_RELAXED))
    CHECK(aptq_agree(comm, aptq_error("model '%s' normalises q and k per head before RoPE (Qwen3's q_norm, k_norm), which the relaxed q "
                                      "and k forms leave out; set q_form and k_form to rowshared, kron or gptq (v_form = relaxed may stay)",
                                      o->model)));
  if (rank == 0) note_partial_groups(m, o->group_size);
  CHECK(model_fingerprint(m, comm));
  *calib = (TokenShard){0};
  if (p->method != METHOD_RTN) CHECK(aptq_agree(comm, options_require(o, "calib")));
  if (!o->calib[0]) return 0;
  CHECK(aptq_agree(comm, options_require(o, "nseq")));
  return tokens_load(o->calib, "calib", o->seqlen, o->nseq, m->cfg.vocab_size, comm, calib);
}

/* Collective: the peak memory per rank predicted (and refused above
 * max_memory) before anything large is allocated. */
static int predict_memory(const Options *o, const Plan *p, const Model *m, const TokenShard *calib, double baseline, OutputInfo *info,
                          MPI_Comm comm) {
  int size = p->size;
  MemPlan plan;
  memplan_quantize(&plan, p, &m->cfg, o->seqlen, p->method != METHOD_RTN ? (o->nseq + size - 1) / size : 0);
  memplan_add_mapped(&plan, "checkpoint pages mapped at once (embedding rows, a layer)", memplan_mapped_bytes(m, calib, comm));
  if (p->mixed && p->sensitivity == SENSITIVITY_FISHER && plan_ranks_by_sensitivity(p)) {
    /* before the pass and freed when it starts: its streams and head
     * buffers, the lm_head in float32, its own block weights and scratch */
    int nsel = o->fisher_nseq < o->nseq ? o->fisher_nseq : o->nseq;
    memplan_add_before(&plan, "Fisher sensitivities: streams, lm_head, block",
                       fisher_memory(o, &m->cfg, (nsel + size - 1) / size) + (double)m->cfg.vocab_size * m->cfg.dim * sizeof(float) +
                           memplan_block_bytes(&m->cfg, o->seqlen));
  }
  info->predicted_heap = memplan_heap_peak(&plan);
  return memory_check(&plan, baseline, o, comm, &info->predicted_peak);
}

/* Collective: one pass at fixed bits, with the checkpoint if asked for. */
static int single_output(const Options *o, const Plan *p, const Model *m, const TokenShard *calib, OutputInfo *info, double t_start,
                         MPI_Comm comm) {
  int n = m->cfg.n_layers * LIN_COUNT;
  info->average_bits = o->bits;
  if ((o->checkpoint[0] || o->resume) && p->bf16_activations)
    CHECK(aptq_agree(comm, aptq_error("checkpoint keeps float32 activations: use activations = float32 with checkpoint, or bf16 without")));
  if ((o->checkpoint[0] || o->resume) && p->method == METHOD_RTN)
    CHECK(aptq_agree(comm, aptq_error("checkpoint needs method = gptq or aptq: RTN has no block pass to resume (and takes seconds)")));
  Checkpoint ck;
  CHECK(checkpoint_begin(&ck, o, m, calib, LAYER_NSTATS, comm));
  LayerError *err = aptq_calloc((size_t)n, sizeof *err, "layer errors");
  if (!err) aptq_fatal(comm);
  int rc = quantize_output(o, p, m, calib, NULL, info, err, &ck, t_start, comm);
  if (!rc && ck.on) checkpoint_finish(&ck, m, comm);
  aptq_free(err);
  return rc;
}

/* quantize without method: APTQ, and without bits, R, avg_bits or grid
 * the recommended mixed precision, avg_bits = QUANTIZE_DEFAULT_AVG_BITS
 * (docs/mixed.md#avg_bits). Both need calibration tokens. */
#define QUANTIZE_DEFAULT_AVG_BITS "3.5"
static int default_method(const Options *o_in, Options *o) {
  *o = *o_in;
  if (options_given("method")) return 0;
  snprintf(o->method, sizeof o->method, "aptq");
  int width = options_given("bits") || options_given("R") || options_given("avg_bits") || options_given("grid");
  if (!width) snprintf(o->avg_bits, sizeof o->avg_bits, "%s", QUANTIZE_DEFAULT_AVG_BITS);
  if (!o->calib[0])
    return aptq_error(
        "quantize without method is APTQ%s, which needs calibration tokens: give calib and nseq, or method = rtn "
        "for round to nearest without calibration",
        width ? "" : " at avg_bits = " QUANTIZE_DEFAULT_AVG_BITS);
  return 0;
}

int cmd_quantize(const Options *o_in, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double t_start = MPI_Wtime(), baseline = memory_peak_rss();
  Options o_def;
  CHECK(aptq_agree(comm, default_method(o_in, &o_def)));
  const Options *o = &o_def;
  Plan p;
  plan_init(&p, o);
  plan_use_grid(&p, p.gptq.bits);
  ksearch_set(p.kgrid_search);
  ksearch_set_sym(p.ksym_search);
  aptq_install_signal_handlers();

  /* set-up: every input checked before any work */
  Outputs w = {0};
  int rc = plan_outputs(o, &p, &w, comm);
  Model m;
  TokenShard calib = {0};
  if (!rc) rc = load_inputs(o, &p, &m, &calib, comm);
  if (rc) {
    aptq_free(w.out);
    aptq_free(w.rep);
    return rc;
  }
  plan_shape(&p, &m.cfg, size);
  OutputInfo info = {0};
  CHECK(predict_memory(o, &p, &m, &calib, baseline, &info, comm));
  heap_audit_mark();
  info.t_load = MPI_Wtime() - t_start;

  /* the passes */
  if (!p.mixed) {
    info.output = w.out[0];
    info.report = w.rep[0];
    rc = single_output(o, &p, &m, &calib, &info, t_start, comm);
  } else {
    rc = sweep_run(o, &p, &m, &calib, w.R, w.nR, w.out, w.rep, &info, t_start, comm);
  }
  if (rank == 0 && w.nR > 1) {
    printf("aptq quantize: sweep of %d values of %s done in %.2f s\n", w.nR, p.avg_budget ? "avg_bits" : "R", MPI_Wtime() - t_start);
    fflush(stdout);
  }
  aptq_free(w.out);
  aptq_free(w.rep);
  tokens_free(&calib);
  model_close(&m);
  return rc;
}

int quantize_fixed(const Options *o, const Model *m, const TokenShard *calib, double predicted, double predicted_heap, double t_start,
                   MPI_Comm comm) {
  int size, n = m->cfg.n_layers * LIN_COUNT;
  MPI_Comm_size(comm, &size);
  Plan p = plan_make(o, &m->cfg, size);
  LayerError *err = aptq_calloc((size_t)n, sizeof *err, "layer errors");
  CHECK(aptq_agree(comm, !err));
  OutputInfo info = {
      .output = o->output, .report = o->report, .average_bits = o->bits, .predicted_peak = predicted, .t_load = MPI_Wtime() - t_start};
  int rc = quantize_output(o, &p, m, calib, NULL, &info, err, NULL, t_start, comm);
  aptq_free(err);
  return rc;
}
