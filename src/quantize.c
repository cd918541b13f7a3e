/* aptq quantize: the whole data path from checkpoint to quantized HDF5.
 * method=rtn: every linear layer is split into row slabs over the ranks;
 * each rank converts, quantizes and packs its slab and all ranks write
 * their slabs collectively into one file.
 * method=gptq: the sequential pass. Block by block, each rank runs its shard
 * of the calibration sequences through the block (whose inputs come from
 * the already quantized earlier blocks), accumulates the layer-input
 * Hessians, the ranks reduce them, factor them, solve row slabs of every
 * layer and write them; the quantized rows are exchanged so that every rank
 * runs the quantized block to make the next block's inputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "fisher.h"
#include "memory.h"
#include "quantize.h"
#include "phases.h"
#include "forward.h"
#include "gptq.h"
#include "hessian.h"
#include "hessian_stream.h"
#include "attn_hessian.h"
#include "model.h"
#include "outpath.h"
#include "qfile.h"
#include "quant.h"
#include "report.h"
#include "tokens.h"
#include "allocate.h"
#include "activations.h"
#include "checkpoint.h"

typedef struct {
  double err2, norm2; /* Σ (w − q)², Σ w² over the layer */
  double loss;        /* GPTQ: Σ (w − q)²/U_jj²/2 */
  double damp_used;
  int retries;
  int bits;
  double sensitivity; /* mean Hessian diagonal: tr(H)/(rows·cols) */
} LayerError;

/* LayerError <-> the statistics a checkpoint keeps per layer */
enum { NSTATS = 7 };
static void stats_pack(const LayerError *e, double *s) {
  s[0] = e->err2;
  s[1] = e->norm2;
  s[2] = e->loss;
  s[3] = e->damp_used;
  s[4] = e->retries;
  s[5] = e->bits;
  s[6] = e->sensitivity;
}
static void stats_unpack(const double *s, LayerError *e) {
  e->err2 = s[0];
  e->norm2 = s[1];
  e->loss = s[2];
  e->damp_used = s[3];
  e->retries = (int)s[4];
  e->bits = (int)s[5];
  e->sensitivity = s[6];
}

static double trace(const double *H, int n) {
  double t = 0;
  for (int i = 0; i < n; i++) t += H[(size_t)i * n + i];
  return t;
}

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

/* Pack and write one layer's slab, and add its squared errors. */
static int write_slab(QFileWriter *qw, const Options *o, const char *name, int rows, int cols, int r0, int n, const uint8_t *codes,
                      const float *scales, const int32_t *zeros, const int32_t *g_idx) {
  if (!qw) return 0; /* a measuring pass writes nothing */
  int wpr = quant_words_per_row(cols, o->bits);
  uint32_t *packed = aptq_malloc(sizeof(uint32_t) * ((size_t)n * wpr + 1), "packed codes");
  if (!packed) return APTQ_ERR;
  for (int i = 0; i < n; i++) quant_pack_row(codes + (size_t)i * cols, cols, o->bits, packed + (size_t)i * wpr);
  QLayerSlab slab = {name, rows, cols, o->bits, o->group_size, o->sym, r0, r0 + n, packed, scales, zeros, g_idx};
  int rc = qfile_write_layer(qw, &slab);
  free(packed);
  return rc;
}

/* RTN of rows [r0, r1) of one layer, written collectively. */
static int rtn_layer(QFileWriter *qw, const Options *o, const TensorRef *t, const char *name, int r0, int r1, LayerError *e) {
  int rows = (int)t->rows, cols = (int)t->cols, n = r1 - r0;
  int ng = quant_ngroups(cols, o->group_size);
  float *W = aptq_malloc(sizeof(float) * ((size_t)n * cols + 1), "weight slab");
  uint8_t *codes = aptq_malloc((size_t)n * cols + 1, "codes");
  float *scales = aptq_malloc(sizeof(float) * ((size_t)n * ng + 1), "scales");
  int32_t *zeros = aptq_malloc(sizeof(int32_t) * ((size_t)n * ng + 1), "zeros");
  int32_t *g_idx = aptq_malloc(sizeof(int32_t) * (size_t)cols, "g_idx");
  int rc = (!W || !codes || !scales || !zeros || !g_idx) ? APTQ_ERR : 0;
  if (!rc) rc = tensor_rows_f32(t, r0, r1, W);
  if (!rc) {
    quant_rtn(W, n, cols, o->group_size, o->bits, o->sym, codes, scales, zeros, &e->err2);
    for (size_t i = 0; i < (size_t)n * cols; i++) e->norm2 += (double)W[i] * W[i];
    for (int j = 0; j < cols; j++) g_idx[j] = o->group_size ? j / o->group_size : 0;
    rc = write_slab(qw, o, name, rows, cols, r0, n, codes, scales, zeros, g_idx);
  }
  free(W);
  free(codes);
  free(scales);
  free(zeros);
  free(g_idx);
  return rc;
}

static int rtn_pass(QFileWriter *qw, const Options *o, const Model *m, LayerError *err, double t_start, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  for (int l = 0; l < m->cfg.n_layers; l++) {
    for (int k = 0; k < LIN_COUNT; k++) {
      const TensorRef *t = &m->linear[l][k];
      char name[256];
      linear_layer_name(l, k, name, sizeof name);
      int r0, n;
      shard_range((int)t->rows, size, rank, &r0, &n);
      if (rtn_layer(qw, o, t, name, r0, r0 + n, &err[l * LIN_COUNT + k])) aptq_fatal(comm);
      MPI_Allreduce(MPI_IN_PLACE, &err[l * LIN_COUNT + k].err2, 2, MPI_DOUBLE, MPI_SUM, comm);
    }
    if (rank == 0) {
      printf("aptq quantize: block %d of %d done, %.1f s elapsed\n", l + 1, m->cfg.n_layers, MPI_Wtime() - t_start);
      fflush(stdout);
    }
  }
  return 0;
}

static const float *group_input(const BlockScratch *s, BlockStop stop) {
  switch (stop) {
    case STOP_QKV_INPUT: return s->xn;
    case STOP_O_INPUT: return s->z;
    case STOP_MLP_INPUT: return s->xn2;
    default: return s->act;
  }
}

/* The solve's attributes of a layer group in the file (docs/hdf5-schema.md). */
static void write_solve_attrs(QFileWriter *qw, const Options *o, const char *name, const LayerError *e, const char *form, double damp_out,
                              MPI_Comm comm) {
  if (!qw) return;
  char group[300];
  snprintf(group, sizeof group, "/layers/%s", name);
  int kron = !strcmp(form, "kron");
  if (qfile_attr_double(qw, group, "gptq_loss", e->loss) || qfile_attr_double(qw, group, "sensitivity", e->sensitivity) ||
      qfile_attr_double(qw, group, "damp", e->damp_used) || qfile_attr_int(qw, group, "damp_retries", e->retries) ||
      qfile_attr_int(qw, group, "act_order", o->act_order) || qfile_attr_int(qw, group, "static_groups", o->static_groups) ||
      qfile_attr_string(qw, group, "hessian_form", form) || (kron && qfile_attr_double(qw, group, "damp_out", damp_out)))
    aptq_fatal(comm);
}

/* One layer of a GPTQ solve: W holds all its rows, and afterwards the
 * whole quantized weight on every rank; o its options (its bit width). */
typedef struct {
  char name[256];
  float *W;
  int rows;
  Options o;
  GptqParams p;
  LayerError *e;
} SolveLayer;

/* GPTQ of the layers lay[0..nl) that share the prepared factor L (q/k/v,
 * gate/up), solved together: their row chunks are dealt over the ranks as
 * one run (gptq_group_rows), so that different ranks solve different layers
 * at the same time and a factor on the grid has each block of U fetched
 * once for all of them. Every rank writes its rows of each layer, then
 * every rank gets the whole quantized weights. */
