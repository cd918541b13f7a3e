/* Benchmark: the factor phase alone (issue 15 item 3). For each size d and
 * each ScaLAPACK block size nb, the factor the GPTQ solve needs (U, the
 * upper Cholesky factor of (H + λI)⁻¹, potrf + trtri: 2d³/3 flops) by
 *   lapack:    LAPACK on every rank (replicated, as the pass does below the
 *              ScaLAPACK threshold);
 *   scalapack: ScaLAPACK on the grid of all ranks with the factor kept
 *              there (as the pass does with a partial Hessian);
 *   node:      the pass's --factor=node: LAPACK on each node's first rank
 *              with OpenBLAS threads on the cores of all the node's ranks,
 *              the others asleep in a polled barrier (1 ms), then U
 *              (float32) broadcast on the node (node.h);
 * against the floor
 *   floor = (2d³/3) / (P · DGEMM rate of one rank while all ranks run one).
 * The columns potrf_s and inv_s split the time (the slowest rank's of
 * each): the Cholesky factorization and the triangular inverse, d³/3 flops
 * each, so each alone has half the floor.
 * H is the Kac-Murdock-Szegő matrix 0.9^|i-j| (symmetric positive definite,
 * made in O(d²), so that large d cost nothing to set up); the work of the
 * factorization does not depend on the values. One untimed ScaLAPACK and
 * one LAPACK factorization (d = 2048) run first: the first ScaLAPACK call
 * of a process costs seconds more (measured at d = 11008 on 2 ranks: nb = 256
 * first 18.7 s, then 17.2 s; nb = 64 first 26.2 s, then 16.9-17.2 s).
 *   usage: mpirun -n P build/bench_factor D[,D...] [NB[,NB...] [lapack|scalapack|node|both|all]]
 * (both: lapack and scalapack; all: the three) prints one line per run: d,
 * ranks, path, grid, nb, seconds, potrf_s, inv_s, floor, ratio
 * (docs/scaling.md "The factor phase"). REPS (default 1): runs per point,
 * the fastest kept. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_gemm.h"
#include "error.h"
#include "factor.h"
#include "heap.h"

static int parse_list(const char *s, int *v, int max) {
  int n = 0;
  for (const char *p = s; *p && n < max; p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p)) v[n++] = atoi(p);
  return n;
}

enum { PATH_LAPACK, PATH_SCALAPACK, PATH_NODE, PATH_COUNT };
static const char *const path_names[PATH_COUNT] = {"lapack", "scalapack", "node"};

/* Does the command line's `which` (a path's name, both or all) ask for this path? */
static int path_wanted(const char *which, int path) {
  return !strcmp(which, "all") || (!strcmp(which, "both") && path != PATH_NODE) || !strcmp(which, path_names[path]);
}

/* Seconds of one factorization of H (d × d) by this path, the slowest
 * rank's; split[0..1]: its potrf and inverse seconds, the slowest rank's. */
