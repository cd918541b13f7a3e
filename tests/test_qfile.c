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

enum { ROWS = 37, COLS = 96 };                                               /* rows not divisible by the rank count */
static const int bit_list[4] = {2, 3, 4, 8}, group_list[4] = {0, 32, 40, 0}; /* 40: a partial last group */

/* This rank's slab of each test layer, RTN-quantized and written collectively. */
static void write_layers(QFileWriter *w, const float *W, int rank, int size) {
  int r0, n;
  shard_range(ROWS, size, rank, &r0, &n);
  for (int t = 0; t < 4; t++) {
    int bits = bit_list[t], gs = group_list[t], wpr = quant_words_per_row(COLS, bits);
    QLayerBuffers b;
    uint8_t *codes = TEST_MALLOC((size_t)n * COLS + 1);
    if (qlayer_buffers_alloc(&b, n, COLS, bits, gs)) test_alloc_check(NULL);
    double e = 0;
    quant_rtn(W + (size_t)r0 * COLS, n, COLS, gs, bits, t == 3, codes, b.scales, b.zeros, &e);
    for (int i = 0; i < n; i++) quant_pack_row(codes + (size_t)i * COLS, COLS, bits, b.qweight + (size_t)i * wpr);
    for (int j = 0; j < COLS; j++) b.g_idx[j] = gs ? j / gs : 0;
    char name[64];
    snprintf(name, sizeof name, "test.layer%d", t);
    QLayerSlab slab = {name, ROWS, COLS, bits, gs, t == 3, r0, r0 + n, b.qweight, b.scales, b.zeros, b.g_idx};
    if (qfile_write_layer(w, &slab)) {
      printf("rank %d: %s\n", rank, aptq_error_message());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    aptq_free(codes);
    qlayer_buffers_free(&b);
  }
}

/* Every test layer read back whole against the serial RTN of all of W (the
 * reference); then a wrong shape and a missing layer. Returns failures. */
static int check_read_back(QFileReader *r, const float *W, float *back, int rank) {
  int failures = 0;
  for (int t = 0; t < 4; t++) {
    int bits = bit_list[t], gs = group_list[t], ng = quant_ngroups(COLS, gs);
    char name[64];
    snprintf(name, sizeof name, "test.layer%d", t);
    if (qfile_read_linear(r, name, ROWS, COLS, back)) {
      printf("%s\n", aptq_error_message());
      failures++;
      continue;
    }
    uint8_t *codes = TEST_MALLOC((size_t)ROWS * COLS);
    float *scales = TEST_MALLOC(sizeof(float) * ROWS * ng);
    int32_t *zeros = TEST_MALLOC(sizeof(int32_t) * ROWS * ng);
    double e = 0;
    quant_rtn(W, ROWS, COLS, gs, bits, t == 3, codes, scales, zeros, &e);
    int bad = 0;
    for (int i = 0; i < ROWS; i++)
      for (int j = 0; j < COLS; j++) {
        int g = gs ? j / gs : 0;
        bad += back[i * COLS + j] != quant_dequant(codes[i * COLS + j], scales[i * ng + g], zeros[i * ng + g]);
      }
    if (bad) {
      printf("rank %d: layer %d: %d weights differ after read-back\n", rank, t, bad);
      failures++;
    }
    aptq_free(codes);
    aptq_free(scales);
    aptq_free(zeros);
  }
  int rc = qfile_read_linear(r, "test.layer0", ROWS + 1, COLS, back);
  if (!rc || !strstr(aptq_error_message(), "wrong model")) {
    printf("shape mismatch not detected\n");
    failures++;
  }
  aptq_clear_error();
  rc = qfile_read_linear(r, "no.such.layer", ROWS, COLS, back);
  if (!rc || !strstr(aptq_error_message(), "missing")) {
    printf("missing layer not detected\n");
    failures++;
  }
  return failures;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size, failures = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  char path[256];
  int pid = (int)getpid();
  MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);
  snprintf(path, sizeof path, "/tmp/aptq-test-qfile-%d.h5", pid);

  float *W = TEST_MALLOC(sizeof(float) * ROWS * COLS), *back = TEST_MALLOC(sizeof(float) * ROWS * COLS);
  Rng rng = {42};
  for (int i = 0; i < ROWS * COLS; i++) W[i] = (float)rng_normal(&rng);

  Model m;
  memset(&m, 0, sizeof m);
  snprintf(m.fingerprint, sizeof m.fingerprint, "%064d", 0);
  snprintf(m.source, sizeof m.source, "unit-test");
  Options o;
  char *none[] = {"--bits=4"};
  options_parse(&o, 1, none);

  QFileWriter w;
  if (qfile_create(&w, path, "output", 1, MPI_COMM_WORLD)) MPI_Abort(MPI_COMM_WORLD, 1);
  write_layers(&w, W, rank, size);
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
  failures += check_read_back(&r, W, back, rank);
  qfile_close(&r);

  MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    unlink(path);
    printf("qfile round trip at %d ranks: %s\n", size, failures ? "FAILED" : "PASSED");
  }
  aptq_free(W);
  aptq_free(back);
  MPI_Finalize();
  return failures != 0;
}
