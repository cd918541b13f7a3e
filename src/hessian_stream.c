#include "hessian_stream.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "hessian.h"
#include "phases.h"

double hstream_bytes(int d, int nb, int T, int tokens, int size) {
  int nprow, npcol;
  blacs_grid_shape(size, &nprow, &npcol);
  double blocks = (d + nb - 1) / nb, mloc = ((int)blocks + nprow - 1) / nprow * (double)nb,
         nloc = ((int)blocks + npcol - 1) / npcol * (double)nb;
  int per = tokens / T > 1 ? tokens / T : 1, w = hessian_panel_width(d);
  double wl = nloc < w ? nloc : w;
  return mloc * nloc * sizeof(double) + (double)per * T * d * sizeof(float) + (double)d * w * (sizeof(float) + 2 * sizeof(double)) +
         mloc * wl * sizeof(double);
}

int hstream_init(HessianStream *h, int d, int nb, int T, int tokens, int reversed, MPI_Comm comm) {
  int size;
  MPI_Comm_size(comm, &size);
  memset(h, 0, sizeof *h);
  h->d = d;
  h->nb = nb;
  h->T = T;
  h->reversed = reversed;
  h->w = hessian_panel_width(d);
  h->per_flush = tokens / T > 1 ? tokens / T : 1;
  if (grid_open(&h->grid, d, nb, comm)) return aptq_error("BLACS grid for the streamed Hessian (d = %d, nb = %d) failed", d, nb);
  const Grid *g = &h->grid;
  size_t pieces = (size_t)g->lld * (g->nloc ? g->nloc : 1), wl = (size_t)(g->nloc < h->w ? g->nloc : h->w);
  h->acc = aptq_malloc(sizeof(double) * pieces, "Hessian pieces on the grid");
  h->x = aptq_malloc(sizeof(float) * (size_t)h->per_flush * T * d, "streamed Hessian inputs");
  h->chunk = aptq_malloc(sizeof(float) * (size_t)d * h->w, "Hessian chunk");
  h->panel = aptq_malloc(sizeof(double) * (size_t)d * h->w, "Hessian panel");
  h->send = aptq_malloc(sizeof(double) * (size_t)d * h->w, "Hessian panel send buffer");
  h->recv = aptq_malloc(sizeof(double) * ((size_t)g->mloc * wl + 1), "Hessian panel receive buffer");
  h->counts = aptq_malloc(sizeof(int) * (size_t)size, "Hessian panel counts");
  if (!h->acc || !h->x || !h->chunk || !h->panel || !h->send || !h->recv || !h->counts) return APTQ_ERR;
  /* touched now, as hessian_init does: page faults are set-up cost */
  memset(h->acc, 0, sizeof(double) * pieces);
  memset(h->x, 0, sizeof(float) * (size_t)h->per_flush * T * d);
  memset(h->panel, 0, sizeof(double) * (size_t)d * h->w);
  memset(h->send, 0, sizeof(double) * (size_t)d * h->w);
  return 0;
}

void hstream_free(HessianStream *h) {
  if (h->counts) grid_close(&h->grid);
  aptq_free(h->acc);
  aptq_free(h->x);
  aptq_free(h->chunk);
  aptq_free(h->panel);
  aptq_free(h->send);
  aptq_free(h->recv);
  aptq_free(h->counts);
  memset(h, 0, sizeof *h);
}

void hstream_reset(HessianStream *h) {
  memset(h->acc, 0, sizeof(double) * (size_t)h->grid.lld * (h->grid.nloc ? h->grid.nloc : 1));
  h->nbuf = 0;
  h->tokens = 0;
}

void hstream_add(HessianStream *h, const float *X) {
  memcpy(h->x + (size_t)h->nbuf * h->T * h->d, X, sizeof(float) * (size_t)h->T * h->d);
  h->nbuf++;
  h->tokens += h->T;
}

/* __VA_ARGS__ for each entry (x, y), x ≤ y, of the layout that grid
 * position (prow, pcol) owns and whose natural column j lies in the panel
 * [j0, j0 + w), with (i, j) its natural position (i ≤ j): (x, y) itself, or
 * (d−1−y, d−1−x) in the index-reversed layout. The order is fixed (the
 * owner's rows, then its columns): the senders pack and the owner unpacks
 * in it. */
