/* aptq quantize: the whole data path from checkpoint to quantized HDF5.
 * method=rtn: every linear layer is split into row slabs over the ranks;
 * each rank converts, quantizes and packs its slab and all ranks write
 * their slabs collectively into one file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "model.h"
#include "outpath.h"
#include "qfile.h"
#include "quant.h"
#include "report.h"
#include "tokens.h"

typedef struct {
  double err2, norm2; /* Σ (w − q)², Σ w² over the layer */
} LayerError;

/* GPTQ semantics: a group_size that does not divide a layer's width leaves
 * a narrower last group. Say so, since exporters may expect equal groups. */
static void note_partial_groups(const Model *m, int group_size) {
  if (!group_size) return;
  for (int k = 0; k < LIN_COUNT; k++) {
    const TensorRef *t = &m->linear[0][k];
    if (t->cols % group_size)
      printf("aptq quantize: note: group_size %d leaves a last group of %lld columns in %s (%lld columns)\n", group_size,
             (long long)(t->cols % group_size), linear_names[k], (long long)t->cols);
  }
}

/* RTN of rows [r0, r1) of one layer, written collectively. */
static int rtn_layer(QFileWriter *qw, const Options *o, const TensorRef *t, const char *name, int r0, int r1, LayerError *e) {
  int rows = (int)t->rows, cols = (int)t->cols, n = r1 - r0;
  int ng = quant_ngroups(cols, o->group_size), wpr = quant_words_per_row(cols, o->bits);
  float *W = aptq_malloc(sizeof(float) * ((size_t)n * cols + 1), "weight slab");
  uint8_t *codes = aptq_malloc((size_t)n * cols + 1, "codes");
  uint32_t *packed = aptq_malloc(sizeof(uint32_t) * ((size_t)n * wpr + 1), "packed codes");
  float *scales = aptq_malloc(sizeof(float) * ((size_t)n * ng + 1), "scales");
  int32_t *zeros = aptq_malloc(sizeof(int32_t) * ((size_t)n * ng + 1), "zeros");
  int32_t *g_idx = aptq_malloc(sizeof(int32_t) * (size_t)cols, "g_idx");
  int rc = (!W || !codes || !packed || !scales || !zeros || !g_idx) ? APTQ_ERR : 0;
  if (!rc) rc = tensor_rows_f32(t, r0, r1, W);
  if (!rc) {
    quant_rtn(W, n, cols, o->group_size, o->bits, o->sym, codes, scales, zeros, &e->err2);
    for (size_t i = 0; i < (size_t)n * cols; i++) e->norm2 += (double)W[i] * W[i];
    for (int i = 0; i < n; i++) quant_pack_row(codes + (size_t)i * cols, cols, o->bits, packed + (size_t)i * wpr);
    for (int j = 0; j < cols; j++) g_idx[j] = o->group_size ? j / o->group_size : 0;
    QLayerSlab slab = {name, rows, cols, o->bits, o->group_size, o->sym, r0, r1, packed, scales, zeros, g_idx};
    rc = qfile_write_layer(qw, &slab);
  }
  free(W); free(codes); free(packed); free(scales); free(zeros); free(g_idx);
  return rc;
}

