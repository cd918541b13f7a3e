/* Unit test of the layer-input Hessian accumulation (hessian.c) against
 * float64 sums: the one-ssyrk path (d ≤ HESS_PANEL_MIN) and the panel path
 * (sgemm + ssyrk per HESS_PANEL columns) over several calls; and
 * hessian_finish_diag's reduced diagonal and symmetric partial against
 * hessian_finish; and the streamed sums (hessian_stream.c: several flushes,
 * shards of different sizes, both product paths) against hessian_add +
 * hessian_finish, bit for bit, on the grid of the ranks; and the sums in
 * pieces (collective.c) across piece boundaries. Run on 1 or more ranks
 * (the reduction is over them). */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "alloc.h"
#include "collective.h"
#include "error.h"
#include "expect.h"
#include "hessian.h"
#include "hessian_stream.h"
#include "rng.h"

/* Σ over calls of Xᵀ X in float64, compared with h->sum (upper triangle):
 * the float32 products differ from float64 by at most ~n·2⁻²⁴·Σ|x_i||x_j|. */
static void check_sum(int d, int n, int calls, const char *what) {
  Hessian h;
  if (hessian_init(&h, d)) {
    EXPECT(0, "%s: init: %s", what, aptq_error_message());
    return;
  }
  float *X = TEST_MALLOC(sizeof(float) * (size_t)n * d * calls);
  Rng r = {(uint64_t)d};
  for (size_t i = 0; i < (size_t)n * d * calls; i++) X[i] = (float)rng_normal(&r);
  for (int c = 0; c < calls; c++) hessian_add(&h, X + (size_t)c * n * d, n);
  double worst = 0;
  long checked = 0;
  /* every row of a sample of rows (the panels' edges included) */
  int rows[] = {0, 1, d / 3, HESS_PANEL - 1, HESS_PANEL, HESS_PANEL + 1, d - 2, d - 1};
  for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
    int i = rows[k];
    if (i < 0 || i >= d) continue;
    for (int j = i; j < d; j++) {
      double exact = 0, mag = 0;
      for (int t = 0; t < n * calls; t++) {
        double a = X[(size_t)t * d + i], b = X[(size_t)t * d + j];
        exact += a * b;
        mag += fabs(a * b);
      }
      double err = fabs(h.sum[(size_t)i * d + j] - exact) / (mag * n * 0x1p-24);
      worst = err > worst ? err : worst;
      checked++;
    }
  }
  EXPECT(worst <= 1.0 && h.tokens == (int64_t)n * calls, "%s: d %d, %d x %d tokens: %ld entries within n·2^-24·Σ|x x| (worst %.3g of it)",
         what, d, calls, n, checked, worst);
  hessian_free(&h);
  aptq_free(X);
}

/* Rank r adds r + 1 sequences of T tokens (flushing every `tokens` tokens,
 * at the same sequence index on every rank); every entry i ≤ j of its
 * pieces must equal the allreduced hessian_add sum exactly, and the
 * diagonal and scale hessian_finish_diag's. */
