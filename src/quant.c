#include "quant.h"

#include <string.h>

#include "gguf.h"

static int fp16_scales, fp16_mins, kgrid_sc_max, kgrid_m_max;

void quant_set_fp16_scales(int on) { fp16_scales = on; }
void quant_set_fp16_mins(int on) { fp16_mins = on; }
void quant_set_kgrid(int sc_max) { kgrid_sc_max = sc_max; }
int quant_kgrid(void) { return kgrid_sc_max; }
void quant_set_kgrid_mins(int m_max) { kgrid_m_max = m_max; }
int quant_kgrid_mins(void) { return kgrid_m_max; }

/* Round a positive float to the nearest IEEE half, ties to even (portable:
 * no _Float16). Normal halves keep 10 of the float's 23 mantissa bits;
 * below 2^-14 the spacing is 2^-24. */
static float round_half(float x) {
  if (x < 6.1035156e-05f) return rintf(x * 16777216.0f) / 16777216.0f; /* exact power-of-two scalings */
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  u += 0xFFFu + ((u >> 13) & 1u);
  u &= ~0x1FFFu;
  memcpy(&x, &u, sizeof u);
  return x;
}

float quant_scale_round(float scale) {
  if (!fp16_scales) return scale;
  const float tiny = 5.9604645e-08f, huge = 65504.0f; /* smallest subnormal, largest finite half */
  return round_half(scale < tiny ? tiny : scale > huge ? huge : scale);
}

/* The fp16 value nearest x > 0, clamped to the positive finite halves. */
static float half_of(float x) {
  const float tiny = 5.9604645e-08f, huge = 65504.0f;
  return gguf_f16_to_f32(gguf_f32_to_f16(x < tiny ? tiny : x > huge ? huge : x));
}

void quant_kgrid_row(float *scales, int ng, int group_size) {
  if (!kgrid_sc_max || group_size <= 0) return;
  int per = QUANT_QK_K / group_size;
  for (int b = 0; b < ng; b += per) {
    int n = ng - b < per ? ng - b : per;
    float smax = 0.0f;
    for (int g = 0; g < n; g++) smax = scales[b + g] > smax ? scales[b + g] : smax;
    float d = half_of(smax / (float)kgrid_sc_max);
    for (int g = 0; g < n; g++) {
      float sc = rintf(scales[b + g] / d);
      sc = sc < 1.0f ? 1.0f : sc > (float)kgrid_sc_max ? (float)kgrid_sc_max : sc;
      scales[b + g] = d * sc;
    }
  }
}

/* The n values v (n <= 16) on d * k, d = fp16(largest / kmax), k = round(v / d) in [lo, kmax]. */
static void onto_grid(float *v, int n, int stride, int lo, int kmax) {
  float vmax = 0.0f;
  for (int g = 0; g < n; g++) vmax = v[g * stride] > vmax ? v[g * stride] : vmax;
  float d = half_of(vmax / (float)kmax);
  for (int g = 0; g < n; g++) {
    float k = rintf(v[g * stride] / d);
    k = k < (float)lo ? (float)lo : k > (float)kmax ? (float)kmax : k;
    v[g * stride] = d * k;
  }
}

void quant_kgrid_row_mins(float *scales, float *mins, int ng, int group_size) {
  if (!kgrid_m_max || group_size <= 0) return;
  int per = QUANT_QK_K / group_size;
  for (int b = 0; b < ng; b += per) {
    int n = ng - b < per ? ng - b : per;
    onto_grid(scales + b, n, 1, 1, kgrid_m_max);
    onto_grid(mins + b, n, 1, 0, kgrid_m_max);
  }
}

void quant_find_params_min(const float *w, int n, int stride, int bits, float *scale, float *min) {
  float xmin, xmax;
  quant_range(w, n, stride, 0, &xmin, &xmax);
  *scale = (xmax - xmin) / (float)((1 << bits) - 1);
  *min = -xmin;
}

static int is_half(float x) { return gguf_f16_to_f32(gguf_f32_to_f16(x)) == x; }

void quant_asym_zero(float xmin, int32_t maxq, float *scale, int32_t *zero) {
  *zero = (int32_t)rintf(-xmin / *scale);
  if (!fp16_mins) return;
  uint16_t h = gguf_f32_to_f16(*scale);
  for (int k = 0; k <= 32; k++) {
    int step = k % 2 ? -(k + 1) / 2 : k / 2; /* 0, -1, +1, -2, +2, ... */
    if (h + step < 1 || h + step >= 0x7C00) continue;
    float s = gguf_f16_to_f32((uint16_t)(h + step));
    float z = rintf(-xmin / s);
    z = z < 0.0f ? 0.0f : z > (float)maxq ? (float)maxq : z;
    if (is_half(s * z)) {
      *scale = s;
      *zero = (int32_t)z;
      return;
    }
  }
}

