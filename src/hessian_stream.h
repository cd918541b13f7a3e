/* Layer-input Hessians summed into the factor's block-cyclic layout while
 * they accumulate (hessian_reduce = stream, docs/scaling.md): no rank ever
 * holds a d × d matrix, not even its own partial sum.
 *
 * Each rank buffers the inputs of a few sequences (option stream_tokens:
 * a flush moves d² doubles per rank, the buffer's products cost about
 * tokens·d² flops, so a few thousand tokens keep the traffic small);
 * at a flush, for one column panel at a time, it forms hessian_add's float32
 * products of every buffered sequence (the same BLAS calls, so the same
 * rounding), sums them in float64 into a panel of the upper triangle, and
 * reduce-scatters the panel (MPI_Reduce_scatter) into every rank's pieces of
 * Σ x xᵀ: upper triangle, the grid and block size of the factorization, in
 * natural column order or index-reversed (the order the TRTRI factor
 * works in). Float64 sums of float32 values are exact (hessian.h),
 * so the result equals hessian_add + hessian_finish_diag + the reduction
 * into the grid bit for bit, whatever the rank count. Without act-order the
 * factorization takes the pieces as they are; with it, one all-to-all moves
 * them into the permuted order (factor.c). */
#ifndef APTQ_HESSIAN_STREAM_H
#define APTQ_HESSIAN_STREAM_H

#include <mpi.h>
#include <stdint.h>

#include "grid.h"

typedef struct {
  int d, nb, T, w; /* w: columns per product panel (hessian_add's) */
  int reversed;    /* pieces in index-reversed order: entry (x, y) is Σ x xᵀ at (d−1−y, d−1−x) */
  int per_flush;   /* sequences buffered between flushes */
  Grid grid;
  double *acc;  /* lld × nloc column-major: this rank's pieces of Σ x xᵀ, entries x ≤ y of the layout */
  float *x;     /* per_flush × T × d buffered inputs */
  int nbuf;     /* sequences in the buffer */
  float *chunk; /* float32 products: d × w */
  double *panel, *send, *recv;
  int *counts, *rowown, *rowloc;
  int64_t tokens;
} HessianStream;

/* Collective over comm (the ranks that factor): T tokens per sequence,
 * max(1, tokens / T) sequences buffered between flushes; reversed: the
 * layout of the TRTRI factor. */
int hstream_init(HessianStream *h, int d, int nb, int T, int tokens, int reversed, MPI_Comm comm);
void hstream_free(HessianStream *h);
void hstream_reset(HessianStream *h);
/* Buffer one sequence's inputs (T × d). The caller flushes when full. */
void hstream_add(HessianStream *h, const float *X);
static inline int hstream_full(const HessianStream *h) { return h->nbuf == h->per_flush; }
/* Collective: sum the buffered products into the grid; empties the buffer.
 * Every rank calls it at the same points (with an empty buffer if it has
 * no more sequences). */
int hstream_flush(HessianStream *h, MPI_Comm comm);
/* Collective, after the last flush: the reduced diagonal scaled by 2/N into
 * diag, and *scale = 2/N (hessian_finish_diag's). */
int hstream_finish(HessianStream *h, MPI_Comm comm, double *diag, double *scale);

/* Bytes per rank (memory plan): the pieces, the buffer, the panels. */
double hstream_bytes(int d, int nb, int T, int tokens, int size);

#endif
