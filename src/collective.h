/* Sums and broadcasts of large arrays over the ranks, in place, in pieces.
 *
 * One MPI_Allreduce of a whole Hessian (d² float64: 0.97 GB at d = 11008)
 * makes Open MPI allocate reduction buffers of about the message's size on
 * every call; glibc maps blocks that large fresh each time, so every call
 * pays a first-touch fault per page (2.1–5.0 s for d = 11008 on this
 * machine's 2 ranks). In pieces of ALLREDUCE_PIECE elements (16 MB of
 * float64, under glibc's largest mmap threshold) those buffers come from
 * the heap again and again: 0.13–0.9 s for the same sum (tools and figures:
 * docs/scaling.md, "The reduce in pieces").
 *
 * The sum of each element is the same MPI_SUM as in one call: with two
 * ranks it is a + b whatever the algorithm; the sums made through these
 * (float32 products added in float64, replicated pieces of which one rank
 * holds each entry) are exact, so any order gives the same bits. Counts
 * past INT_MAX are fine. */
#ifndef APTQ_COLLECTIVE_H
#define APTQ_COLLECTIVE_H

#include <mpi.h>
#include <stddef.h>

enum { ALLREDUCE_PIECE = 1 << 21 };

/* Collective over comm: buf[0..n) summed over the ranks, in place. */
void allreduce_sum_f64(double *buf, size_t n, MPI_Comm comm);
void allreduce_sum_f32(float *buf, size_t n, MPI_Comm comm);

/* A broadcast needs no reduction buffers: its pieces (BCAST_PIECE
 * elements) only keep the counts int. Collective over comm: buf[0..n)
 * from root. */
enum { BCAST_PIECE = 1 << 30 };
void bcast_f32(float *buf, size_t n, int root, MPI_Comm comm);

#endif
