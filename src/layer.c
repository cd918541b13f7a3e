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
#include "h5read.h"
#include "hessian.h"
#include "model.h"
#include "hessian_stream.h"
#include "gptq.h"
#include "ksearch.h"
#include "outpath.h"
#include "plan.h"
#include "qfile.h"
#include "quant.h"
#include "rowdeal.h"
#include "solve.h"
#include "tokens.h"

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

/* A power of 4 that brings the mean of the nonzero diagonal of the n × d
 * matrix H (stacked d × d blocks; n = d for one) into [2^-64, 2^64]: 1 when
 * it is there already. The solve is in float32, whose range H's factor
 * would leave from about 1e±76 on; scaled by 4^k the factor is exactly
 * 2^-k times the unscaled one (power-of-two scaling commutes with IEEE
 * rounding), so the update W −= err/U_jj · U_j: and the codes are those of
 * the unscaled H, and the loss is the scaled one divided by 4^k. An H
 * whose diagonal is all 0 (every column dead) is left as it is. Dead
 * columns keep gptq.py's unit diagonal in the rescaled units, so with dead
 * columns the damping (and the codes) may differ in the last bits. */
static double hessian_scale(const double *H, int n, int d) {
  double sum = 0.0;
  int live = 0;
  for (int i = 0; i < n; i++) {
    double v = H[(size_t)i * d + i % d];
    if (v > 0.0) sum += v / n, live++; /* v / n: no overflow near DBL_MAX */
  }
  double mean = live ? sum * n / live : 0.0;
  if (mean == 0.0 || (mean >= 0x1p-64 && mean <= 0x1p64)) return 1.0;
  long k = -lround(log2(mean) / 2); /* |2k| ≤ 1000: 4^k stays a normal double even for a subnormal H */
  return ldexp(1.0, 2 * (int)(k < -500 ? -500 : k > 500 ? 500 : k));
}

static double scale_hessian(double *H, int n, int d) {
  double c = hessian_scale(H, n, d);
  if (c != 1.0)
    for (size_t i = 0; i < (size_t)n * d; i++) H[i] *= c;
  return c;
}

/* One layer's solve: the input's shapes, this rank's rows and buffers. */
typedef struct {
  const Options *o;
  int rows, cols;
  int dh, nout;     /* kron: rows per head; rows of H_out (dh: one shared factor, rows: one per head) */
  RowDeal deal;     /* whole 64-row chunks, or whole heads (kron) per rank */
  int r0, n;        /* this rank's rows */
  double *H;        /* cols × cols */
  Slab s;           /* this rank's rows: W, Q, codes, scales, zeros; losses per chunk or head */
  int32_t *codes32; /* n × cols, the codes as written */
  GptqLayer L;
  double loss, damp_out;
  double scale, scale_out; /* H and H_out were multiplied by these (hessian_scale) */
} LayerJob;

/* The input file, for h5read's checks and messages. */
static H5Src layer_input(const Options *o) {
  return (H5Src){"aptq layer input", o->input, "give an HDF5 file with W (rows x cols) and H (cols x cols) stored in it as plain datasets"};
}

/* Collective: the input's shapes checked (H cols × cols; kron: H_out dh × dh
 * or (rows/dh · dh) × dh), the rows dealt. */
static int read_shapes(LayerJob *J, int kron, MPI_Comm comm) {
  const Options *o = J->o;
  int hr = 0, hc = 0, oc = 0;
  H5Src s = layer_input(o);
  int rc = h5_matrix_shape(&s, "/W", &J->rows, &J->cols, comm);
  if (!rc) rc = h5_matrix_shape(&s, "/H", &hr, &hc, comm);
  if (!rc && (hr != J->cols || hc != J->cols))
    rc = aptq_error("%s: H is %d x %d but W has %d columns; H must be cols x cols", o->input, hr, hc, J->cols);
  if (!rc && kron) {
    rc = h5_matrix_shape(&s, "/H_out", &J->nout, &oc, comm);
    J->dh = oc;
    if (!rc && (J->nout % J->dh || J->rows % J->dh || (J->nout != J->dh && J->nout != J->rows)))
      rc = aptq_error("%s: H_out is %d x %d; it must be dh x dh or (rows/dh · dh) x dh with dh dividing the %d rows of W", o->input,
                      J->nout, oc, J->rows);
  }
  CHECK(aptq_agree(comm, rc));
  CHECK(aptq_agree(comm, kron ? rowdeal_units(&J->deal, J->rows / J->dh, comm) : rowdeal_chunks(&J->deal, &J->rows, 1, comm)));
  int unit = kron ? J->dh : 1;
  J->r0 = J->deal.first[0] * unit;
  J->n = J->deal.count[0] * unit;
  return 0;
}