static int gptq_linears(QFileWriter *qw, const GptqLayer *L, const char *form, SolveLayer *lay, int nl, MPI_Comm comm) {
  int rank, size, cols = L->cols, rc = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int rows[LIN_COUNT], r0[LIN_COUNT], n[LIN_COUNT];
  for (int k = 0; k < nl; k++) rows[k] = lay[k].rows;
  gptq_group_rows(rows, nl, size, rank, r0, n);
  GptqSlab slab[LIN_COUNT];
  double *chunk_loss[LIN_COUNT], loss[LIN_COUNT], sums[2 * LIN_COUNT];
  for (int k = 0; k < nl; k++) {
    size_t nk = (size_t)n[k] * cols + 1, ng = (size_t)quant_ngroups(cols, lay[k].o.group_size);
    slab[k] = (GptqSlab){&lay[k].p,
                         aptq_malloc(sizeof(float) * nk, "weight slab"),
                         n[k],
                         aptq_malloc(nk, "codes"),
                         aptq_malloc(sizeof(float) * nk, "quantized slab"),
                         aptq_malloc(sizeof(float) * (n[k] * ng + 1), "scales"),
                         aptq_malloc(sizeof(int32_t) * (n[k] * ng + 1), "zeros"),
                         aptq_calloc((size_t)n[k] / GPTQ_ROW_CHUNK + 1, sizeof(double), "losses")};
    chunk_loss[k] = slab[k].chunk_loss;
    rc = rc || !slab[k].W || !slab[k].codes || !slab[k].Q || !slab[k].scales || !slab[k].zeros || !slab[k].chunk_loss;
    if (!rc) memcpy(slab[k].W, lay[k].W + (size_t)r0[k] * cols, sizeof(float) * (size_t)n[k] * cols);
  }
  if (!rc) {
    double t = MPI_Wtime();
    rc = gptq_solve_slabs(L, slab, nl);
    phase_add(PH_SOLVE, t);
  }
  for (int k = 0; !rc && k < nl; k++) {
    const float *orig = lay[k].W + (size_t)r0[k] * cols;
    LayerError *e = lay[k].e;
    for (size_t i = 0; i < (size_t)n[k] * cols; i++) {
      double d = (double)orig[i] - slab[k].Q[i];
      e->err2 += d * d;
      e->norm2 += (double)orig[i] * orig[i];
    }
  }
  if (!rc && qw) {
    phase_sync(comm);
    double t = MPI_Wtime();
    for (int k = 0; !rc && k < nl; k++)
      rc = write_slab(qw, &lay[k].o, lay[k].name, rows[k], cols, r0[k], n[k], slab[k].codes, slab[k].scales, slab[k].zeros, L->g_idx);
    phase_add(PH_WRITE, t);
  }
  if (rc) aptq_fatal(comm);
  double t = MPI_Wtime();
  int *counts = malloc(sizeof(int) * (size_t)size * nl), *displs = malloc(sizeof(int) * (size_t)size * nl);
  for (int r = 0; r < size; r++) gptq_group_rows(rows, nl, size, r, displs + (size_t)r * nl, counts + (size_t)r * nl);
  int *cnt = malloc(sizeof(int) * (size_t)size), *dsp = malloc(sizeof(int) * (size_t)size);
  for (int k = 0; k < nl; k++) {
    memcpy(lay[k].W + (size_t)r0[k] * cols, slab[k].Q, sizeof(float) * (size_t)n[k] * cols);
    for (int r = 0; r < size; r++) {
      cnt[r] = counts[(size_t)r * nl + k] * cols;
      dsp[r] = displs[(size_t)r * nl + k] * cols;
    }
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, lay[k].W, cnt, dsp, MPI_FLOAT, comm);
    sums[2 * k] = lay[k].e->err2;
    sums[2 * k + 1] = lay[k].e->norm2;
  }
  MPI_Allreduce(MPI_IN_PLACE, sums, 2 * nl, MPI_DOUBLE, MPI_SUM, comm);
  gptq_group_loss(chunk_loss, rows, nl, comm, loss);
  phase_add(PH_REDUCE, t);
  for (int k = 0; k < nl; k++) {
    LayerError *e = lay[k].e;
    e->err2 = sums[2 * k];
    e->norm2 = sums[2 * k + 1];
    e->loss = loss[k];
    e->damp_used = L->factor.damp_used;
    e->retries = L->factor.retries;
    write_solve_attrs(qw, &lay[k].o, lay[k].name, e, form, 0.0, comm);
    free(slab[k].W);
    free(slab[k].codes);
    free(slab[k].Q);
    free(slab[k].scales);
    free(slab[k].zeros);
    free(slab[k].chunk_loss);
  }
  free(counts);
  free(displs);
  free(cnt);
  free(dsp);
  return 0;
}

/* One head of a Kronecker layer whose input factor L is prepared: its
 * output factor into Uo, then its dh rows (slab offset `local` heads in). */
static int kron_head(const GptqLayer *L, const Options *o, const GptqParams *p, const double *Hout, int i, int local, int dh, int d, int ng,
                     float *Uo, double *damp_out, float *slab, uint8_t *codes, float *Q, float *scales, int32_t *zeros, double *losses) {
  size_t off = (size_t)local * dh * d;
  const float *uo = Uo;
  double t = MPI_Wtime();
  int rc = gptq_output_factor(Hout + (size_t)i * dh * dh, dh, o->damp, Uo, damp_out);
  t = phase_add(PH_FACTOR, t);
  rc = rc || gptq_solve_kron(L, p, &uo, dh, slab + off, 1, codes + off, Q + off, scales + (size_t)local * dh * ng,
                             zeros + (size_t)local * dh * ng, &losses[i]);
  phase_add(PH_SOLVE, t);
  return rc;
}

/* A layer with a Kronecker Hessian per head of dh rows (docs/aptq.md):
 * head i has the input factor Hin[i] (d × d) and the output factor
 * Hout + i·dh² (dh × dh). Heads sharing one input factor (the same pointer)
 * share one factorization; one column order for the whole layer, from the
 * diagonal of `order` (NULL: of Hin[0]), so that it keeps one g_idx. Whole
 * heads are solved per rank, then written and exchanged. */
