/* Layer-input Hessians H = 2/N Σ x xᵀ. Each rank accumulates the
 * unnormalised Σ x xᵀ of its shard and its token count; the sums are reduced
 * across ranks and scaled once by 2/N_total (averaging per-rank means would
 * be wrong for unequal shards).
 *
 * Precision: the products of one call (≤ HESS_CHUNK tokens) are formed by
 * ssyrk in float32 and added to a float64 accumulator, so the float32 part
 * has a relative error of at most ~HESS_CHUNK·2⁻²⁴ ≈ 1.5e-4 of Σ|x_i||x_j|
 * over the chunk (typically √HESS_CHUNK·2⁻²⁴ ≈ 3e-6) and the sum over chunks,
 * ranks and sequences is exact to float64 rounding. */
#ifndef APTQ_HESSIAN_H
#define APTQ_HESSIAN_H

#include <mpi.h>
#include <stdint.h>

enum { HESS_CHUNK = 2048 };

typedef struct {
  int d;
  double *sum;    /* d × d, full symmetric after hessian_finish */
  float *chunk;   /* d × d scratch for ssyrk */
  int64_t tokens;
} Hessian;

int hessian_init(Hessian *h, int d);
void hessian_free(Hessian *h);
void hessian_reset(Hessian *h);
/* X: n × d row-major (one row per token). */
void hessian_add(Hessian *h, const float *X, int n);
/* Collective: reduce over comm, scale by 2/N, fill both triangles. */
int hessian_finish(Hessian *h, MPI_Comm comm);
/* Collective, for Hessians that are reduced straight into the factor's
 * block-cyclic layout (factor.h, HessianView.partial): only the diagonal
 * (scaled by 2/N, into diag) and the token count are reduced; h->sum stays
 * this rank's partial sum (both triangles filled) and *scale = 2/N. */
int hessian_finish_diag(Hessian *h, MPI_Comm comm, double *diag, double *scale);

#endif
