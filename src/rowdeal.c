#include "rowdeal.h"

#include <stdlib.h>

#include "error.h"
#include "gptq.h"
#include "tokens.h"

/* Whole chunks of the layers' rows, numbered layer after layer, dealt in
 * contiguous runs: a rank's run may end in one layer and go on in the next. */
static int chunks_of(int rows) { return (rows + GPTQ_ROW_CHUNK - 1) / GPTQ_ROW_CHUNK; }

void rowdeal_group_rows(const int *rows, int nlayers, int size, int rank, int *r0, int *n) {
  int total = 0, c0, nc;
  for (int k = 0; k < nlayers; k++) total += chunks_of(rows[k]);
  shard_range(total, size, rank, &c0, &nc);
  for (int k = 0, off = 0; k < nlayers; off += chunks_of(rows[k]), k++) {
    int ck = chunks_of(rows[k]), lo = c0 - off, hi = c0 + nc - off;
    lo = lo < 0 ? 0 : lo > ck ? ck : lo;
    hi = hi < 0 ? 0 : hi > ck ? ck : hi;
    r0[k] = lo * GPTQ_ROW_CHUNK < rows[k] ? lo * GPTQ_ROW_CHUNK : rows[k];
    n[k] = (hi * GPTQ_ROW_CHUNK < rows[k] ? hi * GPTQ_ROW_CHUNK : rows[k]) - r0[k];
  }
}

void rowdeal_row_range(int rows, int size, int rank, int *r0, int *n) { rowdeal_group_rows(&rows, 1, size, rank, r0, n); }

int rowdeal_group_loss(double *const *chunk_loss, const int *rows, int nlayers, MPI_Comm comm, double *loss) {
  int size, rank, total = 0;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  for (int k = 0; k < nlayers; k++) total += chunks_of(rows[k]);
  ShardLayout lay = {0};
  double *all = aptq_malloc(sizeof(double) * ((size_t)total + 1), "chunk losses");
  int rc = aptq_agree(comm, !all || shard_layout_alloc(&lay, total, size, 1));
  if (!rc) {
    /* this rank's run of chunks, layer after layer, is contiguous in `all` */
    int c0 = lay.displs[rank], nc = lay.counts[rank];
    for (int k = 0, off = 0; k < nlayers; off += chunks_of(rows[k]), k++)
      for (int c = c0 > off ? c0 : off, i = 0; c < c0 + nc && c < off + chunks_of(rows[k]); c++, i++) all[c] = chunk_loss[k][i];
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, all, lay.counts, lay.displs, MPI_DOUBLE, comm);
    for (int k = 0, off = 0; k < nlayers; off += chunks_of(rows[k]), k++) {
      loss[k] = 0.0; /* in chunk order: the same sum for any rank count */
      for (int c = off; c < off + chunks_of(rows[k]); c++) loss[k] += all[c];
    }
  }
  shard_layout_free(&lay);
  aptq_free(all);
  return rc;
}

double rowdeal_layer_loss(const double *chunk_loss, int rows, MPI_Comm comm) {
  double loss, *cl = (double *)chunk_loss;
  if (rowdeal_group_loss(&cl, &rows, 1, comm, &loss)) aptq_fatal(comm);
  return loss;
}

static int deal_alloc(RowDeal *d, int nl, MPI_Comm comm) {
  *d = (RowDeal){.comm = comm, .nl = nl};
  MPI_Comm_size(comm, &d->size);
  MPI_Comm_rank(comm, &d->rank);
  size_t n = (size_t)d->size * nl;
  d->all_first = aptq_malloc(sizeof(int) * n, "row deal");
  d->all_count = aptq_malloc(sizeof(int) * n, "row deal");
  d->cnt = aptq_malloc(sizeof(int) * (size_t)d->size, "row deal");
  d->dsp = aptq_malloc(sizeof(int) * (size_t)d->size, "row deal");
  if (nl > ROWDEAL_MAX_LAYERS) aptq_error("row deal of %d layers; at most %d", nl, ROWDEAL_MAX_LAYERS);
  if (nl > ROWDEAL_MAX_LAYERS || !d->all_first || !d->all_count || !d->cnt || !d->dsp) {
    rowdeal_free(d);
    return APTQ_ERR;
  }
  return 0;
}

int rowdeal_chunks(RowDeal *d, const int *rows, int nl, MPI_Comm comm) {
  CHECK(deal_alloc(d, nl, comm));
  for (int k = 0; k < nl; k++) d->units[k] = rows[k];
  for (int r = 0; r < d->size; r++) rowdeal_group_rows(rows, nl, d->size, r, d->all_first + (size_t)r * nl, d->all_count + (size_t)r * nl);
  for (int k = 0; k < nl; k++) {
    d->first[k] = d->all_first[(size_t)d->rank * nl + k];
    d->count[k] = d->all_count[(size_t)d->rank * nl + k];
  }
  return 0;
}

int rowdeal_units(RowDeal *d, int units, MPI_Comm comm) {
  CHECK(deal_alloc(d, 1, comm));
  d->units[0] = units;
  for (int r = 0; r < d->size; r++) shard_range(units, d->size, r, &d->all_first[r], &d->all_count[r]);
  d->first[0] = d->all_first[d->rank];
  d->count[0] = d->all_count[d->rank];
  return 0;
}

void rowdeal_free(RowDeal *d) {
  aptq_free(d->all_first);
  aptq_free(d->all_count);
  aptq_free(d->cnt);
  aptq_free(d->dsp);
  d->all_first = d->all_count = d->cnt = d->dsp = NULL;
}

void rowdeal_allgather(RowDeal *d, int k, void *buf, int per_unit, MPI_Datatype type) {
  for (int r = 0; r < d->size; r++) {
    d->cnt[r] = d->all_count[(size_t)r * d->nl + k] * per_unit;
    d->dsp[r] = d->all_first[(size_t)r * d->nl + k] * per_unit;
  }
  MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, d->cnt, d->dsp, type, d->comm);
}

void rowdeal_sum_errors(const RowDeal *d, LayerError *const *e) {
  double sums[2 * ROWDEAL_MAX_LAYERS];
  for (int k = 0; k < d->nl; k++) {
    sums[2 * k] = e[k]->err2;
    sums[2 * k + 1] = e[k]->norm2;
  }
  MPI_Allreduce(MPI_IN_PLACE, sums, 2 * d->nl, MPI_DOUBLE, MPI_SUM, d->comm);
  for (int k = 0; k < d->nl; k++) {
    e[k]->err2 = sums[2 * k];
    e[k]->norm2 = sums[2 * k + 1];
  }
}
