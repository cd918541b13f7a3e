/* Uniform min/max quantizer with the semantics of the GPTQ reference
 * (IST-DASLab quant.py): asymmetric grid over [min(w,0), max(w,0)], or
 * symmetric around (maxq+1)/2; round half to even; codes clamped to [0, maxq].
 * Codes are bit-packed per row, LSB first, into uint32 words. */
#ifndef APTQ_QUANT_H
#define APTQ_QUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* scales = fp16 (option scale_dtype): every scale is rounded to the nearest
 * IEEE half (clamped to its positive range) as it is made, before the zero
 * point and the codes, so that a GPTQ-format export with fp16 scales
 * dequantizes to exactly the same weights. Process-wide, set once per run. */
void quant_set_fp16_scales(int on);
float quant_scale_round(float scale);
/* grid = q4_1 (llama.cpp's Q4_1 stores the min m = -scale*zero as an fp16
 * value, docs/gguf.md): an asymmetric grid's scale, already fp16, moves to
 * the nearest fp16 value (1, 2, ... fp16 steps, below before above) for which
 * scale*zero is an fp16 value as well, the zero point recomputed for each
 * candidate (one always exists within 8 steps: any scale whose 11-bit
 * significand is a multiple of 16). Process-wide, set once per run. */
void quant_set_fp16_mins(int on);
/* grid = q6_k | q3_k (llama.cpp's K-quants, docs/gguf.md): the symmetric
 * group scales of each super-block of 256 columns (QK_K, ggml-common.h:
 * 16 groups of 16) become d * sc, d one fp16 value per super-block and sc an
 * integer in [1, sc_max] (Q6_K: int8 scales, sc_max 127; Q3_K: 6-bit
 * scales - 32, sc_max 31): d = fp16(max scale / sc_max), sc = round(scale /
 * d) clamped to [1, sc_max]. d * sc is exact in float (at most 11 + 7
 * significant bits), so scale * (q - zero) is ggml's d * sc * (q - zero)
 * (dequantize_row_q6_K/q3_K) bit for bit. sc_max 0: off. Process-wide,
 * set once per run. */
enum { QUANT_QK_K = 256 }; /* columns of a K-quant super-block */
void quant_set_kgrid(int sc_max);
int quant_kgrid(void);
/* A row's ng group scales (groups of group_size columns) moved onto that
 * grid, one super-block of 256 / group_size groups at a time; nothing
 * when off. */
void quant_kgrid_row(float *scales, int ng, int group_size);
/* grid = q4_k | q5_k | q2_k (llama.cpp's K-quants with a min per sub-block,
 * docs/gguf.md): a group's value is scale * code - min (code in [0, maxq],
 * zero point 0), decoded by ggml as d * sc * q - dmin * m
 * (dequantize_row_q4_K/q5_K/q2_K). m_max: the largest m and sc (63 for
 * Q4_K/Q5_K's 6-bit scales and mins, 15 for Q2_K's 4-bit ones); 0: off.
 * Process-wide, set once per run. */
void quant_set_kgrid_mins(int m_max);
int quant_kgrid_mins(void);
/* A group's scale and min from its n values w[0], w[stride], ...: GPTQ's
 * asymmetric range [min(w, 0), max(w, 0)] (quant_range), scale =
 * (xmax - xmin) / maxq, min = -xmin. */
void quant_find_params_min(const float *w, int n, int stride, int bits, float *scale, float *min);
/* A row's ng group scales and mins moved onto that grid, one super-block
 * of 256 / group_size groups at a time: scales d * sc, d = fp16(largest
 * scale / m_max), sc = round(scale / d) in [1, m_max]; mins dmin * m,
 * dmin = fp16(largest min / m_max), m = round(min / dmin) in [0, m_max].
 * The products are exact in float (11 + 6 significant bits), and so is
 * scale * code (at most 22 bits): scale * code - min rounds once, as ggml's
 * d1 * q - m1 does. */
void quant_kgrid_row_mins(float *scales, float *mins, int ng, int group_size);

/* The asymmetric zero point round(-xmin/scale) (GPTQ's), and with fp16 mins
 * the scale adjusted as described. */
void quant_asym_zero(float xmin, int32_t maxq, float *scale, int32_t *zero);

/* The range [lo, hi] the grid of the n values w[0], w[stride], ... spans:
 * [min(w, 0), max(w, 0)], symmetric if sym, [-1, 1] if all are 0. */
void quant_range(const float *w, int n, int stride, int sym, float *lo, float *hi);
/* scale and zero point for the n values w[0], w[stride], ... */
void quant_find_params(const float *w, int n, int stride, int bits, int sym, float *scale, int32_t *zero);

static inline int32_t quant_code(float w, float scale, int32_t zero, int32_t maxq) {
  float q = rintf(w / scale) + (float)zero;
  return q < 0.0f ? 0 : q > (float)maxq ? maxq : (int32_t)q;
}
static inline float quant_dequant(int32_t code, float scale, int32_t zero) { return scale * (float)(code - zero); }
/* With a min (a layer with mins, docs/hdf5-schema.md): the code nearest
 * (w + min) / scale + zero, and the value scale * (code - zero) - min. */
static inline int32_t quant_code_min(float w, float scale, int32_t zero, float min, int32_t maxq) {
  return quant_code(w + min, scale, zero, maxq);
}
static inline float quant_dequant_min(int32_t code, float scale, int32_t zero, float min) {
  float t = scale * (float)(code - zero);
  return t - min;
}

/* groups of group_size consecutive columns; the last may be shorter (as in
 * GPTQ). Without int overflow for any group_size up to INT_MAX. */
static inline int quant_ngroups(int cols, int group_size) { return group_size > 0 ? cols / group_size + (cols % group_size != 0) : 1; }
/* The end of the group that starts at column `start`: min(start + group_size, cols). */
static inline int quant_group_end(int start, int group_size, int cols) { return group_size < cols - start ? start + group_size : cols; }
static inline int quant_words_per_row(int cols, int bits) { return (int)(((int64_t)cols * bits + 31) / 32); }

/* Round-to-nearest of rows × cols (row-major) with groups of group_size
 * consecutive columns (0 = whole row). codes rows × cols, scales/zeros
 * rows × ngroups; err2 += Σ (w − q)². A last group narrower than group_size
 * (cols not a multiple) gets its own grid, as in the GPTQ reference. */
void quant_rtn(const float *W, int rows, int cols, int group_size, int bits, int sym, uint8_t *codes, float *scales, int32_t *zeros,
               double *err2);
/* The same on the grid with mins (quant_kgrid_mins on): zeros 0, mins
 * rows × ngroups. */
void quant_rtn_mins(const float *W, int rows, int cols, int group_size, int bits, uint8_t *codes, float *scales, int32_t *zeros,
                    float *mins, double *err2);

/* The error of q against w (n values), accumulated in float64 in index
 * order: err2 += Σ (w − q)², and norm2 += Σ w² unless norm2 is NULL. */
void quant_error_norm(const float *w, const float *q, size_t n, double *err2, double *norm2);

void quant_pack_row(const uint8_t *codes, int cols, int bits, uint32_t *words);
void quant_unpack_row(const uint32_t *words, int cols, int bits, uint8_t *codes);

#endif
