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
/* Above HESS_PANEL_MIN columns the float32 products are formed a panel of
 * HESS_PANEL columns at a time (sgemm above the diagonal block, ssyrk on
 * it), so the float32 scratch is d × HESS_PANEL instead of d × d (3.3 GB
 * at d = 28672); below it, one ssyrk (the two round differently, so the
 * choice depends on d only, never on the rank count). */
enum { HESS_PANEL = 2048, HESS_PANEL_MIN = 8192 };

/* Columns per product panel at this d: HESS_PANEL above HESS_PANEL_MIN,
 * else the whole matrix in one ssyrk. */
static inline int hessian_panel_width(int d) { return d > HESS_PANEL_MIN ? HESS_PANEL : d; }
/* float32 products of columns [j0, j0 + w) of the upper triangle of XᵀX
 * (x: m × d row-major, m ≤ HESS_CHUNK): rows [0, j0 + w) into chunk
 * (stride w), entries above the diagonal block by sgemm and the block by
 * ssyrk (entries below the diagonal are not set). hessian_add and the
 * streamed sums (hessian_stream.h) both use it, so they round alike. */
void hessian_panel(const float *x, int m, int d, int j0, int w, float *chunk);
/* dst (row i at dst + i·ld) += the upper-triangle entries of such a panel
 * (float64 sums of the float32 products, exact: see above). */
void hessian_panel_add(const float *chunk, int j0, int w, double *dst, size_t ld);

/* Floats of a Hessian's float32 scratch at this d. */
static inline size_t hessian_chunk_floats(int d) { return (size_t)d * hessian_panel_width(d); }

typedef struct {
  int d;
  double *sum;  /* d × d, full symmetric after hessian_finish */
  float *chunk; /* float32 scratch: d × d, or d × HESS_PANEL (see above) */
  int64_t tokens;
  int borrowed; /* chunk is the caller's (hessian_init_borrow) */
} Hessian;

int hessian_init(Hessian *h, int d);
/* The same with the caller's scratch of hessian_chunk_floats(d) floats,
 * which Hessians that are added to one at a time may share (nothing is kept
 * in it between calls); hessian_free leaves it to the caller. */
int hessian_init_borrow(Hessian *h, int d, float *chunk);
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
/* Collective: diag (d partial sums) and *tokens summed over comm, diag
 * scaled by *scale = 2/N. */
int hessian_reduce_diag(double *diag, int d, int64_t *tokens, MPI_Comm comm, double *scale);

#endif
