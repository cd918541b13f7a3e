#include "gptq.h"

#include <cblas.h>
#include <omp.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "quant.h"
#include "tokens.h"

void quant_find_params_mse(const float *w, int n, int stride, int bits, int sym, float *scale, int32_t *zero) {
  const int grid = 100;
  const float maxshrink = 0.8f, norm = 2.4f;
  int32_t maxq = (1 << bits) - 1;
  quant_find_params(w, n, stride, bits, sym, scale, zero);
  float xmin = 0.0f, xmax = 0.0f;
  for (int i = 0; i < n; i++) {
    float v = w[(int64_t)i * stride];
    xmin = v < xmin ? v : xmin;
    xmax = v > xmax ? v : xmax;
  }
  if (sym) {
    xmax = fabsf(xmin) > xmax ? fabsf(xmin) : xmax;
    if (xmin < 0.0f) xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) { xmin = -1.0f; xmax = 1.0f; }
  float best = INFINITY;
  for (int i = 0; i < (int)(maxshrink * grid); i++) {
    float p = (float)(1.0 - (double)i / grid); /* torch: the Python float 1 - i/grid, rounded to float32 */
    float xmin1 = p * xmin, xmax1 = p * xmax;
    float scale1 = quant_scale_round((xmax1 - xmin1) / (float)maxq);
    int32_t zero1 = sym ? *zero : (int32_t)rintf(-xmin1 / scale1);
    float err = 0.0f;
    for (int k = 0; k < n; k++) {
      float v = w[(int64_t)k * stride];
      float q = quant_dequant(quant_code(v, scale1, zero1, maxq), scale1, zero1);
      err += powf(fabsf(q - v), norm);
    }
    if (err < best) {
      best = err;
      *scale = scale1;
      *zero = zero1;
    }
  }
}

static void find_params(const GptqParams *p, const float *w, int n, float *scale, int32_t *zero) {
  if (p->mse) quant_find_params_mse(w, n, 1, p->bits, p->sym, scale, zero);
  else quant_find_params(w, n, 1, p->bits, p->sym, scale, zero);
}

/* Stable sort of perm by descending key (bottom-up merge sort): ties keep
 * column order, as numpy's argsort(-diag, kind='stable'). */
static void sort_desc_stable(int *perm, const double *key, int n) {
  int *tmp = malloc(sizeof(int) * (size_t)n);
  for (int width = 1; width < n; width *= 2) {
    for (int lo = 0; lo < n; lo += 2 * width) {
      int mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
      int i = lo, j = mid, k = lo;
      while (i < mid && j < hi) tmp[k++] = key[perm[j]] > key[perm[i]] ? perm[j++] : perm[i++];
      while (i < mid) tmp[k++] = perm[i++];
      while (j < hi) tmp[k++] = perm[j++];
    }
    memcpy(perm, tmp, sizeof(int) * (size_t)n);
  }
  free(tmp);
}

/* The factor's buffer is kept for the next layer: fresh memory costs a
 * first-touch page fault per page, which for a 4096² factor is a sizeable
 * fraction of the factorization itself. One layer holds it at a time. */
static float *cached_U;
static size_t cached_U_size;
static int cached_U_busy;

static void release_cached_U(void) { free(cached_U); }

static float *factor_buffer(size_t n, int *from_cache) {
  *from_cache = 0;
  if (cached_U_busy) return aptq_malloc(sizeof(float) * n, "factor");
  if (n > cached_U_size) {
    if (!cached_U) atexit(release_cached_U);
    free(cached_U);
    cached_U = aptq_malloc(sizeof(float) * n, "factor");
    cached_U_size = cached_U ? n : 0;
    if (!cached_U) return NULL;
  }
  cached_U_busy = 1;
  *from_cache = 1;
  return cached_U;
}

int gptq_prepare(const double *H, int cols, const GptqParams *p, MPI_Comm comm, GptqLayer *L) {
  return gptq_prepare_ordered(H, NULL, cols, p, comm, L);
}

/* H replicated (diag NULL), or this rank's partial sum with the reduced,
 * scaled diagonal (HessianView.partial). */
