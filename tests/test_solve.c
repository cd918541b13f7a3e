/* Unit test of the layers solved together (gptq_solve_slabs,
 * rowdeal_group_rows, rowdeal_group_loss): three layers sharing one factor, of
 * different row counts (whole and partial chunks) and bit widths (4, 2, 3),
 * solved in one sweep with their chunks dealt over the ranks as one run,
 * against each layer solved on its own (gptq_solve over rowdeal_row_range):
 * every code, dequantized weight, scale and zero, and each layer's loss,
 * bit for bit. Both factor layouts: replicated (LAPACK) and left on the
 * ScaLAPACK grid (gptq_prepare_partial: U fetched a block at a time).
 * Also the row deal itself, for rank counts 1..40. Run on 1 or more ranks. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "expect.h"
#include "gptq.h"
#include "rowdeal.h"
#include "hessian.h"
#include "quant.h"
#include "rng.h"

enum { NL = 3, D = 200 };
static const int layer_rows[NL] = {130, 64, 70}, layer_bits[NL] = {4, 2, 3};

/* Every layer's outputs, whole, on every rank. */
typedef struct {
  uint8_t *codes[NL];
  float *Q[NL], *scales[NL];
  int32_t *zeros[NL];
  double loss[NL];
} Result;

static void result_alloc(Result *r, int ng) {
  for (int k = 0; k < NL; k++) {
    size_t n = (size_t)layer_rows[k];
    r->codes[k] = TEST_CALLOC(n * D, 1);
    r->Q[k] = TEST_CALLOC(n * D, sizeof(float));
    r->scales[k] = TEST_CALLOC(n * ng, sizeof(float));
    r->zeros[k] = TEST_CALLOC(n * ng, sizeof(int32_t));
  }
}

/* Layer k's rows [r0, r0 + n) from each rank into the whole arrays (sum of disjoint pieces). */
static void gather(Result *r, int k, int r0, int n, int ng, const uint8_t *codes, const float *Q, const float *scales,
                   const int32_t *zeros) {
  memcpy(r->codes[k] + (size_t)r0 * D, codes, (size_t)n * D);
  memcpy(r->Q[k] + (size_t)r0 * D, Q, sizeof(float) * (size_t)n * D);
  memcpy(r->scales[k] + (size_t)r0 * ng, scales, sizeof(float) * (size_t)n * ng);
  memcpy(r->zeros[k] + (size_t)r0 * ng, zeros, sizeof(int32_t) * (size_t)n * ng);
  MPI_Allreduce(MPI_IN_PLACE, r->codes[k], layer_rows[k] * D, MPI_UINT8_T, MPI_BOR, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, r->Q[k], layer_rows[k] * D, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, r->scales[k], layer_rows[k] * ng, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, r->zeros[k], layer_rows[k] * ng, MPI_INT32_T, MPI_SUM, MPI_COMM_WORLD);
}

/* Layer k's slab of rows [r0, r0 + n) of W, solved (together or alone). */
typedef struct {
  float *W, *Q, *scales;
  uint8_t *codes;
  int32_t *zeros;
  double *chunk_loss;
} Slab;

static void slab_alloc(Slab *s, const float *W, int r0, int n, int ng) {
  s->W = TEST_MALLOC(sizeof(float) * ((size_t)n * D + 1));
  memcpy(s->W, W + (size_t)r0 * D, sizeof(float) * (size_t)n * D);
  s->Q = TEST_MALLOC(sizeof(float) * ((size_t)n * D + 1));
  s->codes = TEST_MALLOC((size_t)n * D + 1);
  s->scales = TEST_MALLOC(sizeof(float) * ((size_t)n * ng + 1));
  s->zeros = TEST_MALLOC(sizeof(int32_t) * ((size_t)n * ng + 1));
  s->chunk_loss = TEST_CALLOC((size_t)n / GPTQ_ROW_CHUNK + 2, sizeof(double));
}

static void slab_free(Slab *s) {
  aptq_free(s->W);
  aptq_free(s->Q);
  aptq_free(s->codes);
  aptq_free(s->scales);
  aptq_free(s->zeros);
  aptq_free(s->chunk_loss);
}

static void compare(const Result *a, const Result *b, int ng, const char *what) {
  for (int k = 0; k < NL; k++) {
    size_t n = (size_t)layer_rows[k];
    EXPECT(!memcmp(a->codes[k], b->codes[k], n * D), "%s: layer %d codes differ", what, k);
    EXPECT(!memcmp(a->Q[k], b->Q[k], sizeof(float) * n * D), "%s: layer %d Q differs", what, k);
    EXPECT(!memcmp(a->scales[k], b->scales[k], sizeof(float) * n * ng), "%s: layer %d scales differ", what, k);
    EXPECT(!memcmp(a->zeros[k], b->zeros[k], sizeof(int32_t) * n * ng), "%s: layer %d zeros differ", what, k);
    EXPECT(a->loss[k] == b->loss[k], "%s: layer %d loss %.17g alone, %.17g together", what, k, a->loss[k], b->loss[k]);
  }
}

