#include "sweep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allocate.h"
#include "error.h"
#include "fisher.h"
#include "phases.h"
#include "rtn.h"

/* What the sweep shares between its outputs. */
typedef struct {
  int n;             /* layers */
  long long *params; /* weights per layer */
  long long *budget; /* what the budget counts per layer: params, or with grid = ggml the weights as the GGUF file stores them */
  int *bits;         /* the widths of the output being made */
  double *sens, *sens_err;
  double *rtn_err;      /* knapsack: n × KNAP_CHOICES squared RTN errors */
  LayerError *err;      /* the output's layers */
  LayerError *measured; /* the 4-bit measuring pass's */
} Sweep;

/* grid = ggml: the weights of each layer as the export stores them, the
 * MLP width padded to a multiple of 256 (gate and up rows, down columns;
 * export.c padded_mlp, for the K-quants' super-blocks), so that the
 * budget's bits per weight are those llama.cpp counts for the file
 * (wt2-llama-s: 688 -> 768). */
static long long stored_weights(const Model *m, int i) {
  const TensorRef *t = &m->linear[i / LIN_COUNT][i % LIN_COUNT];
  long long h = m->cfg.hidden_dim, ff = (h + 255) / 256 * 256, rows = t->rows, cols = t->cols;
  int k = i % LIN_COUNT;
  if (k == LIN_DOWN) cols = ff;
  else if (k == LIN_GATE || k == LIN_UP) rows = ff;
  return rows * cols;
}

static int sweep_alloc(Sweep *s, const Plan *p, const Model *m) {
  *s = (Sweep){.n = m->cfg.n_layers * LIN_COUNT};
  size_t n = (size_t)s->n;
  s->params = aptq_malloc(sizeof(long long) * n, "layer sizes");
  s->bits = aptq_malloc(sizeof(int) * n, "layer bits");
  s->sens = aptq_calloc(n, sizeof(double), "sensitivities");
  s->sens_err = aptq_calloc(n, sizeof(double), "sensitivities");
  s->err = aptq_calloc(n, sizeof(LayerError), "layer errors");
  s->measured = aptq_calloc(n, sizeof(LayerError), "layer errors");
  if (!s->params || !s->bits || !s->sens || !s->sens_err || !s->err || !s->measured) return APTQ_ERR;
  for (int i = 0; i < s->n; i++) s->params[i] = m->linear[i / LIN_COUNT][i % LIN_COUNT].rows * m->linear[i / LIN_COUNT][i % LIN_COUNT].cols;
  s->budget = s->params;
  if (!p->ggml) return 0;
  s->budget = aptq_malloc(sizeof(long long) * n, "layer sizes");
  if (!s->budget) return APTQ_ERR;
  for (int i = 0; i < s->n; i++) s->budget[i] = stored_weights(m, i);
  return 0;
}

static void sweep_free(Sweep *s) {
  if (s->budget != s->params) aptq_free(s->budget);
  aptq_free(s->params);
  aptq_free(s->bits);
  aptq_free(s->sens);
  aptq_free(s->sens_err);
  aptq_free(s->rtn_err);
  aptq_free(s->err);
  aptq_free(s->measured);
}

/* The pass with every layer at 4 bits whose layer Hessians' traces are the
 * `layer` sensitivities; for the fill allocations R = 1 is exactly that
 * pass, so where R = 1 is asked for (reuse ≥ 0) it writes that output (the
 * single R = 1 run's file, without allocation figures). */
static int measuring_pass(Sweep *s, const Options *o, const Plan *p, const Model *m, const TokenShard *calib, int reuse,
                          char (*out)[OPT_PATH_MAX], char (*rep)[OPT_PATH_MAX], OutputInfo *info, double t_start, MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  Options o4 = *o; /* recorded in the R = 1 file as its run's options */
  o4.bits = 4;
  Plan p4 = *p;
  p4.gptq.bits = 4;
  if (rank == 0) printf("aptq quantize: measuring pass (all layers at 4 bits)%s\n", reuse >= 0 ? ", written as R = 1" : "");
  if (reuse < 0) {
    for (int i = 0; i < s->n; i++) s->measured[i].bits = 4;
    phases_reset();
    PassTimes times;
    return pass_run(NULL, &p4, m, calib, NULL, s->measured, NULL, t_start, &times, comm);
  }
  info->output = out[reuse];
  info->report = rep[reuse];
  info->R = info->R_achieved = 1.0;
  info->average_bits = 4.0;
  info->ggml_bits = p->ggml ? knap_width_cost(&knap_ggml, 4) : 0.0;
  for (int i = 0; i < s->n; i++) s->bits[i] = 4;
  return quantize_output(&o4, &p4, m, calib, s->bits, info, s->measured, NULL, t_start, comm);
}

/* The sensitivities the allocation ranks by (trace, knapsack): Fisher
 * traces, or the measuring pass's layer traces; and the RTN errors the
 * knapsack weighs. */
