#include "grid.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

void blacs_grid_shape(int size, int *nprow, int *npcol) {
  int r = (int)sqrt((double)size);
  while (r > 1 && size % r) r--;
  *nprow = r < 1 ? 1 : r;
  *npcol = size / *nprow;
}

int grid_open(Grid *g, int d, int nb, MPI_Comm comm) {
  int size, zero = 0, info = 0;
  MPI_Comm_size(comm, &size);
  memset(g, 0, sizeof *g);
  blacs_grid_shape(size, &g->nprow, &g->npcol);
  g->nb = nb;
  g->handle = Csys2blacs_handle(comm);
  g->ctxt = g->handle;
  Cblacs_gridinit(&g->ctxt, "Row", g->nprow, g->npcol);
  Cblacs_gridinfo(g->ctxt, &g->nprow, &g->npcol, &g->myrow, &g->mycol);
  g->mloc = global_count(d, nb, g->myrow, g->nprow);
  g->nloc = global_count(d, nb, g->mycol, g->npcol);
  g->lld = g->mloc > 1 ? g->mloc : 1;
  descinit_(g->desc, &d, &d, &nb, &nb, &zero, &zero, &g->ctxt, &g->lld, &info);
  g->rowof = aptq_malloc(sizeof(int) * (size_t)size, "grid rows of the ranks");
  g->colof = aptq_malloc(sizeof(int) * (size_t)size, "grid columns of the ranks");
  g->rank_at = aptq_malloc(sizeof(int) * (size_t)size, "ranks of the grid");
  /* nobody is left in the gathers */
  if (!aptq_all_ok(comm, g->rowof && g->colof && g->rank_at)) return -1;
  MPI_Allgather(&g->myrow, 1, MPI_INT, g->rowof, 1, MPI_INT, comm);
  MPI_Allgather(&g->mycol, 1, MPI_INT, g->colof, 1, MPI_INT, comm);
  for (int r = 0; r < size; r++) g->rank_at[g->rowof[r] * g->npcol + g->colof[r]] = r;
  return info ? -1 : 0;
}

void grid_close(Grid *g) {
  aptq_free(g->rowof);
  aptq_free(g->colof);
  aptq_free(g->rank_at);
  Cblacs_gridexit(g->ctxt);
  Cfree_blacs_system_handle(g->handle);
}