/* Collective: H and this rank's rows of W read and checked. */
static int read_layer(LayerJob *J, int kron, MPI_Comm comm) {
  const Options *o = J->o;
  CHECK(read_shapes(J, kron, comm));
  int cols = J->cols, n = J->n;
  H5Src s = layer_input(o);
  size_t nloss = kron ? (size_t)(J->rows / J->dh) : (size_t)n / GPTQ_ROW_CHUNK + 1;
  J->H = aptq_malloc(sizeof(double) * (size_t)cols * cols, "H");
  J->codes32 = aptq_malloc(sizeof(int32_t) * ((size_t)n * cols + 1), "codes");
  int rc = !J->H || !J->codes32 || slab_alloc(&J->s, (size_t)n, cols, quant_ngroups(cols, o->group_size), 1, nloss);
  if (!rc) rc = h5_read_matrix(&s, "/H", H5T_NATIVE_DOUBLE, cols, cols, 0, cols, J->H, comm);
  if (!rc) rc = h5_read_matrix(&s, "/W", H5T_NATIVE_FLOAT, J->rows, cols, J->r0, J->r0 + n, J->s.W, comm);
  for (size_t i = 0; !rc && i < (size_t)n * cols; i++)
    if (!isfinite(J->s.W[i])) rc = aptq_error("%s: W holds a non-finite value at row %zu", o->input, J->r0 + i / cols);
  if (!rc) rc = check_hessian(J->H, cols, o->input);
  if (!rc) J->scale = scale_hessian(J->H, cols, cols);
  return aptq_agree(comm, rc);
}

/* Collective: the Kronecker solve of this rank's heads, each with its
 * output factor; the loss summed over the heads in order. */
static int solve_kron_heads(LayerJob *J, const GptqParams *p, MPI_Comm comm) {
  const Options *o = J->o;
  int dh = J->dh, nh = J->n / dh, heads = J->rows / dh, h0 = J->r0 / dh;
  H5Src s = layer_input(o);
  double *Hout = aptq_malloc(sizeof(double) * (size_t)J->nout * dh, "H_out");
  float *Uo = aptq_malloc(sizeof(float) * ((size_t)nh * dh * dh + 1), "output factors");
  const float **Uh = aptq_malloc(sizeof(float *) * (size_t)(nh + 1), "output factors");
  int rc = !Hout || !Uo || !Uh;
  if (!rc) rc = h5_read_matrix(&s, "/H_out", H5T_NATIVE_DOUBLE, J->nout, dh, 0, J->nout, Hout, comm);
  for (int b = 0; !rc && b < J->nout / dh; b++) rc = check_hessian(Hout + (size_t)b * dh * dh, dh, o->input);
  if (!rc) J->scale_out = scale_hessian(Hout, J->nout, dh);
  for (int i = 0; !rc && i < nh; i++) {
    const double *Hh = J->nout == dh ? Hout : Hout + (size_t)(h0 + i) * dh * dh;
    rc = gptq_output_factor(Hh, dh, o->damp, Uo + (size_t)i * dh * dh, &J->damp_out);
    Uh[i] = Uo + (size_t)i * dh * dh;
  }
  if (!rc) rc = gptq_solve_kron(&J->L, p, Uh, dh, J->s.W, nh, J->s.codes, J->s.Q, J->s.scales, J->s.zeros, J->s.mins, J->s.loss + h0);
  aptq_free(Hout);
  aptq_free(Uo);
  aptq_free(Uh);
  CHECK(aptq_agree(comm, rc));
  rowdeal_allgather(&J->deal, 0, J->s.loss, 1, MPI_DOUBLE); /* heads in order, whatever the rank count */
  J->loss = 0;
  for (int i = 0; i < heads; i++) J->loss += J->s.loss[i];
  J->loss /= J->scale_out;
  return 0;
}

/* Collective: the solve's results are finite on every rank. A W whose
 * values reach the float32 limit (|w| near 3.4e38) makes a group's range,
 * and so its scale, overflow: refused rather than written. */