static int kron_linear(QFileWriter *qw, const Options *o, const GptqParams *p, const double *const *Hin, const double *order,
                       const double *Hout, int heads, int dh, int d, const char *name, float *W, LayerError *e, MPI_Comm comm) {
  int rank, size, ng = quant_ngroups(d, o->group_size), h0, mine;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  shard_range(heads, size, rank, &h0, &mine);
  size_t slab_n = (size_t)mine * dh * d;
  float *Uo = aptq_malloc(sizeof(float) * (size_t)dh * dh, "output factor");
  float *slab = aptq_malloc(sizeof(float) * (slab_n + 1), "weight slab");
  float *Q = aptq_malloc(sizeof(float) * (slab_n + 1), "quantized slab");
  uint8_t *codes = aptq_malloc(slab_n + 1, "codes");
  float *scales = aptq_malloc(sizeof(float) * ((size_t)mine * dh * ng + 1), "scales");
  int32_t *zeros = aptq_malloc(sizeof(int32_t) * ((size_t)mine * dh * ng + 1), "zeros");
  double *losses = aptq_calloc((size_t)heads, sizeof(double), "losses");
  int32_t *g_idx = aptq_malloc(sizeof(int32_t) * (size_t)d, "g_idx");
  int rc = !Uo || !slab || !Q || !codes || !scales || !zeros || !losses || !g_idx;
  CHECK(aptq_agree(comm, rc));
  memcpy(slab, W + (size_t)h0 * dh * d, sizeof(float) * slab_n);
  double damp_out = 0;
  /* Σ_heads tr(H_in)·tr(H_out) over the rows·cols entries */
  e->sensitivity = 0;
  for (int i = 0; i < heads; i++) e->sensitivity += trace(Hin[i], d) * trace(Hout + (size_t)i * dh * dh, dh);
  e->sensitivity /= (double)heads * dh * d;
  GptqLayer L;
  const double *prepared = NULL;
  /* One input factor per head (v_proj: one per kv group): the factors are
   * independent, so each rank factors only its own heads, on its own, at
   * the same time as the others (LAPACK on MPI_COMM_SELF) instead of every
   * rank factoring every head. The column order comes from `order`, the
   * same for all heads, so rank 0's g_idx (it holds head 0) is the layer's. */
  int distinct = heads > 1 && order != NULL;
  for (int i = 0; distinct && i < heads; i++)
    for (int j = 0; j < i; j++) distinct &= Hin[i] != Hin[j];
  if (distinct) {
    int retries = 0;
    double damp_used = 0;
    for (int i = h0; !rc && i < h0 + mine; i++) {
      double t = MPI_Wtime();
      rc = gptq_prepare_ordered(Hin[i], order, d, p, MPI_COMM_SELF, &L);
      phase_add(PH_FACTOR, t);
      if (rc) break;
      if (i == 0) memcpy(g_idx, L.g_idx, sizeof(int32_t) * (size_t)d);
      retries = retries > L.factor.retries ? retries : L.factor.retries;
      damp_used = damp_used > L.factor.damp_used ? damp_used : L.factor.damp_used;
      rc = kron_head(&L, o, p, Hout, i, i - h0, dh, d, ng, Uo, &damp_out, slab, codes, Q, scales, zeros, losses);
      gptq_layer_free(&L);
    }
    CHECK(aptq_agree(comm, rc));
    MPI_Bcast(g_idx, d, MPI_INT32_T, 0, comm);
    double worst[3] = {retries, damp_used, damp_out};
    MPI_Allreduce(MPI_IN_PLACE, worst, 3, MPI_DOUBLE, MPI_MAX, comm);
    e->retries = (int)worst[0];
    e->damp_used = worst[1];
    damp_out = worst[2];
  }
  for (int i = 0; !distinct && i < heads; i++) {
    if (Hin[i] != prepared) {
      if (prepared) gptq_layer_free(&L);
      double t = MPI_Wtime();
      CHECK(gptq_prepare_ordered(Hin[i], order, d, p, comm, &L));
      phase_add(PH_FACTOR, t);
      prepared = Hin[i];
      if (i == 0) memcpy(g_idx, L.g_idx, sizeof(int32_t) * (size_t)d);
      e->damp_used = L.factor.damp_used;
      e->retries = e->retries > L.factor.retries ? e->retries : L.factor.retries;
    }
    if (i >= h0 && i < h0 + mine)
      rc = kron_head(&L, o, p, Hout, i, i - h0, dh, d, ng, Uo, &damp_out, slab, codes, Q, scales, zeros, losses);
    /* a rank that failed must not leave the others in the next collective factorization */
    if (i + 1 == heads || Hin[i + 1] != prepared) CHECK(aptq_agree(comm, rc));
  }
  if (prepared) gptq_layer_free(&L);
  CHECK(aptq_agree(comm, rc));
  const float *orig = W + (size_t)h0 * dh * d;
  for (size_t i = 0; i < slab_n; i++) {
    double diff = (double)orig[i] - Q[i];
    e->err2 += diff * diff;
    e->norm2 += (double)orig[i] * orig[i];
  }
  if (qw) {
    phase_sync(comm);
    double t = MPI_Wtime();
    if (write_slab(qw, o, name, heads * dh, d, h0 * dh, mine * dh, codes, scales, zeros, g_idx)) aptq_fatal(comm);
    phase_add(PH_WRITE, t);
  }
  double t = MPI_Wtime();
  MPI_Allreduce(MPI_IN_PLACE, &e->err2, 2, MPI_DOUBLE, MPI_SUM, comm); /* err2, norm2 */
  memcpy(W + (size_t)h0 * dh * d, Q, sizeof(float) * slab_n);
  int *counts = malloc(sizeof(int) * (size_t)size), *displs = malloc(sizeof(int) * (size_t)size);
  for (int r = 0; r < size; r++) shard_range(heads, size, r, &displs[r], &counts[r]);
  MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, losses, counts, displs, MPI_DOUBLE, comm);
  for (int r = 0; r < size; r++) {
    counts[r] *= dh * d;
    displs[r] *= dh * d;
  }
  MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, W, counts, displs, MPI_FLOAT, comm);
  phase_add(PH_REDUCE, t);
  e->loss = 0;
  for (int i = 0; i < heads; i++) e->loss += losses[i];
  write_solve_attrs(qw, o, name, e, "kron", damp_out, comm);
  free(counts);
  free(displs);
  free(Uo);
  free(slab);
  free(Q);
  free(codes);
  free(scales);
  free(zeros);
  free(losses);
  free(g_idx);
  return 0;
}

/* A group's layer-input Hessian is a whole or partial sum (Hessian), or is
 * summed into the factor's grid as it accumulates (HessianStream). */
static void group_add(int streamed, Hessian *H, HessianStream *S, const float *x, int T) {
  if (streamed) hstream_add(S, x);
  else hessian_add(H, x, T);
}
/* Streamed sums flush at the same sequence index on every rank (the loops
 * run to the largest shard; a rank past its own adds nothing). */
static int flush_due(const HessianStream *S, int i, int maxcount) { return (i + 1) % S->per_flush == 0 || i + 1 == maxcount; }

/* Seconds of the sequential pass spent on the calibration forwards and
 * Hessian accumulation and reduction, and on factor + solve + write. */
static double t_hessian, t_solve;
/* The predicted peak memory per rank of this run (memory.h), for the report. */
static double predicted_peak;

/* The sequential pass. layer_bits (l·LIN_COUNT + k), or NULL for o->bits
 * everywhere; qw NULL: measure only (errors, sensitivities), write nothing. */