void quant_range(const float *w, int n, int stride, int sym, float *lo, float *hi) {
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
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  *lo = xmin;
  *hi = xmax;
}

void quant_find_params(const float *w, int n, int stride, int bits, int sym, float *scale, int32_t *zero) {
  int32_t maxq = (1 << bits) - 1;
  float xmin, xmax;
  quant_range(w, n, stride, sym, &xmin, &xmax);
  *scale = quant_scale_round((xmax - xmin) / (float)maxq);
  if (sym) *zero = (maxq + 1) / 2;
  else quant_asym_zero(xmin, maxq, scale, zero);
}

void quant_rtn(const float *W, int rows, int cols, int group_size, int bits, int sym, uint8_t *codes, float *scales, int32_t *zeros,
               double *err2) {
  int32_t maxq = (1 << bits) - 1;
  int gs = group_size > 0 ? group_size : cols, ng = quant_ngroups(cols, group_size);
  double e = 0.0;
  for (int r = 0; r < rows; r++) {
    const float *row = W + (int64_t)r * cols;
    for (int g = 0; g < ng; g++) {
      float scale;
      int32_t zero;
      int end = quant_group_end(g * gs, gs, cols);
      quant_find_params(row + g * gs, end - g * gs, 1, bits, sym, &scale, &zero);
      scales[(int64_t)r * ng + g] = scale;
      zeros[(int64_t)r * ng + g] = zero;
    }
    quant_kgrid_row(scales + (int64_t)r * ng, ng, group_size);
    for (int g = 0; g < ng; g++) {
      float scale = scales[(int64_t)r * ng + g];
      int32_t zero = zeros[(int64_t)r * ng + g];
      int end = quant_group_end(g * gs, gs, cols);
      for (int j = g * gs; j < end; j++) {
        int32_t q = quant_code(row[j], scale, zero, maxq);
        codes[(int64_t)r * cols + j] = (uint8_t)q;
        double d = (double)row[j] - (double)quant_dequant(q, scale, zero);
        e += d * d;
      }
    }
  }
  *err2 += e;
}

void quant_error_norm(const float *w, const float *q, size_t n, double *err2, double *norm2) {
  double e = *err2, s = norm2 ? *norm2 : 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)w[i] - q[i];
    e += d * d;
    s += (double)w[i] * w[i];
  }
  *err2 = e;
  if (norm2) *norm2 = s;
}

void quant_pack_row(const uint8_t *codes, int cols, int bits, uint32_t *words) {
  memset(words, 0, sizeof(uint32_t) * (size_t)quant_words_per_row(cols, bits));
  for (int64_t j = 0; j < cols; j++) {
    int64_t bit = j * bits;
    uint64_t v = (uint64_t)codes[j] << (bit % 32);
    words[bit / 32] |= (uint32_t)v;
    if ((bit % 32) + bits > 32) words[bit / 32 + 1] |= (uint32_t)(v >> 32);
  }
}

void quant_unpack_row(const uint32_t *words, int cols, int bits, uint8_t *codes) {
  uint32_t mask = (1u << bits) - 1;
  for (int64_t j = 0; j < cols; j++) {
    int64_t bit = j * bits;
    uint64_t v = words[bit / 32] >> (bit % 32);
    if ((bit % 32) + bits > 32) v |= (uint64_t)words[bit / 32 + 1] << (32 - bit % 32);
    codes[j] = (uint8_t)(v & mask);
  }
}

void quant_rtn_mins(const float *W, int rows, int cols, int group_size, int bits, uint8_t *codes, float *scales, int32_t *zeros,
                    float *mins, double *err2) {
  int32_t maxq = (1 << bits) - 1;
  int gs = group_size > 0 ? group_size : cols, ng = quant_ngroups(cols, group_size);
  double e = 0.0;
  for (int r = 0; r < rows; r++) {
    const float *row = W + (int64_t)r * cols;
    float *s = scales + (int64_t)r * ng, *m = mins + (int64_t)r * ng;
    for (int g = 0; g < ng; g++) {
      int end = quant_group_end(g * gs, gs, cols);
      quant_find_params_min(row + g * gs, end - g * gs, 1, bits, &s[g], &m[g]);
      zeros[(int64_t)r * ng + g] = 0;
    }
    quant_kgrid_row_mins(s, m, ng, group_size);
    for (int j = 0; j < cols; j++) {
      int g = j / gs;
      int32_t q = quant_code_min(row[j], s[g], 0, m[g], maxq);
      codes[(int64_t)r * cols + j] = (uint8_t)q;
      double d = (double)row[j] - (double)quant_dequant_min(q, s[g], 0, m[g]);
      e += d * d;
    }
  }
  *err2 += e;
}