static int check_finite(const LayerJob *J, MPI_Comm comm) {
  int cols = J->cols, ng = quant_ngroups(cols, J->o->group_size), rc = 0;
  for (size_t i = 0; !rc && i < (size_t)J->n * cols; i++)
    if (!isfinite(J->s.Q[i]))
      rc = aptq_error(
          "%s: the solve gave a non-finite weight in row %zu (W's values overflow float32 arithmetic); nothing written: "
          "scale W down",
          J->o->input, J->r0 + i / cols);
  for (size_t i = 0; !rc && i < (size_t)J->n * ng; i++)
    if (!isfinite(J->s.scales[i]))
      rc = aptq_error("%s: the solve gave a non-finite scale in row %zu (W's range overflows float32); nothing written: scale W down",
                      J->o->input, J->r0 + i / ng);
  if (!rc && !isfinite(J->loss))
    rc = aptq_error("%s: the solve gave a non-finite error (W's range overflows float32); nothing written: scale W down", J->o->input);
  return aptq_agree(comm, rc);
}

/* Collective: the output file (docs/hdf5-schema.md, aptq-layer-solve). */
static int write_layer(const LayerJob *J, int kron, MPI_Comm comm) {
  const Options *o = J->o;
  int rank, rows = J->rows, cols = J->cols, r0 = J->r0, r1 = J->r0 + J->n, ng = quant_ngroups(cols, o->group_size);
  MPI_Comm_rank(comm, &rank);
  const FactorInfo *f = &J->L.factor;
  QFileWriter w;
  CHECK(qfile_create(&w, o->output, "output", o->overwrite, comm));
  if (qfile_attr_string(&w, "/", "format", "aptq-layer-solve") || qfile_attr_string(&w, "/", "aptq_version", APTQ_VERSION) ||
      qfile_attr_double(&w, "/", "error", J->loss) || qfile_attr_double(&w, "/", "damp_used", f->damp_used) ||
      qfile_attr_int(&w, "/", "damp_retries", f->retries) || qfile_attr_int(&w, "/", "bits", o->bits) ||
      qfile_attr_int(&w, "/", "group_size", o->group_size) || qfile_attr_int(&w, "/", "act_order", o->act_order) ||
      qfile_attr_int(&w, "/", "sym", o->sym) || qfile_attr_int(&w, "/", "static_groups", o->static_groups) ||
      qfile_attr_int(&w, "/", "mse", o->mse) || qfile_attr_int(&w, "/", "block_size", o->block_size) ||
      qfile_attr_string(&w, "/", "hessian_form", kron ? "kron" : "gptq") || qfile_attr_double(&w, "/", "damp_out", J->damp_out) ||
      qfile_attr_string(&w, "/", "factor",
                        f->used_scalapack ? "scalapack"
                        : f->node_threads ? "node"
                                          : "lapack") ||
      qfile_write_matrix(&w, "/", "Q", H5T_NATIVE_FLOAT, rows, cols, r0, r1, J->s.Q) ||
      qfile_write_matrix(&w, "/", "codes", H5T_NATIVE_INT32, rows, cols, r0, r1, J->codes32) ||
      qfile_write_matrix(&w, "/", "scales", H5T_NATIVE_FLOAT, rows, ng, r0, r1, J->s.scales) ||
      qfile_write_matrix(&w, "/", "zeros", H5T_NATIVE_INT32, rows, ng, r0, r1, J->s.zeros) ||
      qfile_write_vector(&w, "/", "g_idx", H5T_NATIVE_INT32, cols, rank == 0, J->L.g_idx) ||
      (J->s.mins && qfile_write_matrix(&w, "/", "mins", H5T_NATIVE_FLOAT, rows, ng, r0, r1, J->s.mins)))
    aptq_fatal(comm);
  return qfile_commit(&w);
}

