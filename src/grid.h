/* A BLACS process grid over an MPI communicator and the block-cyclic layout
 * (block size nb, both dimensions) of a d × d matrix on it: who owns an
 * element, and where it sits in the owner's local (column-major) pieces.
 * Shared by the factorization (factor.c) and the Hessian sums reduced into
 * the same layout while they accumulate (hessian_stream.c). */
#ifndef APTQ_GRID_H
#define APTQ_GRID_H

#include <mpi.h>

/* BLACS and the ScaLAPACK tools */
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *context, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int context, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int context);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc, const int *icsrc, const int *ictxt,
               const int *lld, int *info);

typedef struct {
  int handle, ctxt, nprow, npcol, myrow, mycol, mloc, nloc, lld, nb, desc[9];
  int *rowof, *colof; /* grid coordinates of each rank of comm */
  int *rank_at;       /* the rank at grid position (row, col): rank_at[row·npcol + col] */
} Grid;

/* Collective: the grid of blacs_grid_shape(size) and the layout of a d × d
 * matrix with blocks of nb. 0, or -1 (out of memory on any rank: agreed;
 * bad arguments). grid_close either way. */
int grid_open(Grid *g, int d, int nb, MPI_Comm comm);
void grid_close(Grid *g);

/* nprow × npcol = size with nprow ≤ npcol, as square as possible. */
void blacs_grid_shape(int size, int *nprow, int *npcol);

/* how many of the indices 0..d-1 process iproc (of nprocs) holds (numroc) */
static inline int global_count(int d, int nb, int iproc, int nprocs) {
  int zero = 0;
  return numroc_(&d, &nb, &iproc, &zero, &nprocs);
}
/* local index l of process iproc (of nprocs) → global index */
static inline int local_to_global(int l, int nb, int iproc, int nprocs) { return (l / nb) * nb * nprocs + iproc * nb + l % nb; }
/* global index i → owning process and local index there */
static inline int global_owner(int i, int nb, int nprocs) { return (i / nb) % nprocs; }
static inline int global_to_local(int i, int nb, int nprocs) { return (i / nb / nprocs) * nb + i % nb; }

#endif