static void check_stream(int d, int nb, int T, int tokens, int reversed, const char *what) {
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  HessianStream st;
  Hessian ref;
  int rc = hstream_init(&st, d, nb, T, tokens, reversed, MPI_COMM_WORLD) || hessian_init(&ref, d);
  MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rc) {
    EXPECT(0, "%s: init", what);
    return;
  }
  float *X = TEST_MALLOC(sizeof(float) * (size_t)T * d);
  int count = rank + 1, maxcount = size, flushes = 0;
  for (int i = 0; i < maxcount; i++) {
    if (i < count) {
      Rng r = {(uint64_t)(1000 * rank + i + 1)};
      for (size_t k = 0; k < (size_t)T * d; k++) X[k] = (float)rng_normal(&r) * (1 + (float)(k % d) / d);
      hstream_add(&st, X);
      hessian_add(&ref, X, T);
    }
    if ((i + 1) % st.per_flush == 0 || i + 1 == maxcount) {
      hstream_flush(&st, MPI_COMM_WORLD);
      flushes++;
    }
  }
  double *diag = TEST_MALLOC(sizeof(double) * d), *rdiag = TEST_MALLOC(sizeof(double) * d), scale = 0, rscale = 0;
  rc = hstream_finish(&st, MPI_COMM_WORLD, diag, &scale) || hessian_finish_diag(&ref, MPI_COMM_WORLD, rdiag, &rscale);
  MPI_Allreduce(MPI_IN_PLACE, ref.sum, d * d, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  const Grid *g = &st.grid;
  long same = 0, entries = 0;
  for (int lj = 0; lj < g->nloc; lj++)
    for (int li = 0; li < g->mloc; li++) {
      int x = local_to_global(li, g->nb, g->myrow, g->nprow), y = local_to_global(lj, g->nb, g->mycol, g->npcol);
      if (x > y) continue;
      int i = reversed ? d - 1 - y : x, j = reversed ? d - 1 - x : y; /* the natural position */
      entries++;
      same += st.acc[(size_t)lj * g->lld + li] == ref.sum[(size_t)i * d + j];
    }
  int diag_same = scale == rscale;
  for (int i = 0; i < d; i++) diag_same &= diag[i] == rdiag[i];
  long all[2] = {same, entries};
  MPI_Allreduce(MPI_IN_PLACE, all, 2, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  EXPECT(!rc && all[0] == all[1] && all[1] == (long)d * (d + 1) / 2,
         "%s%s: d %d, nb %d, %d x %d grid, %d flushes: %ld of %ld upper entries equal to hessian_add's sum", what,
         reversed ? " (index-reversed)" : "", d, nb, g->nprow, g->npcol, flushes, all[0], all[1]);
  EXPECT(diag_same, "%s: the reduced, scaled diagonal and 2/N equal hessian_finish_diag's", what);
  hstream_free(&st);
  hessian_free(&ref);
  aptq_free(X);
  aptq_free(diag);
  aptq_free(rdiag);
}

/* allreduce_sum_f64/f32 over n elements (past one piece, with a partial
 * last piece): rank r holds (i mod 97) + r/2, exact in either precision. */
static void check_pieces(size_t n, int f32, int rank, int size) {
  double *x = f32 ? NULL : TEST_MALLOC(sizeof(double) * n);
  float *y = f32 ? TEST_MALLOC(sizeof(float) * n) : NULL;
  for (size_t i = 0; i < n; i++)
    if (f32) y[i] = (float)(i % 97) + 0.5f * (float)rank;
    else x[i] = (double)(i % 97) + 0.5 * rank;
  if (f32) allreduce_sum_f32(y, n, MPI_COMM_WORLD);
  else allreduce_sum_f64(x, n, MPI_COMM_WORLD);
  size_t wrong = 0;
  for (size_t i = 0; i < n; i++) {
    double want = (double)size * (double)(i % 97) + 0.25 * size * (size - 1);
    wrong += (f32 ? (double)y[i] : x[i]) != want;
  }
  EXPECT(wrong == 0, "allreduce in pieces (%s, %zu elements, %d pieces): %zu wrong", f32 ? "float32" : "float64", n,
         (int)((n + ALLREDUCE_PIECE - 1) / ALLREDUCE_PIECE), wrong);
  aptq_free(x);
  aptq_free(y);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank == 0) {
    check_sum(300, 7, 3, "one ssyrk");
    check_sum(HESS_PANEL_MIN + 37, 5, 2, "panels");
  }
  /* hessian_finish_diag against hessian_finish on the same partials */
  int d = 130, n = 11;
  Hessian a, b;
  if (hessian_init(&a, d) || hessian_init(&b, d)) return 1;
  float *X = TEST_MALLOC(sizeof(float) * (size_t)n * d);
  Rng r = {(uint64_t)(77 + rank)};
  for (int i = 0; i < n * d; i++) X[i] = (float)rng_normal(&r);
  hessian_add(&a, X, n);
  hessian_add(&b, X, n);
  double *diag = TEST_MALLOC(sizeof(double) * d), scale = 0;
  int rc = hessian_finish(&a, MPI_COMM_WORLD) || hessian_finish_diag(&b, MPI_COMM_WORLD, diag, &scale);
  EXPECT(!rc && scale == 2.0 / ((double)n * size), "finish_diag: scale 2/N = %g", scale);
  int same_diag = 1, symmetric = 1, partial = 1;
  for (int i = 0; i < d; i++) {
    same_diag &= diag[i] == a.sum[(size_t)i * d + i];
    for (int j = 0; j < d; j++)
      symmetric &= b.sum[(size_t)i * d + j] == b.sum[(size_t)j * d + i] && a.sum[(size_t)i * d + j] == a.sum[(size_t)j * d + i];
  }
  /* the partial stays this rank's own: on one rank it is the sum before scaling */
  if (size == 1)
    for (int i = 0; i < d; i++) partial &= b.sum[(size_t)i * d + (d - 1 - i)] * scale == a.sum[(size_t)i * d + (d - 1 - i)];
  EXPECT(same_diag, "finish_diag: the reduced, scaled diagonal equals hessian_finish's");
  EXPECT(symmetric, "finish and finish_diag: the sum and the partial sum have both triangles");
  EXPECT(partial, "finish_diag: the partial sum is unreduced and unscaled");
  hessian_free(&a);
  hessian_free(&b);
  aptq_free(X);
  aptq_free(diag);
  check_pieces(2 * (size_t)ALLREDUCE_PIECE + 1001, 0, rank, size);
  check_pieces((size_t)ALLREDUCE_PIECE + 3, 1, rank, size);
  check_stream(130, 16, 7, 14, 0, "stream, one ssyrk");
  check_stream(130, 16, 7, 14, 1, "stream, one ssyrk");
  check_stream(HESS_PANEL_MIN + 37, 64, 5, 5, 0, "stream, panels");
  check_stream(HESS_PANEL_MIN + 37, 64, 5, 5, 1, "stream, panels");
  int fails = failures;
  MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("%d checks, %d failed\n", checks, fails);
  MPI_Finalize();
  return fails != 0;
}