static double factor_once(const double *H, int d, int path, int nb, MPI_Comm comm, int *nprow, int *npcol, double split[2]) {
  HessianView view = {.H = H, .d = d};
  FactorInfo info;
  float *U = NULL;
  int size, rc;
  MPI_Comm_size(comm, &size);
  if (path != PATH_SCALAPACK && !(U = aptq_malloc(sizeof(float) * (size_t)d * d, "U"))) aptq_fatal(comm);
  MPI_Barrier(comm);
  double t = MPI_Wtime();
  if (path == PATH_SCALAPACK) {
    DistFactor *f;
    rc = factor_inverse_cholesky_dist(&view, 0.01, FACTOR_TRTRI, nb, comm, &f, &info);
    dist_factor_free(f);
  } else {
    rc = factor_inverse_cholesky(&view, 0.01, path == PATH_NODE ? FACTOR_NODE : FACTOR_LAPACK, FACTOR_TRTRI, nb, comm, U, &info);
  }
  if (rc) aptq_fatal(comm);
  t = MPI_Wtime() - t;
  aptq_free(U);
  double times[3] = {t, info.potrf_seconds, info.inverse_seconds};
  MPI_Allreduce(MPI_IN_PLACE, times, 3, MPI_DOUBLE, MPI_MAX, comm);
  split[0] = times[1];
  split[1] = times[2];
  *nprow = info.nprow;
  *npcol = info.npcol;
  return times[0];
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  openblas_set_num_threads(1); /* one thread per rank, as aptq runs (--threads=1); the node path lends them to a leader */
  MPI_Comm comm = MPI_COMM_WORLD;
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (argc < 2) {
    if (rank == 0) fprintf(stderr, "usage: mpirun -n P bench_factor D[,D...] [NB[,NB...] [lapack|scalapack|node|both|all]]\n");
    MPI_Finalize();
    return 2;
  }
  int ds[16], nbs[16], reps = getenv("REPS") ? atoi(getenv("REPS")) : 1;
  int nd = parse_list(argv[1], ds, 16), nnb = argc > 2 ? parse_list(argv[2], nbs, 16) : (nbs[0] = 64, 1);
  const char *which = argc > 3 ? argv[3] : "both";
  int any = 0;
  for (int path = 0; path < PATH_COUNT; path++) any |= path_wanted(which, path);
  if (!any) {
    if (rank == 0) fprintf(stderr, "bench_factor: unknown path '%s'; give lapack, scalapack, node, both or all\n", which);
    MPI_Finalize();
    return 2;
  }
  double dgemm = gemm_rate(1, 2048, comm);
  { /* warm-up, untimed */
    int w = 2048, pr, pc;
    double split[2];
    double *H = aptq_calloc((size_t)w * w, sizeof(double), "warm-up Hessian");
    if (!H) aptq_fatal(comm);
    for (int a = 0; a < w; a++) H[(size_t)a * w + a] = 1;
    factor_once(H, w, PATH_SCALAPACK, 64, comm, &pr, &pc, split);
    factor_once(H, w, PATH_LAPACK, 64, comm, &pr, &pc, split);
    aptq_free(H);
  }
  if (rank == 0) printf("bench_factor: %d ranks, DGEMM %.1f GFLOP/s per rank (all ranks at once)\n", size, dgemm / 1e9);
  if (rank == 0)
    printf("%6s %5s %9s %6s %4s %9s %8s %8s %9s %6s\n", "d", "ranks", "path", "grid", "nb", "seconds", "potrf_s", "inv_s", "floor_s",
           "ratio");
  for (int i = 0; i < nd; i++) {
    int d = ds[i];
    double *H = aptq_calloc((size_t)d * d, sizeof(double), "Hessian");
    if (!H) aptq_fatal(comm);
    for (int a = 0; a < d; a++) { /* below 1e-30 (k > 656) the entries stay 0: no denormals */
      double x = 1;
      for (int k = 0; a + k < d && x > 1e-30; k++, x *= 0.9) H[(size_t)a * d + a + k] = H[(size_t)(a + k) * d + a] = x;
    }
    double floor_s = 2.0 / 3.0 * d * (double)d * d / (size * dgemm);
    for (int path = 0; path < PATH_COUNT; path++) {
      if (!path_wanted(which, path)) continue;
      for (int k = 0; k < (path == PATH_SCALAPACK ? nnb : 1); k++) {
        double best = 1e300, split[2], best_split[2] = {0, 0};
        int pr = 1, pc = 1, nb = path == PATH_SCALAPACK ? nbs[k] : 64;
        for (int r = 0; r < (reps > 0 ? reps : 1); r++) {
          double t = factor_once(H, d, path, nb, comm, &pr, &pc, split);
          if (t < best) best = t, best_split[0] = split[0], best_split[1] = split[1];
        }
        if (rank == 0)
          printf("%6d %5d %9s %3dx%-2d %4d %9.3f %8.3f %8.3f %9.3f %6.2f\n", d, size, path_names[path], pr, pc,
                 path == PATH_SCALAPACK ? nb : 0, best, best_split[0], best_split[1], floor_s, best / floor_s);
        fflush(stdout);
      }
    }
    aptq_free(H);
  }
  MPI_Finalize();
  return 0;
}