static int gptq_pass(QFileWriter *qw, const Options *o, const Model *m, const TokenShard *calib, const int *layer_bits, LayerError *err,
                     Checkpoint *ck, double t_start, MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  const ModelConfig *c = &m->cfg;
  int T = calib->seqlen, D = c->dim, count = calib->count;
  Activations X;
  int x_rc = activations_alloc(&X, count, (size_t)T * D, !strcmp(o->activations, "bf16"));
  float *xtmp = aptq_malloc(sizeof(float) * (size_t)T * D, "block input copy");
  BlockWeights w;
  BlockScratch s;
  VHessian vh;
  QHessian qh;
  int aptq = !strcmp(o->method, "aptq"), v_kron = aptq && !strcmp(o->v_form, "kron");
  enum {
    Q_GPTQ,
    Q_ROWSHARED,
    Q_KRON
  } q_form = !aptq || !strcmp(o->q_form, "gptq") ? Q_GPTQ
             : !strcmp(o->q_form, "kron")        ? Q_KRON
                                                 : Q_ROWSHARED;
  enum {
    K_GPTQ,
    K_ROWSHARED,
    K_KRON
  } k_form = !aptq || !strcmp(o->k_form, "gptq") ? K_GPTQ
             : !strcmp(o->k_form, "kron")        ? K_KRON
                                                 : K_ROWSHARED;
  int k_stats = k_form != K_GPTQ;
  KHessian kh;
  int attn_stats = v_kron || q_form != Q_GPTQ || k_stats;
  int in_dims[4] = {D, c->n_heads * c->head_dim, D, c->hidden_dim};
  /* True-sequential: once o_proj is quantized, attention's output is
   * final, so the gate/up group's forward leaves the residual after
   * attention in X in place of the block input, and the down group and the
   * block's output run only the MLP from it (attention twice fewer, the
   * same bits). Not with bf16 activations: that would round the residual. */
  int mlp_resume = o->true_sequential && strcmp(o->activations, "bf16") != 0;
  /* keep_attention: the o group's forward keeps attention's output (final
   * once q/k/v are quantized) for the gate/up group's, which then starts at
   * o_proj; float32, so the same bits */
  int keep_z = o->true_sequential && o->keep_attention;
  Activations Z = {0};
  int z_rc = keep_z && activations_alloc(&Z, count, (size_t)T * c->n_heads * c->head_dim, 0);
  /* Groups whose factor runs on the ScaLAPACK grid are reduced straight
   * into its block-cyclic layout (MPI_Reduce_scatter): only the diagonal is
   * reduced whole. q/k's Kronecker forms read H[0] whole, so it stays. */
  int size;
  MPI_Comm_size(comm, &size);
  int partial[4], streamed[4], maxcount;
  MPI_Allreduce(&count, &maxcount, 1, MPI_INT, MPI_MAX, comm);
  double *hdiag[4] = {0}, hscale[4] = {0};
  Hessian H[4] = {0};
  HessianStream S[4] = {0};
  for (int g = 0; g < 4; g++) {
    partial[g] = gptq_hessian_scattered(o, g, in_dims[g], size);
    streamed[g] = gptq_hessian_streamed(o, g, in_dims[g], size);
    if (partial[g]) hdiag[g] = aptq_malloc(sizeof(double) * (size_t)in_dims[g], "Hessian diagonal");
    if (partial[g] && !hdiag[g]) partial[g] = -1;
  }
  int rc = x_rc || z_rc || !xtmp || block_weights_alloc(c, &w) || scratch_alloc(c, T, &s) || (v_kron && vhessian_init(&vh, c, T)) ||
           (q_form != Q_GPTQ && qhessian_init(&qh, c, T)) || (k_stats && khessian_init(&kh, c, T, k_form == K_KRON));
  /* every rank creates the streamed sums' grids (collective), then agrees */
  for (int g = 0; g < 4; g++)
    if (streamed[g]) rc = hstream_init(&S[g], in_dims[g], o->nb, T, o->stream_tokens, !strcmp(o->factor_algorithm, "trtri"), comm) || rc;
  for (int g = 0; !rc && g < 4; g++) rc = partial[g] < 0 || (!streamed[g] && hessian_init(&H[g], in_dims[g]));
  for (int i = 0; !rc && i < count; i++) {
    rc = embed_tokens(m, calib->ids + (size_t)i * T, T, xtmp);
    if (!rc) activations_put(&X, i, xtmp);
  }
  CHECK(aptq_agree(comm, rc));
  int l0 = 0, nl = c->n_layers * LIN_COUNT;
  double *stats = aptq_malloc(sizeof(double) * (size_t)nl * NSTATS, "layer statistics");
  CHECK(aptq_agree(comm, !stats));
  if (ck && ck->on && ck->next_block > 0) { /* resume: activations, statistics and finished blocks from the checkpoint */
    CHECK(checkpoint_restore(ck, m, calib, X.f32, qw, comm));
    for (int i = 0; i < ck->next_block * LIN_COUNT; i++) stats_unpack(ck->stats + (size_t)i * NSTATS, &err[i]);
    l0 = ck->next_block;
  }
  double t_blocks = MPI_Wtime();
  for (int l = l0; l < c->n_layers; l++) {
    if (ck && ck->on) {
      CHECK(checkpoint_block_begin(ck, l, comm));
      qw->tee = &ck->block; /* this block's layers also into its checkpoint file */
    }
    CHECK(aptq_agree(comm, block_weights_load(m, l, &w)));
    double th = MPI_Wtime();
    if (v_kron) vhessian_reset(&vh);
    if (q_form != Q_GPTQ) {
      qhessian_reset(&qh);
      qhessian_set_output(&qh, w.w[LIN_O]);
    }
    if (k_stats) {
      khessian_reset(&kh);
      khessian_set_output(&kh, w.w[LIN_O]);
    }
    if (!o->true_sequential) {
      /* every group's input from the full-precision block */
      for (int g = 0; g < 4; g++) streamed[g] ? hstream_reset(&S[g]) : hessian_reset(&H[g]);
      double t = MPI_Wtime();
      for (int i = 0; i < maxcount; i++) {
        if (i < count) {
          activations_get(&X, i, xtmp);
          block_forward(c, &w, &s, xtmp);
          t = phase_add(PH_FORWARD, t);
          for (int g = 0; g < 4; g++) group_add(streamed[g], &H[g], &S[g], group_input(&s, linear_groups[g].stop), T);
          if (v_kron) vhessian_add(&vh, c, &s, s.xn);
          if (q_form != Q_GPTQ) qhessian_add(&qh, c, &s, s.xn, NULL);
          if (k_stats) khessian_add(&kh, c, &s, s.xn, NULL);
          t = phase_add(PH_HESSIAN, t);
        }
        for (int g = 0; g < 4; g++)
          if (streamed[g] && flush_due(&S[g], i, maxcount)) CHECK(hstream_flush(&S[g], comm));
        t = MPI_Wtime();
      }
    }
    t_hessian += MPI_Wtime() - th;
    for (int g = 0; g < 4; g++) {
      th = MPI_Wtime();
      if (o->true_sequential) {
        streamed[g] ? hstream_reset(&S[g]) : hessian_reset(&H[g]);
        /* APTQ's v_proj factors need the attention of the q/k/v group's forward */
        BlockStop stop = g == 0 && attn_stats ? STOP_O_INPUT : linear_groups[g].stop;
        double t = MPI_Wtime();
        for (int i = 0; i < maxcount; i++) {
          if (i < count) {
            activations_get(&X, i, xtmp);
            if (g == 3 && mlp_resume) block_mlp_forward(c, &w, &s, xtmp, stop);
            else if (g == 2 && keep_z) {
              activations_get(&Z, i, s.z);
              block_forward_from_o(c, &w, &s, xtmp, stop);
            } else block_forward_until(c, &w, &s, xtmp, stop);
            if (g == 1 && keep_z) activations_put(&Z, i, s.z);
            /* the residual after attention is all the rest of the block needs */
            if (g == 2 && mlp_resume) activations_put(&X, i, xtmp);
            t = phase_add(PH_FORWARD, t);
            group_add(streamed[g], &H[g], &S[g], group_input(&s, linear_groups[g].stop), T);
            if (g == 0 && v_kron) vhessian_add(&vh, c, &s, s.xn);
            if (g == 0 && q_form != Q_GPTQ) qhessian_add(&qh, c, &s, s.xn, NULL);
            if (g == 0 && k_stats) khessian_add(&kh, c, &s, s.xn, NULL);
            t = phase_add(PH_HESSIAN, t);
          }
          if (streamed[g] && flush_due(&S[g], i, maxcount)) CHECK(hstream_flush(&S[g], comm));
          t = MPI_Wtime();
        }
      }
      phase_sync(comm); /* the reduction waits for the slowest shard */
      double tr = MPI_Wtime();
      CHECK(aptq_agree(comm, streamed[g]  ? hstream_finish(&S[g], comm, hdiag[g], &hscale[g])
                             : partial[g] ? hessian_finish_diag(&H[g], comm, hdiag[g], &hscale[g])
                                          : hessian_finish(&H[g], comm)));
      if (g == 0 && v_kron) {
        vhessian_set_output(&vh, w.w[LIN_O]);
        CHECK(aptq_agree(comm, vhessian_finish(&vh, comm)));
      }
      if (g == 0 && q_form != Q_GPTQ) CHECK(aptq_agree(comm, qhessian_finish(&qh, comm)));
      if (g == 0 && k_stats) CHECK(aptq_agree(comm, khessian_finish(&kh, comm)));
      phase_add(PH_REDUCE, tr);
      double ts = MPI_Wtime();
      t_hessian += ts - th;
      /* Layers with a Hessian of their own (APTQ's forms) are solved one
       * at a time; those that share the group's layer-input factor are
       * solved together after them (gptq_linears). */
      SolveLayer shared[LIN_COUNT];
      int nshared = 0;
      double group_sensitivity = 0; /* tr(H)/d of the group's layer-input Hessian */
      if (partial[g])
        for (int j = 0; j < in_dims[g]; j++) group_sensitivity += hdiag[g][j];
      else group_sensitivity = trace(H[g].sum, in_dims[g]);
      group_sensitivity /= in_dims[g];
      for (int k = linear_groups[g].first; k < linear_groups[g].first + linear_groups[g].count; k++) {
        char name[256];
        linear_layer_name(l, k, name, sizeof name);
        LayerError *e = &err[l * LIN_COUNT + k];
        /* this layer's bit width (mixed precision) */
        Options ob = *o;
        ob.bits = e->bits = layer_bits ? layer_bits[l * LIN_COUNT + k] : o->bits;
        GptqParams p = gptq_params_from_options(&ob);
        const Options *o = &ob;
        if (gptq_layer_shares_factor(o, k)) {
          e->sensitivity = group_sensitivity;
          SolveLayer *sl = &shared[nshared++];
          *sl = (SolveLayer){.W = w.w[k], .rows = (int)m->linear[l][k].rows, .o = ob, .p = p, .e = e};
          snprintf(sl->name, sizeof sl->name, "%s", name);
        } else if (k == LIN_V && v_kron) {
          /* one column order for the layer: from Σ_g H_in^g */
          double *order = aptq_calloc((size_t)D * D, sizeof(double), "column order");
          const double **Hin = malloc(sizeof(double *) * (size_t)vh.groups);
          CHECK(aptq_agree(comm, !order || !Hin));
          for (int gr = 0; gr < vh.groups; gr++) {
            Hin[gr] = vh.in[gr].sum;
            for (size_t i = 0; i < (size_t)D * D; i++) order[i] += vh.in[gr].sum[i];
          }
          CHECK(kron_linear(qw, o, &p, Hin, order, vh.out, vh.groups, vh.dh, D, name, w.w[k], e, comm));
          free(order);
          free(Hin);
        } else if (k == LIN_K && k_form == K_KRON) {
          /* K-FAC: the layer-input Hessian, one output factor per kv group */
          const double **Hin = malloc(sizeof(double *) * (size_t)c->n_kv_heads);
          for (int h = 0; h < c->n_kv_heads; h++) Hin[h] = H[0].sum;
          CHECK(kron_linear(qw, o, &p, Hin, NULL, kh.out, c->n_kv_heads, c->head_dim, D, name, w.w[k], e, comm));
          free(Hin);
        } else if ((k == LIN_K && k_stats) || (k == LIN_Q && q_form == Q_ROWSHARED)) {
          /* the token-weighted input Hessian of q or k */
          const double *Hk = k == LIN_K ? kh.in.sum : qh.in.sum;
          e->sensitivity = trace(Hk, D) / D;
          GptqLayer Lk;
          double t = MPI_Wtime();
          CHECK(gptq_prepare(Hk, D, &p, comm, &Lk));
          phase_add(PH_FACTOR, t);
          SolveLayer one = {.W = w.w[k], .rows = (int)m->linear[l][k].rows, .o = ob, .p = p, .e = e};
          snprintf(one.name, sizeof one.name, "%s", name);
          gptq_linears(qw, &Lk, "rowshared", &one, 1, comm);
          gptq_layer_free(&Lk);
        } else {
          /* K-FAC: the input factor is the layer-input Hessian, one output factor per head */
          const double **Hin = malloc(sizeof(double *) * (size_t)c->n_heads);
          for (int h = 0; h < c->n_heads; h++) Hin[h] = H[0].sum;
          CHECK(kron_linear(qw, o, &p, Hin, NULL, qh.out, c->n_heads, c->head_dim, D, name, w.w[k], e, comm));
          free(Hin);
        }
      }
      if (nshared) {
        /* the group's layer-input factor, for the layers that share it */
        GptqLayer L;
        double t = MPI_Wtime();
        const GptqParams *p = &shared[0].p;
        CHECK(streamed[g]  ? gptq_prepare_stream(S[g].acc, S[g].reversed, hdiag[g], hscale[g], in_dims[g], p, comm, &L)
              : partial[g] ? gptq_prepare_partial(H[g].sum, hdiag[g], hscale[g], in_dims[g], p, comm, &L)
                           : gptq_prepare(H[g].sum, in_dims[g], p, comm, &L));
        phase_add(PH_FACTOR, t);
        phase_shift(PH_FACTOR, PH_REDUCE, L.factor.reduce_seconds);
        gptq_linears(qw, &L, "gptq", shared, nshared, comm);
        gptq_layer_free(&L);
      }
      for (int k = linear_groups[g].first; rank == 0 && k < linear_groups[g].first + linear_groups[g].count; k++) {
        const LayerError *e = &err[l * LIN_COUNT + k];
        double now = MPI_Wtime(), done = (double)(l * LIN_COUNT + k + 1) / (c->n_layers * LIN_COUNT);
        printf("aptq quantize: block %d of %d  %-18s error %-12.6g rel %.5f%s  %.1f s elapsed, ETA %.1f s\n", l + 1, c->n_layers,
               linear_names[k], e->loss, e->norm2 > 0 ? sqrt(e->err2 / e->norm2) : 0.0, e->retries ? " (damping raised)" : "",
               now - t_start, (now - t_blocks) * (1.0 - done) / done);
        if (e->retries) {
          char name[256];
          linear_layer_name(l, k, name, sizeof name);
          printf("aptq quantize: warning: %s: factorization failed at damp %g; used damp %g\n", name, o->damp, e->damp_used);
        }
        fflush(stdout);
      }
      t_solve += MPI_Wtime() - ts;
    }
    /* the quantized block makes the next block's inputs */
    double tf = MPI_Wtime();
    for (int i = 0; i < count; i++) {
      activations_get(&X, i, xtmp);
      if (mlp_resume) block_mlp_forward(c, &w, &s, xtmp, STOP_FULL);
      else block_forward(c, &w, &s, xtmp);
      activations_put(&X, i, xtmp);
    }
    phase_add(PH_FORWARD, tf);
    if (ck && ck->on) {
      qw->tee = NULL;
      for (int i = 0; i < nl; i++) stats_pack(&err[i], stats + (size_t)i * NSTATS);
      CHECK(checkpoint_save(ck, o, m, calib, l, X.f32, stats, comm));
    }
    if (aptq_stop_requested(comm)) {
      if (ck && ck->on)
        rc = aptq_error(
            "stopped by SIGUSR1 after block %d of %d; the checkpoint in '%s' holds it: rerun with the same options and resume = yes", l + 1,
            c->n_layers, ck->dir);
      else
        rc = aptq_error("stopped by SIGUSR1 after block %d of %d; nothing was kept (give checkpoint = DIR to be able to resume)", l + 1,
                        c->n_layers);
      free(stats);
      return aptq_agree(comm, rc);
    }
  }
  free(stats);
  for (int g = 0; g < 4; g++) {
    hessian_free(&H[g]);
    if (streamed[g]) hstream_free(&S[g]);
    free(hdiag[g]);
  }
  if (v_kron) vhessian_free(&vh);
  if (q_form != Q_GPTQ) qhessian_free(&qh);
  if (k_stats) khessian_free(&kh);
  block_weights_free(&w);
  scratch_free(&s);
  activations_free(&X);
  activations_free(&Z);
  free(xtmp);
  return 0;
}

