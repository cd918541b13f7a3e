#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "node.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>
#include <time.h>

#include "error.h"

/* This thread's CPUs; 0, or -1 (the set empty) if the kernel will not say. */
static int own_cpus(cpu_set_t *s) {
  if (sched_getaffinity(0, sizeof *s, s) == 0) return 0;
  CPU_ZERO(s);
  return -1;
}

int node_team_open(MPI_Comm comm, NodeTeam *t) {
  int rank, nsize;
  memset(t, 0, sizeof *t);
  t->comm = MPI_COMM_NULL;
  MPI_Comm_rank(comm, &rank);
  if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &t->comm) != MPI_SUCCESS)
    return aptq_error("the ranks sharing a node could not be found (MPI_Comm_split_type); use --factor=lapack");
  MPI_Comm_size(t->comm, &nsize);
  int nrank;
  MPI_Comm_rank(t->comm, &nrank);
  t->leader = nrank == 0;
  t->own = openblas_get_num_threads();
  cpu_set_t mine;
  int known = own_cpus(&mine) == 0;
  /* the node's masks, byte-wise OR: a cpu_set_t is a plain bit array */
  MPI_Allreduce(&mine, &t->cpus, (int)sizeof mine, MPI_BYTE, MPI_BOR, t->comm);
  MPI_Allreduce(MPI_IN_PLACE, &known, 1, MPI_INT, MPI_MIN, t->comm);
  int threads = t->own * nsize, cpus = CPU_COUNT(&t->cpus);
  if (threads > cpus) threads = cpus;
  if (!known) threads = t->own; /* a mask unknown: nothing to lend (the LAPACK path) */
  MPI_Allreduce(&threads, &t->threads, 1, MPI_INT, MPI_MIN, comm);
  return 0;
}

void node_team_close(NodeTeam *t) {
  if (t->comm != MPI_COMM_NULL) MPI_Comm_free(&t->comm);
}

/* New OpenBLAS and OpenMP threads inherit the calling thread's mask, so the caller
 * widens first; existing ones are moved by openblas_setaffinity (the last
 * index is the calling thread). */
void node_team_lease(const NodeTeam *t, NodeLease *l) {
  cpu_set_t cpus = t->cpus;
  own_cpus(&l->mask);
  l->threads = openblas_get_num_threads();
  l->omp_threads = omp_get_max_threads();
  sched_setaffinity(0, sizeof cpus, &cpus);
  openblas_set_num_threads(t->threads);
  omp_set_num_threads(t->threads); /* the copies around LAPACK (factor.c's fill, float32) */
  for (int i = 0; i < t->threads; i++) openblas_setaffinity(i, sizeof cpus, &cpus);
}

void node_team_return(const NodeLease *l) {
  cpu_set_t mask = l->mask;
  int n = openblas_get_num_threads();
  for (int i = 0; i < n; i++) openblas_setaffinity(i, sizeof mask, &mask);
  sched_setaffinity(0, sizeof mask, &mask);
  openblas_set_num_threads(l->threads);
  omp_set_num_threads(l->omp_threads);
}

void node_team_sync(const NodeTeam *t) {
  MPI_Request req;
  int done = 0;
  MPI_Ibarrier(t->comm, &req);
  while (MPI_Test(&req, &done, MPI_STATUS_IGNORE), !done) nanosleep(&(struct timespec){0, 1000000}, NULL);
}