/* The deal: each layer's rows once, whole chunks, a contiguous run per rank. */
static void check_deal(void) {
  int r0[NL], n[NL];
  for (int size = 1; size <= 40; size++) {
    int next[NL] = {0}, ok = 1, last_layer = 0;
    for (int rank = 0; rank < size; rank++) {
      rowdeal_group_rows(layer_rows, NL, size, rank, r0, n);
      for (int k = 0; k < NL; k++) {
        if (!n[k]) continue;
        ok &= r0[k] == next[k] && r0[k] % GPTQ_ROW_CHUNK == 0 && k >= last_layer;
        /* a run that reaches a later layer has finished the earlier ones */
        for (int j = last_layer; j < k; j++) ok &= next[j] == layer_rows[j];
        next[k] = r0[k] + n[k];
        last_layer = k;
      }
    }
    for (int k = 0; k < NL; k++) ok &= next[k] == layer_rows[k];
    EXPECT(ok, "rowdeal_group_rows on %d ranks: not every row once, in whole chunks and contiguous runs", size);
    int a0, an;
    for (int rank = 0; rank < size; rank++) {
      rowdeal_row_range(layer_rows[0], size, rank, &a0, &an);
      rowdeal_group_rows(layer_rows, 1, size, rank, r0, n);
      EXPECT(a0 == r0[0] && an == n[0], "one layer: rowdeal_group_rows differs from rowdeal_row_range on %d ranks", size);
    }
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  check_deal();

  /* the Hessian: Σ x xᵀ over every rank's tokens; some columns dead */
  int tokens = 150;
  float *X = TEST_MALLOC(sizeof(float) * (size_t)tokens * D);
  Rng r = {(uint64_t)(91 + rank)};
  for (int i = 0; i < tokens * D; i++) X[i] = (float)rng_normal(&r) * (i % D == 17 || i % D == 150 ? 0.0f : 1.0f);
  Hessian whole, part;
  if (hessian_init(&whole, D) || hessian_init(&part, D)) return 1;
  hessian_add(&whole, X, tokens);
  hessian_add(&part, X, tokens);
  double *diag = TEST_MALLOC(sizeof(double) * D), scale = 0;
  if (hessian_finish(&whole, MPI_COMM_WORLD) || hessian_finish_diag(&part, MPI_COMM_WORLD, diag, &scale)) return 1;

  /* the weights, the same on every rank */
  float *W[NL];
  Rng rw = {5};
  for (int k = 0; k < NL; k++) {
    W[k] = TEST_MALLOC(sizeof(float) * (size_t)layer_rows[k] * D);
    for (int i = 0; i < layer_rows[k] * D; i++) W[k][i] = (float)rng_normal(&rw);
  }

  for (int grid = 0; grid < 2; grid++) {
    GptqParams p[NL];
    for (int k = 0; k < NL; k++)
      p[k] = (GptqParams){layer_bits[k], 32, 0, 1, 0, 0, 128, 0.01, grid ? FACTOR_SCALAPACK : FACTOR_LAPACK, FACTOR_TRTRI, 16};
    GptqLayer L;
    int rc = grid ? gptq_prepare_partial(part.sum, diag, scale, D, &p[0], MPI_COMM_WORLD, &L)
                  : gptq_prepare(whole.sum, D, &p[0], MPI_COMM_WORLD, &L);
    EXPECT(!rc, "prepare (%s): %s", grid ? "grid" : "replicated", rc ? aptq_error_message() : "");
    if (rc) break;
    EXPECT(grid ? L.U == NULL : L.U != NULL, "the factor is %s", grid ? "on the grid" : "replicated");
    int ng = quant_ngroups(D, 32);
    Result alone, together;
    result_alloc(&alone, ng);
    result_alloc(&together, ng);
    /* each layer on its own, as before */
    for (int k = 0; k < NL; k++) {
      int r0, n;
      rowdeal_row_range(layer_rows[k], size, rank, &r0, &n);
      Slab s;
      slab_alloc(&s, W[k], r0, n, ng);
      EXPECT(!gptq_solve(&L, &p[k], s.W, n, s.codes, s.Q, s.scales, s.zeros, s.chunk_loss), "solve layer %d alone", k);
      alone.loss[k] = rowdeal_layer_loss(s.chunk_loss, layer_rows[k], MPI_COMM_WORLD);
      gather(&alone, k, r0, n, ng, s.codes, s.Q, s.scales, s.zeros);
      slab_free(&s);
    }
    /* the three together */
    int r0[NL], n[NL];
    rowdeal_group_rows(layer_rows, NL, size, rank, r0, n);
    Slab s[NL];
    GptqSlab gs[NL];
    double *closs[NL];
    for (int k = 0; k < NL; k++) {
      slab_alloc(&s[k], W[k], r0[k], n[k], ng);
      gs[k] = (GptqSlab){&p[k], s[k].W, n[k], s[k].codes, s[k].Q, s[k].scales, s[k].zeros, s[k].chunk_loss};
      closs[k] = s[k].chunk_loss;
    }
    EXPECT(!gptq_solve_slabs(&L, gs, NL), "solve the layers together");
    rowdeal_group_loss(closs, layer_rows, NL, MPI_COMM_WORLD, together.loss);
    for (int k = 0; k < NL; k++) {
      gather(&together, k, r0[k], n[k], ng, s[k].codes, s[k].Q, s[k].scales, s[k].zeros);
      slab_free(&s[k]);
    }
    compare(&alone, &together, ng, grid ? "factor on the grid" : "replicated factor");
    /* the widths really differ: the largest code of each layer is below 2^bits */
    for (int k = 0; k < NL; k++) {
      int top = 0;
      for (int i = 0; i < layer_rows[k] * D; i++) top = together.codes[k][i] > top ? together.codes[k][i] : top;
      EXPECT(top == (1 << layer_bits[k]) - 1, "layer %d: largest code %d with %d bits", k, top, layer_bits[k]);
    }
    gptq_layer_free(&L);
  }
  int all;
  MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("test_solve: %d checks on %d ranks, %d failures\n", checks, size, all);
  MPI_Finalize();
  return all != 0;
}
