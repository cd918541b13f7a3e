#include "hessian.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "collective.h"
#include "error.h"
#include "phases.h"

static int hessian_alloc(Hessian *h, int d, float *chunk) {
  memset(h, 0, sizeof *h);
  h->d = d;
  h->sum = aptq_malloc(sizeof(double) * (size_t)d * d, "Hessian");
  h->borrowed = chunk != NULL;
  h->chunk = chunk ? chunk : aptq_malloc(sizeof(float) * hessian_chunk_floats(d), "Hessian chunk");
  if (!h->sum || !h->chunk) return APTQ_ERR;
  /* touch every page now: the first accumulation would otherwise pay the
   * page faults (about a third of a 4096² update), which is set-up cost */
  memset(h->sum, 0, sizeof(double) * (size_t)d * d);
  memset(h->chunk, 0, sizeof(float) * hessian_chunk_floats(d));
  return 0;
}

int hessian_init(Hessian *h, int d) { return hessian_alloc(h, d, NULL); }

int hessian_init_borrow(Hessian *h, int d, float *chunk) { return hessian_alloc(h, d, chunk); }

void hessian_free(Hessian *h) {
  aptq_free(h->sum);
  if (!h->borrowed) aptq_free(h->chunk);
  memset(h, 0, sizeof *h);
}

void hessian_reset(Hessian *h) {
  memset(h->sum, 0, sizeof(double) * (size_t)h->d * h->d);
  h->tokens = 0;
}

void hessian_panel(const float *x, int m, int d, int j0, int w, float *chunk) {
  if (j0) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, j0, w, m, 1.0f, x, d, x + j0, d, 0.0f, chunk, w);
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, w, m, 1.0f, x + j0, d, 0.0f, chunk + (size_t)j0 * w, w);
}

void hessian_panel_add(const float *chunk, int j0, int w, double *dst, size_t ld) {
  for (int i = 0; i < j0 + w; i++) {
    const float *src = chunk + (size_t)i * w;
    double *row = dst + (size_t)i * ld;
    for (int j = i > j0 ? i - j0 : 0; j < w; j++) row[j] += src[j];
  }
}

void hessian_add(Hessian *h, const float *X, int n) {
  int d = h->d, pw = hessian_panel_width(d);
  double t0 = MPI_Wtime();
  for (int t0 = 0; t0 < n; t0 += HESS_CHUNK) {
    int m = n - t0 < HESS_CHUNK ? n - t0 : HESS_CHUNK;
    const float *x = X + (size_t)t0 * d;
    /* the upper triangle, a panel of columns [j0, j0 + w) at a time (one
     * panel of all columns at d ≤ HESS_PANEL_MIN) */
    for (int j0 = 0; j0 < d; j0 += pw) {
      int w = d - j0 < pw ? d - j0 : pw;
      hessian_panel(x, m, d, j0, w, h->chunk);
      hessian_panel_add(h->chunk, j0, w, h->sum + j0, (size_t)d);
    }
  }
  h->tokens += n;
  phases_hessian_kernel(MPI_Wtime() - t0, (double)n * d * (d + 1)); /* ssyrk: n·d(d+1) flops */
}

/* S (d × d) = its upper triangle times scale, mirrored: in square tiles,
 * so that the lower triangle's writes (a column of S each) stay in cache. */
static void scale_mirror(double *S, int d, double scale) {
  enum { TILE = 64 };
  for (int i0 = 0; i0 < d; i0 += TILE)
    for (int j0 = i0; j0 < d; j0 += TILE) {
      int i1 = i0 + TILE < d ? i0 + TILE : d, j1 = j0 + TILE < d ? j0 + TILE : d;
      for (int i = i0; i < i1; i++)
        for (int j = j0 > i ? j0 : i; j < j1; j++) {
          double v = S[(size_t)i * d + j] * scale;
          S[(size_t)i * d + j] = v;
          S[(size_t)j * d + i] = v;
        }
    }
}

int hessian_finish(Hessian *h, MPI_Comm comm) {
  int d = h->d;
  allreduce_sum_f64(h->sum, (size_t)d * d, comm);
  int64_t total = h->tokens;
  MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_INT64_T, MPI_SUM, comm);
  if (total == 0) return aptq_error("no calibration tokens reached the Hessian");
  scale_mirror(h->sum, d, 2.0 / (double)total);
  h->tokens = total;
  return 0;
}

int hessian_reduce_diag(double *diag, int d, int64_t *tokens, MPI_Comm comm, double *scale) {
  MPI_Allreduce(MPI_IN_PLACE, diag, d, MPI_DOUBLE, MPI_SUM, comm);
  MPI_Allreduce(MPI_IN_PLACE, tokens, 1, MPI_INT64_T, MPI_SUM, comm);
  if (*tokens == 0) return aptq_error("no calibration tokens reached the Hessian");
  *scale = 2.0 / (double)*tokens;
  for (int i = 0; i < d; i++) diag[i] *= *scale;
  return 0;
}

int hessian_finish_diag(Hessian *h, MPI_Comm comm, double *diag, double *scale) {
  int d = h->d;
  for (int i = 0; i < d; i++) diag[i] = h->sum[(size_t)i * d + i];
  CHECK(hessian_reduce_diag(diag, d, &h->tokens, comm, scale));
  /* both triangles of the partial sum, so the reduction into the grid reads
   * rows (factor.c); not scaled (the grid scales after the sum) */
  scale_mirror(h->sum, d, 1.0);
  return 0;
}