#define FOR_OWNED(g, d, j0, w, reversed, prow, pcol, ...)                        \
  do {                                                                           \
    int mloc_ = global_count(d, (g)->nb, prow, (g)->nprow);                      \
    for (int lx_ = 0; lx_ < mloc_; lx_++) {                                      \
      int x = local_to_global(lx_, (g)->nb, prow, (g)->nprow);                   \
      /* natural: rows up to the panel's end, columns in it; reversed: the */    \
      /* panel's columns are rows [d − j0 − w, d − j0), columns y ≥ x */ \
      int y0_ = x, y1_ = d;                                                      \
      if (!(reversed)) {                                                         \
        if (x >= (j0) + (w)) break;                                              \
        y0_ = (j0) > x ? (j0) : x;                                               \
        y1_ = (j0) + (w);                                                        \
      } else {                                                                   \
        if (x >= d - (j0)) break;                                                \
        if (x < d - (j0) - (w)) continue;                                        \
      }                                                                          \
      for (int y = y0_; y < y1_; y++) {                                          \
        if (global_owner(y, (g)->nb, (g)->npcol) != (pcol)) {                    \
          y = (y / (g)->nb + 1) * (g)->nb - 1; /* to the end of this block */    \
          continue;                                                              \
        }                                                                        \
        int i = (reversed) ? d - 1 - y : x, j = (reversed) ? d - 1 - x : y;      \
        (void)i, (void)j;                                                        \
        __VA_ARGS__;                                                             \
      }                                                                          \
    }                                                                            \
  } while (0)

int hstream_flush(HessianStream *h, MPI_Comm comm) {
  const Grid *g = &h->grid;
  int d = h->d, size;
  MPI_Comm_size(comm, &size);
  phase_sync(comm); /* the reduction waits for the slowest shard */
  for (int j0 = 0; j0 < d; j0 += h->w) {
    int w = d - j0 < h->w ? d - j0 : h->w, rows = j0 + w;
    /* this rank's buffered sequences: hessian_add's products, summed in float64 */
    double t = MPI_Wtime(), t_kernel = t;
    memset(h->panel, 0, sizeof(double) * (size_t)rows * w);
    for (int b = 0; b < h->nbuf; b++)
      for (int t0 = 0; t0 < h->T; t0 += HESS_CHUNK) {
        int m = h->T - t0 < HESS_CHUNK ? h->T - t0 : HESS_CHUNK;
        hessian_panel(h->x + ((size_t)b * h->T + t0) * d, m, d, j0, w, h->chunk);
        hessian_panel_add(h->chunk, j0, w, h->panel, (size_t)w);
      }
    /* ssyrk-equivalent flops of this panel: the upper trapezoid */
    phases_hessian_kernel(MPI_Wtime() - t_kernel, (double)h->nbuf * h->T * ((double)j0 * w * 2 + (double)w * (w + 1)));
    size_t pos = 0;
    for (int r = 0; r < size; r++) {
      size_t start = pos;
      FOR_OWNED(g, d, j0, w, h->reversed, g->rowof[r], g->colof[r], h->send[pos++] = h->panel[(size_t)i * w + (j - j0)]);
      h->counts[r] = (int)(pos - start);
    }
    t = phase_add(PH_HESSIAN, t);
    MPI_Reduce_scatter(h->send, h->recv, h->counts, MPI_DOUBLE, MPI_SUM, comm);
    size_t k = 0;
    FOR_OWNED(g, d, j0, w, h->reversed, g->myrow, g->mycol,
              h->acc[(size_t)global_to_local(y, g->nb, g->npcol) * g->lld + global_to_local(x, g->nb, g->nprow)] += h->recv[k++]);
    phase_add(PH_REDUCE, t);
  }
  h->nbuf = 0;
  return 0;
}

int hstream_finish(HessianStream *h, MPI_Comm comm, double *diag, double *scale) {
  const Grid *g = &h->grid;
  int d = h->d;
  memset(diag, 0, sizeof(double) * (size_t)d);
  for (int lj = 0; lj < g->nloc; lj++) {
    int j = local_to_global(lj, g->nb, g->mycol, g->npcol);
    if (global_owner(j, g->nb, g->nprow) == g->myrow)
      diag[h->reversed ? d - 1 - j : j] = h->acc[(size_t)lj * g->lld + global_to_local(j, g->nb, g->nprow)];
  }
  /* one owner per entry: the sum is exact */
  return hessian_reduce_diag(diag, d, &h->tokens, comm, scale);
}
