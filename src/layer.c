/* aptq layer: re-solve one layer. Input HDF5: W (rows × cols) and H
 * (cols × cols). The factor is computed on all ranks (ScaLAPACK or LAPACK),
 * the rows are solved in slabs across the ranks, and the output HDF5 holds Q
 * (dequantized), codes, scales, zeros, g_idx and the layer error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "hessian.h"
#include "model.h"
#include "hessian_stream.h"
#include "gptq.h"
#include "outpath.h"
#include "qfile.h"
#include "quant.h"
#include "tokens.h"

GptqParams gptq_params_from_options(const Options *o) {
  GptqParams p = {o->bits,
                  o->group_size,
                  o->sym,
                  o->act_order,
                  o->static_groups,
                  o->mse,
                  o->block_size,
                  o->damp,
                  !strcmp(o->factor, "lapack")      ? FACTOR_LAPACK
                  : !strcmp(o->factor, "scalapack") ? FACTOR_SCALAPACK
                                                    : FACTOR_AUTO,
                  !strcmp(o->factor_algorithm, "potri") ? FACTOR_POTRI : FACTOR_TRTRI,
                  o->nb};
  return p;
}

int gptq_hessian_scattered(const Options *o, int g, int d, int size) {
  int aptq = !strcmp(o->method, "aptq"), kron_reads_whole = aptq && (!strcmp(o->q_form, "kron") || !strcmp(o->k_form, "kron"));
  return strcmp(o->hessian_reduce, "allreduce") && factor_uses_scalapack(gptq_params_from_options(o).factor_path, d, size) &&
         !(g == 0 && kron_reads_whole);
}

int gptq_hessian_streamed(const Options *o, int g, int d, int size) {
  if (!gptq_hessian_scattered(o, g, d, size)) return 0;
  if (!strcmp(o->hessian_reduce, "stream")) return 1;
  if (strcmp(o->hessian_reduce, "auto") || d <= HESS_PANEL_MIN) return 0;
  /* auto: where it holds less than the partial sum and its float32 panel,
   * counting (with act-order) the all-to-all into the factor's order: pairs
   * of 16 bytes for the upper triangle, sent and received */
  double dd = d, partial = dd * dd * sizeof(double) + dd * hessian_panel_width(d) * sizeof(float);
  double stream = hstream_bytes(d, o->nb, o->seqlen, o->stream_tokens, size) + (o->act_order ? 2 * 16 * dd * (dd + 1) / 2 / size : 0);
  return stream < partial;
}

int gptq_layer_shares_factor(const Options *o, int k) {
  if (strcmp(o->method, "aptq")) return 1;
  if (k == LIN_Q) return !strcmp(o->q_form, "gptq");
  if (k == LIN_K) return !strcmp(o->k_form, "gptq");
  if (k == LIN_V) return !strcmp(o->v_form, "gptq");
  return 1;
}

static int check_hessian(const double *H, int d, const char *path) {
  for (int i = 0; i < d; i++)
    for (int j = 0; j < d; j++) {
      double a = H[(size_t)i * d + j], b = H[(size_t)j * d + i];
      if (!isfinite(a)) return aptq_error("%s: H[%d][%d] is not finite", path, i, j);
      if (fabs(a - b) > 1e-6 * (fabs(a) + fabs(b)) + 1e-300)
        return aptq_error("%s: H is not symmetric (H[%d][%d] = %g, H[%d][%d] = %g)", path, i, j, a, j, i, b);
    }
  for (int i = 0; i < d; i++)
    if (H[(size_t)i * d + i] < 0)
      return aptq_error("%s: H[%d][%d] = %g is negative; H must be positive semidefinite", path, i, i, H[(size_t)i * d + i]);
  return 0;
}

