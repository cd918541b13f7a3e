#include "ggml_blocks.h"

#include <math.h>
#include <string.h>

#include "error.h"
#include "quant.h"

static int is_f16(float x) { return gguf_f16_to_f32(gguf_f32_to_f16(x)) == x; }

/* The first (row, group) whose grid breaks the condition of type t, or -1. */
static int64_t first_misfit(const QLayerView *L, GgmlType t) {
  int ng = quant_ngroups(L->cols, L->group_size);
  for (int64_t k = 0; k < (int64_t)L->rows * ng; k++) {
    float s = L->scales[k];
    int32_t z = L->zeros[k];
    if (!is_f16(s)) return k;
    if (t == GGML_Q4_0 && z != 8) return k;
    if (t == GGML_Q8_0 && z != 128) return k;
    if (t == GGML_Q4_1 && !is_f16(-s * (float)z)) return k;
  }
  return -1;
}

/* ---- K-quants (ggml-common.h block_q6_K, block_q3_K) ---- */

enum { KSUB = 16, KSUBS = GGUF_QK_K / KSUB }; /* sub-blocks of 16 columns, 16 per super-block */

int ggml_block_cols(const QLayerView *L) {
  return L->mins || (L->group_size == KSUB && (L->bits == 3 || L->bits == 6)) ? GGUF_QK_K : GGUF_QBLOCK;
}

static int ksc_max(GgmlType t) { return t == GGML_Q6_K ? 127 : 31; }

/* The n scales s of a super-block as d * sc[g] exactly, d an fp16 value and
 * sc[g] integers in [lo, sc_max] (lo 1 for scales, 0 for mins: all-zero
 * mins are d = 0): the largest sc for the largest scale first. 0, or -1 if
 * there is none. */
static int kgrid_split_from(const float *s, int n, int lo, int sc_max, float *d, int *sc) {
  float smax = 0.0f;
  int zero = 1;
  for (int g = 0; g < n; g++) {
    smax = s[g] > smax ? s[g] : smax;
    zero = zero && s[g] == 0.0f;
  }
  if (lo == 0 && zero) {
    for (int g = 0; g < n; g++) sc[g] = 0;
    *d = 0.0f;
    return 0;
  }
  for (int k = sc_max; k >= 1 && smax > 0.0f; k--) {
    float dd = smax / (float)k;
    int ok = is_f16(dd) && dd > 0.0f;
    for (int g = 0; ok && g < n; g++) {
      float r = rintf(s[g] / dd);
      ok = r >= (float)lo && r <= (float)sc_max && dd * r == s[g];
      sc[g] = (int)r;
    }
    if (ok) {
      *d = dd;
      return 0;
    }
  }
  return -1;
}

static int kgrid_split(const float *s, int n, int sc_max, float *d, int *sc) { return kgrid_split_from(s, n, 1, sc_max, d, sc); }

/* Q3_K, Q6_K: the scales as d * sc with nonzero sc in [-(sc_max + 1),
 * sc_max] (grid_search gives scales of either sign, ksearch.h). Positive
 * scales as kgrid_split (the same file as before); else, for the scale of
 * largest magnitude, sc of the largest magnitude first, negative before
 * positive (llama.cpp's d = max_scale / -128 (-32) lands it on -128). */
static int kgrid_split_signed(const float *s, int n, int sc_max, float *d, int *sc) {
  if (!kgrid_split(s, n, sc_max, d, sc)) return 0;
  float smag = 0.0f;
  for (int g = 0; g < n; g++) smag = fabsf(s[g]) > fabsf(smag) ? s[g] : smag;
  for (int k = sc_max + 1; k >= 1 && smag != 0.0f; k--)
    for (int sign = -1; sign <= 1; sign += 2) {
      if (sign * k > sc_max) continue;
      float dd = smag / (float)(sign * k);
      int ok = is_f16(dd);
      for (int g = 0; ok && g < n; g++) {
        float r = rintf(s[g] / dd);
        ok = r != 0.0f && r >= (float)-(sc_max + 1) && r <= (float)sc_max && dd * r == s[g];
        sc[g] = (int)r;
      }
      if (ok) {
        *d = dd;
        return 0;
      }
    }
  return -1;
}

