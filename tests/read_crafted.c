/* The readers on crafted files (issue 13; tests/cases/bad_crafted_*.case,
 * files from tests/craft_h5.py), many files in one process:
 *   read_crafted qfile MODEL FILE...   qfile_open_model, then every layer
 *                                      read as aptq eval reads them
 *   read_crafted layer FILE...         the W and H of aptq layer
 * Prints one line per file: "NAME: read" or "NAME: <the error message>",
 * the file's path shown as its base name, the files in strcmp order. Run
 * on one rank. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "h5read.h"
#include "model.h"
#include "qfile.h"

static int read_qfile(const char *path, const Model *m, float *W) {
  QFileReader r;
  CHECK(qfile_open_model(&r, path, m, MPI_COMM_SELF));
  int rc = 0;
  for (int l = 0; !rc && l < m->cfg.n_layers; l++)
    for (int k = 0; !rc && k < LIN_COUNT; k++) {
      char name[256];
      linear_layer_name(l, k, name, sizeof name);
      rc = qfile_read_linear(&r, name, (int)m->linear[l][k].rows, (int)m->linear[l][k].cols, W);
    }
  qfile_close(&r);
  return rc;
}

static int read_layer(const char *path) {
  H5Src s = {"aptq layer input", path, "give W and H"};
  int rows, cols, hr, hc;
  CHECK(h5_matrix_shape(&s, "/W", &rows, &cols, MPI_COMM_SELF));
  CHECK(h5_matrix_shape(&s, "/H", &hr, &hc, MPI_COMM_SELF));
  float *W = malloc(sizeof(float) * (size_t)rows * cols);
  double *H = malloc(sizeof(double) * (size_t)hr * hc);
  int rc = h5_read_matrix(&s, "/W", H5T_NATIVE_FLOAT, rows, cols, 0, rows, W, MPI_COMM_SELF) ||
           h5_read_matrix(&s, "/H", H5T_NATIVE_DOUBLE, hr, hc, 0, hr, H, MPI_COMM_SELF);
  free(W);
  free(H);
  return rc;
}

/* msg with every occurrence of path replaced by its base name */
static void print_result(const char *path, int rc) {
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  printf("%s: ", base);
  if (!rc) {
    printf("read\n");
    return;
  }
  const char *msg = aptq_error_message();
  size_t n = strlen(path);
  for (const char *p = msg; *p;)
    if (!strncmp(p, path, n)) {
      fputs(base, stdout);
      p += n;
    } else putchar(*p++);
  putchar('\n');
  aptq_clear_error();
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int qfile = argc > 2 && !strcmp(argv[1], "qfile"), first = qfile ? 3 : 2;
  if (argc < 3 || (!qfile && strcmp(argv[1], "layer"))) {
    fprintf(stderr, "usage: read_crafted qfile MODEL FILE... | layer FILE...\n");
    MPI_Finalize();
    return 2;
  }
  qsort(argv + first, (size_t)(argc - first), sizeof *argv, by_name); /* whatever order the shell's glob gave */
  Model m;
  float *W = NULL;
  if (qfile) {
    if (model_open(argv[2], &m) || model_fingerprint(&m, MPI_COMM_SELF)) {
      fprintf(stderr, "%s\n", aptq_error_message());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    W = malloc(sizeof(float) * (size_t)m.cfg.hidden_dim * m.cfg.dim);
  }
  for (int i = first; i < argc; i++) print_result(argv[i], qfile ? read_qfile(argv[i], &m, W) : read_layer(argv[i]));
  free(W);
  if (qfile) model_close(&m);
  fflush(stdout);
  MPI_Finalize();
  return 0;
}