/* What one output file holds beyond the per-layer errors. */
typedef struct {
  const char *output, *report;
  int mixed; /* R was given */
  double R, R_achieved, average_bits;
  const double *alloc_sens;     /* the sensitivities the allocation used, or NULL */
  const double *alloc_sens_err; /* their standard errors (Fisher estimates), or NULL */
  double t_load, t_sensitivity, t_measure, t_pass, t_write, t_hessian, t_solve;
} OutputInfo;

static int write_report(const Options *o, const Model *m, const TokenShard *calib, const LayerError *err, const OutputInfo *info, int gptq,
                        MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const ModelConfig *c = &m->cfg;
  int nlayers = c->n_layers * LIN_COUNT;
  double total_err = 0, total_norm = 0;
  long long params = 0;
  for (int i = 0; i < nlayers; i++) {
    total_err += err[i].err2;
    total_norm += err[i].norm2;
  }
  for (int l = 0; l < c->n_layers; l++)
    for (int k = 0; k < LIN_COUNT; k++) params += m->linear[l][k].rows * m->linear[l][k].cols;
  double seconds = info->t_load + info->t_sensitivity + info->t_measure + info->t_pass + info->t_write;
  double *phase_all = aptq_malloc(sizeof(double) * (size_t)size * PH_COUNT, "phases"),
         *rss = aptq_malloc(sizeof(double) * (size_t)size, "rss");
  if (!phase_all || !rss) aptq_fatal(comm);
  phases_gather(comm, phase_all);
  double my_rss = memory_peak_rss();
  MPI_Allgather(&my_rss, 1, MPI_DOUBLE, rss, 1, MPI_DOUBLE, comm);
  if (rank == 0) {
    if (info->mixed)
      printf("aptq quantize: method %s, R %g (achieved %.6f), %s allocation, average %.6f bits, group_size %d%s, %d ranks\n", o->method,
             info->R, info->R_achieved, o->allocation, info->average_bits, o->group_size, o->sym ? ", symmetric" : "", size);
    else
      printf("aptq quantize: method %s, %d bits, group_size %d%s, %d ranks\n", o->method, o->bits, o->group_size,
             o->sym ? ", symmetric" : "", size);
    printf("  layers           : %d linear layers, %lld parameters\n", nlayers, params);
    printf("  relative error   : ||W-Q||/||W|| = %.6f over all layers\n", total_norm > 0 ? sqrt(total_err / total_norm) : 0.0);
    if (info->mixed)
      printf("  time             : load %.2f s, sensitivities %.2f s + measuring pass %.2f s (shared), this pass + write %.2f s\n",
             info->t_load, info->t_sensitivity, info->t_measure, info->t_pass + info->t_write);
    else
      printf("  time             : load %.2f s, quantize+write %.2f s, total %.2f s\n", info->t_load, info->t_pass + info->t_write,
             seconds);
    char b1[32], b2[32];
    double peak = 0;
    for (int r = 0; r < size; r++) peak = rss[r] > peak ? rss[r] : peak;
    memory_format(peak, b1, sizeof b1);
    memory_format(predicted_peak, b2, sizeof b2);
    printf("  memory           : peak RSS %s per rank (predicted %s)\n", b1, b2);
    printf("  output           : %s\n", info->output);
    fflush(stdout);
  }
  Report rep;
  int rc = report_open(&rep, info->report, rank);
  report_str(&rep, "command", "quantize");
  report_str(&rep, "method", o->method);
  report_int(&rep, "bits", o->bits);
  report_int(&rep, "group_size", o->group_size);
  report_int(&rep, "sym", o->sym);
  if (gptq) {
    report_int(&rep, "act_order", o->act_order);
    report_int(&rep, "static_groups", o->static_groups);
    report_int(&rep, "true_sequential", o->true_sequential);
    report_num(&rep, "damp", o->damp);
    report_int(&rep, "block_size", o->block_size);
    report_int(&rep, "calib_nseq", o->nseq);
    report_int(&rep, "calib_seqlen", o->seqlen);
  }
  if (!strcmp(o->method, "aptq")) {
    report_begin(&rep, "hessian_forms", '{');
    for (int k = 0; k < LIN_COUNT; k++)
      report_str(&rep, linear_names[k], k == LIN_V ? o->v_form : k == LIN_Q ? o->q_form : k == LIN_K ? o->k_form : "gptq");
    report_end(&rep, '}');
  }
  if (info->mixed) {
    report_str(&rep, "allocation", o->allocation);
    if (!strcmp(o->allocation, "trace") || !strcmp(o->allocation, "knapsack")) report_str(&rep, "sensitivity", o->sensitivity);
    report_num(&rep, "R", info->R);
    report_num(&rep, "R_achieved", info->R_achieved);
    report_str(&rep, "R_sweep", o->R);
  }
  report_str(&rep, "model", o->model);
  report_str(&rep, "model_fingerprint", m->fingerprint);
  report_str(&rep, "calib_sha256", o->calib[0] ? calib->sha256 : "");
  report_str(&rep, "output", info->output);
  report_int(&rep, "ranks", size);
  report_int(&rep, "parameters", params);
  report_num(&rep, "average_bits", info->average_bits);
  report_num(&rep, "relative_error", total_norm > 0 ? sqrt(total_err / total_norm) : 0.0);
  report_num(&rep, "seconds", seconds);
  report_begin(&rep, "phase_seconds", '{');
  report_num(&rep, "load", info->t_load);
  if (info->mixed) report_num(&rep, "measuring_pass", info->t_measure);
  if (info->mixed) report_num(&rep, "fisher_sensitivity", info->t_sensitivity);
  report_num(&rep, "quantize_write", info->t_pass + info->t_write);
  if (gptq) {
    report_num(&rep, "hessian", info->t_hessian);
    report_num(&rep, "factor_solve_write", info->t_solve);
  }
  report_end(&rep, '}');
  phases_report(&rep, phase_all, rss, size, predicted_peak);
  free(phase_all);
  free(rss);
  report_begin(&rep, "layers", '[');
  for (int l = 0; l < c->n_layers; l++)
    for (int k = 0; k < LIN_COUNT; k++) {
      char name[256];
      linear_layer_name(l, k, name, sizeof name);
      const LayerError *e = &err[l * LIN_COUNT + k];
      report_begin(&rep, NULL, '{');
      report_str(&rep, "name", name);
      report_int(&rep, "params", m->linear[l][k].rows * m->linear[l][k].cols);
      report_int(&rep, "bits", e->bits);
      report_num(&rep, "relative_error", e->norm2 > 0 ? sqrt(e->err2 / e->norm2) : 0.0);
      if (gptq) {
        report_num(&rep, "sensitivity", e->sensitivity);
        if (info->alloc_sens) report_num(&rep, "allocation_sensitivity", info->alloc_sens[l * LIN_COUNT + k]);
        if (info->alloc_sens_err) report_num(&rep, "allocation_sensitivity_stderr", info->alloc_sens_err[l * LIN_COUNT + k]);
        report_num(&rep, "gptq_loss", e->loss);
        report_num(&rep, "damp", e->damp_used);
        report_int(&rep, "damp_retries", e->retries);
      }
      report_end(&rep, '}');
    }
  report_end(&rep, ']');
  if (!rc) rc = report_close(&rep);
  return aptq_agree(comm, rc);
}