static int prepare(const double *H, const double *grid_sum, int grid_sum_reversed, const double *reduced_diag, double scale, const double *order,
                   int cols, const GptqParams *p, MPI_Comm comm, GptqLayer *L) {
  memset(L, 0, sizeof *L);
  L->cols = cols;
  L->perm = aptq_malloc(sizeof(int) * (size_t)cols, "permutation");
  L->g_idx = aptq_malloc(sizeof(int) * (size_t)cols, "g_idx");
  L->dead = aptq_calloc((size_t)cols, 1, "dead columns");
  /* a partial Hessian's factor stays on the grid: no replicated U */
  if (!reduced_diag) L->U = factor_buffer((size_t)cols * cols, &L->U_cached);
  int rc = (!L->perm || !L->g_idx || !L->dead || (!reduced_diag && !L->U)) ? APTQ_ERR : 0;
  double *diag = rc ? NULL : aptq_malloc(sizeof(double) * (size_t)cols, "diagonal");
  if (!diag) rc = APTQ_ERR;
  if (!rc) {
    for (int j = 0; j < cols; j++) {
      diag[j] = reduced_diag ? reduced_diag[j] : H[(size_t)j * cols + j];
      L->dead[j] = diag[j] == 0.0;
      L->perm[j] = j;
    }
    if (p->act_order) {
      /* dead columns count with diag 1: gptq.py sets H_jj = 1 before sorting */
      for (int j = 0; j < cols; j++) if (L->dead[j]) diag[j] = 1.0;
      if (order)
        for (int j = 0; j < cols; j++) diag[j] = order[(size_t)j * cols + j];
      sort_desc_stable(L->perm, diag, cols);
    }
    free(diag);
    for (int k = 0; k < cols; k++) {
      int j = L->perm[k];
      L->g_idx[j] = p->group_size == 0 ? 0 : p->static_groups ? j / p->group_size : k / p->group_size;
    }
  }
  rc = aptq_agree(comm, rc);
  if (!rc) {
    HessianView view = {.H = H, .d = cols, .perm = L->perm, .dead = L->dead, .partial = reduced_diag != NULL, .scale = scale,
                        .diag = reduced_diag, .grid_sum = grid_sum, .grid_sum_reversed = grid_sum_reversed};
    rc = reduced_diag ? factor_inverse_cholesky_dist(&view, p->damp, p->factor_algorithm, p->nb, comm, &L->dist, &L->factor)
                      : factor_inverse_cholesky(&view, p->damp, p->factor_path, p->factor_algorithm, p->nb, comm, L->U, &L->factor);
    rc = aptq_agree(comm, rc);
  }
  return rc;
}

int gptq_prepare_ordered(const double *H, const double *order, int cols, const GptqParams *p, MPI_Comm comm, GptqLayer *L) {
  return prepare(H, NULL, 0, NULL, 0.0, order, cols, p, comm, L);
}

int gptq_prepare_partial(const double *H, const double *diag, double scale, int cols, const GptqParams *p, MPI_Comm comm, GptqLayer *L) {
  return prepare(H, NULL, 0, diag, scale, NULL, cols, p, comm, L);
}

int gptq_prepare_stream(const double *grid_sum, int reversed, const double *diag, double scale, int cols, const GptqParams *p, MPI_Comm comm,
                        GptqLayer *L) {
  return prepare(NULL, grid_sum, reversed, diag, scale, NULL, cols, p, comm, L);
}

void gptq_layer_free(GptqLayer *L) {
  free(L->perm);
  free(L->g_idx);
  free(L->dead);
  if (L->U_cached) cached_U_busy = 0;
  else free(L->U);
  dist_factor_free(L->dist);
  memset(L, 0, sizeof *L);
}