/* Is the layer a K-quant layer of type t in rows of padded_cols? 0 if so,
 * else APTQ_ERR naming the first misfit and the setting. */
static int kquant_fits(const char *name, const QLayerView *L, GgmlType t, int padded_cols) {
  int ng = quant_ngroups(L->cols, L->group_size), zero = 1 << (L->bits - 1);
  const char *grid = t == GGML_Q6_K ? "q6_k" : "q3_k";
  for (int j = 0; j < L->cols; j++)
    if (L->g_idx[j] != j / KSUB)
      return aptq_error(
          "layer %s groups columns in act-order (g_idx[%d] = %d); ggml's K-quant sub-blocks are 16 consecutive columns: "
          "quantize with grid = %s (static groups)",
          name, j, L->g_idx[j], grid);
  for (int i = 0; i < L->rows; i++)
    for (int b = 0; b < padded_cols / GGUF_QK_K; b++) {
      int n = ng - b * KSUBS < KSUBS ? ng - b * KSUBS : KSUBS, sc[KSUBS];
      const float *s = L->scales + (int64_t)i * ng + b * KSUBS;
      float d;
      for (int g = 0; g < n; g++)
        if (L->zeros[(int64_t)i * ng + b * KSUBS + g] != zero)
          return aptq_error("layer %s row %d group %d has zero point %d; %s is symmetric (zero %d): quantize with grid = %s", name, i,
                            b * KSUBS + g, (int)L->zeros[(int64_t)i * ng + b * KSUBS + g], gguf_type_name(t), zero, grid);
      if (kgrid_split_signed(s, n, ksc_max(t), &d, sc))
        return aptq_error(
            "layer %s row %d super-block %d: its group scales are not d * sc (one fp16 d, nonzero integers sc in [%d, %d]), so %s "
            "cannot hold them: quantize with grid = %s",
            name, i, b, -ksc_max(t) - 1, ksc_max(t), gguf_type_name(t), grid);
    }
  return 0;
}

/* ---- K-quants with mins (block_q4_K, block_q5_K, block_q2_K) ---- */

/* The type of a layer with mins: 4 or 5 bits in groups of 32 (Q4_K, Q5_K,
 * 6-bit scales and mins), 2 bits in groups of 16 (Q2_K, 4-bit ones); else
 * F32 (no ggml type). */
static GgmlType kmin_type(const QLayerView *L) {
  if (L->group_size == 32 && L->bits == 4) return GGML_Q4_K;
  if (L->group_size == 32 && L->bits == 5) return GGML_Q5_K;
  if (L->group_size == KSUB && L->bits == 2) return GGML_Q2_K;
  return GGML_F32;
}

static int kmin_max(GgmlType t) { return t == GGML_Q2_K ? 15 : 63; }

/* Super-block b of row i: the sub-blocks' scales d * sc and mins dmin * m
 * (sc and m 0 past the layer's groups). 0, or -1 if they are no such. */
static int kmin_split(const QLayerView *L, GgmlType t, int i, int b, float *d, int *sc, float *dmin, int *m) {
  int ng = quant_ngroups(L->cols, L->group_size), per = GGUF_QK_K / L->group_size;
  int n = ng - b * per < per ? ng - b * per : per;
  for (int g = 0; g < per; g++) sc[g] = m[g] = 0;
  *d = *dmin = 0.0f;
  if (n <= 0) return 0;
  size_t k = (size_t)i * ng + (size_t)b * per;
  return kgrid_split(L->scales + k, n, kmin_max(t), d, sc) || kgrid_split_from(L->mins + k, n, 0, kmin_max(t), dmin, m) ? -1 : 0;
}