/* OUT.h5 → OUT-R0.75.h5 for one value of a sweep (the extension kept). */
static void sweep_path(const char *path, double R, char *out, size_t size) {
  const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
  if (!dot || (slash && dot < slash)) dot = path + strlen(path);
  snprintf(out, size, "%.*s-R%g%s", (int)(dot - path), path, R, dot);
}

/* Squared RTN error of every layer at each knapsack width (rows sharded,
 * summed over ranks): err[i·KNAP_CHOICES + c]. */
static int rtn_errors(const Options *o, const Model *m, double *err, MPI_Comm comm) {
  int rank, size, n = m->cfg.n_layers * LIN_COUNT, rc = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  memset(err, 0, sizeof(double) * (size_t)n * KNAP_CHOICES);
  for (int i = 0; !rc && i < n; i++) {
    const TensorRef *t = &m->linear[i / LIN_COUNT][i % LIN_COUNT];
    int r0, nr, cols = (int)t->cols, ng = quant_ngroups(cols, o->group_size);
    shard_range((int)t->rows, size, rank, &r0, &nr);
    float *W = aptq_malloc(sizeof(float) * ((size_t)nr * cols + 1), "weight slab");
    uint8_t *codes = aptq_malloc((size_t)nr * cols + 1, "codes");
    float *scales = aptq_malloc(sizeof(float) * ((size_t)nr * ng + 1), "scales");
    int32_t *zeros = aptq_malloc(sizeof(int32_t) * ((size_t)nr * ng + 1), "zeros");
    rc = !W || !codes || !scales || !zeros || tensor_rows_f32(t, r0, r0 + nr, W);
    for (int c = 0; !rc && c < KNAP_CHOICES; c++)
      quant_rtn(W, nr, cols, o->group_size, knapsack_bits[c], o->sym, codes, scales, zeros, &err[(size_t)i * KNAP_CHOICES + c]);
    free(W);
    free(codes);
    free(scales);
    free(zeros);
  }
  CHECK(aptq_agree(comm, rc));
  MPI_Allreduce(MPI_IN_PLACE, err, n * KNAP_CHOICES, MPI_DOUBLE, MPI_SUM, comm);
  return 0;
}