static int sensitivities(Sweep *s, const Options *o, const Plan *p, const Model *m, const TokenShard *calib, int nR, int reuse,
                         char (*out)[OPT_PATH_MAX], char (*rep)[OPT_PATH_MAX], OutputInfo *info, double t_start, MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  int needs_traces = plan_ranks_by_sensitivity(p) && nR > (reuse >= 0);
  int fisher = needs_traces && p->sensitivity == SENSITIVITY_FISHER;
  if (fisher) {
    double t0 = MPI_Wtime();
    if (rank == 0) {
      int nsel = o->fisher_nseq < o->nseq ? o->fisher_nseq : o->nseq;
      if (strcmp(o->fisher_method, "backward") == 0)
        printf("aptq quantize: Fisher sensitivities by backward passes (%d sequences, %d label set%s per sequence)\n", nsel,
               o->fisher_probes, o->fisher_probes > 1 ? "s" : "");
      else
        printf("aptq quantize: Fisher sensitivities (%d sequences, %d probe%s per layer and sequence)\n", nsel, o->fisher_probes,
               o->fisher_probes > 1 ? "s" : "");
      fflush(stdout);
    }
    CHECK(fisher_sensitivities(o, m, calib, s->sens, s->sens_err, comm));
    info->t_sensitivity = MPI_Wtime() - t0;
  }
  if ((needs_traces && !fisher) || reuse >= 0) {
    double t0 = MPI_Wtime();
    CHECK(measuring_pass(s, o, p, m, calib, reuse, out, rep, info, t_start, comm));
    info->t_measure = MPI_Wtime() - t0;
    if (!fisher)
      for (int i = 0; i < s->n; i++) s->sens[i] = s->measured[i].sensitivity;
  }
  if (needs_traces) {
    info->alloc_sens = s->sens;
    info->alloc_sens_err = fisher ? s->sens_err : NULL;
  }
  if (p->allocation == ALLOC_KNAPSACK) {
    s->rtn_err = aptq_malloc(sizeof(double) * (size_t)s->n * plan_widths(p)->n, "RTN errors");
    if (!s->rtn_err) aptq_fatal(comm);
    CHECK(rtn_errors(p, m, s->rtn_err, comm));
  }
  return 0;
}

/* grid = ggml: how many layers of each llama.cpp type, and their bits per
 * weight as llama.cpp counts them (the linear layers, unpadded). */
static void print_ggml_types(const Sweep *s, const KnapWidths *kw) {
  static const char *const type[KNAP_MAX] = {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_0"};
  printf("aptq quantize: grid = ggml: linear layers");
  for (int c = 0; c < kw->n; c++) {
    int count = 0;
    for (int i = 0; i < s->n; i++) count += s->bits[i] == kw->bits[c];
    if (count) printf(" %d %s", count, type[c]);
  }
  printf(", %.4f bits per weight (llama.cpp's count)\n", allocation_average_cost(kw, s->n, s->budget, s->bits));
}

/* The widths for one value of R (or of avg_bits), then its output. */
static int one_output(Sweep *s, const Options *o, const Plan *p, const Model *m, const TokenShard *calib, double R, const char *out,
                      const char *rep, OutputInfo *info, double t_start, MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  const KnapWidths *kw = plan_widths(p);
  if (p->avg_budget) CHECK(aptq_agree(comm, allocate_knapsack_widths(kw, s->n, s->budget, s->sens, s->rtn_err, R, s->bits)));
  else
    CHECK(aptq_agree(
        comm, allocate_bits_widths(kw, p->allocation, R, s->n, s->budget, s->sens, s->rtn_err, LIN_COUNT, (uint64_t)o->seed, s->bits)));
  info->output = out;
  info->report = rep;
  info->R = R;
  info->R_achieved = allocation_fraction_high(s->n, s->params, s->bits);
  info->average_bits = allocation_average_bits(s->n, s->params, s->bits);
  info->ggml_bits = p->ggml ? allocation_average_cost(kw, s->n, s->budget, s->bits) : 0.0;
  if (rank == 0) {
    if (p->avg_budget) printf("aptq quantize: avg_bits = %g: knapsack allocation, average %.4f bits\n", R, info->average_bits);
    else
      printf("aptq quantize: R = %g: %s allocation, %.4f of the parameters above 2 bits, average %.4f bits\n", R, o->allocation,
             info->R_achieved, info->average_bits);
    if (p->ggml) print_ggml_types(s, kw);
    fflush(stdout);
  }
  return quantize_output(o, p, m, calib, s->bits, info, s->err, NULL, t_start, comm);
}

int sweep_run(const Options *o, const Plan *p, const Model *m, const TokenShard *calib, const double *R, int nR, char (*out)[OPT_PATH_MAX],
              char (*rep)[OPT_PATH_MAX], OutputInfo *info, double t_start, MPI_Comm comm) {
  /* for the fill allocations R = 1 is the measuring pass itself */
  int reuse = -1;
  for (int j = 0; j < nR; j++)
    if (R[j] == 1.0 && p->allocation != ALLOC_KNAPSACK) reuse = j;
  Sweep s;
  if (sweep_alloc(&s, p, m)) aptq_fatal(comm);
  int rc = sensitivities(&s, o, p, m, calib, nR, reuse, out, rep, info, t_start, comm);
  for (int j = 0; !rc && j < nR; j++)
    if (j != reuse) rc = one_output(&s, o, p, m, calib, R[j], out[j], rep[j], info, t_start, comm);
  sweep_free(&s);
  return rc;
}