static int kmin_exact_type(const char *name, const QLayerView *L, int padded_cols, GgmlType *type) {
  GgmlType t = kmin_type(L);
  if (t == GGML_F32)
    return aptq_error(
        "layer %s has mins at %d bits in groups of %d; ggml holds scale * code - min as Q4_K or Q5_K (4 or 5 bits, groups of 32) or "
        "Q2_K (2 bits, groups of 16): quantize with grid = q4_k, q5_k or q2_k",
        name, L->bits, L->group_size);
  const char *grid = t == GGML_Q4_K ? "q4_k" : t == GGML_Q5_K ? "q5_k" : "q2_k";
  if (padded_cols % GGUF_QK_K || quant_ngroups(L->cols, GGUF_QK_K) != padded_cols / GGUF_QK_K) {
    *type = GGML_F32; /* super-blocks need whole rows of 256: our dequantized values, exactly */
    return 0;
  }
  for (int j = 0; j < L->cols; j++)
    if (L->g_idx[j] != j / L->group_size)
      return aptq_error(
          "layer %s groups columns in act-order (g_idx[%d] = %d); ggml's K-quant sub-blocks are consecutive columns: quantize with "
          "grid = %s (static groups)",
          name, j, L->g_idx[j], grid);
  int ng = quant_ngroups(L->cols, L->group_size);
  for (int64_t k = 0; k < (int64_t)L->rows * ng; k++)
    if (L->zeros[k])
      return aptq_error(
          "layer %s row %d group %d has zero point %d with a min; %s decodes scale * code - min (zero 0): quantize with grid = %s", name,
          (int)(k / ng), (int)(k % ng), (int)L->zeros[k], gguf_type_name(t), grid);
  for (int i = 0; i < L->rows; i++)
    for (int b = 0; b < padded_cols / GGUF_QK_K; b++) {
      float d, dmin;
      int sc[KSUBS], m[KSUBS];
      if (kmin_split(L, t, i, b, &d, sc, &dmin, m))
        return aptq_error(
            "layer %s row %d super-block %d: its group scales and mins are not d * sc and dmin * m (fp16 d and dmin, integers up to "
            "%d), so %s cannot hold them: quantize with grid = %s",
            name, i, b, kmin_max(t), gguf_type_name(t), grid);
    }
  *type = t;
  return 0;
}

/* The codes of super-block b of row i: the row's, then past cols the code
 * nearest 0 in a group's own sub-block (scale * code - min; not 0 exactly
 * in general: such a column of down_proj multiplies a padded hidden unit,
 * which is exactly 0), 0 past the groups (sc = m = 0: the value 0). */
static void kmin_codes(const QLayerView *L, int i, const uint8_t *codes, int b, uint8_t *c) {
  int ng = quant_ngroups(L->cols, L->group_size), maxq = (1 << L->bits) - 1;
  for (int j = 0; j < GGUF_QK_K; j++) {
    int col = b * GGUF_QK_K + j, g = col / L->group_size;
    size_t k = (size_t)i * ng + (size_t)g;
    c[j] = col < L->cols ? codes[col] : g < ng ? (uint8_t)quant_code_min(0.0f, L->scales[k], 0, L->mins[k], maxq) : 0;
  }
}

float ggml_pad_value(const QLayerView *L, int i, int col) {
  int ng = quant_ngroups(L->cols, L->group_size), g = L->group_size > 0 ? col / L->group_size : ng;
  if (!L->mins || g >= ng) return 0.0f;
  size_t k = (size_t)i * ng + (size_t)g;
  int32_t c = quant_code_min(0.0f, L->scales[k], 0, L->mins[k], (1 << L->bits) - 1);
  return quant_dequant_min(c, L->scales[k], 0, L->mins[k]);
}

