#include "solve.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "phases.h"
#include "quant.h"
#include "rowdeal.h"

int slab_alloc(Slab *s, size_t n, int cols, int ngroups, int with_q, size_t nloss) {
  size_t nc = n * (size_t)cols + 1, ng = n * (size_t)ngroups + 1;
  *s = (Slab){0};
  s->W = aptq_malloc(sizeof(float) * nc, "weight slab");
  s->codes = aptq_malloc(nc, "codes");
  if (with_q) s->Q = aptq_malloc(sizeof(float) * nc, "quantized slab");
  s->scales = aptq_malloc(sizeof(float) * ng, "scales");
  s->zeros = aptq_malloc(sizeof(int32_t) * ng, "zeros");
  if (quant_kgrid_mins()) s->mins = aptq_malloc(sizeof(float) * ng, "mins");
  if (nloss) s->loss = aptq_calloc(nloss, sizeof(double), "losses");
  if (!s->W || !s->codes || (with_q && !s->Q) || !s->scales || !s->zeros || (quant_kgrid_mins() && !s->mins) || (nloss && !s->loss)) {
    slab_free(s);
    return APTQ_ERR;
  }
  return 0;
}

void slab_free(Slab *s) {
  aptq_free(s->W);
  aptq_free(s->Q);
  aptq_free(s->codes);
  aptq_free(s->scales);
  aptq_free(s->zeros);
  aptq_free(s->mins);
  aptq_free(s->loss);
  *s = (Slab){0};
}

int solve_write_rows(QFileWriter *qw, const GptqParams *p, const char *name, int rows, int cols, int r0, int n, const Slab *s,
                     const int32_t *g_idx) {
  if (!qw) return 0; /* a measuring pass writes nothing */
  int wpr = quant_words_per_row(cols, p->bits);
  uint32_t *packed = aptq_malloc(sizeof(uint32_t) * ((size_t)n * wpr + 1), "packed codes");
  if (!packed) return APTQ_ERR;
  for (int i = 0; i < n; i++) quant_pack_row(s->codes + (size_t)i * cols, cols, p->bits, packed + (size_t)i * wpr);
  QLayerSlab slab = {name, rows, cols, p->bits, p->group_size, p->sym, r0, r0 + n, packed, s->scales, s->zeros, g_idx, s->mins};
  int rc = qfile_write_layer(qw, &slab);
  aptq_free(packed);
  return rc;
}

int solve_check_finite(const char *name, int r0, int n, int ngroups, const Slab *s, MPI_Comm comm) {
  int rc = 0;
  for (size_t i = 0; !rc && i < (size_t)n * ngroups; i++)
    if (!isfinite(s->scales[i]) || (s->mins && !isfinite(s->mins[i])))
      rc = aptq_error(
          "%s: quantization gave a non-finite scale in row %zu (the weights' range overflows float32); nothing written: "
          "check the model's weights",
          name, r0 + i / ngroups);
  return aptq_agree(comm, rc);
}

/* The solve's attributes of a layer group in the file (docs/hdf5-schema.md). */
static void write_solve_attrs(QFileWriter *qw, const GptqParams *p, const char *name, const LayerError *e, HessianForm form,
                              double damp_out, MPI_Comm comm) {
  if (!qw) return;
  char group[300];
  snprintf(group, sizeof group, "/layers/%s", name);
  int kron = form == FORM_KRON || form == FORM_RELAXED;
  if (qfile_attr_double(qw, group, "gptq_loss", e->loss) || qfile_attr_double(qw, group, "sensitivity", e->sensitivity) ||
      qfile_attr_double(qw, group, "damp", e->damp_used) || qfile_attr_int(qw, group, "damp_retries", e->retries) ||
      qfile_attr_int(qw, group, "act_order", p->act_order) || qfile_attr_int(qw, group, "static_groups", p->static_groups) ||
      qfile_attr_string(qw, group, "hessian_form", plan_form_name(form)) || (kron && qfile_attr_double(qw, group, "damp_out", damp_out)))
    aptq_fatal(comm);
}

/* ---- layers that share their group's factor ---------------------------- */