int cmd_quantize(const Options *o, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double t_start = MPI_Wtime();
  int rc = options_require(o, "model") || options_require(o, "output");
  CHECK(aptq_agree(comm, rc));
  CHECK(output_check(o->output, "output", o->overwrite, comm));
  if (o->report[0]) CHECK(output_check(o->report, "report", 1, comm));

  Model m;
  CHECK(aptq_agree(comm, model_open(o->model, &m)));
  if (rank == 0) note_partial_groups(&m, o->group_size);
  CHECK(model_fingerprint(&m, comm));
  /* RTN needs no calibration data; when given it is validated and its hash recorded */
  TokenShard calib = {0};
  if (o->calib[0]) {
    CHECK(aptq_agree(comm, options_require(o, "nseq")));
    CHECK(tokens_load(o->calib, "calib", o->seqlen, o->nseq, m.cfg.vocab_size, comm, &calib));
  }
  double t_loaded = MPI_Wtime();

  QFileWriter qw;
  CHECK(qfile_create(&qw, o->output, comm));
  const ModelConfig *c = &m.cfg;
  int nlayers = c->n_layers * LIN_COUNT;
  LayerError *err = aptq_calloc((size_t)nlayers, sizeof *err, "layer errors");
  if (!err) aptq_fatal(comm);
  for (int l = 0; l < c->n_layers; l++) {
    for (int k = 0; k < LIN_COUNT; k++) {
      const TensorRef *t = &m.linear[l][k];
      char name[256];
      linear_layer_name(l, k, name, sizeof name);
      int r0, n;
      shard_range((int)t->rows, size, rank, &r0, &n);
      if (rtn_layer(&qw, o, t, name, r0, r0 + n, &err[l * LIN_COUNT + k])) aptq_fatal(comm);
    }
    if (rank == 0) {
      printf("aptq quantize: block %d of %d done, %.1f s elapsed\n", l + 1, c->n_layers, MPI_Wtime() - t_start);
      fflush(stdout);
    }
  }
  MPI_Allreduce(MPI_IN_PLACE, err, 2 * nlayers, MPI_DOUBLE, MPI_SUM, comm);
  if (qfile_write_metadata(&qw, o, &m, o->calib[0] ? calib.sha256 : NULL, o->method)) aptq_fatal(comm);
  double t_solved = MPI_Wtime();
  if (qfile_attr_double(&qw, "/meta", "seconds_quantize", t_solved - t_loaded)) aptq_fatal(comm);
  CHECK(qfile_commit(&qw));
  double t_end = MPI_Wtime();

  double total_err = 0, total_norm = 0;
  long long params = 0;
  for (int i = 0; i < nlayers; i++) { total_err += err[i].err2; total_norm += err[i].norm2; }
  for (int l = 0; l < c->n_layers; l++)
    for (int k = 0; k < LIN_COUNT; k++) params += m.linear[l][k].rows * m.linear[l][k].cols;
  if (rank == 0) {
    printf("aptq quantize: method %s, %d bits, group_size %d%s, %d ranks\n", o->method, o->bits, o->group_size, o->sym ? ", symmetric" : "", size);
    printf("  layers           : %d linear layers, %lld parameters\n", nlayers, params);
    printf("  relative error   : ||W-Q||/||W|| = %.6f over all layers\n", total_norm > 0 ? sqrt(total_err / total_norm) : 0.0);
    printf("  time             : load %.2f s, quantize+write %.2f s, total %.2f s\n", t_loaded - t_start, t_end - t_loaded, t_end - t_start);
    printf("  output           : %s\n", o->output);
    fflush(stdout);
  }
  Report rep;
  rc = report_open(&rep, o->report, rank);
  report_str(&rep, "command", "quantize");
  report_str(&rep, "method", o->method);
  report_int(&rep, "bits", o->bits);
  report_int(&rep, "group_size", o->group_size);
  report_int(&rep, "sym", o->sym);
  report_str(&rep, "model", o->model);
  report_str(&rep, "model_fingerprint", m.fingerprint);
  report_str(&rep, "calib_sha256", o->calib[0] ? calib.sha256 : "");
  report_str(&rep, "output", o->output);
  report_int(&rep, "ranks", size);
  report_int(&rep, "parameters", params);
  report_num(&rep, "average_bits", (double)o->bits);
  report_num(&rep, "relative_error", total_norm > 0 ? sqrt(total_err / total_norm) : 0.0);
  report_num(&rep, "seconds", t_end - t_start);
  report_begin(&rep, "phase_seconds", '{');
  report_num(&rep, "load", t_loaded - t_start);
  report_num(&rep, "quantize_write", t_end - t_loaded);
  report_end(&rep, '}');
  report_begin(&rep, "layers", '[');
  for (int l = 0; l < c->n_layers; l++)
    for (int k = 0; k < LIN_COUNT; k++) {
      char name[256];
      linear_layer_name(l, k, name, sizeof name);
      const LayerError *e = &err[l * LIN_COUNT + k];
      report_begin(&rep, NULL, '{');
      report_str(&rep, "name", name);
      report_int(&rep, "bits", o->bits);
      report_num(&rep, "relative_error", e->norm2 > 0 ? sqrt(e->err2 / e->norm2) : 0.0);
      report_end(&rep, '}');
    }
  report_end(&rep, ']');
  if (!rc) rc = report_close(&rep);
  rc = aptq_agree(comm, rc);
  free(err);
  tokens_free(&calib);
  model_close(&m);
  return rc;
}