void gptq_row_range(int rows, int size, int rank, int *r0, int *n) {
  int chunks = (rows + GPTQ_ROW_CHUNK - 1) / GPTQ_ROW_CHUNK, c0, nc;
  shard_range(chunks, size, rank, &c0, &nc);
  *r0 = c0 * GPTQ_ROW_CHUNK < rows ? c0 * GPTQ_ROW_CHUNK : rows;
  int end = (c0 + nc) * GPTQ_ROW_CHUNK < rows ? (c0 + nc) * GPTQ_ROW_CHUNK : rows;
  *n = end - *r0;
}

double gptq_layer_loss(const double *chunk_loss, int rows, MPI_Comm comm) {
  int size, rank;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  int chunks = (rows + GPTQ_ROW_CHUNK - 1) / GPTQ_ROW_CHUNK;
  int *counts = malloc(sizeof(int) * (size_t)size), *displs = malloc(sizeof(int) * (size_t)size);
  double *all = malloc(sizeof(double) * (size_t)chunks);
  for (int r = 0; r < size; r++) shard_range(chunks, size, r, &displs[r], &counts[r]);
  MPI_Allgatherv(chunk_loss, counts[rank], MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, comm);
  double total = 0.0;
  for (int i = 0; i < chunks; i++) total += all[i];
  free(counts); free(displs); free(all);
  return total;
}

/* One chunk of rows through the blocked column sweep of gptq.py: begin
 * (grids, dead columns, permutation), one column block at a time given
 * that block's rows of U, end (loss, original order). The sweep is the
 * same whether U is replicated (gptq_solve walks a chunk through all
 * blocks) or streamed from the grid (all chunks advance a block at a time),
 * so both give the same bits. */
enum { LANES = 16 }; /* rows swept together, one per SIMD lane */

typedef struct {
  float *W;        /* the chunk's rows of the slab, original column order */
  int rows;
  uint8_t *codes;  /* outputs, original order */
  float *Q, *scales;
  int32_t *zeros;
  float *Wp, *Err, *Qp; /* work, solve order */
  uint8_t *Cp;
  float row_scale[GPTQ_ROW_CHUNK];
  int32_t row_zero[GPTQ_ROW_CHUNK];
  double row_loss[GPTQ_ROW_CHUNK];
} Chunk;

static void chunk_begin(const GptqLayer *L, const GptqParams *p, Chunk *ch) {
  int cols = L->cols, gs = p->group_size, ng = quant_ngroups(cols, gs), rows = ch->rows;
  float *W = ch->W;
  memset(ch->row_loss, 0, sizeof ch->row_loss);
  /* per-channel grid from the original weights (before dead columns are zeroed, as gptq.py) */
  if (gs == 0)
    for (int r = 0; r < rows; r++) {
      find_params(p, W + (size_t)r * cols, cols, &ch->row_scale[r], &ch->row_zero[r]);
      ch->scales[r] = ch->row_scale[r];
      ch->zeros[r] = ch->row_zero[r];
    }
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < cols; j++)
      if (L->dead[j]) W[(size_t)r * cols + j] = 0.0f;
  if (gs > 0 && p->static_groups)
    for (int r = 0; r < rows; r++)
      for (int g = 0; g < ng; g++) {
        int end = (g + 1) * gs < cols ? (g + 1) * gs : cols;
        find_params(p, W + (size_t)r * cols + g * gs, end - g * gs, &ch->scales[(size_t)r * ng + g], &ch->zeros[(size_t)r * ng + g]);
      }
  for (int r = 0; r < rows; r++)
    for (int k = 0; k < cols; k++) ch->Wp[(size_t)r * cols + k] = W[(size_t)r * cols + L->perm[k]];
}

/* Columns [i1, i1 + B) in solve order; Ublk: rows i1.. of U, row k at
 * Ublk + (k − i1)·cols. blk: B × LANES scratch. */