int cmd_layer(const Options *o, MPI_Comm comm) {
  quant_set_fp16_scales(!strcmp(o->scale_dtype, "fp16"));
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double t0 = MPI_Wtime();
  CHECK(aptq_agree(comm, options_require(o, "input") || options_require(o, "output")));
  CHECK(output_check(o->output, "output", o->overwrite, comm));
  int rows = 0, cols = 0, hr = 0, hc = 0;
  int rc = h5_read_matrix(o->input, "W", H5T_NATIVE_FLOAT, 0, 0, &rows, &cols, NULL, comm);
  if (!rc) rc = h5_read_matrix(o->input, "H", H5T_NATIVE_DOUBLE, 0, 0, &hr, &hc, NULL, comm);
  if (!rc && (hr != cols || hc != cols))
    rc = aptq_error("%s: H is %d x %d but W has %d columns; H must be cols x cols", o->input, hr, hc, cols);
  int kron = !strcmp(o->hessian_form, "kron"), dh = 0, nout = 0, oc = 0;
  if (!rc && kron) {
    /* H_out: [dh][dh] shared by every head, or [heads · dh][dh] one per head */
    rc = h5_read_matrix(o->input, "H_out", H5T_NATIVE_DOUBLE, 0, 0, &nout, &oc, NULL, comm);
    if (!rc) {
      dh = oc;
      if (nout % dh || rows % dh || (nout != dh && nout != rows))
        rc = aptq_error("%s: H_out is %d x %d; it must be dh x dh or (rows/dh · dh) x dh with dh dividing the %d rows of W", o->input, nout,
                        oc, rows);
    }
  }
  CHECK(aptq_agree(comm, rc));
  int r0, n;
  if (kron) {
    int h0, nh;
    shard_range(rows / dh, size, rank, &h0, &nh); /* whole heads per rank */
    r0 = h0 * dh;
    n = nh * dh;
  } else gptq_row_range(rows, size, rank, &r0, &n);
  int ng = quant_ngroups(cols, o->group_size);
  double *H = aptq_malloc(sizeof(double) * (size_t)cols * cols, "H");
  float *W = aptq_malloc(sizeof(float) * ((size_t)n * cols + 1), "W");
  float *Q = aptq_malloc(sizeof(float) * ((size_t)n * cols + 1), "Q");
  uint8_t *codes = aptq_malloc((size_t)n * cols + 1, "codes");
  int32_t *codes32 = aptq_malloc(sizeof(int32_t) * ((size_t)n * cols + 1), "codes");
  float *scales = aptq_malloc(sizeof(float) * ((size_t)n * ng + 1), "scales");
  int32_t *zeros = aptq_malloc(sizeof(int32_t) * ((size_t)n * ng + 1), "zeros");
  rc = !H || !W || !Q || !codes || !codes32 || !scales || !zeros;
  if (!rc) rc = h5_read_matrix(o->input, "H", H5T_NATIVE_DOUBLE, 0, cols, &hr, &hc, H, comm);
  if (!rc) rc = h5_read_matrix(o->input, "W", H5T_NATIVE_FLOAT, r0, r0 + n, &rows, &cols, W, comm);
  for (size_t i = 0; !rc && i < (size_t)n * cols; i++)
    if (!isfinite(W[i])) rc = aptq_error("%s: W holds a non-finite value at row %zu", o->input, r0 + i / cols);
  if (!rc) rc = check_hessian(H, cols, o->input);
  CHECK(aptq_agree(comm, rc));
  double t_read = MPI_Wtime();

  GptqParams p = gptq_params_from_options(o);
  GptqLayer L;
  CHECK(gptq_prepare(H, cols, &p, comm, &L));
  double t_factor = MPI_Wtime(), loss = 0.0, damp_out = 0.0;
  if (kron) {
    int nh = n / dh, heads = rows / dh;
    double *Hout = aptq_malloc(sizeof(double) * (size_t)nout * dh, "H_out");
    float *Uo = aptq_malloc(sizeof(float) * ((size_t)nh * dh * dh + 1), "output factors");
    const float **Uh = malloc(sizeof(float *) * (size_t)(nh + 1));
    double *losses = aptq_calloc((size_t)heads, sizeof(double), "losses");
    rc = !Hout || !Uo || !Uh || !losses;
    if (!rc) rc = h5_read_matrix(o->input, "H_out", H5T_NATIVE_DOUBLE, 0, nout, &nout, &oc, Hout, comm);
    for (int i = 0; !rc && i < nh; i++) {
      const double *Hh = nout == dh ? Hout : Hout + (size_t)(r0 / dh + i) * dh * dh;
      rc = check_hessian(Hh, dh, o->input) || gptq_output_factor(Hh, dh, o->damp, Uo + (size_t)i * dh * dh, &damp_out);
      Uh[i] = Uo + (size_t)i * dh * dh;
    }
    if (!rc) rc = gptq_solve_kron(&L, &p, Uh, dh, W, nh, codes, Q, scales, zeros, losses + r0 / dh);
    CHECK(aptq_agree(comm, rc));
    /* heads in order, whatever the rank count */
    int *counts = malloc(sizeof(int) * (size_t)size), *displs = malloc(sizeof(int) * (size_t)size);
    for (int r = 0; r < size; r++) shard_range(heads, size, r, &displs[r], &counts[r]);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, losses, counts, displs, MPI_DOUBLE, comm);
    for (int i = 0; i < heads; i++) loss += losses[i];
    free(counts);
    free(displs);
    free(Hout);
    free(Uo);
    free(Uh);
    free(losses);
  } else {
    double *chunk_loss = aptq_calloc((size_t)n / GPTQ_ROW_CHUNK + 1, sizeof(double), "losses");
    CHECK(aptq_agree(comm, !chunk_loss || gptq_solve(&L, &p, W, n, codes, Q, scales, zeros, chunk_loss)));
    loss = gptq_layer_loss(chunk_loss, rows, comm);
    free(chunk_loss);
  }
  double t_solve = MPI_Wtime();
  for (size_t i = 0; i < (size_t)n * cols; i++) codes32[i] = codes[i];

  QFileWriter w;
  CHECK(qfile_create(&w, o->output, comm));
  if (qfile_attr_string(&w, "/", "format", "aptq-layer-solve") || qfile_attr_string(&w, "/", "aptq_version", APTQ_VERSION) ||
      qfile_attr_double(&w, "/", "error", loss) || qfile_attr_double(&w, "/", "damp_used", L.factor.damp_used) ||
      qfile_attr_int(&w, "/", "damp_retries", L.factor.retries) || qfile_attr_int(&w, "/", "bits", o->bits) ||
      qfile_attr_int(&w, "/", "group_size", o->group_size) || qfile_attr_int(&w, "/", "act_order", o->act_order) ||
      qfile_attr_int(&w, "/", "sym", o->sym) || qfile_attr_int(&w, "/", "static_groups", o->static_groups) ||
      qfile_attr_int(&w, "/", "mse", o->mse) || qfile_attr_int(&w, "/", "block_size", o->block_size) ||
      qfile_attr_string(&w, "/", "hessian_form", kron ? "kron" : "gptq") || qfile_attr_double(&w, "/", "damp_out", damp_out) ||
      qfile_attr_string(&w, "/", "factor", L.factor.used_scalapack ? "scalapack" : "lapack") ||
      qfile_write_matrix(&w, "/", "Q", H5T_NATIVE_FLOAT, rows, cols, r0, r0 + n, Q) ||
      qfile_write_matrix(&w, "/", "codes", H5T_NATIVE_INT32, rows, cols, r0, r0 + n, codes32) ||
      qfile_write_matrix(&w, "/", "scales", H5T_NATIVE_FLOAT, rows, ng, r0, r0 + n, scales) ||
      qfile_write_matrix(&w, "/", "zeros", H5T_NATIVE_INT32, rows, ng, r0, r0 + n, zeros) ||
      qfile_write_vector(&w, "/", "g_idx", H5T_NATIVE_INT32, cols, rank == 0, L.g_idx))
    aptq_fatal(comm);
  CHECK(qfile_commit(&w));
  double t_end = MPI_Wtime();
  if (rank == 0) {
    printf("aptq layer: %d x %d, %d bits, group_size %d, act_order %s, sym %s%s%s\n", rows, cols, o->bits, o->group_size,
           o->act_order ? "yes" : "no", o->sym ? "yes" : "no", o->static_groups ? ", static groups" : "", o->mse ? ", mse grid" : "");
    if (kron) printf("  form    : Kronecker H x H_out, %d heads of %d rows, head-wise simultaneous quantization\n", rows / dh, dh);
    printf("  factor  : %s%s, %d x %d grid, damp %g%s\n", L.factor.used_scalapack ? "ScaLAPACK" : "LAPACK",
           L.factor.used_scalapack ? "" : " (every rank)", L.factor.nprow, L.factor.npcol, L.factor.damp_used,
           L.factor.retries ? " (raised: the factorization failed at the requested damping)" : "");
    if (L.factor.retries)
      printf("aptq layer: warning: damping raised from %g to %g after %d failed factorization(s)\n", L.factor.damp_requested,
             L.factor.damp_used, L.factor.retries);
    printf("  time    : read %.3f s, factor %.3f s, solve %.3f s on %d ranks, write %.3f s\n", t_read - t0, t_factor - t_read,
           t_solve - t_factor, size, t_end - t_solve);
    printf("error: %.9g\n", loss);
    fflush(stdout);
  }
  free(H);
  free(W);
  free(Q);
  free(codes);
  free(codes32);
  free(scales);
  free(zeros);
  gptq_layer_free(&L);
  return 0;
}
