/* Benchmark: the sum of one layer-input Hessian over the ranks (d² float64,
 * in place), as the pass makes it (hessian_finish, APTQ's statistics):
 *   whole:  one MPI_Allreduce of all d² elements (before 2026-12-05);
 *   pieces: allreduce_sum_f64, MPI_Allreduce in pieces of ALLREDUCE_PIECE
 *           elements (collective.h).
 * For each d and way, REPS (default 3) sums of the same buffer in turn,
 * each timed alone between barriers (the slowest rank's time); the buffer
 * is written before each sum, as the accumulation writes it in the pass.
 * The first sum of a buffer costs more than the later ones either way;
 * in the pass a Hessian's buffer lives for the whole pass, so block 1 pays
 * the first and every later block the others.
 *   usage: mpirun -n P build/bench_allreduce D[,D...]  (d ≤ 46340)
 * prints one line per sum: d, ranks, way, rep, seconds, GB/s of the
 * buffer (docs/scaling.md "The reduce in pieces"); and, once per d, how
 * long rank 0's first and second writes of a fresh buffer took (the cost
 * of first-touch page faults on this machine). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective.h"

static void fill(double *h, size_t n) {
  for (size_t i = 0; i < n; i++) h[i] = (double)(i % 1000) * 0.5;
}

static double timed_sum(double *h, size_t n, int pieces) {
  fill(h, n);
  MPI_Barrier(MPI_COMM_WORLD);
  double t = MPI_Wtime();
  if (pieces) allreduce_sum_f64(h, n, MPI_COMM_WORLD);
  else MPI_Allreduce(MPI_IN_PLACE, h, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  t = MPI_Wtime() - t;
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return t;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size, reps = getenv("REPS") ? atoi(getenv("REPS")) : 3;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc < 2 || reps < 1) {
    if (!rank) fprintf(stderr, "usage: mpirun -n P bench_allreduce D[,D...]  (REPS=3)\n");
    MPI_Finalize();
    return 2;
  }
  if (!rank) printf("%6s %5s %6s %3s %9s %7s\n", "d", "ranks", "way", "rep", "seconds", "GB/s");
  for (char *s = strtok(argv[1], ","); s; s = strtok(NULL, ",")) {
    long d = atol(s);
    if (d < 1 || d > 46340) continue;
    size_t n = (size_t)d * d;
    for (int pieces = 0; pieces < 2; pieces++) {
      double *h = malloc(sizeof(double) * n); /* a fresh buffer for each way */
      if (!h) MPI_Abort(MPI_COMM_WORLD, 1);
      double t0 = MPI_Wtime();
      fill(h, n); /* the kernel's first-touch faults */
      double t1 = MPI_Wtime();
      fill(h, n);
      double t2 = MPI_Wtime();
      if (!rank && !pieces)
        printf("# rank 0, a fresh %.2f GB buffer: first write %.3f s (%.2f GB/s), second %.3f s\n", n * 8e-9, t1 - t0, n * 8e-9 / (t1 - t0),
               t2 - t1);
      for (int r = 0; r < reps; r++) {
        double t = timed_sum(h, n, pieces);
        if (!rank) printf("%6ld %5d %6s %3d %9.3f %7.2f\n", d, size, pieces ? "pieces" : "whole", r + 1, t, n * 8.0 / t / 1e9);
      }
      free(h);
    }
  }
  MPI_Finalize();
  return 0;
}
