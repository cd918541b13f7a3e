#include "gptq.h"

#include <cblas.h>
#include <omp.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ksearch.h"
#include "quant.h"
#include "tokens.h"

void quant_find_params_mse(const float *w, int n, int stride, int bits, int sym, float *scale, int32_t *zero) {
  const int grid = 100;
  const float maxshrink = 0.8f, norm = 2.4f;
  int32_t maxq = (1 << bits) - 1;
  quant_find_params(w, n, stride, bits, sym, scale, zero);
  float xmin, xmax;
  quant_range(w, n, stride, sym, &xmin, &xmax);
  float best = INFINITY;
  for (int i = 0; i < (int)(maxshrink * grid); i++) {
    float p = (float)(1.0 - (double)i / grid); /* torch: the Python float 1 - i/grid, rounded to float32 */
    float xmin1 = p * xmin, xmax1 = p * xmax;
    float scale1 = quant_scale_round((xmax1 - xmin1) / (float)maxq);
    int32_t zero1 = *zero;
    if (!sym) quant_asym_zero(xmin1, maxq, &scale1, &zero1);
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
static int sort_desc_stable(int *perm, const double *key, int n) {
  int *tmp = aptq_malloc(sizeof(int) * (size_t)n + 1, "column order");
  if (!tmp) return APTQ_ERR;
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
  aptq_free(tmp);
  return 0;
}

/* The factor's buffer is kept for the next layer: fresh memory costs a
 * first-touch page fault per page, which for a 4096² factor is a sizeable
 * fraction of the factorization itself. One layer holds it at a time. */
static float *cached_U;
static size_t cached_U_size;
static int cached_U_busy;

static void release_cached_U(void) { aptq_free(cached_U); }

static float *factor_buffer(size_t n, int *from_cache) {
  *from_cache = 0;
  if (cached_U_busy) return aptq_malloc(sizeof(float) * n, "factor");
  if (n > cached_U_size) {
    if (!cached_U) atexit(release_cached_U);
    aptq_free(cached_U);
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
static int prepare(const double *H, const double *grid_sum, int grid_sum_reversed, const double *reduced_diag, double scale,
                   const double *order, int cols, const GptqParams *p, MPI_Comm comm, GptqLayer *L) {
  memset(L, 0, sizeof *L);
  L->cols = cols;
  L->perm = aptq_malloc(sizeof(int) * (size_t)cols, "permutation");
  L->g_idx = aptq_malloc(sizeof(int) * (size_t)cols, "g_idx");
  L->dead = aptq_calloc((size_t)cols, 1, "dead columns");
  int want_qw = (ksearch_mode() == KSEARCH_HESSIAN && quant_kgrid_mins()) || (ksearch_sym_mode() == KSEARCH_HESSIAN && quant_kgrid());
  if (want_qw) L->qw = aptq_malloc(sizeof(float) * (size_t)cols, "importance weights");
  /* a partial Hessian's factor stays on the grid: no replicated U */
  if (!reduced_diag) L->U = factor_buffer((size_t)cols * cols, &L->U_cached);
  int rc = (!L->perm || !L->g_idx || !L->dead || (want_qw && !L->qw) || (!reduced_diag && !L->U)) ? APTQ_ERR : 0;
  double *diag = rc ? NULL : aptq_malloc(sizeof(double) * (size_t)cols, "diagonal");
  if (!diag) rc = APTQ_ERR;
  if (!rc) {
    for (int j = 0; j < cols; j++) {
      diag[j] = reduced_diag ? reduced_diag[j] : H[(size_t)j * cols + j];
      L->dead[j] = diag[j] == 0.0;
      if (L->qw) L->qw[j] = (float)diag[j];
      L->perm[j] = j;
    }
    if (p->act_order) {
      /* dead columns count with diag 1: gptq.py sets H_jj = 1 before sorting */
      for (int j = 0; j < cols; j++)
        if (L->dead[j]) diag[j] = 1.0;
      if (order)
        for (int j = 0; j < cols; j++) diag[j] = order[(size_t)j * cols + j];
      rc = sort_desc_stable(L->perm, diag, cols);
    }
    aptq_free(diag);
    gptq_layer_regroup(L, p);
  }
  rc = aptq_agree(comm, rc);
  if (!rc) {
    HessianView view = {.H = H,
                        .d = cols,
                        .perm = L->perm,
                        .dead = L->dead,
                        .partial = reduced_diag != NULL,
                        .scale = scale,
                        .diag = reduced_diag,
                        .grid_sum = grid_sum,
                        .grid_sum_reversed = grid_sum_reversed};
    rc = reduced_diag ? factor_inverse_cholesky_dist(&view, p->damp, p->factor_algorithm, p->nb, comm, &L->dist, &L->factor)
                      : factor_inverse_cholesky(&view, p->damp, p->factor_path, p->factor_algorithm, p->nb, comm, L->U, &L->factor);
    rc = aptq_agree(comm, rc);
  }
  return rc;
}

void gptq_layer_regroup(GptqLayer *L, const GptqParams *p) {
  for (int k = 0; k < L->cols; k++) {
    int j = L->perm[k];
    L->g_idx[j] = p->group_size == 0 ? 0 : p->static_groups ? j / p->group_size : k / p->group_size;
  }
}

int gptq_prepare_ordered(const double *H, const double *order, int cols, const GptqParams *p, MPI_Comm comm, GptqLayer *L) {
  return prepare(H, NULL, 0, NULL, 0.0, order, cols, p, comm, L);
}

int gptq_prepare_partial(const double *H, const double *diag, double scale, int cols, const GptqParams *p, MPI_Comm comm, GptqLayer *L) {
  return prepare(H, NULL, 0, diag, scale, NULL, cols, p, comm, L);
}

int gptq_prepare_stream(const double *grid_sum, int reversed, const double *diag, double scale, int cols, const GptqParams *p,
                        MPI_Comm comm, GptqLayer *L) {
  return prepare(NULL, grid_sum, reversed, diag, scale, NULL, cols, p, comm, L);
}

void gptq_layer_free(GptqLayer *L) {
  aptq_free(L->perm);
  aptq_free(L->g_idx);
  aptq_free(L->dead);
  aptq_free(L->qw);
  if (L->U_cached) cached_U_busy = 0;
  else aptq_free(L->U);
  dist_factor_free(L->dist);
  memset(L, 0, sizeof *L);
}

static int chunks_of(int rows) { return (rows + GPTQ_ROW_CHUNK - 1) / GPTQ_ROW_CHUNK; }

/* The sweep's work space for `rows` rows in solve order: the permuted
 * weights Wp, the results Qp and Cp (rows × cols) and the errors of a
 * block's columns Err (rows × B). */
typedef struct {
  float *Wp, *Qp, *Err;
  uint8_t *Cp;
} SweepWork;

static int sweep_work_alloc(SweepWork *w, size_t rows, int cols, int B) {
  size_t n = rows * cols + 1;
  w->Wp = aptq_malloc(sizeof(float) * n, "permuted weights");
  w->Qp = aptq_malloc(sizeof(float) * n, "permuted result");
  w->Cp = aptq_malloc(n, "permuted codes");
  w->Err = aptq_malloc(sizeof(float) * (rows * B + 1), "block errors");
  return w->Wp && w->Qp && w->Cp && w->Err ? 0 : APTQ_ERR;
}

static void sweep_work_free(SweepWork *w) {
  aptq_free(w->Wp);
  aptq_free(w->Qp);
  aptq_free(w->Cp);
  aptq_free(w->Err);
  memset(w, 0, sizeof *w);
}

/* grid_search = llama | hessian: a row's sub-block scales and mins searched
 * as llama.cpp's quantizer does (ksearch.h), super-block by super-block,
 * from the row as it is after dead columns are zeroed. */
static void search_row(const GptqLayer *L, const GptqParams *p, const float *w, float *scales, float *mins) {
  int cols = L->cols, gs = p->group_size, per = QUANT_QK_K / gs;
  for (int c = 0, b = 0; c < cols; c += QUANT_QK_K, b += per) {
    int n = cols - c < QUANT_QK_K ? cols - c : QUANT_QK_K;
    ksearch_superblock(w + c, L->qw ? L->qw + c : NULL, n, gs, p->bits, quant_kgrid_mins(), scales + b, mins + b);
  }
}

/* grid_search for q3_k | q6_k: a row's sub-block scales (of either sign)
 * as llama.cpp's quantizer chooses them (ksearch_sym_superblock). */
static void search_sym_row(const GptqLayer *L, const GptqParams *p, const float *w, float *scales) {
  int cols = L->cols;
  for (int c = 0, b = 0; c < cols; c += QUANT_QK_K, b += QUANT_QK_K / 16) {
    int n = cols - c < QUANT_QK_K ? cols - c : QUANT_QK_K;
    ksearch_sym_superblock(w + c, L->qw ? L->qw + c : NULL, n, p->bits, scales + b);
  }
}

/* Rows of a slab (a chunk, or a head of the Kronecker solve) before the
 * sweep, as gptq.py: per-row grids (group_size 0) from the original
 * weights, before dead columns are zeroed; dead columns zeroed; static
 * groups' grids; the rows permuted into solve order in Wp. W: rows × cols,
 * scales and zeros rows × groups; row_scale and row_zero: [rows]. */
static void rows_begin(const GptqLayer *L, const GptqParams *p, float *W, int rows, float *scales, int32_t *zeros, float *mins,
                       float *row_scale, int32_t *row_zero, float *Wp) {
  int cols = L->cols, gs = p->group_size, ng = quant_ngroups(cols, gs);
  if (gs == 0)
    for (int r = 0; r < rows; r++) {
      find_params(p, W + (size_t)r * cols, cols, &row_scale[r], &row_zero[r]);
      scales[r] = row_scale[r];
      zeros[r] = row_zero[r];
    }
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < cols; j++)
      if (L->dead[j]) W[(size_t)r * cols + j] = 0.0f;
  if (gs > 0 && p->static_groups)
    for (int r = 0; r < rows; r++)
      for (int g = 0; g < ng; g++) {
        int end = quant_group_end(g * gs, gs, cols);
        size_t k = (size_t)r * ng + g;
        if (mins) { /* grid = q4_k | q5_k | q2_k: scale * code - min */
          quant_find_params_min(W + (size_t)r * cols + g * gs, end - g * gs, 1, p->bits, &scales[k], &mins[k]);
          zeros[k] = 0;
        } else find_params(p, W + (size_t)r * cols + g * gs, end - g * gs, &scales[k], &zeros[k]);
      }
  /* the K-quant grids: each super-block's scales on d * sc (and mins on dmin * m) before the sweep */
  for (int r = 0; gs > 0 && p->static_groups && r < rows; r++)
    if (mins && ksearch_mode()) search_row(L, p, W + (size_t)r * cols, scales + (size_t)r * ng, mins + (size_t)r * ng);
    else if (!mins && ksearch_sym_mode() && quant_kgrid()) search_sym_row(L, p, W + (size_t)r * cols, scales + (size_t)r * ng);
    else if (mins) quant_kgrid_row_mins(scales + (size_t)r * ng, mins + (size_t)r * ng, ng, gs);
    else quant_kgrid_row(scales + (size_t)r * ng, ng, gs);
  for (int r = 0; r < rows; r++)
    for (int k = 0; k < cols; k++) Wp[(size_t)r * cols + k] = W[(size_t)r * cols + L->perm[k]];
}

/* The rows' codes and dequantized weights back in the original column order. */
static void rows_end(const GptqLayer *L, int rows, const SweepWork *w, uint8_t *codes, float *Q) {
  int cols = L->cols;
  for (int r = 0; r < rows; r++)
    for (int k = 0; k < cols; k++) {
      int j = L->perm[k];
      codes[(size_t)r * cols + j] = w->Cp[(size_t)r * cols + k];
      Q[(size_t)r * cols + j] = w->Qp[(size_t)r * cols + k];
    }
}

/* The grid of column k (solve order) for rows [r0, r0 + n) when the
 * columns are in groups: a dynamic group's grid is made when the sweep
 * reaches its first column, from the rows as the earlier blocks left them
 * in Wp (gptq.py takes it from W, which the current block has not updated
 * yet). scales and zeros: the slab's, rows × groups. */
static void column_grid(const GptqLayer *L, const GptqParams *p, int k, const float *Wp, int r0, int n, float *scales, int32_t *zeros,
                        const float *mins, float *scale, int32_t *zero, float *min) {
  int cols = L->cols, gs = p->group_size, ng = quant_ngroups(cols, gs);
  int g = p->static_groups ? L->perm[k] / gs : k / gs;
  for (int r = 0; r < n; r++) {
    size_t sg = (size_t)(r0 + r) * ng + g;
    if (!p->static_groups && k % gs == 0) {
      int end = quant_group_end(k, gs, cols);
      find_params(p, Wp + (size_t)(r0 + r) * cols + k, end - k, &scales[sg], &zeros[sg]);
    }
    scale[r] = scales[sg];
    zero[r] = zeros[sg];
    min[r] = mins ? mins[sg] : 0.0f; /* mins: static groups only (their grid is made in rows_begin) */
  }
}

/* One chunk of rows through the blocked column sweep of gptq.py: begin
 * (grids, dead columns, permutation), one column block at a time given
 * that block's rows of U, end (loss, original order). The sweep is the
 * same whether U is replicated (gptq_solve walks a chunk through all
 * blocks) or streamed from the grid (all chunks advance a block at a time),
 * so both give the same bits. */
enum { LANES = 16 }; /* rows swept together, one per SIMD lane */

typedef struct {
  const GptqParams *p; /* its layer's (bits may differ between the layers of a solve) */
  float *W;            /* the chunk's rows of the slab, original column order */
  int rows;
  uint8_t *codes; /* outputs, original order */
  float *Q, *scales;
  int32_t *zeros;
  float *mins; /* NULL, or the grid's mins (quant_kgrid_mins) */
  SweepWork w; /* the chunk's rows of the work space, solve order */
  float row_scale[GPTQ_ROW_CHUNK];
  int32_t row_zero[GPTQ_ROW_CHUNK];
  double row_loss[GPTQ_ROW_CHUNK];
} Chunk;

static void chunk_begin(const GptqLayer *L, Chunk *ch) {
  memset(ch->row_loss, 0, sizeof ch->row_loss);
  rows_begin(L, ch->p, ch->W, ch->rows, ch->scales, ch->zeros, ch->mins, ch->row_scale, ch->row_zero, ch->w.Wp);
}

/* Rows [r0, r0 + LANES) of the chunk (those past its end are padding)
 * through columns [i1, i1 + count), transposed so that the column sweep
 * runs across rows in SIMD lanes: blk[i][r] is column i1+i of row r0+r.
 * Ublk: rows i1.. of U, row k at Ublk + (k − i1)·cols. */
static void chunk_lanes(const GptqLayer *L, Chunk *ch, int i1, int count, int r0, const float *Ublk, float *blk) {
  const GptqParams *p = ch->p;
  uint8_t code_col[LANES];
  int cols = L->cols, gs = p->group_size, B = p->block_size < cols ? p->block_size : cols;
  int nr = ch->rows - r0 < LANES ? ch->rows - r0 : LANES;
  int32_t maxq = (1 << p->bits) - 1;
  const SweepWork *w = &ch->w;
  for (int i = 0; i < count; i++)
    for (int r = 0; r < LANES; r++) blk[i * LANES + r] = r < nr ? w->Wp[(size_t)(r0 + r) * cols + i1 + i] : 0.0f;
  float scale[LANES], zero[LANES], mn[LANES], e[LANES];
  for (int r = 0; r < LANES; r++) {
    scale[r] = r < nr && gs == 0 ? ch->row_scale[r0 + r] : 1.0f;
    zero[r] = r < nr && gs == 0 ? (float)ch->row_zero[r0 + r] : 0.0f;
    mn[r] = 0.0f; /* without mins: w + 0 and q - 0 are w and q (the same bits) */
  }
  for (int i = 0; i < count; i++) {
    int k = i1 + i;
    if (gs > 0) {
      int32_t zero_code[LANES];
      column_grid(L, p, k, w->Wp, r0, nr, ch->scales, ch->zeros, ch->mins, scale, zero_code, mn);
      for (int r = 0; r < nr; r++) zero[r] = (float)zero_code[r];
    }
    const float *urow = Ublk + (size_t)i * cols;
    float d = urow[k], *col = blk + i * LANES;
    for (int r = 0; r < LANES; r++) {
      float wv = col[r], c = rintf((wv + mn[r]) / scale[r]) + zero[r];
      c = c < 0.0f ? 0.0f : c > (float)maxq ? (float)maxq : c;
      float t = scale[r] * (c - zero[r]), q = t - mn[r]; /* quant_dequant_min */
      col[r] = q;                                        /* the column is done: keep q, the codes follow from it below */
      e[r] = (wv - q) / d;
      code_col[r] = (uint8_t)c;
    }
    for (int r = 0; r < nr; r++) {
      w->Cp[(size_t)(r0 + r) * cols + k] = code_col[r];
      w->Qp[(size_t)(r0 + r) * cols + k] = col[r];
      w->Err[(size_t)(r0 + r) * B + i] = e[r];
      ch->row_loss[r0 + r] += (double)e[r] * e[r];
    }
    for (int t = i + 1; t < count; t++) {
      float u = urow[i1 + t], *next = blk + t * LANES;
      for (int r = 0; r < LANES; r++) next[r] -= e[r] * u;
    }
  }
}

/* Columns [i1, i1 + B) in solve order; Ublk: rows i1.. of U, row k at
 * Ublk + (k − i1)·cols. blk: B × LANES scratch. */
static void chunk_block(const GptqLayer *L, Chunk *ch, int i1, const float *Ublk, float *blk) {
  int cols = L->cols, B = ch->p->block_size < cols ? ch->p->block_size : cols, rows = ch->rows;
  int i2 = i1 + B < cols ? i1 + B : cols, count = i2 - i1;
  for (int r0 = 0; r0 < rows; r0 += LANES) chunk_lanes(L, ch, i1, count, r0, Ublk, blk);
  /* lazy batch update of the columns after the block */
  if (i2 < cols)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols - i2, count, -1.0f, ch->w.Err, B, Ublk + i2, cols, 1.0f,
                ch->w.Wp + i2, cols);
}

static double chunk_end(const GptqLayer *L, Chunk *ch) {
  double total = 0.0;
  for (int r = 0; r < ch->rows; r++) total += ch->row_loss[r] / 2.0;
  rows_end(L, ch->rows, &ch->w, ch->codes, ch->Q);
  return total;
}

/* The chunks of all slabs, in order. Each chunk points into its slab's
 * outputs and, when work is given, into it: it holds every slab's rows one
 * after the other (NULL: the caller gives each chunk its work space later). */
static Chunk *make_chunks(const GptqSlab *slabs, int nslabs, int cols, int B, const SweepWork *work, int *nchunks) {
  int n = 0;
  for (int s = 0; s < nslabs; s++) n += chunks_of(slabs[s].rows);
  Chunk *ch = aptq_calloc((size_t)n + 1, sizeof *ch, "chunks");
  if (!ch) return NULL;
  size_t before = 0; /* rows before this chunk in the work space */
  for (int s = 0, c = 0; s < nslabs; s++) {
    const GptqSlab *sl = &slabs[s];
    int ng = quant_ngroups(cols, sl->p->group_size);
    for (int r0 = 0; r0 < sl->rows; r0 += GPTQ_ROW_CHUNK, c++) {
      size_t off = (size_t)r0 * cols;
      int rows = sl->rows - r0 < GPTQ_ROW_CHUNK ? sl->rows - r0 : GPTQ_ROW_CHUNK;
      ch[c] = (Chunk){.p = sl->p,
                      .W = sl->W + off,
                      .rows = rows,
                      .codes = sl->codes + off,
                      .Q = sl->Q + off,
                      .scales = sl->scales + (size_t)r0 * ng,
                      .zeros = sl->zeros + (size_t)r0 * ng,
                      .mins = sl->mins ? sl->mins + (size_t)r0 * ng : NULL};
      if (work)
        ch[c].w = (SweepWork){
            .Wp = work->Wp + before * cols, .Qp = work->Qp + before * cols, .Err = work->Err + before * B, .Cp = work->Cp + before * cols};
      before += rows;
    }
  }
  *nchunks = n;
  return ch;
}

double gptq_solve_work_bytes(int rows, int cols, int block_size, int threads, int streamed) {
  double B = block_size < cols ? block_size : cols, chunks = (double)((rows + GPTQ_ROW_CHUNK - 1) / GPTQ_ROW_CHUNK) + 1;
  /* sweep_work_alloc of n rows: Wp, Qp (float), Cp (byte), Err (n × B floats) */
#define SWEEP(n) (((double)(n)*cols + 1) * (2 * sizeof(float) + 1) + ((double)(n)*B + 1) * sizeof(float))
  double table = chunks * sizeof(Chunk), blk = B * LANES * sizeof(float);
  if (streamed) /* solve_streamed: every row's work space, a block of U, a block of rows per thread */
    return SWEEP(rows) + B * cols * sizeof(float) + blk * threads + table;
  return threads * (SWEEP(GPTQ_ROW_CHUNK) + blk) + table; /* gptq_solve_slabs: one chunk's per thread */
#undef SWEEP
}

/* Chunk c's loss (numbered over all slabs) is slab s's chunk_loss[i]. */
static double *chunk_loss_slot(const GptqSlab *slabs, int c) {
  int s = 0;
  while (c >= chunks_of(slabs[s].rows)) c -= chunks_of(slabs[s++].rows);
  return &slabs[s].chunk_loss[c];
}

/* The factor on the grid (L->dist): every rank fetches each block of rows
 * of U as the sweep reaches it (collective, even with no rows of its own),
 * and all its chunks, of every slab, advance through that block: one fetch
 * of U serves all the layers that share the factor. Memory: the slabs' work
 * space and one B × cols block of U instead of U whole. */
static int solve_streamed(const GptqLayer *L, const GptqSlab *slabs, int nslabs, int B) {
  int cols = L->cols, threads = omp_get_max_threads(), nchunks = 0;
  size_t rows = 0;
  for (int s = 0; s < nslabs; s++) rows += (size_t)slabs[s].rows;
  SweepWork work;
  int rc = sweep_work_alloc(&work, rows, cols, B);
  float *Ublk = aptq_malloc(sizeof(float) * (size_t)B * cols, "block of the factor");
  float *blk = aptq_malloc(sizeof(float) * (size_t)B * LANES * threads, "blocks of rows");
  Chunk *ch = rc ? NULL : make_chunks(slabs, nslabs, cols, B, &work, &nchunks);
  int ok = ch && Ublk && blk;
  MPI_Comm comm = dist_factor_comm(L->dist);
  ok = aptq_all_ok(comm, ok); /* nobody is left in a fetch */
  if (ok) {
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
#pragma omp parallel for schedule(dynamic)
    for (int c = 0; c < nchunks; c++) chunk_begin(L, &ch[c]);
    for (int i1 = 0; i1 < cols; i1 += B) {
      int count = i1 + B < cols ? B : cols - i1;
      dist_factor_rows(L->dist, i1, count, Ublk);
#pragma omp parallel for schedule(dynamic)
      for (int c = 0; c < nchunks; c++) chunk_block(L, &ch[c], i1, Ublk, blk + (size_t)omp_get_thread_num() * B * LANES);
    }
    for (int c = 0; c < nchunks; c++) *chunk_loss_slot(slabs, c) = chunk_end(L, &ch[c]);
    openblas_set_num_threads(blas_threads);
  }
  aptq_free(ch);
  sweep_work_free(&work);
  aptq_free(Ublk);
  aptq_free(blk);
  return ok ? 0 : aptq_error("out of memory in the GPTQ solve");
}

int gptq_solve_slabs(const GptqLayer *L, const GptqSlab *slabs, int nslabs) {
  int cols = L->cols, bs = slabs[0].p->block_size, B = bs < cols ? bs : cols, nchunks = 0, failed = 0;
  for (int s = 1; s < nslabs; s++)
    if (slabs[s].p->block_size != bs || slabs[s].p->group_size != slabs[0].p->group_size ||
        slabs[s].p->static_groups != slabs[0].p->static_groups)
      return aptq_error("layers solved together must share block_size, group_size and static_groups");
  if (!L->U) return solve_streamed(L, slabs, nslabs, B);
  Chunk *ch = make_chunks(slabs, nslabs, cols, B, NULL, &nchunks);
  if (!ch) return APTQ_ERR;
  /* chunks are independent: OpenMP threads take whole chunks, each calling
   * single-threaded BLAS, so the result does not depend on the thread count */
  int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
#pragma omp parallel reduction(|| : failed)
  {
    SweepWork work;
    failed = sweep_work_alloc(&work, GPTQ_ROW_CHUNK, cols, B);
    float *blk = aptq_malloc(sizeof(float) * (size_t)B * LANES, "block of rows");
    failed = failed || !blk;
    if (!failed) {
#pragma omp for schedule(dynamic)
      for (int c = 0; c < nchunks; c++) {
        ch[c].w = work;
        chunk_begin(L, &ch[c]);
        for (int i1 = 0; i1 < cols; i1 += B) chunk_block(L, &ch[c], i1, L->U + (size_t)i1 * cols, blk);
        *chunk_loss_slot(slabs, c) = chunk_end(L, &ch[c]);
      }
    }
    sweep_work_free(&work);
    aptq_free(blk);
  }
  openblas_set_num_threads(blas_threads);
  aptq_free(ch);
  return failed ? aptq_error("out of memory in the GPTQ solve") : 0;
}

int gptq_solve(const GptqLayer *L, const GptqParams *p, float *W, int rows, uint8_t *codes, float *Q, float *scales, int32_t *zeros,
               double *chunk_loss) {
  GptqSlab slab = {p, W, rows, codes, Q, scales, zeros, chunk_loss, NULL};
  return gptq_solve_slabs(L, &slab, 1);
}

int gptq_output_factor(const double *H_out, int dh, double damp, float *U_out, double *damp_used) {
  FactorInfo info;
  HessianView view = {.H = H_out, .d = dh};
  CHECK(factor_inverse_cholesky(&view, damp, FACTOR_LAPACK, FACTOR_TRTRI, 64, MPI_COMM_SELF, U_out, &info));
  *damp_used = info.damp_used;
  return 0;
}

/* The Kronecker solve's work space for one head of dh rows: the sweep's,
 * the rows' grids, the column's error vector e and U_outᵀ e, and the copy
 * W1 (dh × B) of the block's columns. */
typedef struct {
  SweepWork w;
  float *row_scale, *row_min, *e, *et, *W1;
  int32_t *row_zero;
} HeadWork;

static int head_work_alloc(HeadWork *hw, int dh, int cols, int B) {
  memset(hw, 0, sizeof *hw);
  int rc = sweep_work_alloc(&hw->w, (size_t)dh, cols, B);
  hw->row_scale = aptq_malloc(sizeof(float) * (size_t)dh, "head grid scales");
  hw->row_zero = aptq_malloc(sizeof(int32_t) * (size_t)dh, "head grid zeros");
  hw->row_min = aptq_malloc(sizeof(float) * (size_t)dh, "head grid mins");
  hw->e = aptq_malloc(sizeof(float) * (size_t)dh, "head errors");
  hw->et = aptq_malloc(sizeof(float) * (size_t)dh, "head error vector");
  hw->W1 = aptq_malloc(sizeof(float) * (size_t)dh * B, "head block");
  return rc || !hw->row_scale || !hw->row_zero || !hw->row_min || !hw->e || !hw->et || !hw->W1 ? APTQ_ERR : 0;
}

static void head_work_free(HeadWork *hw) {
  sweep_work_free(&hw->w);
  aptq_free(hw->row_scale);
  aptq_free(hw->row_zero);
  aptq_free(hw->row_min);
  aptq_free(hw->e);
  aptq_free(hw->et);
  aptq_free(hw->W1);
  memset(hw, 0, sizeof *hw);
}

/* Column k of a head, the i-th of the block of count columns in W1: its
 * rows in turn, compensating the later rows of this column through U_out;
 * then the column's error vector U_outᵀ e updates the rest of the block.
 * loss += the column's Σ e²/2. */
static void head_column(const GptqLayer *L, const GptqParams *p, const float *Uo, int dh, int k, int i, int count, float *scales,
                        int32_t *zeros, const float *mins, HeadWork *hw, double *loss) {
  int cols = L->cols, B = p->block_size < cols ? p->block_size : cols, i1 = k - i;
  int32_t maxq = (1 << p->bits) - 1;
  const float *urow = L->U + (size_t)k * cols;
  float uin = urow[k], *W1 = hw->W1, *e = hw->e, *et = hw->et;
  if (p->group_size > 0) column_grid(L, p, k, hw->w.Wp, 0, dh, scales, zeros, mins, hw->row_scale, hw->row_zero, hw->row_min);
  for (int r = 0; r < dh; r++) {
    float w = W1[(size_t)r * B + i];
    int32_t c = mins ? quant_code_min(w, hw->row_scale[r], hw->row_zero[r], hw->row_min[r], maxq)
                     : quant_code(w, hw->row_scale[r], hw->row_zero[r], maxq);
    float q = mins ? quant_dequant_min(c, hw->row_scale[r], hw->row_zero[r], hw->row_min[r])
                   : quant_dequant(c, hw->row_scale[r], hw->row_zero[r]);
    hw->w.Cp[(size_t)r * cols + k] = (uint8_t)c;
    hw->w.Qp[(size_t)r * cols + k] = q;
    float d = uin * Uo[r * dh + r];
    e[r] = (w - q) / d;
    *loss += 0.5 * (double)e[r] * e[r];
    for (int r2 = r + 1; r2 < dh; r2++) W1[(size_t)r2 * B + i] -= e[r] * uin * Uo[r * dh + r2];
  }
  for (int r2 = 0; r2 < dh; r2++) {
    float acc = 0.0f;
    for (int r = 0; r <= r2; r++) acc += e[r] * Uo[r * dh + r2];
    et[r2] = acc;
  }
  for (int r = 0; r < dh; r++) {
    hw->w.Err[(size_t)r * B + i] = et[r];
    float *w1 = W1 + (size_t)r * B;
    for (int t = i + 1; t < count; t++) w1[t] -= et[r] * urow[i1 + t];
  }
}

/* One head (dh rows) of the Kronecker solve: the sweep of gptq_solve with
 * a head's rows quantized together (head_column). */
static double solve_head(const GptqLayer *L, const GptqParams *p, const float *Uo, int dh, float *W, uint8_t *codes, float *Q,
                         float *scales, int32_t *zeros, float *mins, HeadWork *hw) {
  int cols = L->cols, B = p->block_size < cols ? p->block_size : cols;
  rows_begin(L, p, W, dh, scales, zeros, mins, hw->row_scale, hw->row_zero, hw->w.Wp);
  double loss = 0.0;
  /* the block works on a copy (W1): group grids read Wp as the previous blocks left it, as in gptq.py */
  for (int i1 = 0; i1 < cols; i1 += B) {
    int i2 = i1 + B < cols ? i1 + B : cols, count = i2 - i1;
    for (int r = 0; r < dh; r++) memcpy(hw->W1 + (size_t)r * B, hw->w.Wp + (size_t)r * cols + i1, sizeof(float) * (size_t)count);
    for (int i = 0; i < count; i++) head_column(L, p, Uo, dh, i1 + i, i, count, scales, zeros, mins, hw, &loss);
    if (i2 < cols)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dh, cols - i2, count, -1.0f, hw->w.Err, B, L->U + (size_t)i1 * cols + i2, cols,
                  1.0f, hw->w.Wp + i2, cols);
  }
  rows_end(L, dh, &hw->w, codes, Q);
  return loss;
}

int gptq_solve_kron(const GptqLayer *L, const GptqParams *p, const float *const *U_out, int dh, float *W, int nheads, uint8_t *codes,
                    float *Q, float *scales, int32_t *zeros, float *mins, double *losses) {
  if (!L->U) return aptq_error("internal: the Kronecker solve needs a replicated factor");
  int cols = L->cols, B = p->block_size < cols ? p->block_size : cols, ng = quant_ngroups(cols, p->group_size), failed = 0;
  int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
#pragma omp parallel reduction(|| : failed)
  {
    HeadWork hw;
    failed = head_work_alloc(&hw, dh, cols, B);
    if (!failed) {
#pragma omp for schedule(dynamic)
      for (int h = 0; h < nheads; h++) {
        size_t off = (size_t)h * dh * cols;
        size_t goff = (size_t)h * dh * ng;
        losses[h] =
            solve_head(L, p, U_out[h], dh, W + off, codes + off, Q + off, scales + goff, zeros + goff, mins ? mins + goff : NULL, &hw);
      }
    }
    head_work_free(&hw);
  }
  openblas_set_num_threads(blas_threads);
  return failed ? aptq_error("out of memory in the Kronecker solve") : 0;
}
