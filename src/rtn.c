#include "rtn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allocate.h"
#include "error.h"
#include "quant.h"
#include "solve.h"
#include "tokens.h"

/* RTN of rows [r0, r0 + n) of one layer, written collectively (a result
 * that is not finite refused on every rank first). */
static int rtn_layer(QFileWriter *qw, const GptqParams *p, const TensorRef *t, const char *name, int r0, int n, LayerError *e,
                     MPI_Comm comm) {
  int rows = (int)t->rows, cols = (int)t->cols;
  Slab s;
  int32_t *g_idx = aptq_malloc(sizeof(int32_t) * (size_t)cols, "g_idx");
  int rc = slab_alloc(&s, (size_t)n, cols, quant_ngroups(cols, p->group_size), 0, 0) || !g_idx;
  if (!rc) rc = tensor_rows_f32(t, r0, r0 + n, s.W);
  if (!rc) {
    if (s.mins) quant_rtn_mins(s.W, n, cols, p->group_size, p->bits, s.codes, s.scales, s.zeros, s.mins, &e->err2);
    else quant_rtn(s.W, n, cols, p->group_size, p->bits, p->sym, s.codes, s.scales, s.zeros, &e->err2);
    for (size_t i = 0; i < (size_t)n * cols; i++) e->norm2 += (double)s.W[i] * s.W[i];
    for (int j = 0; j < cols; j++) g_idx[j] = p->group_size ? j / p->group_size : 0;
  }
  if (rc) aptq_fatal(comm);
  rc = solve_check_finite(name, r0, n, quant_ngroups(cols, p->group_size), &s, comm);
  if (!rc && solve_write_rows(qw, p, name, rows, cols, r0, n, &s, g_idx)) aptq_fatal(comm);
  slab_free(&s);
  aptq_free(g_idx);
  return rc;
}

int rtn_pass(QFileWriter *qw, const Plan *p, const Model *m, LayerError *err, double t_start, MPI_Comm comm) {
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
      LayerError *e = &err[l * LIN_COUNT + k];
      CHECK(rtn_layer(qw, &p->gptq, t, name, r0, n, e, comm));
      model_release_rows(m, t, r0, r0 + n); /* the checkpoint's pages of these rows: read once */
      MPI_Allreduce(MPI_IN_PLACE, &e->err2, 2, MPI_DOUBLE, MPI_SUM, comm);
    }
    if (rank == 0) {
      printf("aptq quantize: block %d of %d done, %.1f s elapsed\n", l + 1, m->cfg.n_layers, MPI_Wtime() - t_start);
      fflush(stdout);
    }
  }
  return 0;
}

int rtn_errors(const Plan *p, const Model *m, double *err, MPI_Comm comm) {
  int rank, size, n = m->cfg.n_layers * LIN_COUNT, rc = 0;
  const KnapWidths *kw = plan_widths(p);
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  memset(err, 0, sizeof(double) * (size_t)n * kw->n);
  for (int i = 0; !rc && i < n; i++) {
    const TensorRef *t = &m->linear[i / LIN_COUNT][i % LIN_COUNT];
    int r0, nr, cols = (int)t->cols;
    shard_range((int)t->rows, size, rank, &r0, &nr);
    if (!p->ggml) {
      Slab s;
      rc = slab_alloc(&s, (size_t)nr, cols, quant_ngroups(cols, p->gptq.group_size), 0, 0) || tensor_rows_f32(t, r0, r0 + nr, s.W);
      for (int c = 0; !rc && c < kw->n; c++)
        quant_rtn(s.W, nr, cols, p->gptq.group_size, kw->bits[c], p->gptq.sym, s.codes, s.scales, s.zeros, &err[(size_t)i * kw->n + c]);
      slab_free(&s);
      model_release_rows(m, t, r0, r0 + nr);
      continue;
    }
    /* grid = ggml: each width on its own llama.cpp type (min/max grids, as RTN) */
    for (int c = 0; !rc && c < kw->n; c++) {
      GptqParams lp = plan_layer_params(p, kw->bits[c]);
      plan_use_grid(p, kw->bits[c]);
      Slab s;
      rc = slab_alloc(&s, (size_t)nr, cols, quant_ngroups(cols, lp.group_size), 0, 0) || tensor_rows_f32(t, r0, r0 + nr, s.W);
      double *e = &err[(size_t)i * kw->n + c];
      if (!rc && s.mins) quant_rtn_mins(s.W, nr, cols, lp.group_size, lp.bits, s.codes, s.scales, s.zeros, s.mins, e);
      else if (!rc) quant_rtn(s.W, nr, cols, lp.group_size, lp.bits, lp.sym, s.codes, s.scales, s.zeros, e);
      slab_free(&s);
    }
    model_release_rows(m, t, r0, r0 + nr); /* the checkpoint's pages of these rows: read once per width above */
  }
  plan_use_grid(p, p->gptq.bits);
  CHECK(aptq_agree(comm, rc));
  MPI_Allreduce(MPI_IN_PLACE, err, n * kw->n, MPI_DOUBLE, MPI_SUM, comm);
  return 0;
}