static void put_f16(uint8_t *p, float x) {
  uint16_t h = gguf_f32_to_f16(x);
  memcpy(p, &h, 2);
}

/* quantize_row_q4_K_ref's packing of 6-bit scales and mins (j < 4: low 6
 * bits of bytes j and j + 4; else nibbles of byte j + 4 and the top 2 bits
 * of bytes j - 4 and j), read back by get_scale_min_k4. */
static void pack_scale_min_k4(const int *sc, const int *m, uint8_t *scales) {
  memset(scales, 0, 12);
  for (int j = 0; j < 8; j++) {
    if (j < 4) {
      scales[j] = (uint8_t)sc[j];
      scales[j + 4] = (uint8_t)m[j];
    } else {
      scales[j + 4] = (uint8_t)((sc[j] & 0xF) | ((m[j] & 0xF) << 4));
      scales[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
      scales[j - 0] |= (uint8_t)((m[j] >> 4) << 6);
    }
  }
}

static void get_scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

/* Super-block b of row i of a layer with mins as block t (quantize_row_q4_K_ref,
 * _q5_K_ref, _q2_K_ref's layouts). */
static void encode_kmin(const QLayerView *L, GgmlType t, int i, const uint8_t *codes, int b, uint8_t *blk) {
  uint8_t c[GGUF_QK_K];
  float d, dmin;
  int sc[KSUBS], m[KSUBS];
  kmin_split(L, t, i, b, &d, sc, &dmin, m); /* checked by ggml_exact_type */
  kmin_codes(L, i, codes, b, c);
  if (t == GGML_Q2_K) { /* scales[16], qs[64], d, dmin */
    memset(blk, 0, GGUF_Q2_K_BYTES);
    for (int j = 0; j < KSUBS; j++) blk[j] = (uint8_t)(sc[j] | m[j] << 4);
    for (int j = 0; j < GGUF_QK_K; j += 128)
      for (int l = 0; l < 32; l++) blk[16 + j / 4 + l] = (uint8_t)(c[j + l] | c[j + l + 32] << 2 | c[j + l + 64] << 4 | c[j + l + 96] << 6);
    put_f16(blk + 80, d);
    put_f16(blk + 82, dmin);
    return;
  }
  /* d, dmin, scales[12], then Q5_K: qh[32] (bit 4 of the codes), qs[128] (low nibbles) */
  memset(blk, 0, t == GGML_Q4_K ? GGUF_Q4_K_BYTES : GGUF_Q5_K_BYTES);
  put_f16(blk, d);
  put_f16(blk + 2, dmin);
  pack_scale_min_k4(sc, m, blk + 4);
  uint8_t *qh = blk + 16, *q = t == GGML_Q5_K ? blk + 48 : blk + 16, m1 = 1, m2 = 2;
  for (int n = 0; n < GGUF_QK_K; n += 64, q += 32, m1 = (uint8_t)(m1 << 2), m2 = (uint8_t)(m2 << 2))
    for (int l = 0; l < 32; l++) {
      int l1 = c[n + l], l2 = c[n + l + 32];
      if (l1 > 15) l1 -= 16, qh[l] |= m1;
      if (l2 > 15) l2 -= 16, qh[l] |= m2;
      q[l] = (uint8_t)(l1 | l2 << 4);
    }
}

/* dequantize_row_q4_K / q5_K / q2_K: the same float operations in the same order. */
static void decode_kmin(GgmlType t, const uint8_t *blk, float *y) {
  uint16_t hd, hm;
  memcpy(&hd, t == GGML_Q2_K ? blk + 80 : blk, 2);
  memcpy(&hm, t == GGML_Q2_K ? blk + 82 : blk + 2, 2);
  const float d = gguf_f16_to_f32(hd), min = gguf_f16_to_f32(hm);
  if (t == GGML_Q2_K) {
    const uint8_t *q = blk + 16;
    int is = 0;
    for (int n = 0; n < GGUF_QK_K; n += 128, q += 32)
      for (int j = 0, shift = 0; j < 4; j++, shift += 2) {
        uint8_t sc = blk[is++];
        float dl = d * (sc & 0xF), ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l] >> shift) & 3)) - ml;
        sc = blk[is++];
        dl = d * (sc & 0xF), ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3)) - ml;
      }
    return;
  }
  const uint8_t *scales = blk + 4, *qh = blk + 16, *q = t == GGML_Q5_K ? blk + 48 : blk + 16;
  int is = 0, sc, m;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < GGUF_QK_K; j += 64, q += 32, is += 2, u1 = (uint8_t)(u1 << 2), u2 = (uint8_t)(u2 << 2)) {
    get_scale_min_k4(is + 0, scales, &sc, &m);
    const float d1 = d * sc, m1 = min * m;
    get_scale_min_k4(is + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = min * m;
    int h1 = t == GGML_Q5_K, h2 = t == GGML_Q5_K;
    for (int l = 0; l < 32; ++l) *y++ = d1 * ((q[l] & 0xF) + (h1 && (qh[l] & u1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * ((q[l] >> 4) + (h2 && (qh[l] & u2) ? 16 : 0)) - m2;
  }
}

int ggml_exact_type(const char *name, const QLayerView *L, int padded_cols, GgmlType *type) {
  if (L->mins) return kmin_exact_type(name, L, padded_cols, type);
  if (ggml_block_cols(L) == GGUF_QK_K) {
    if (padded_cols % GGUF_QK_K || quant_ngroups(L->cols, GGUF_QK_K) != padded_cols / GGUF_QK_K) {
      *type = GGML_F32; /* super-blocks need whole rows of 256 */
      return 0;
    }
    GgmlType t = L->bits == 6 ? GGML_Q6_K : GGML_Q3_K;
    CHECK(kquant_fits(name, L, t, padded_cols));
    *type = t;
    return 0;
  }
  if (padded_cols % GGUF_QBLOCK || quant_ngroups(L->cols, GGUF_QBLOCK) > padded_cols / GGUF_QBLOCK) {
    *type = GGML_F32; /* ggml blocks need whole rows of 32: our dequantized values, exactly */
    return 0;
  }
  if (L->bits != 4 && L->bits != 8)
    return aptq_error(
        "layer %s is at %d bits; GGUF export maps 4 bits (Q4_0/Q4_1), 8 bits (Q8_0), in groups of 16 3 and 6 bits (Q3_K, Q6_K), "
        "and layers with mins (Q2_K, Q4_K, Q5_K) exactly: quantize with grid = q4_0, q4_1, q8_0, q3_k, q6_k, q2_k, q4_k or q5_k "
        "(mixed precision: grid = ggml)",
        name, L->bits);
  if (L->group_size != GGUF_QBLOCK)
    return aptq_error("layer %s has group_size %d; ggml's Q4_0/Q4_1/Q8_0 blocks are 32 columns: quantize with group_size = 32", name,
                      L->group_size);
  for (int j = 0; j < L->cols; j++)
    if (L->g_idx[j] != j / GGUF_QBLOCK)
      return aptq_error(
          "layer %s groups columns in act-order (g_idx[%d] = %d); ggml blocks are 32 consecutive columns: quantize with "
          "static_groups = yes (or act_order = no)",
          name, j, L->g_idx[j]);
  int ng = quant_ngroups(L->cols, L->group_size);
  GgmlType t = L->bits == 8 ? GGML_Q8_0 : GGML_Q4_0;
  int64_t bad = first_misfit(L, t);
  if (bad >= 0 && L->bits == 4 && L->zeros[bad] != 8) {
    t = GGML_Q4_1;
    bad = first_misfit(L, t);
  }
  if (bad < 0) {
    *type = t;
    return 0;
  }
  float s = L->scales[bad];
  int32_t z = L->zeros[bad];
  int row = (int)(bad / ng), g = (int)(bad % ng);
  if (!is_f16(s))
    return aptq_error("layer %s row %d group %d has scale %.9g, not an fp16 value: quantize with scale_dtype = fp16 (or grid = %s)", name,
                      row, g, (double)s, L->bits == 8 ? "q8_0" : "q4_0");
  if (t == GGML_Q8_0)
    return aptq_error("layer %s row %d group %d has zero point %d; Q8_0 is symmetric (zero 128): quantize with sym = yes (or grid = q8_0)",
                      name, row, g, (int)z);
  return aptq_error(
      "layer %s row %d group %d: min = -scale*zero = %.9g is not an fp16 value, so Q4_1 cannot hold it: quantize with grid "
      "= q4_1 (or sym = yes for Q4_0)",
      name, row, g, (double)(-s * (float)z));
}

/* Super-block b of row i (type Q6_K or Q3_K): its codes (the columns past
 * cols: the zero point's), d and sub-block scales (0 past the groups). */
static void kquant_block(const QLayerView *L, GgmlType t, int i, const uint8_t *codes, int b, uint8_t *c, float *d, int *sc) {
  int ng = quant_ngroups(L->cols, L->group_size), n = ng - b * KSUBS < KSUBS ? ng - b * KSUBS : KSUBS;
  for (int g = 0; g < KSUBS; g++) sc[g] = 0;
  *d = 0.0f;
  if (n > 0) kgrid_split_signed(L->scales + (int64_t)i * ng + b * KSUBS, n, ksc_max(t), d, sc); /* checked by ggml_exact_type */
  for (int j = 0; j < GGUF_QK_K; j++) {
    int col = b * GGUF_QK_K + j;
    c[j] = col < L->cols ? codes[col] : (uint8_t)(1 << (L->bits - 1));
  }
}

/* quantize_row_q6_K_ref's packing: ql (low nibbles), qh (high 2 bits),
 * int8 scales, d. */
static void encode_q6_k(const uint8_t *c, float d, const int *sc, uint8_t *blk) {
  uint8_t *ql = blk, *qh = blk + 128;
  for (int j = 0; j < GGUF_QK_K; j += 128, ql += 64, qh += 32)
    for (int l = 0; l < 32; l++) {
      const uint8_t *L = c + j + l;
      ql[l] = (uint8_t)((L[0] & 0xF) | (L[64] & 0xF) << 4);
      ql[l + 32] = (uint8_t)((L[32] & 0xF) | (L[96] & 0xF) << 4);
      qh[l] = (uint8_t)(L[0] >> 4 | (L[32] >> 4) << 2 | (L[64] >> 4) << 4 | (L[96] >> 4) << 6);
    }
  for (int g = 0; g < KSUBS; g++) blk[192 + g] = (uint8_t)(int8_t)sc[g];
  uint16_t h = gguf_f32_to_f16(d);
  memcpy(blk + 208, &h, 2);
}

/* quantize_row_q3_K_ref's packing: hmask (bit j / 32 of byte j % 32: the
 * code's bit 2), qs (low 2 bits), 6-bit scales sc + 32 in 12 bytes, d. */
static void encode_q3_k(const uint8_t *c, float d, const int *sc, uint8_t *blk) {
  uint8_t *hmask = blk, *qs = blk + 32, *scales = blk + 96, L[GGUF_QK_K];
  memset(blk, 0, GGUF_Q3_K_BYTES);
  for (int j = 0; j < GGUF_QK_K; j++) {
    L[j] = c[j] & 3;
    if (c[j] > 3) hmask[j % 32] |= (uint8_t)(1u << (j / 32));
  }
  for (int j = 0; j < GGUF_QK_K; j += 128)
    for (int l = 0; l < 32; l++) qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
  for (int j = 0; j < KSUBS; j++) {
    int l = sc[j] + 32;
    if (j < 8) scales[j] = (uint8_t)(l & 0xF);
    else scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
    scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
  }
  uint16_t h = gguf_f32_to_f16(d);
  memcpy(blk + 108, &h, 2);
}

void ggml_encode_row(const QLayerView *L, GgmlType t, int i, const uint8_t *codes, int padded_cols, uint8_t *dst) {
  if (t == GGML_Q4_K || t == GGML_Q5_K || t == GGML_Q2_K) {
    for (int b = 0; b < padded_cols / GGUF_QK_K; b++) encode_kmin(L, t, i, codes, b, dst + (size_t)b * gguf_row_bytes(t, GGUF_QK_K));
    return;
  }
  if (t == GGML_Q6_K || t == GGML_Q3_K) {
    for (int b = 0; b < padded_cols / GGUF_QK_K; b++) {
      uint8_t c[GGUF_QK_K];
      float d;
      int sc[KSUBS];
      kquant_block(L, t, i, codes, b, c, &d, sc);
      if (t == GGML_Q6_K) encode_q6_k(c, d, sc, dst + (size_t)b * GGUF_Q6_K_BYTES);
      else encode_q3_k(c, d, sc, dst + (size_t)b * GGUF_Q3_K_BYTES);
    }
    return;
  }
  int ng = quant_ngroups(L->cols, L->group_size);
  for (int b = 0; b < padded_cols / GGUF_QBLOCK; b++) {
    /* blocks past the groups (a Q4_0/Q8_0 down_proj in a file whose MLP is
     * padded to 256 for its K-quant layers): d = 0, the value 0 */
    float s = b < ng ? L->scales[(int64_t)i * ng + b] : 0.0f;
    int32_t z = b < ng ? L->zeros[(int64_t)i * ng + b] : t == GGML_Q8_0 ? 128 : t == GGML_Q4_0 ? 8 : 0;
    uint8_t c[GGUF_QBLOCK];
    for (int j = 0; j < GGUF_QBLOCK; j++) {
      int col = b * GGUF_QBLOCK + j;
      c[j] = col < L->cols ? codes[col] : (uint8_t)z;
    }
    uint16_t d = gguf_f32_to_f16(s);
    if (t == GGML_Q8_0) { /* block_q8_0: d, qs[32] */
      uint8_t *blk = dst + (size_t)b * GGUF_Q8_0_BYTES;
      memcpy(blk, &d, 2);
      for (int j = 0; j < GGUF_QBLOCK; j++) blk[2 + j] = (uint8_t)(int8_t)(c[j] - z);
      continue;
    }
    /* block_q4_0: d, qs[16]; block_q4_1: d, m, qs[16]. qs[j] holds element j
     * in its low nibble and element j + 16 in its high nibble. */
    uint8_t *blk = dst + (size_t)b * (t == GGML_Q4_0 ? GGUF_Q4_0_BYTES : GGUF_Q4_1_BYTES), *qs = blk + 2;
    memcpy(blk, &d, 2);
    if (t == GGML_Q4_1) {
      uint16_t m = gguf_f32_to_f16(-s * (float)z);
      memcpy(blk + 2, &m, 2);
      qs = blk + 4;
    }
    for (int j = 0; j < GGUF_QBLOCK / 2; j++) qs[j] = (uint8_t)(c[j] | c[j + GGUF_QBLOCK / 2] << 4);
  }
}

/* dequantize_row_q6_K, the same float operations in the same order. */
static void decode_q6_k(const uint8_t *blk, float *y) {
  uint16_t h;
  memcpy(&h, blk + 208, 2);
  const float d = gguf_f16_to_f32(h);
  const uint8_t *ql = blk, *qh = blk + 128;
  const int8_t *sc = (const int8_t *)(blk + 192);
  for (int n = 0; n < GGUF_QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
    for (int l = 0; l < 32; l++) {
      int is = l / 16;
      const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l + 0] = d * sc[is + 0] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
}

/* dequantize_row_q3_K: the 6-bit scales unpacked as quantize_row_q3_K_ref
 * reads them back, then d_all * (sc - 32) * (q - (hmask bit ? 0 : 4)). */
static void decode_q3_k(const uint8_t *blk, float *y) {
  uint16_t h;
  memcpy(&h, blk + 108, 2);
  const float d_all = gguf_f16_to_f32(h);
  const uint8_t *hm = blk, *q = blk + 32, *s = blk + 96;
  int scales[KSUBS];
  for (int j = 0; j < KSUBS; j++) scales[j] = ((j < 8 ? s[j] & 0xF : s[j - 8] >> 4) | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4));
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < GGUF_QK_K; n += 128, q += 32)
    for (int j = 0, shift = 0; j < 4; j++, shift += 2, m = (uint8_t)(m << 1)) {
      float dl = d_all * (scales[is++] - 32);
      for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
      dl = d_all * (scales[is++] - 32);
      for (int l = 0; l < 16; ++l) *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
    }
}

void ggml_decode_row(GgmlType t, const uint8_t *src, int n, float *y) {
  if (t == GGML_F32) {
    memcpy(y, src, sizeof(float) * (size_t)n);
    return;
  }
  if (t == GGML_F16) {
    for (int j = 0; j < n; j++) {
      uint16_t h;
      memcpy(&h, src + 2 * j, 2);
      y[j] = gguf_f16_to_f32(h);
    }
    return;
  }
  if (t == GGML_Q4_K || t == GGML_Q5_K || t == GGML_Q2_K) {
    for (int b = 0; b < n / GGUF_QK_K; b++, y += GGUF_QK_K) decode_kmin(t, src + (size_t)b * gguf_row_bytes(t, GGUF_QK_K), y);
    return;
  }
  if (t == GGML_Q6_K || t == GGML_Q3_K) {
    for (int b = 0; b < n / GGUF_QK_K; b++, y += GGUF_QK_K) {
      if (t == GGML_Q6_K) decode_q6_k(src + (size_t)b * GGUF_Q6_K_BYTES, y);
      else decode_q3_k(src + (size_t)b * GGUF_Q3_K_BYTES, y);
    }
    return;
  }
  for (int b = 0; b < n / GGUF_QBLOCK; b++, y += GGUF_QBLOCK) {
    uint16_t hd, hm;
    if (t == GGML_Q8_0) {
      const uint8_t *blk = src + (size_t)b * GGUF_Q8_0_BYTES;
      memcpy(&hd, blk, 2);
      const float d = gguf_f16_to_f32(hd);
      for (int j = 0; j < GGUF_QBLOCK; j++) y[j] = (float)(int8_t)blk[2 + j] * d;
      continue;
    }
    const uint8_t *blk = src + (size_t)b * (t == GGML_Q4_0 ? GGUF_Q4_0_BYTES : GGUF_Q4_1_BYTES), *qs = blk + 2;
    memcpy(&hd, blk, 2);
    const float d = gguf_f16_to_f32(hd);
    float m = 0.0f;
    if (t == GGML_Q4_1) {
      memcpy(&hm, blk + 2, 2);
      m = gguf_f16_to_f32(hm);
      qs = blk + 4;
    }
    for (int j = 0; j < GGUF_QBLOCK / 2; j++) {
      int x0 = qs[j] & 0x0F, x1 = qs[j] >> 4;
      if (t == GGML_Q4_0) {
        y[j] = (float)(x0 - 8) * d;
        y[j + GGUF_QBLOCK / 2] = (float)(x1 - 8) * d;
      } else {
        y[j] = (float)x0 * d + m;
        y[j + GGUF_QBLOCK / 2] = (float)x1 * d + m;
      }
    }
  }
}