static void chunk_block(const GptqLayer *L, const GptqParams *p, Chunk *ch, int i1, const float *Ublk, float *blk) {
  uint8_t code_col[LANES];
  int cols = L->cols, gs = p->group_size, B = p->block_size < cols ? p->block_size : cols, rows = ch->rows;
  int ng = quant_ngroups(cols, gs);
  int32_t maxq = (1 << p->bits) - 1;
  float *Wp = ch->Wp, *Err = ch->Err, *Qp = ch->Qp, *scales = ch->scales;
  uint8_t *Cp = ch->Cp;
  int32_t *zeros = ch->zeros;
  int i2 = i1 + B < cols ? i1 + B : cols, count = i2 - i1;
  /* LANES rows at a time, transposed so that the column sweep runs across
   * rows in SIMD lanes: blk[i][r] is column i1+i of row r0+r */
  for (int r0 = 0; r0 < rows; r0 += LANES) {
    int nr = rows - r0 < LANES ? rows - r0 : LANES;
    for (int i = 0; i < count; i++)
      for (int r = 0; r < LANES; r++) blk[i * LANES + r] = r < nr ? Wp[(size_t)(r0 + r) * cols + i1 + i] : 0.0f;
    float scale[LANES], zero[LANES], e[LANES];
    for (int r = 0; r < LANES; r++) {
      scale[r] = r < nr && gs == 0 ? ch->row_scale[r0 + r] : 1.0f;
      zero[r] = r < nr && gs == 0 ? (float)ch->row_zero[r0 + r] : 0.0f;
    }
    for (int i = 0; i < count; i++) {
      int k = i1 + i;
      if (gs > 0) {
        int g = p->static_groups ? L->perm[k] / gs : k / gs;
        for (int r = 0; r < nr; r++) {
          size_t sg = (size_t)(r0 + r) * ng + g;
          if (!p->static_groups && k % gs == 0) {
            /* gptq.py takes the group's grid from W, which the current block has not updated yet */
            int end = k + gs < cols ? k + gs : cols;
            find_params(p, Wp + (size_t)(r0 + r) * cols + k, end - k, &scales[sg], &zeros[sg]);
          }
          scale[r] = scales[sg];
          zero[r] = (float)zeros[sg];
        }
      }
      const float *urow = Ublk + (size_t)i * cols;
      float d = urow[k], *col = blk + i * LANES;
      for (int r = 0; r < LANES; r++) {
        float w = col[r], c = rintf(w / scale[r]) + zero[r];
        c = c < 0.0f ? 0.0f : c > (float)maxq ? (float)maxq : c;
        float q = scale[r] * (c - zero[r]);
        col[r] = q; /* the column is done: keep q, the codes follow from it below */
        e[r] = (w - q) / d;
        code_col[r] = (uint8_t)c;
      }
      for (int r = 0; r < nr; r++) {
        Cp[(size_t)(r0 + r) * cols + k] = code_col[r];
        Qp[(size_t)(r0 + r) * cols + k] = col[r];
        Err[(size_t)(r0 + r) * B + i] = e[r];
        ch->row_loss[r0 + r] += (double)e[r] * e[r];
      }
      for (int t = i + 1; t < count; t++) {
        float u = urow[i1 + t], *next = blk + t * LANES;
        for (int r = 0; r < LANES; r++) next[r] -= e[r] * u;
      }
    }
  }
  /* lazy batch update of the columns after the block */
  if (i2 < cols)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols - i2, count, -1.0f, Err, B, Ublk + i2, cols, 1.0f, Wp + i2, cols);
}

static double chunk_end(const GptqLayer *L, Chunk *ch) {
  int cols = L->cols;
  double total = 0.0;
  for (int r = 0; r < ch->rows; r++) total += ch->row_loss[r] / 2.0;
  for (int r = 0; r < ch->rows; r++)
    for (int k = 0; k < cols; k++) {
      int j = L->perm[k];
      ch->codes[(size_t)r * cols + j] = ch->Cp[(size_t)r * cols + k];
      ch->Q[(size_t)r * cols + j] = ch->Qp[(size_t)r * cols + k];
    }
  return total;
}

/* The factor on the grid (L->dist): every rank fetches each block of rows
 * of U as the sweep reaches it (collective, even with no rows of its own),
 * and all its chunks advance through that block. Memory: the slab's work
 * arrays and one B × cols block of U instead of U whole. */
