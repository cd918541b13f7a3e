/* A node team: the ranks of a communicator that share a node
 * (MPI_COMM_TYPE_SHARED), lending their cores to the node's first rank
 * for one threaded LAPACK call while they sleep (factor.c's node path).
 * The leader's OpenBLAS threads are placed on the CPUs of all the node's
 * ranks together, so the job's own binding (one core per rank under
 * mpirun's default, or srun's --cpus-per-task) is what the team uses. */
#ifndef APTQ_NODE_H
#define APTQ_NODE_H

#include <mpi.h>
#include <sched.h>

typedef struct {
  MPI_Comm comm;  /* this node's ranks of the parent communicator */
  int leader;     /* this rank is the node's first */
  int threads;    /* OpenBLAS threads a leader runs: the fewest any node has */
  int own;        /* OpenBLAS threads of one rank (--threads) */
  cpu_set_t cpus; /* the CPUs of the node's ranks, together */
} NodeTeam;

/* Collective over comm: the team of this rank's node. threads = the node's
 * ranks' OpenBLAS threads summed, at most the CPUs they hold together, the
 * minimum over nodes (so every node's leader computes with the same thread
 * count, and every rank gets the same result). 0, or an error after
 * printing it. */
int node_team_open(MPI_Comm comm, NodeTeam *t);
void node_team_close(NodeTeam *t);

/* The leader's threads before the lease, restored after. */
typedef struct {
  cpu_set_t mask;
  int threads, omp_threads;
} NodeLease;

/* Leader only: t->threads OpenBLAS (and OpenMP) threads, each allowed on
 * t->cpus. */
void node_team_lease(const NodeTeam *t, NodeLease *l);
void node_team_return(const NodeLease *l);

/* Collective over the team: a barrier polled every millisecond, so that a
 * waiting rank leaves its core to the leader's threads. */
void node_team_sync(const NodeTeam *t);

#endif
