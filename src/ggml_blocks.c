#include "ggml_blocks.h"

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

int ggml_exact_type(const char *name, const QLayerView *L, int padded_cols, GgmlType *type) {
  if (padded_cols % GGUF_QBLOCK || quant_ngroups(L->cols, GGUF_QBLOCK) != padded_cols / GGUF_QBLOCK) {
    *type = GGML_F32; /* ggml blocks need whole rows of 32: our dequantized values, exactly */
    return 0;
  }
  if (L->bits != 4 && L->bits != 8)
    return aptq_error(
        "layer %s is at %d bits; GGUF export maps 4 bits (Q4_0/Q4_1) and 8 bits (Q8_0) exactly: quantize at bits = 4 or 8 "
        "(no mixed precision)",
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

void ggml_encode_row(const QLayerView *L, GgmlType t, int i, const uint8_t *codes, int padded_cols, uint8_t *dst) {
  int ng = quant_ngroups(L->cols, L->group_size);
  for (int b = 0; b < padded_cols / GGUF_QBLOCK; b++) {
    float s = L->scales[(int64_t)i * ng + b];
    int32_t z = L->zeros[(int64_t)i * ng + b];
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