static int solve_streamed(const GptqLayer *L, const GptqParams *p, float *W, int rows, uint8_t *codes, float *Q, float *scales,
                          int32_t *zeros, double *chunk_loss) {
  int cols = L->cols, B = p->block_size < cols ? p->block_size : cols, ng = quant_ngroups(cols, p->group_size);
  int nchunks = (rows + GPTQ_ROW_CHUNK - 1) / GPTQ_ROW_CHUNK, threads = omp_get_max_threads();
  size_t n = (size_t)rows * cols + 1;
  Chunk *ch = calloc((size_t)nchunks + 1, sizeof *ch);
  float *Wp = malloc(sizeof(float) * n), *Qp = malloc(sizeof(float) * n), *Err = malloc(sizeof(float) * ((size_t)rows * B + 1));
  uint8_t *Cp = malloc(n);
  float *Ublk = malloc(sizeof(float) * (size_t)B * cols), *blk = malloc(sizeof(float) * (size_t)B * LANES * threads);
  int ok = ch && Wp && Qp && Err && Cp && Ublk && blk;
  MPI_Comm comm = dist_factor_comm(L->dist);
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_LAND, comm); /* nobody is left in a fetch */
  if (ok) {
    for (int c = 0; c < nchunks; c++) {
      int r0 = c * GPTQ_ROW_CHUNK;
      size_t off = (size_t)r0 * cols;
      ch[c] = (Chunk){.W = W + off, .rows = rows - r0 < GPTQ_ROW_CHUNK ? rows - r0 : GPTQ_ROW_CHUNK, .codes = codes + off, .Q = Q + off,
                      .scales = scales + (size_t)r0 * ng, .zeros = zeros + (size_t)r0 * ng, .Wp = Wp + off, .Err = Err + (size_t)r0 * B,
                      .Qp = Qp + off, .Cp = Cp + off};
    }
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
#pragma omp parallel for schedule(dynamic)
    for (int c = 0; c < nchunks; c++) chunk_begin(L, p, &ch[c]);
    for (int i1 = 0; i1 < cols; i1 += B) {
      int count = i1 + B < cols ? B : cols - i1;
      dist_factor_rows(L->dist, i1, count, Ublk);
#pragma omp parallel for schedule(dynamic)
      for (int c = 0; c < nchunks; c++) chunk_block(L, p, &ch[c], i1, Ublk, blk + (size_t)omp_get_thread_num() * B * LANES);
    }
    for (int c = 0; c < nchunks; c++) chunk_loss[c] = chunk_end(L, &ch[c]);
    openblas_set_num_threads(blas_threads);
  }
  free(ch); free(Wp); free(Qp); free(Err); free(Cp); free(Ublk); free(blk);
  return ok ? 0 : aptq_error("out of memory in the GPTQ solve");
}

int gptq_solve(const GptqLayer *L, const GptqParams *p, float *W, int rows, uint8_t *codes, float *Q, float *scales, int32_t *zeros,
               double *chunk_loss) {
  if (!L->U) return solve_streamed(L, p, W, rows, codes, Q, scales, zeros, chunk_loss);
  int cols = L->cols, B = p->block_size < cols ? p->block_size : cols, ng = quant_ngroups(cols, p->group_size);
  int nchunks = (rows + GPTQ_ROW_CHUNK - 1) / GPTQ_ROW_CHUNK, failed = 0;
  /* chunks are independent: OpenMP threads take whole chunks, each calling
   * single-threaded BLAS, so the result does not depend on the thread count */
  int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
#pragma omp parallel reduction(|| : failed)
  {
    size_t chunk = (size_t)GPTQ_ROW_CHUNK * cols;
    float *Wp = aptq_malloc(sizeof(float) * chunk, "permuted weights");
    float *Err = aptq_malloc(sizeof(float) * (size_t)GPTQ_ROW_CHUNK * B, "block errors");
    float *Qp = aptq_malloc(sizeof(float) * chunk, "permuted result");
    uint8_t *Cp = aptq_malloc(chunk, "permuted codes");
    float *blk = aptq_malloc(sizeof(float) * (size_t)B * LANES, "block of rows");
    failed = !Wp || !Err || !Qp || !Cp || !blk;
    if (!failed) {
#pragma omp for schedule(dynamic)
      for (int c = 0; c < nchunks; c++) {
        int r0 = c * GPTQ_ROW_CHUNK;
        size_t off = (size_t)r0 * cols;
        Chunk ch = {.W = W + off, .rows = rows - r0 < GPTQ_ROW_CHUNK ? rows - r0 : GPTQ_ROW_CHUNK, .codes = codes + off, .Q = Q + off,
                    .scales = scales + (size_t)r0 * ng, .zeros = zeros + (size_t)r0 * ng, .Wp = Wp, .Err = Err, .Qp = Qp, .Cp = Cp};
        chunk_begin(L, p, &ch);
        for (int i1 = 0; i1 < cols; i1 += B) chunk_block(L, p, &ch, i1, L->U + (size_t)i1 * cols, blk);
        chunk_loss[c] = chunk_end(L, &ch);
      }
    }
    free(Wp); free(Err); free(Qp); free(Cp); free(blk);
  }
  openblas_set_num_threads(blas_threads);
  return failed ? aptq_error("out of memory in the GPTQ solve") : 0;
}

