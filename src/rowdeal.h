/* The row deal: which rows of a layer (or of several layers solved
 * together) each rank solves, and the collectives that go with it, as HPL's
 * grid struct or HPCG's ExchangeHalo before a local loop: the solves
 * (solve.c) work on this rank's rows only, then gather every rank's rows so
 * that all ranks hold the whole quantized weight, and sum the errors.
 * The unit of the deal is a row (in whole GPTQ_ROW_CHUNKs, so that the
 * result does not depend on the rank count) or a head of dh rows. */
#ifndef APTQ_ROWDEAL_H
#define APTQ_ROWDEAL_H

#include <mpi.h>

#include "layer_error.h"

enum { ROWDEAL_MAX_LAYERS = 8 };

/* This rank's slab [*r0, *r0 + *n) of rows, whole chunks over the ranks. */
void rowdeal_row_range(int rows, int size, int rank, int *r0, int *n);
/* The same for several layers solved together (gptq_solve_slabs): their
 * chunks, layer after layer, dealt over the ranks in contiguous runs, so
 * that the layers are solved at the same time by different ranks. Layer k's
 * slab on this rank is [r0[k], r0[k] + n[k]) (n[k] may be 0). One layer:
 * rowdeal_row_range. */
void rowdeal_group_rows(const int *rows, int nlayers, int size, int rank, int *r0, int *n);
/* Collective: the layer error, summed in chunk order (rank-count
 * independent). Out of memory aborts all ranks (aptq_fatal). */
double rowdeal_layer_loss(const double *chunk_loss, int rows, MPI_Comm comm);
/* The same for layers solved together (rows as rowdeal_group_rows): loss[k]
 * from chunk_loss[k], this rank's chunks of layer k. 0, or APTQ_ERR on
 * every rank (out of memory, agreed and reported). */
int rowdeal_group_loss(double *const *chunk_loss, const int *rows, int nlayers, MPI_Comm comm, double *loss);

typedef struct {
  MPI_Comm comm;
  int size, rank;
  int nl;                        /* layers dealt together */
  int units[ROWDEAL_MAX_LAYERS]; /* units (rows or heads) of each layer */
  int first[ROWDEAL_MAX_LAYERS]; /* this rank's units of layer k: [first, first + count) */
  int count[ROWDEAL_MAX_LAYERS];
  int *all_first, *all_count; /* every rank's: [rank · nl + k] */
  int *cnt, *dsp;             /* [size]: one gather's counts and displacements */
} RowDeal;

/* The rows of nl layers solved together: their GPTQ_ROW_CHUNK chunks, layer
 * after layer, dealt over the ranks in contiguous runs (rowdeal_group_rows), so
 * that different ranks solve different layers at the same time. A unit is a
 * row. Returns an error (recorded) if out of memory; not collective. */
int rowdeal_chunks(RowDeal *d, const int *rows, int nl, MPI_Comm comm);
/* `units` whole units (heads) of one layer dealt over the ranks
 * (shard_range). Not collective. */
int rowdeal_units(RowDeal *d, int units, MPI_Comm comm);
void rowdeal_free(RowDeal *d);

/* Collective: layer k's buffer `buf` (units × per_unit elements of `type`,
 * this rank's units already in place) completed with every rank's units. */
void rowdeal_allgather(RowDeal *d, int k, void *buf, int per_unit, MPI_Datatype type);
/* Collective: err2 and norm2 of the deal's layers e[0..nl) summed over the
 * ranks (one reduction). */
void rowdeal_sum_errors(const RowDeal *d, LayerError *const *e);

#endif
