/* Benchmark: GPTQ solve of one synthetic layer (default 4096 × 4096, 4-bit,
 * group 128, act-order), on however many ranks it is started with. Prints
 * the phase times, the FLOP counts, the achieved rates and, measured in the
 * same run on every rank at once, the machine's SGEMM and DGEMM rates, and
 * the ratio of the solve time to its FLOP floor:
 *   floor = factor FLOPs / (P · DGEMM rate) + solve FLOPs / (P · SGEMM rate)
 * Threads per rank for the row chunks: APTQ_THREADS (default 1). With
 * APTQ_BENCH_WARM=1 one untimed factorization of the same shape runs first
 * and the output buffers are touched before timing: the steady state of a
 * long run whose buffers are reused. Cold (the default) includes the
 * first-touch page faults of every fresh buffer, which are slow on the
 * virtual machines this was developed on (about 0.2 s per 128 MB).
 * usage: mpirun -n P build/bench_layer [ROWS COLS [BITS GROUP ACT_ORDER [lapack|scalapack [trtri|potri]]]] */
#include <cblas.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "bench_gemm.h"
#include "error.h"
#include "gptq.h"
#include "rowdeal.h"
#include "quant.h"
#include "rng.h"

/* H = 2/n XᵀX (cols × cols, both triangles) of correlated synthetic
 * activations, n = 2·cols tokens; the same on every rank. */