int gptq_output_factor(const double *H_out, int dh, double damp, float *U_out, double *damp_used) {
  FactorInfo info;
  HessianView view = {.H = H_out, .d = dh};
  CHECK(factor_inverse_cholesky(&view, damp, FACTOR_LAPACK, FACTOR_TRTRI, 64, MPI_COMM_SELF, U_out, &info));
  *damp_used = info.damp_used;
  return 0;
}

/* One head (dh rows) of the Kronecker solve. */
static double solve_head(const GptqLayer *L, const GptqParams *p, const float *Uo, int dh, float *W, uint8_t *codes, float *Q,
                         float *scales, int32_t *zeros, float *Wp, float *Err, float *Qp, uint8_t *Cp) {
  int cols = L->cols, gs = p->group_size, B = p->block_size < cols ? p->block_size : cols, ng = quant_ngroups(cols, gs);
  int32_t maxq = (1 << p->bits) - 1;
  float *row_scale = malloc(sizeof(float) * (size_t)dh), *e = malloc(sizeof(float) * (size_t)dh), *et = malloc(sizeof(float) * (size_t)dh);
  int32_t *row_zero = malloc(sizeof(int32_t) * (size_t)dh);
  if (gs == 0)
    for (int r = 0; r < dh; r++) {
      find_params(p, W + (size_t)r * cols, cols, &row_scale[r], &row_zero[r]);
      scales[r] = row_scale[r];
      zeros[r] = row_zero[r];
    }
  for (int r = 0; r < dh; r++)
    for (int j = 0; j < cols; j++)
      if (L->dead[j]) W[(size_t)r * cols + j] = 0.0f;
  if (gs > 0 && p->static_groups)
    for (int r = 0; r < dh; r++)
      for (int g = 0; g < ng; g++) {
        int end = (g + 1) * gs < cols ? (g + 1) * gs : cols;
        find_params(p, W + (size_t)r * cols + g * gs, end - g * gs, &scales[(size_t)r * ng + g], &zeros[(size_t)r * ng + g]);
      }
  for (int r = 0; r < dh; r++)
    for (int k = 0; k < cols; k++) Wp[(size_t)r * cols + k] = W[(size_t)r * cols + L->perm[k]];
  double loss = 0.0;
  /* the block works on a copy (W1): group grids read Wp as the previous blocks left it, as in gptq.py */
  float *W1 = malloc(sizeof(float) * (size_t)dh * B);
  for (int i1 = 0; i1 < cols; i1 += B) {
    int i2 = i1 + B < cols ? i1 + B : cols, count = i2 - i1;
    for (int r = 0; r < dh; r++) memcpy(W1 + (size_t)r * B, Wp + (size_t)r * cols + i1, sizeof(float) * (size_t)count);
    for (int i = 0; i < count; i++) {
      int k = i1 + i;
      const float *urow = L->U + (size_t)k * cols;
      float uin = urow[k];
      if (gs > 0) {
        int g = p->static_groups ? L->perm[k] / gs : k / gs;
        for (int r = 0; r < dh; r++) {
          size_t sg = (size_t)r * ng + g;
          if (!p->static_groups && k % gs == 0) {
            int end = k + gs < cols ? k + gs : cols;
            find_params(p, Wp + (size_t)r * cols + k, end - k, &scales[sg], &zeros[sg]);
          }
          row_scale[r] = scales[sg];
          row_zero[r] = zeros[sg];
        }
      }
      /* the rows of the head in turn, compensating the later rows of this column through U_out */
      for (int r = 0; r < dh; r++) {
        float w = W1[(size_t)r * B + i];
        int32_t c = quant_code(w, row_scale[r], row_zero[r], maxq);
        float q = quant_dequant(c, row_scale[r], row_zero[r]);
        Cp[(size_t)r * cols + k] = (uint8_t)c;
        Qp[(size_t)r * cols + k] = q;
        float d = uin * Uo[r * dh + r];
        e[r] = (w - q) / d;
        loss += 0.5 * (double)e[r] * e[r];
        for (int r2 = r + 1; r2 < dh; r2++) W1[(size_t)r2 * B + i] -= e[r] * uin * Uo[r * dh + r2];
      }
      /* the column's error vector for the later columns: U_outᵀ e */
      for (int r2 = 0; r2 < dh; r2++) {
        float acc = 0.0f;
        for (int r = 0; r <= r2; r++) acc += e[r] * Uo[r * dh + r2];
        et[r2] = acc;
      }
      for (int r = 0; r < dh; r++) {
        Err[(size_t)r * B + i] = et[r];
        float *w1 = W1 + (size_t)r * B;
        for (int t = i + 1; t < count; t++) w1[t] -= et[r] * urow[i1 + t];
      }
    }
    if (i2 < cols)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dh, cols - i2, count, -1.0f, Err, B, L->U + (size_t)i1 * cols + i2, cols, 1.0f,
                  Wp + i2, cols);
  }
  for (int r = 0; r < dh; r++)
    for (int k = 0; k < cols; k++) {
      int j = L->perm[k];
      codes[(size_t)r * cols + j] = Cp[(size_t)r * cols + k];
      Q[(size_t)r * cols + j] = Qp[(size_t)r * cols + k];
    }
  free(W1); free(row_scale); free(row_zero); free(e); free(et);
  return loss;
}