/* This rank's slabs of the layers: buffers, and the rows to solve. */
static int shared_slabs(const RowDeal *d, const SolveLayer *lay, int cols, Slab *slab, GptqSlab *gs) {
  int rc = 0;
  for (int k = 0; k < d->nl; k++) {
    size_t n = (size_t)d->count[k];
    int ng = quant_ngroups(cols, lay[k].p.group_size);
    if (!rc) rc = slab_alloc(&slab[k], n, cols, ng, 1, n / GPTQ_ROW_CHUNK + 1);
    if (rc) {
      slab[k] = (Slab){0};
      continue;
    }
    memcpy(slab[k].W, lay[k].W + (size_t)d->first[k] * cols, sizeof(float) * n * cols);
    gs[k] = (GptqSlab){&lay[k].p, slab[k].W, (int)n, slab[k].codes, slab[k].Q, slab[k].scales, slab[k].zeros, slab[k].loss, slab[k].mins};
  }
  return rc;
}

int solve_shared(QFileWriter *qw, const GptqLayer *L, HessianForm form, SolveLayer *lay, int nl, MPI_Comm comm) {
  int cols = L->cols, rows[ROWDEAL_MAX_LAYERS];
  for (int k = 0; k < nl; k++) rows[k] = lay[k].rows;
  RowDeal d;
  Slab slab[ROWDEAL_MAX_LAYERS] = {0};
  GptqSlab gs[ROWDEAL_MAX_LAYERS];
  int rc = rowdeal_chunks(&d, rows, nl, comm);
  if (!rc) rc = shared_slabs(&d, lay, cols, slab, gs);
  if (!rc) {
    double t = MPI_Wtime();
    rc = gptq_solve_slabs(L, gs, nl);
    phase_add(PH_SOLVE, t);
  }
  for (int k = 0; !rc && k < nl; k++) layer_error_add(lay[k].e, lay[k].W + (size_t)d.first[k] * cols, slab[k].Q, (size_t)d.count[k] * cols);
  if (rc) aptq_fatal(comm);
  for (int k = 0; !rc && k < nl; k++)
    rc = solve_check_finite(lay[k].name, d.first[k], d.count[k], quant_ngroups(cols, lay[k].p.group_size), &slab[k], comm);
  if (rc) {
    for (int k = 0; k < nl; k++) slab_free(&slab[k]);
    rowdeal_free(&d);
    return rc;
  }
  if (qw) {
    phase_sync(comm);
    double t = MPI_Wtime();
    for (int k = 0; !rc && k < nl; k++)
      rc = solve_write_rows(qw, &lay[k].p, lay[k].name, rows[k], cols, d.first[k], d.count[k], &slab[k], L->g_idx);
    phase_add(PH_WRITE, t);
  }
  if (rc) aptq_fatal(comm);
  /* every rank gets the whole quantized weights; the errors summed */
  double t = MPI_Wtime(), *chunk_loss[ROWDEAL_MAX_LAYERS], loss[ROWDEAL_MAX_LAYERS];
  LayerError *e[ROWDEAL_MAX_LAYERS];
  for (int k = 0; k < nl; k++) {
    memcpy(lay[k].W + (size_t)d.first[k] * cols, slab[k].Q, sizeof(float) * (size_t)d.count[k] * cols);
    rowdeal_allgather(&d, k, lay[k].W, cols, MPI_FLOAT);
    chunk_loss[k] = slab[k].loss;
    e[k] = lay[k].e;
  }
  rowdeal_sum_errors(&d, e);
  CHECK(rowdeal_group_loss(chunk_loss, rows, nl, comm, loss));
  phase_add(PH_REDUCE, t);
  for (int k = 0; k < nl; k++) {
    e[k]->loss = loss[k];
    e[k]->damp_used = L->factor.damp_used;
    e[k]->retries = L->factor.retries;
    write_solve_attrs(qw, &lay[k].p, lay[k].name, e[k], form, 0.0, comm);
    slab_free(&slab[k]);
  }
  rowdeal_free(&d);
  return 0;
}

/* ---- the Kronecker form ------------------------------------------------- */

