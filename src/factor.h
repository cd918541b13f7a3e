/* The factor the GPTQ solver needs: U, the upper Cholesky factor of
 * (H + λI)⁻¹ (UᵀU = (H + λI)⁻¹), with λ = damp · mean(diag H).
 * Distributed: ScaLAPACK (pdpotrf + pdtrtri, or pdpotrf, pdpotri, pdpotrf) on a BLACS grid over the
 * ranks of comm (nprow × npcol as square as the rank count allows), block
 * size nb. Serial: the same with LAPACK on every rank. If a
 * factorization fails (H + λI not positive definite to working precision),
 * damp is multiplied by 10 and the factorization retried (up to 6 times). */
#ifndef APTQ_FACTOR_H
#define APTQ_FACTOR_H

#include <mpi.h>
#include <stdint.h>

#include "grid.h"

/* NODE: LAPACK on the first rank of each node with one OpenBLAS thread per
 * core of the node's ranks, the others asleep, U broadcast on the node
 * (node.h); every node's leader uses the same thread count, so U is the
 * same on every rank, but it may differ in the last bits from LAPACK's on
 * one thread. Where no node has two ranks, the LAPACK path itself. */
typedef enum { FACTOR_AUTO, FACTOR_LAPACK, FACTOR_SCALAPACK, FACTOR_NODE } FactorPath;
/* TRTRI: potrf of the index-reversed matrix and a triangular inverse
 * (2d³/3 flops, the default); POTRI: potrf, potri, potrf (4d³/3 flops).
 * Both give the same U up to rounding. */
typedef enum { FACTOR_TRTRI, FACTOR_POTRI } FactorAlgorithm;

typedef struct {
  double damp_requested, damp_used, lambda; /* λ actually added */
  int retries;
  int used_scalapack, nprow, npcol;
  double seconds;
  double reduce_seconds;  /* of seconds: reducing a partial Hessian into the grid */
  double potrf_seconds;   /* of seconds: the Cholesky factorization (the last attempt's) */
  double inverse_seconds; /* of seconds: trtri, or potri + potrf (the last attempt's) */
  int node_threads;       /* the node path's threads on a node's first rank (0: another path) */
} FactorInfo;

/* The matrix to factor, read in place: element (a, b) is H[perm[a]][perm[b]]
 * (perm NULL: identity), with dead columns (dead[j] != 0) replaced by the
 * identity as gptq.py does (H_jj = 1, the rest of the row and column 0). */
typedef struct {
  const double *H; /* d × d symmetric, replicated on every rank */
  int d;
  const int *perm;
  const uint8_t *dead;
  /* partial: H is this rank's unreduced sum (both triangles); the
   * ScaLAPACK path reduces it over comm straight into its block-cyclic
   * layout (MPI_Reduce_scatter, a round of block columns at a time) and
   * multiplies by scale, so no rank holds the reduced matrix. diag: the
   * reduced, scaled diagonal (for λ). */
  int partial;
  double scale;
  const double *diag;
  /* grid_sum (with partial): instead of H, this rank's pieces of the
   * reduced, unscaled Σ x xᵀ (upper triangle, natural or index-reversed
   * order) on the grid of comm with block size nb (hessian_stream.h); the
   * ScaLAPACK path takes them as they are when they are in its order, else
   * moves them with one all-to-all. */
  const double *grid_sum;
  int grid_sum_reversed; /* its pieces are in index-reversed order */
} HessianView;

/* U: d × d row-major float32 (the precision the solver applies it in),
 * upper triangle set, lower zero, replicated; computed in float64.
 * λ = damp · mean of the view's diagonal. Collective. */
int factor_inverse_cholesky(const HessianView *h, double damp, FactorPath path, FactorAlgorithm alg, int nb, MPI_Comm comm, float *U,
                            FactorInfo *info);

/* The same on the ScaLAPACK grid of comm, the factor left there: each rank
 * keeps its block-cyclic pieces (d²/P floats) and the solve fetches U a
 * block of rows at a time (dist_factor_rows), so no rank holds U whole.
 * Collective. */
typedef struct DistFactor DistFactor;
int factor_inverse_cholesky_dist(const HessianView *h, double damp, FactorAlgorithm alg, int nb, MPI_Comm comm, DistFactor **f,
                                 FactorInfo *info);
/* Collective over the factor's comm: rows [r0, r0 + n) of U, n × d
 * float32 row-major, on every rank (the same values the replicated U has). */
void dist_factor_rows(const DistFactor *f, int r0, int n, float *dst);
void dist_factor_free(DistFactor *f);
MPI_Comm dist_factor_comm(const DistFactor *f);

/* Does this path at this d and rank count factor with ScaLAPACK? */
int factor_uses_scalapack(FactorPath path, int d, int size);

#endif