/* One pass into one file: create, quantize, metadata, commit, report. */
static int quantize_output(const Options *o, const Model *m, const TokenShard *calib, const int *bits, OutputInfo *info, LayerError *err,
                           Checkpoint *ck, double t_start, MPI_Comm comm) {
  int gptq = strcmp(o->method, "rtn") != 0, n = m->cfg.n_layers * LIN_COUNT;
  double t0 = MPI_Wtime();
  QFileWriter qw;
  CHECK(qfile_create(&qw, info->output, comm));
  memset(err, 0, sizeof *err * (size_t)n);
  for (int i = 0; i < n; i++) err[i].bits = bits ? bits[i] : o->bits;
  t_hessian = t_solve = 0;
  phases_reset();
  int rc = gptq ? gptq_pass(&qw, o, m, calib, bits, err, ck, t_start, comm) : rtn_pass(&qw, o, m, err, t_start, comm);
  if (rc) { /* agreed on every rank: nothing of this output survives */
    if (ck && ck->block.file >= 0) qfile_discard(&ck->block);
    qfile_discard(&qw);
    return rc;
  }
  info->t_hessian = t_hessian;
  info->t_solve = t_solve;
  double t1 = MPI_Wtime();
  if (qfile_write_metadata(&qw, o, m, o->calib[0] ? calib->sha256 : NULL, o->method) ||
      qfile_attr_double(&qw, "/meta", "seconds_quantize", t1 - t0) || qfile_attr_double(&qw, "/meta", "average_bits", info->average_bits) ||
      (info->mixed && (qfile_attr_double(&qw, "/meta", "R", info->R) || qfile_attr_double(&qw, "/meta", "R_achieved", info->R_achieved) ||
                       qfile_attr_string(&qw, "/meta", "allocation", o->allocation))))
    aptq_fatal(comm);
  /* the figures that chose the widths (docs/hdf5-schema.md) */
  if (info->alloc_sens && qfile_attr_string(&qw, "/meta", "sensitivity", o->sensitivity)) aptq_fatal(comm);
  for (int i = 0; info->alloc_sens && i < n; i++) {
    char name[256], group[300];
    linear_layer_name(i / LIN_COUNT, i % LIN_COUNT, name, sizeof name);
    snprintf(group, sizeof group, "/layers/%s", name);
    if (qfile_attr_double(&qw, group, "allocation_sensitivity", info->alloc_sens[i]) ||
        (info->alloc_sens_err && qfile_attr_double(&qw, group, "allocation_sensitivity_stderr", info->alloc_sens_err[i])))
      aptq_fatal(comm);
  }
  CHECK(qfile_commit(&qw));
  info->t_pass = t1 - t0;
  info->t_write = MPI_Wtime() - t1;
  return write_report(o, m, calib, err, info, gptq, comm);
}

/* The checkpoint's pages resident at once: the embedding (rows touched by
 * the calibration tokens, all of it at worst) and one block being converted. */
static double mapped_bytes(const Model *m) {
  double b = (double)(m->embed.rows * m->embed.cols) * dtype_size(m->embed.dtype), block = 0;
  for (int l = 0; l < m->cfg.n_layers; l++) {
    double x = 0;
    for (int k = 0; k < LIN_COUNT; k++) x += (double)(m->linear[l][k].rows * m->linear[l][k].cols) * dtype_size(m->linear[l][k].dtype);
    block = x > block ? x : block;
  }
  return b + block;
}