/* The heads of one rank's solve and what they share. */
typedef struct {
  const GptqParams *p;
  const KronHessian *h;
  RowDeal deal; /* whole heads per rank */
  int ng;
  Slab s;         /* this rank's heads: rows, codes, grids; loss per head (all heads) */
  float *Uo;      /* dh × dh: one head's output factor */
  int32_t *g_idx; /* d */
  double damp_out;
} KronSolve;

/* One head of a Kronecker layer whose input factor L is prepared: its
 * output factor, then its dh rows. */
static int kron_head(KronSolve *ks, const GptqLayer *L, int i) {
  const KronHessian *h = ks->h;
  int local = i - ks->deal.first[0], dh = h->dh;
  size_t off = (size_t)local * dh * h->d, goff = (size_t)local * dh * ks->ng;
  const float *uo = ks->Uo;
  double t = MPI_Wtime();
  int rc = gptq_output_factor(h->out + (size_t)i * dh * dh, dh, ks->p->damp, ks->Uo, &ks->damp_out);
  t = phase_add(PH_FACTOR, t);
  rc = rc || gptq_solve_kron(L, ks->p, &uo, dh, ks->s.W + off, 1, ks->s.codes + off, ks->s.Q + off, ks->s.scales + goff, ks->s.zeros + goff,
                             ks->s.mins ? ks->s.mins + goff : NULL, &ks->s.loss[i]);
  phase_add(PH_SOLVE, t);
  return rc;
}

/* One input factor per head (v_proj: one per kv group): the factors are
 * independent, so each rank factors only its own heads, on its own, at the
 * same time as the others (LAPACK on MPI_COMM_SELF) instead of every rank
 * factoring every head. The column order comes from `order`, the same for
 * all heads, so rank 0's g_idx (it holds head 0) is the layer's. */
static int kron_own_factors(KronSolve *ks, LayerError *e, MPI_Comm comm) {
  int rc = 0, retries = 0, h0 = ks->deal.first[0], mine = ks->deal.count[0], d = ks->h->d;
  double damp_used = 0;
  for (int i = h0; !rc && i < h0 + mine; i++) {
    GptqLayer L;
    double t = MPI_Wtime();
    rc = gptq_prepare_ordered(ks->h->in[i], ks->h->order, d, ks->p, MPI_COMM_SELF, &L);
    phase_add(PH_FACTOR, t);
    if (rc) break;
    if (i == 0) memcpy(ks->g_idx, L.g_idx, sizeof(int32_t) * (size_t)d);
    retries = retries > L.factor.retries ? retries : L.factor.retries;
    damp_used = damp_used > L.factor.damp_used ? damp_used : L.factor.damp_used;
    rc = kron_head(ks, &L, i);
    gptq_layer_free(&L);
  }
  CHECK(aptq_agree(comm, rc));
  MPI_Bcast(ks->g_idx, d, MPI_INT32_T, 0, comm);
  double worst[3] = {retries, damp_used, ks->damp_out};
  MPI_Allreduce(MPI_IN_PLACE, worst, 3, MPI_DOUBLE, MPI_MAX, comm);
  e->retries = (int)worst[0];
  e->damp_used = worst[1];
  ks->damp_out = worst[2];
  return 0;
}

/* Heads that share input factors: each distinct factor is made by all
 * ranks together, and each rank solves its own heads of it. */
static int kron_shared_factors(KronSolve *ks, LayerError *e, MPI_Comm comm) {
  const KronHessian *h = ks->h;
  int rc = 0, h0 = ks->deal.first[0], mine = ks->deal.count[0];
  const double *prepared = NULL;
  GptqLayer L;
  for (int i = 0; i < h->heads; i++) {
    if (h->in[i] != prepared) {
      if (prepared) gptq_layer_free(&L);
      double t = MPI_Wtime();
      CHECK(gptq_prepare_ordered(h->in[i], h->order, h->d, ks->p, comm, &L));
      phase_add(PH_FACTOR, t);
      prepared = h->in[i];
      if (i == 0) memcpy(ks->g_idx, L.g_idx, sizeof(int32_t) * (size_t)h->d);
      e->damp_used = L.factor.damp_used;
      e->retries = e->retries > L.factor.retries ? e->retries : L.factor.retries;
    }
    if (i >= h0 && i < h0 + mine) rc = kron_head(ks, &L, i);
    /* a rank that failed must not leave the others in the next collective factorization */
    if (i + 1 == h->heads || h->in[i + 1] != prepared) CHECK(aptq_agree(comm, rc));
  }
  if (prepared) gptq_layer_free(&L);
  return 0;
}

