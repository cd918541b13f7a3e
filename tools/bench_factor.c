/* Benchmark: the factor phase alone (issue 15 item 3). For each size d and
 * each ScaLAPACK block size nb, the factor the GPTQ solve needs (U, the
 * upper Cholesky factor of (H + λI)⁻¹, potrf + trtri: 2d³/3 flops) by
 * LAPACK on every rank (replicated, as the pass does below the ScaLAPACK
 * threshold) and by ScaLAPACK on the grid of all ranks with the factor kept
 * there (as the pass does with a partial Hessian), against the floor
 *   floor = (2d³/3) / (P · DGEMM rate of one rank while all ranks run one).
 * H is the Kac-Murdock-Szegő matrix 0.9^|i-j| (symmetric positive definite,
 * made in O(d²), so that large d cost nothing to set up); the work of the
 * factorization does not depend on the values. One untimed ScaLAPACK and
 * one LAPACK factorization (d = 2048) run first: the first ScaLAPACK call
 * of a process costs seconds more (measured at d = 11008 on 2 ranks: nb = 256
 * first 18.7 s, then 17.2 s; nb = 64 first 26.2 s, then 16.9-17.2 s).
 *   usage: mpirun -n P build/bench_factor D[,D...] [NB[,NB...] [lapack|scalapack|both]]
 * prints one line per run: d, ranks, path, grid, nb, seconds, floor, ratio
 * (docs/scaling.md "The factor phase"). REPS (default 1): runs per point,
 * the fastest kept. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_gemm.h"
#include "error.h"
#include "factor.h"
#include "heap.h"

static int parse_list(const char *s, int *v, int max) {
  int n = 0;
  for (const char *p = s; *p && n < max; p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p)) v[n++] = atoi(p);
  return n;
}

/* Seconds of one factorization of H (d × d) by this path, the slowest rank's. */
static double factor_once(const double *H, int d, int scalapack, int nb, MPI_Comm comm, int *nprow, int *npcol) {
  HessianView view = {.H = H, .d = d};
  FactorInfo info;
  MPI_Barrier(comm);
  double t = MPI_Wtime();
  if (scalapack) {
    DistFactor *f;
    if (factor_inverse_cholesky_dist(&view, 0.01, FACTOR_TRTRI, nb, comm, &f, &info)) aptq_fatal(comm);
    dist_factor_free(f);
  } else {
    float *U = aptq_malloc(sizeof(float) * (size_t)d * d, "U");
    if (!U || factor_inverse_cholesky(&view, 0.01, FACTOR_LAPACK, FACTOR_TRTRI, nb, comm, U, &info)) aptq_fatal(comm);
    aptq_free(U);
  }
  t = MPI_Wtime() - t;
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm);
  *nprow = info.nprow;
  *npcol = info.npcol;
  return t;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (argc < 2) {
    if (rank == 0) fprintf(stderr, "usage: mpirun -n P bench_factor D[,D...] [NB[,NB...] [lapack|scalapack|both]]\n");
    MPI_Finalize();
    return 2;
  }
  int ds[16], nbs[16], reps = getenv("REPS") ? atoi(getenv("REPS")) : 1;
  int nd = parse_list(argv[1], ds, 16), nnb = argc > 2 ? parse_list(argv[2], nbs, 16) : (nbs[0] = 64, 1);
  const char *which = argc > 3 ? argv[3] : "both";
  double dgemm = gemm_rate(1, 2048, comm);
  { /* warm-up, untimed */
    int w = 2048, pr, pc;
    double *H = aptq_calloc((size_t)w * w, sizeof(double), "warm-up Hessian");
    if (!H) aptq_fatal(comm);
    for (int a = 0; a < w; a++) H[(size_t)a * w + a] = 1;
    factor_once(H, w, 1, 64, comm, &pr, &pc);
    factor_once(H, w, 0, 64, comm, &pr, &pc);
    aptq_free(H);
  }
  if (rank == 0) printf("bench_factor: %d ranks, DGEMM %.1f GFLOP/s per rank (all ranks at once)\n", size, dgemm / 1e9);
  if (rank == 0) printf("%6s %5s %9s %6s %4s %9s %9s %6s\n", "d", "ranks", "path", "grid", "nb", "seconds", "floor_s", "ratio");
  for (int i = 0; i < nd; i++) {
    int d = ds[i];
    double *H = aptq_calloc((size_t)d * d, sizeof(double), "Hessian");
    if (!H) aptq_fatal(comm);
    for (int a = 0; a < d; a++) { /* below 1e-30 (k > 656) the entries stay 0: no denormals */
      double x = 1;
      for (int k = 0; a + k < d && x > 1e-30; k++, x *= 0.9) H[(size_t)a * d + a + k] = H[(size_t)(a + k) * d + a] = x;
    }
    double floor_s = 2.0 / 3.0 * d * (double)d * d / (size * dgemm);
    for (int path = 0; path < 2; path++) {
      if ((path == 0 && !strcmp(which, "scalapack")) || (path == 1 && !strcmp(which, "lapack"))) continue;
      for (int k = 0; k < (path ? nnb : 1); k++) {
        double best = 1e300;
        int pr = 1, pc = 1;
        for (int r = 0; r < (reps > 0 ? reps : 1); r++) {
          double t = factor_once(H, d, path, path ? nbs[k] : 64, comm, &pr, &pc);
          best = t < best ? t : best;
        }
        if (rank == 0)
          printf("%6d %5d %9s %3dx%-2d %4d %9.3f %9.3f %6.2f\n", d, size, path ? "scalapack" : "lapack", pr, pc, path ? nbs[k] : 0, best,
                 floor_s, best / floor_s);
        fflush(stdout);
      }
    }
    aptq_free(H);
  }
  MPI_Finalize();
  return 0;
}