int gptq_solve_kron(const GptqLayer *L, const GptqParams *p, const float *const *U_out, int dh, float *W, int nheads, uint8_t *codes,
                    float *Q, float *scales, int32_t *zeros, double *losses) {
  if (!L->U) return aptq_error("internal: the Kronecker solve needs a replicated factor");
  int cols = L->cols, B = p->block_size < cols ? p->block_size : cols, ng = quant_ngroups(cols, p->group_size), failed = 0;
  int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
#pragma omp parallel reduction(|| : failed)
  {
    float *Wp = aptq_malloc(sizeof(float) * (size_t)dh * cols, "permuted weights");
    float *Err = aptq_malloc(sizeof(float) * (size_t)dh * B, "block errors");
    float *Qp = aptq_malloc(sizeof(float) * (size_t)dh * cols, "permuted result");
    uint8_t *Cp = aptq_malloc((size_t)dh * cols, "permuted codes");
    failed = !Wp || !Err || !Qp || !Cp;
    if (!failed) {
#pragma omp for schedule(dynamic)
      for (int h = 0; h < nheads; h++) {
        size_t off = (size_t)h * dh * cols;
        losses[h] = solve_head(L, p, U_out[h], dh, W + off, codes + off, Q + off, scales + (size_t)h * dh * ng, zeros + (size_t)h * dh * ng,
                               Wp, Err, Qp, Cp);
      }
    }
    free(Wp); free(Err); free(Qp); free(Cp);
  }
  openblas_set_num_threads(blas_threads);
  return failed ? aptq_error("out of memory in the Kronecker solve") : 0;
}