static int kron_alloc(KronSolve *ks, const GptqParams *p, const KronHessian *h, MPI_Comm comm) {
  *ks = (KronSolve){.p = p, .h = h, .ng = quant_ngroups(h->d, p->group_size)};
  int rc = rowdeal_units(&ks->deal, h->heads, comm);
  if (!rc) rc = slab_alloc(&ks->s, (size_t)ks->deal.count[0] * h->dh, h->d, ks->ng, 1, (size_t)h->heads);
  ks->Uo = aptq_malloc(sizeof(float) * (size_t)h->dh * h->dh, "output factor");
  ks->g_idx = aptq_malloc(sizeof(int32_t) * (size_t)h->d, "g_idx");
  return rc || !ks->Uo || !ks->g_idx;
}

static void kron_free(KronSolve *ks) {
  rowdeal_free(&ks->deal);
  slab_free(&ks->s);
  aptq_free(ks->Uo);
  aptq_free(ks->g_idx);
}

int solve_kron(QFileWriter *qw, const GptqParams *p, const KronHessian *h, const char *name, float *W, LayerError *e, MPI_Comm comm) {
  KronSolve ks;
  int heads = h->heads, dh = h->dh, d = h->d;
  if (aptq_agree(comm, kron_alloc(&ks, p, h, comm))) {
    kron_free(&ks);
    return APTQ_ERR;
  }
  int h0 = ks.deal.first[0], mine = ks.deal.count[0];
  size_t slab_n = (size_t)mine * dh * d;
  memcpy(ks.s.W, W + (size_t)h0 * dh * d, sizeof(float) * slab_n);
  /* Σ_heads tr(H_in)·tr(H_out) over the rows·cols entries */
  e->sensitivity = 0;
  for (int i = 0; i < heads; i++) e->sensitivity += matrix_trace(h->in[i], d) * matrix_trace(h->out + (size_t)i * dh * dh, dh);
  e->sensitivity /= (double)heads * dh * d;
  int distinct = heads > 1 && h->order != NULL;
  for (int i = 0; distinct && i < heads; i++)
    for (int j = 0; j < i; j++) distinct &= h->in[i] != h->in[j];
  CHECK(distinct ? kron_own_factors(&ks, e, comm) : kron_shared_factors(&ks, e, comm));
  layer_error_add(e, W + (size_t)h0 * dh * d, ks.s.Q, slab_n);
  if (solve_check_finite(name, h0 * dh, mine * dh, quant_ngroups(d, p->group_size), &ks.s, comm)) {
    kron_free(&ks);
    return APTQ_ERR;
  }
  if (qw) {
    phase_sync(comm);
    double t = MPI_Wtime();
    if (solve_write_rows(qw, p, name, heads * dh, d, h0 * dh, mine * dh, &ks.s, ks.g_idx)) aptq_fatal(comm);
    phase_add(PH_WRITE, t);
  }
  double t = MPI_Wtime();
  LayerError *one[1] = {e};
  rowdeal_sum_errors(&ks.deal, one);
  memcpy(W + (size_t)h0 * dh * d, ks.s.Q, sizeof(float) * slab_n);
  rowdeal_allgather(&ks.deal, 0, ks.s.loss, 1, MPI_DOUBLE);
  rowdeal_allgather(&ks.deal, 0, W, dh * d, MPI_FLOAT);
  phase_add(PH_REDUCE, t);
  e->loss = 0;
  for (int i = 0; i < heads; i++) e->loss += ks.s.loss[i];
  write_solve_attrs(qw, p, name, e, h->form == FORM_RELAXED ? FORM_RELAXED : FORM_KRON, ks.damp_out, comm);
  kron_free(&ks);
  return 0;
}
