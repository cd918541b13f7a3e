/* HDF5 write/read-back across ranks: each rank writes its row slab of a
 * layer collectively; every rank reads the whole layer back and gets the
 * dequantized weights it would compute itself. Run at 1, 2 and 4 ranks. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"
#include "qfile.h"
#include "quant.h"
#include "rng.h"
#include "tokens.h"

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size, failures = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  char path[256];
  int pid = (int)getpid();
  MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);
  snprintf(path, sizeof path, "/tmp/aptq-test-qfile-%d.h5", pid);

  const int rows = 37, cols = 96;                                       /* rows not divisible by the rank count */
  const int bit_list[4] = {2, 3, 4, 8}, group_list[4] = {0, 32, 40, 0}; /* 40: a partial last group */
  float *W = TEST_MALLOC(sizeof(float) * rows * cols), *back = TEST_MALLOC(sizeof(float) * rows * cols);
  Rng rng = {42};
  for (int i = 0; i < rows * cols; i++) W[i] = (float)rng_normal(&rng);

  Model m;
  memset(&m, 0, sizeof m);
  snprintf(m.fingerprint, sizeof m.fingerprint, "%064d", 0);
  snprintf(m.source, sizeof m.source, "unit-test");
  Options o;
  char *none[] = {"--bits=4"};
  options_parse(&o, 1, none);

  QFileWriter w;
  if (qfile_create(&w, path, MPI_COMM_WORLD)) MPI_Abort(MPI_COMM_WORLD, 1);
  int r0, n;
  shard_range(rows, size, rank, &r0, &n);
  for (int t = 0; t < 4; t++) {
    int bits = bit_list[t], gs = group_list[t], ng = quant_ngroups(cols, gs), wpr = quant_words_per_row(cols, bits);
    uint8_t *codes = TEST_MALLOC((size_t)n * cols + 1);
    uint32_t *packed = TEST_MALLOC(sizeof(uint32_t) * ((size_t)n * wpr + 1));
    float *scales = TEST_MALLOC(sizeof(float) * ((size_t)n * ng + 1));
    int32_t *zeros = TEST_MALLOC(sizeof(int32_t) * ((size_t)n * ng + 1)), g_idx[96];
    double e = 0;
    quant_rtn(W + (size_t)r0 * cols, n, cols, gs, bits, t == 3, codes, scales, zeros, &e);
    for (int i = 0; i < n; i++) quant_pack_row(codes + (size_t)i * cols, cols, bits, packed + (size_t)i * wpr);
    for (int j = 0; j < cols; j++) g_idx[j] = gs ? j / gs : 0;
    char name[64];
    snprintf(name, sizeof name, "test.layer%d", t);
    QLayerSlab slab = {name, rows, cols, bits, gs, t == 3, r0, r0 + n, packed, scales, zeros, g_idx};
    if (qfile_write_layer(&w, &slab)) {
      printf("rank %d: %s\n", rank, aptq_error_message());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    free(codes);
    free(packed);
    free(scales);
    free(zeros);
  }
  if (qfile_write_metadata(&w, &o, &m, NULL, "rtn") || qfile_commit(&w)) MPI_Abort(MPI_COMM_WORLD, 1);
  if (access(w.tmp, F_OK) == 0) {
    printf("temporary file %s survived the commit\n", w.tmp);
    failures++;
  }

  QFileReader r;
  if (qfile_open(&r, path, MPI_COMM_WORLD)) {
    printf("%s\n", aptq_error_message());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  for (int t = 0; t < 4; t++) {
    int bits = bit_list[t], gs = group_list[t], ng = quant_ngroups(cols, gs);
    char name[64];
    snprintf(name, sizeof name, "test.layer%d", t);
    if (qfile_read_linear(&r, name, rows, cols, back)) {
      printf("%s\n", aptq_error_message());
      failures++;
      continue;
    }
    /* the serial quantization of the whole matrix is the reference */
    uint8_t *codes = TEST_MALLOC((size_t)rows * cols);
    float *scales = TEST_MALLOC(sizeof(float) * rows * ng);
    int32_t *zeros = TEST_MALLOC(sizeof(int32_t) * rows * ng);
    double e = 0;
    quant_rtn(W, rows, cols, gs, bits, t == 3, codes, scales, zeros, &e);
    int bad = 0;
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++) {
        int g = gs ? j / gs : 0;
        bad += back[i * cols + j] != quant_dequant(codes[i * cols + j], scales[i * ng + g], zeros[i * ng + g]);
      }
    if (bad) {
      printf("rank %d: layer %d: %d weights differ after read-back\n", rank, t, bad);
      failures++;
    }
    free(codes);
    free(scales);
    free(zeros);
  }
  int rc = qfile_read_linear(&r, "test.layer0", rows + 1, cols, back);
  if (!rc || !strstr(aptq_error_message(), "wrong model")) {
    printf("shape mismatch not detected\n");
    failures++;
  }
  aptq_clear_error();
  rc = qfile_read_linear(&r, "no.such.layer", rows, cols, back);
  if (!rc || !strstr(aptq_error_message(), "missing")) {
    printf("missing layer not detected\n");
    failures++;
  }
  qfile_close(&r);

  MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    unlink(path);
    printf("qfile round trip at %d ranks: %s\n", size, failures ? "FAILED" : "PASSED");
  }
  free(W);
  free(back);
  MPI_Finalize();
  return failures != 0;
}