int cmd_quantize(const Options *o, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double t_start = MPI_Wtime(), baseline = memory_peak_rss(), limit;
  int rc = options_require(o, "model") || options_require(o, "output") || (o->max_memory[0] && memory_parse(o->max_memory, &limit));
  CHECK(aptq_agree(comm, rc));
  int gptq = !strcmp(o->method, "gptq") || !strcmp(o->method, "aptq");
  quant_set_fp16_scales(!strcmp(o->scale_dtype, "fp16"));
  aptq_install_signal_handlers();
  double R[RATIO_MAX];
  int nR = 0, mixed = o->R[0] != 0;
  if (mixed) {
    CHECK(aptq_agree(comm, ratio_parse(o->R, R, &nR)));
    if (!gptq)
      CHECK(aptq_agree(comm, aptq_error("R (mixed precision) needs method = gptq or aptq: the allocation and the solve use calibration "
                                        "Hessians; add --method=aptq and calib")));
    if (o->checkpoint[0] || o->resume)
      CHECK(aptq_agree(comm, aptq_error("checkpoint with R is not supported: run one R per job (jobs/sweep-R.sbatch --array) without "
                                        "checkpoint, or quantize at fixed bits with checkpoint")));
  }
  /* every output is checked before any work */
  int nout = mixed ? nR : 1;
  char(*out)[OPT_PATH_MAX] = malloc(sizeof *out * (size_t)nout), (*rep)[OPT_PATH_MAX] = malloc(sizeof *rep * (size_t)nout);
  for (int j = 0; j < nout; j++) {
    if (nR > 1) {
      sweep_path(o->output, R[j], out[j], OPT_PATH_MAX);
      if (o->report[0]) sweep_path(o->report, R[j], rep[j], OPT_PATH_MAX);
      else rep[j][0] = 0;
    } else {
      snprintf(out[j], OPT_PATH_MAX, "%s", o->output);
      snprintf(rep[j], OPT_PATH_MAX, "%s", o->report);
    }
    CHECK(output_check(out[j], "output", o->overwrite, comm));
    if (rep[j][0]) CHECK(output_check(rep[j], "report", 1, comm));
  }

  Model m;
  CHECK(aptq_agree(comm, model_open(o->model, &m)));
  if (rank == 0) note_partial_groups(&m, o->group_size);
  CHECK(model_fingerprint(&m, comm));
  /* RTN needs no calibration data; when given it is validated and its hash recorded */
  TokenShard calib = {0};
  if (gptq) CHECK(aptq_agree(comm, options_require(o, "calib")));
  if (o->calib[0]) {
    CHECK(aptq_agree(comm, options_require(o, "nseq")));
    CHECK(tokens_load(o->calib, "calib", o->seqlen, o->nseq, m.cfg.vocab_size, comm, &calib));
  }
  MemPlan plan;
  memplan_quantize(&plan, o, &m.cfg, o->seqlen, gptq ? (o->nseq + size - 1) / size : 0, size);
  memplan_add(&plan, "checkpoint pages mapped at once (embedding, one block)", mapped_bytes(&m), 0);
  if (mixed && strcmp(o->sensitivity, "layer") && (!strcmp(o->allocation, "trace") || !strcmp(o->allocation, "knapsack"))) {
    /* before the pass, with its own weights, scratch and head: counted as
     * a transient item, over the pass's calibration activations */
    int nsel = o->fisher_nseq < o->nseq ? o->fisher_nseq : o->nseq;
    memplan_add(&plan, "Fisher sensitivities (before the pass): streams, lm_head",
                fisher_memory(o, &m.cfg, (nsel + size - 1) / size) + (double)m.cfg.vocab_size * m.cfg.dim * sizeof(float), 1);
  }
  CHECK(memory_check(&plan, baseline, o, comm, &predicted_peak));
  double t_loaded = MPI_Wtime();
  int n = m.cfg.n_layers * LIN_COUNT;
  LayerError *err = aptq_calloc((size_t)n, sizeof *err, "layer errors"), *measured = NULL;
  long long *params = aptq_malloc(sizeof(long long) * (size_t)n, "layer sizes");
  int *bits = aptq_malloc(sizeof(int) * (size_t)n, "layer bits");
  if (!err || !params || !bits) aptq_fatal(comm);
  for (int i = 0; i < n; i++) params[i] = m.linear[i / LIN_COUNT][i % LIN_COUNT].rows * m.linear[i / LIN_COUNT][i % LIN_COUNT].cols;
  OutputInfo info = {.t_load = t_loaded - t_start, .mixed = mixed};

  if (!mixed) {
    info.output = out[0];
    info.report = rep[0];
    info.average_bits = o->bits;
    Checkpoint ck;
    if ((o->checkpoint[0] || o->resume) && !strcmp(o->activations, "bf16"))
      CHECK(
          aptq_agree(comm, aptq_error("checkpoint keeps float32 activations: use activations = float32 with checkpoint, or bf16 without")));
    if ((o->checkpoint[0] || o->resume) && !gptq)
      CHECK(aptq_agree(comm, aptq_error("checkpoint needs method = gptq or aptq: RTN has no block pass to resume (and takes seconds)")));
    CHECK(checkpoint_begin(&ck, o, &m, &calib, NSTATS, comm));
    rc = quantize_output(o, &m, &calib, NULL, &info, err, &ck, t_start, comm);
    if (!rc && ck.on) checkpoint_finish(&ck, &m, comm);
  } else {
    /* Sensitivities for trace and knapsack (docs/mixed.md): the Fisher
     * traces of the full-precision model (fisher.c), or the layer Hessians'
     * traces of a measuring pass with every layer at 4 bits, made with the
     * earlier blocks quantized at 4 bits. For the fill allocations R = 1 is
     * exactly that all-4-bit pass, so it writes that output directly. */
    int reuse = -1;
    for (int j = 0; j < nR; j++)
      if (R[j] == 1.0 && strcmp(o->allocation, "knapsack")) reuse = j;
    int needs_traces = (!strcmp(o->allocation, "trace") || !strcmp(o->allocation, "knapsack")) && nR > (reuse >= 0);
    int fisher = needs_traces && !strcmp(o->sensitivity, "fisher");
    double *rtn_err = NULL, *sens = aptq_calloc((size_t)n, sizeof(double), "sensitivities"),
           *sens_err = aptq_calloc((size_t)n, sizeof(double), "sensitivities");
    if (!sens || !sens_err) aptq_fatal(comm);
    if (fisher) {
      double t0 = MPI_Wtime();
      if (rank == 0) {
        printf("aptq quantize: Fisher sensitivities (%d sequences, %d probe%s per layer and sequence)\n",
               o->fisher_nseq < o->nseq ? o->fisher_nseq : o->nseq, o->fisher_probes, o->fisher_probes > 1 ? "s" : "");
        fflush(stdout);
      }
      CHECK(fisher_sensitivities(o, &m, &calib, sens, sens_err, comm));
      info.t_sensitivity = MPI_Wtime() - t0;
    }
    if ((needs_traces && !fisher) || reuse >= 0) {
      Options o4 = *o;
      o4.bits = 4;
      measured = aptq_calloc((size_t)n, sizeof *measured, "layer errors");
      if (!measured) aptq_fatal(comm);
      double t0 = MPI_Wtime();
      if (rank == 0) printf("aptq quantize: measuring pass (all layers at 4 bits)%s\n", reuse >= 0 ? ", written as R = 1" : "");
      if (reuse >= 0) {
        info.output = out[reuse];
        info.report = rep[reuse];
        info.R = info.R_achieved = 1.0;
        info.average_bits = 4.0;
        /* every layer at 4 bits whatever the sensitivities: the file is the
         * single R = 1 run's, without allocation figures */
        for (int i = 0; i < n; i++) bits[i] = 4;
        CHECK(quantize_output(&o4, &m, &calib, bits, &info, measured, NULL, t_start, comm));
      } else {
        for (int i = 0; i < n; i++) measured[i].bits = 4;
        t_hessian = t_solve = 0;
        phases_reset();
        CHECK(gptq_pass(NULL, &o4, &m, &calib, NULL, measured, NULL, t_start, comm));
      }
      info.t_measure = MPI_Wtime() - t0;
      if (!fisher)
        for (int i = 0; i < n; i++) sens[i] = measured[i].sensitivity;
    }
    if (needs_traces) info.alloc_sens = sens, info.alloc_sens_err = fisher ? sens_err : NULL;
    if (!strcmp(o->allocation, "knapsack")) {
      rtn_err = aptq_malloc(sizeof(double) * (size_t)n * KNAP_CHOICES, "RTN errors");
      if (!rtn_err) aptq_fatal(comm);
      CHECK(rtn_errors(o, &m, rtn_err, comm));
    }
    for (int j = 0; !rc && j < nR; j++) {
      if (j == reuse) continue;
      CHECK(aptq_agree(comm, allocate_bits(o->allocation, R[j], n, params, sens, rtn_err, LIN_COUNT, (uint64_t)o->seed, bits)));
      info.output = out[j];
      info.report = rep[j];
      info.R = R[j];
      info.R_achieved = allocation_fraction_high(n, params, bits);
      info.average_bits = allocation_average_bits(n, params, bits);
      if (rank == 0) {
        printf("aptq quantize: R = %g: %s allocation, %.4f of the parameters above 2 bits, average %.4f bits\n", R[j], o->allocation,
               info.R_achieved, info.average_bits);
        fflush(stdout);
      }
      rc = quantize_output(o, &m, &calib, bits, &info, err, NULL, t_start, comm);
    }
    free(sens);
    free(sens_err);
    free(rtn_err);
  }
  if (rank == 0 && nR > 1) {
    printf("aptq quantize: sweep of %d values of R done in %.2f s\n", nR, MPI_Wtime() - t_start);
    fflush(stdout);
  }
  free(err);
  free(measured);
  free(params);
  free(bits);
  free(out);
  free(rep);
  tokens_free(&calib);
  model_close(&m);
  return rc;
}

int quantize_fixed(const Options *o, const Model *m, const TokenShard *calib, double predicted, double t_start, MPI_Comm comm) {
  predicted_peak = predicted;
  int n = m->cfg.n_layers * LIN_COUNT;
  LayerError *err = aptq_calloc((size_t)n, sizeof *err, "layer errors");
  CHECK(aptq_agree(comm, !err));
  OutputInfo info = {.output = o->output, .report = o->report, .average_bits = o->bits, .t_load = MPI_Wtime() - t_start};
  int rc = quantize_output(o, m, calib, NULL, &info, err, NULL, t_start, comm);
  free(err);
  return rc;
}
