/* The benchmarks' GEMM rate (tools/bench_*.c): one rank's SGEMM or DGEMM
 * rate (n × n × n, best of 3) while every rank of comm runs one, the
 * slowest rank's: the machine loaded as in the solve. Collective. */
#ifndef APTQ_BENCH_GEMM_H
#define APTQ_BENCH_GEMM_H

#include <cblas.h>
#include <mpi.h>
#include <string.h>

#include "error.h"
#include "heap.h"

static double gemm_rate(int dbl, int n, MPI_Comm comm) {
  size_t sz = (size_t)n * n;
  void *a = aptq_malloc(sz * 8, "GEMM operand"), *b = aptq_malloc(sz * 8, "GEMM operand"), *c = aptq_malloc(sz * 8, "GEMM result");
  if (!a || !b || !c) aptq_fatal(comm);
  memset(a, 0, sz * 8);
  memset(b, 0, sz * 8);
  memset(c, 0, sz * 8);
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    MPI_Barrier(comm);
    double t = MPI_Wtime();
    if (dbl) cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a, n, b, n, 0.0, c, n);
    else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    t = MPI_Wtime() - t;
    double r = 2.0 * n * n * (double)n / t;
    best = r > best ? r : best;
  }
  MPI_Allreduce(MPI_IN_PLACE, &best, 1, MPI_DOUBLE, MPI_MIN, comm);
  aptq_free(a);
  aptq_free(b);
  aptq_free(c);
  return best;
}

#endif