/* Rank 0: what was solved, how, and the error. */
static void print_layer(const LayerJob *J, int kron, int size, const double *t) {
  const Options *o = J->o;
  const FactorInfo *f = &J->L.factor;
  printf("aptq layer: %d x %d, %d bits, group_size %d, act_order %s, sym %s%s%s\n", J->rows, J->cols, o->bits, o->group_size,
         o->act_order ? "yes" : "no", o->sym ? "yes" : "no", o->static_groups ? ", static groups" : "", o->mse ? ", mse grid" : "");
  if (kron) printf("  form    : Kronecker H x H_out, %d heads of %d rows, head-wise simultaneous quantization\n", J->rows / J->dh, J->dh);
  char where[64];
  if (f->node_threads) snprintf(where, sizeof where, " (each node's first rank, %d threads)", f->node_threads);
  else snprintf(where, sizeof where, "%s", f->used_scalapack ? "" : " (every rank)");
  printf("  factor  : %s%s, %d x %d grid, damp %g%s\n", f->used_scalapack ? "ScaLAPACK" : "LAPACK", where, f->nprow, f->npcol, f->damp_used,
         f->retries ? " (raised: the factorization failed at the requested damping)" : "");
  if (f->retries)
    printf("aptq layer: warning: damping raised from %g to %g after %d failed factorization(s)\n", f->damp_requested, f->damp_used,
           f->retries);
  printf("  time    : read %.3f s, factor %.3f s, solve %.3f s on %d ranks, write %.3f s\n", t[1] - t[0], t[2] - t[1], t[3] - t[2], size,
         t[4] - t[3]);
  printf("error: %.9g\n", J->loss);
  fflush(stdout);
}

static void layer_job_free(LayerJob *J) {
  rowdeal_free(&J->deal);
  slab_free(&J->s);
  aptq_free(J->H);
  aptq_free(J->codes32);
}

/* Read, factor, solve (rows dealt over the ranks), write, report. */
int cmd_layer(const Options *o, MPI_Comm comm) {
  Plan plan;
  plan_init(&plan, o);
  quant_set_fp16_scales(plan.fp16_scales);
  quant_set_fp16_mins(plan.fp16_mins);
  quant_set_kgrid(plan.kgrid_sc_max);
  quant_set_kgrid_mins(plan.kgrid_m_max);
  ksearch_set(plan.kgrid_search);
  ksearch_set_sym(plan.ksym_search);
  int rank, size, kron = plan.layer_kron;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double t[5] = {MPI_Wtime()}; /* start, read, factor, solve, write */
  CHECK(aptq_agree(comm, options_require(o, "input") || options_require(o, "output")));
  if (plan.ggml)
    CHECK(aptq_agree(comm, aptq_error("aptq layer solves one layer on one grid, but grid = ggml chooses each layer's type by mixed "
                                      "precision (quantize); give the layer's type: grid = q2_k, q3_k, q4_k, q5_k, q6_k or q8_0")));
  CHECK(output_check(o->output, "output", o->overwrite, o, comm));
  LayerJob J = {.o = o};
  int rc = read_layer(&J, kron, comm);
  t[1] = MPI_Wtime();
  GptqParams p = plan.gptq;
  if (!rc) rc = gptq_prepare(J.H, J.cols, &p, comm, &J.L);
  t[2] = MPI_Wtime();
  if (!rc && kron) rc = solve_kron_heads(&J, &p, comm);
  if (!rc && !kron) {
    GptqSlab slab = {&p, J.s.W, J.n, J.s.codes, J.s.Q, J.s.scales, J.s.zeros, J.s.loss, J.s.mins};
    rc = aptq_agree(comm, gptq_solve_slabs(&J.L, &slab, 1));
    if (!rc) J.loss = rowdeal_layer_loss(J.s.loss, J.rows, comm);
  }
  if (!rc) J.loss /= J.scale; /* the loss of the H as given (hessian_scale) */
  if (!rc) rc = check_finite(&J, comm);
  t[3] = MPI_Wtime();
  for (size_t i = 0; !rc && i < (size_t)J.n * J.cols; i++) J.codes32[i] = J.s.codes[i];
  if (!rc) rc = write_layer(&J, kron, comm);
  t[4] = MPI_Wtime();
  if (!rc && rank == 0) print_layer(&J, kron, size, t);
  if (!rc && rank == 0 && (J.scale != 1.0 || (kron && J.scale_out != 1.0))) {
    char out[48] = "";
    if (kron) snprintf(out, sizeof out, ", H_out by 2^%d", ilogb(J.scale_out));
    printf("  scaled  : H by 2^%d%s before the solve (its diagonal is out of float32's range); the error is the given H's\n",
           ilogb(J.scale), out);
  }
  if (J.L.g_idx) gptq_layer_free(&J.L);
  layer_job_free(&J);
  return rc;
}
