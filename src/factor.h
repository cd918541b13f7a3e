/* The factor the GPTQ solver needs: U, the upper Cholesky factor of
 * (H + λI)⁻¹ (UᵀU = (H + λI)⁻¹), with λ = damp · mean(diag H).
 * Distributed: ScaLAPACK pdpotrf, pdpotri, pdpotrf on a BLACS grid over the
 * ranks of comm (nprow × npcol as square as the rank count allows), block
 * size nb. Serial: LAPACK dpotrf, dpotri, dpotrf on every rank. If a
 * factorization fails (H + λI not positive definite to working precision),
 * damp is multiplied by 10 and the factorization retried (up to 6 times). */
#ifndef APTQ_FACTOR_H
#define APTQ_FACTOR_H

#include <mpi.h>

typedef enum { FACTOR_AUTO, FACTOR_LAPACK, FACTOR_SCALAPACK } FactorPath;

typedef struct {
  double damp_requested, damp_used, lambda; /* λ actually added */
  int retries;
  int used_scalapack, nprow, npcol;
  double seconds;
} FactorInfo;

/* H: d × d symmetric, replicated on every rank, not modified. U: d × d
 * row-major, upper triangle set, lower zero, replicated. Collective. */
int factor_inverse_cholesky(const double *H, int d, double damp, FactorPath path, int nb, MPI_Comm comm, double *U, FactorInfo *info);

/* nprow × npcol = size with nprow ≤ npcol, as square as possible. */
void blacs_grid_shape(int size, int *nprow, int *npcol);

#endif