static double *synthetic_hessian(int cols, MPI_Comm comm) {
  Rng rng = {12345};
  int ntok = 2 * cols;
  float *X = aptq_malloc(sizeof(float) * (size_t)ntok * cols, "activations");
  float *Hf = aptq_malloc(sizeof(float) * (size_t)cols * cols, "Hessian (float32)");
  double *H = aptq_malloc(sizeof(double) * (size_t)cols * cols, "Hessian");
  if (!X || !Hf || !H) aptq_fatal(comm);
  for (size_t i = 0; i < (size_t)ntok * cols; i++) X[i] = (float)rng_normal(&rng);
  for (int t = 0; t < ntok; t++)
    for (int j = 1; j < cols; j++) X[(size_t)t * cols + j] += 0.5f * X[(size_t)t * cols + j - 1];
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, cols, ntok, 2.0f / ntok, X, cols, 0.0f, Hf, cols);
  for (int i = 0; i < cols; i++)
    for (int j = i; j < cols; j++) H[(size_t)i * cols + j] = H[(size_t)j * cols + i] = Hf[(size_t)i * cols + j];
  aptq_free(X);
  aptq_free(Hf);
  return H;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  /* one thread per rank unless APTQ_THREADS says otherwise (as aptq's threads key) */
  int threads = getenv("APTQ_THREADS") ? atoi(getenv("APTQ_THREADS")) : 1;
  omp_set_num_threads(threads > 0 ? threads : 1);
  int rows = argc > 2 ? atoi(argv[1]) : 4096, cols = argc > 2 ? atoi(argv[2]) : 4096;
  GptqParams p = {4, 128, 0, 1, 0, 0, 128, 0.01, FACTOR_AUTO, FACTOR_TRTRI, 64};
  if (argc > 5) {
    p.bits = atoi(argv[3]);
    p.group_size = atoi(argv[4]);
    p.act_order = atoi(argv[5]);
  }
  if (argc > 6) p.factor_path = !strcmp(argv[6], "lapack") ? FACTOR_LAPACK : FACTOR_SCALAPACK;
  if (argc > 7) p.factor_algorithm = !strcmp(argv[7], "potri") ? FACTOR_POTRI : FACTOR_TRTRI;
  if (getenv("APTQ_NB")) p.nb = atoi(getenv("APTQ_NB"));

  /* W ~ N(0, 0.02²) */
  double *H = synthetic_hessian(cols, comm);
  int r0, n;
  rowdeal_row_range(rows, size, rank, &r0, &n);
  /* as aptq allocates them: large buffers on huge pages */
  float *W = aptq_malloc(sizeof(float) * ((size_t)n * cols + 1), "W"), *Q = aptq_malloc(sizeof(float) * ((size_t)n * cols + 1), "Q");
  Rng wr = {777};
  for (size_t i = 0; i < 2 * (size_t)r0 * cols; i++) rng_next(&wr); /* rng_normal draws twice */
  for (size_t i = 0; i < (size_t)n * cols; i++) W[i] = 0.02f * (float)rng_normal(&wr);
  int ng = quant_ngroups(cols, p.group_size);
  uint8_t *codes = aptq_malloc((size_t)n * cols + 1, "codes");
  float *scales = aptq_malloc(sizeof(float) * ((size_t)n * ng + 1), "scales");
  int32_t *zeros = aptq_malloc(sizeof(int32_t) * ((size_t)n * ng + 1), "zeros");
  double *chunk_loss = aptq_calloc((size_t)n / GPTQ_ROW_CHUNK + 1, sizeof(double), "losses");
  if (!W || !Q || !codes || !scales || !zeros || !chunk_loss) aptq_fatal(comm);

  double sgemm = gemm_rate(0, 2048, comm), dgemm = gemm_rate(1, 2048, comm);
  MPI_Barrier(comm);
  int warm = getenv("APTQ_BENCH_WARM") && atoi(getenv("APTQ_BENCH_WARM"));
  if (warm) {
    GptqLayer first;
    if (gptq_prepare(H, cols, &p, comm, &first)) aptq_fatal(comm);
    gptq_layer_free(&first);
    memset(Q, 0, sizeof(float) * (size_t)n * cols);
    memset(codes, 0, (size_t)n * cols);
    MPI_Barrier(comm);
  }
  double t0 = MPI_Wtime();
  GptqLayer L;
  if (gptq_prepare(H, cols, &p, comm, &L)) aptq_fatal(comm);
  MPI_Barrier(comm);
  double t1 = MPI_Wtime();
  if (gptq_solve(&L, &p, W, n, codes, Q, scales, zeros, chunk_loss)) aptq_fatal(comm);
  MPI_Barrier(comm);
  double t2 = MPI_Wtime();
  double loss = rowdeal_layer_loss(chunk_loss, rows, comm);

  /* FLOPs: potrf + trtri = 2d³/3 (potrf + potri + potrf = 4d³/3) in float64; the solve's lazy and in-block updates in float32 */
  double d = cols, factor_flops = (p.factor_algorithm == FACTOR_TRTRI ? 2.0 : 4.0) / 3.0 * d * d * d, solve_flops = 0;
  int B = p.block_size;
  for (int i1 = 0; i1 < cols; i1 += B) {
    int i2 = i1 + B < cols ? i1 + B : cols, count = i2 - i1;
    solve_flops += 2.0 * rows * count * (double)(cols - i2) + 2.0 * rows * (count * (count - 1) / 2.0);
  }
  double floor_s = factor_flops / (size * dgemm) + solve_flops / (size * sgemm), total = t2 - t0;
  if (rank == 0) {
    printf("bench_layer: %d x %d, %d bits, group %d, act_order %d, %d ranks x %d threads, %s, factor %s (%d x %d grid)\n", rows, cols,
           p.bits, p.group_size, p.act_order, size, threads, warm ? "warm (buffers reused)" : "cold",
           L.factor.used_scalapack ? "ScaLAPACK" : "LAPACK", L.factor.nprow, L.factor.npcol);
    printf("  machine     : SGEMM %.1f GFLOP/s, DGEMM %.1f GFLOP/s per rank (2048^3, all ranks at once)\n", sgemm / 1e9, dgemm / 1e9);
    printf("  factor      : %.3f s, %.2f GFLOP (fp64), %.1f GFLOP/s\n", t1 - t0, factor_flops / 1e9, factor_flops / (t1 - t0) / 1e9);
    printf("  solve       : %.3f s, %.2f GFLOP (fp32), %.1f GFLOP/s\n", t2 - t1, solve_flops / 1e9, solve_flops / (t2 - t1) / 1e9);
    printf("  total       : %.3f s; FLOP floor %.3f s; ratio %.2f (target <= 1.6)\n", total, floor_s, total / floor_s);
    printf("  layer error : %.6g\n", loss);
  }
  gptq_layer_free(&L);
  aptq_free(H);
  aptq_free(W);
  aptq_free(Q);
  aptq_free(codes);
  aptq_free(scales);
  aptq_free(zeros);
  aptq_free(chunk_loss);
  MPI_Finalize();
  return 0;
}
