#include "ksearch.h"

#include <math.h>
#include <string.h>

#include "gguf.h"
#include "quant.h"

static int mode, sym_mode;

void ksearch_set(int m) { mode = m; }
int ksearch_mode(void) { return mode; }
void ksearch_set_sym(int m) { sym_mode = m; }
int ksearch_sym_mode(void) { return sym_mode; }

/* ggml-quants.c nearest_int: round to nearest, ties to even. */
static int nearest_int(float fval) {
  float val = fval + 12582912.f;
  int i;
  memcpy(&i, &val, sizeof(int));
  return (i & 0x007fffff) - 0x00400000;
}

static float fp16(float x) { return gguf_f16_to_f32(gguf_f32_to_f16(x)); }

/* make_qkx2_quants (weights given) and make_qkx3_quants (the same search;
 * they differ only when weights is NULL, which is never the case here),
 * ggml-quants.c, transcribed; returns the scale, *the_min = -min >= 0. */
static float make_qkx_quants(int n, int nmax, const float *x, const float *weights, float *the_min, float rmin, float rdelta, int nstep,
                             int use_mad) {
  uint8_t L[32], Laux[32];
  float min = x[0], max = x[0], sum_w = weights[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max <= min) {
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min), scale = 1 / iscale, best_error = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * (x[i] - min));
    L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
    float diff = scale * L[i] + min - x[i];
    diff = use_mad ? fabsf(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = l < 0 ? 0 : l > nmax ? nmax : l;
      Laux[i] = (uint8_t)l;
      float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        memcpy(L, Laux, (size_t)n);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

/* make_qp_quants, ggml-quants.c, transcribed: x[n] >= 0 on d * L, L in
 * [0, nmax], weighted by qw; returns d. */
static float make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *quant_weights) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = max > x[i] ? max : x[i];
  if (max < 1e-15f) { /* GROUP_MAX_EPS */
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = nmax / max;
  for (int i = 0; i < n; ++i) L[i] = (uint8_t)nearest_int(iscale * x[i]);
  float scale = 1 / iscale, best_mse = 0;
  for (int i = 0; i < n; ++i) {
    float diff = x[i] - scale * L[i];
    best_mse += quant_weights[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    float iscale_is = (0.1f * is + nmax) / max, scale_is = 1 / iscale_is, mse = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale_is * x[i]);
      l = l < nmax ? l : nmax;
      float diff = x[i] - scale_is * l;
      mse += quant_weights[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = l < nmax ? l : nmax;
    L[i] = (uint8_t)l;
    float w = quant_weights[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      float w = quant_weights[i];
      float slx = sumlx - w * x[i] * L[i], sl2 = suml2 - w * L[i] * L[i];
      if (slx > 0 && sl2 > 0) {
        int new_l = nearest_int(x[i] * sl2 / slx);
        new_l = new_l < nmax ? new_l : nmax;
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = (uint8_t)new_l;
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* The ref path's integer: nearest_int(kmax / vmax * v), at most kmax. */
static void ref_ints(const float *v, int nsub, int kmax, uint8_t *k, float *d) {
  float vmax = 0;
  for (int j = 0; j < nsub; j++) vmax = v[j] > vmax ? v[j] : vmax;
  float inv = vmax > 0 ? (float)kmax / vmax : 0.f;
  for (int j = 0; j < nsub; j++) {
    int l = nearest_int(inv * v[j]);
    k[j] = (uint8_t)(l < kmax ? l : kmax);
  }
  *d = fp16(vmax / (float)kmax);
}

void ksearch_superblock(const float *x, const float *qw, int n, int sub, int bits, int kmax, float *scales, float *mins) {
  int nsub = (n + sub - 1) / sub, nmax = (1 << bits) - 1, q2 = bits == 2;
  float w[32], sw[16], sum_x2 = 0;
  for (int l = 0; l < n; ++l) sum_x2 += x[l] * x[l];
  float sigma2 = (q2 ? 1.0f : 2.0f) * sum_x2 / QUANT_QK_K;
  for (int j = 0; j < nsub; j++) {
    const float *xs = x + j * sub;
    int len = n - j * sub < sub ? n - j * sub : sub;
    sw[j] = 0;
    if (qw) {
      for (int l = 0; l < len; ++l) sw[j] += w[l] = qw[j * sub + l] * sqrtf(sigma2 + xs[l] * xs[l]);
      scales[j] = make_qkx_quants(len, nmax, xs, w, &mins[j], -0.9f, 0.05f, 36, 0);
    } else if (q2) {
      for (int l = 0; l < len; ++l) w[l] = fabsf(xs[l]);
      scales[j] = make_qkx_quants(len, nmax, xs, w, &mins[j], -0.5f, 0.1f, 15, 1);
    } else {
      float s2 = 0;
      for (int l = 0; l < len; ++l) s2 += xs[l] * xs[l];
      float av_x = sqrtf(s2 / sub);
      for (int l = 0; l < len; ++l) w[l] = av_x + fabsf(xs[l]);
      scales[j] = bits == 4 ? make_qkx_quants(len, nmax, xs, w, &mins[j], -1.f, 0.1f, 20, 0)
                            : make_qkx_quants(len, nmax, xs, w, &mins[j], -0.5f, 0.1f, 15, 0);
    }
    if (scales[j] <= 0.0f) quant_find_params_min(xs, len, 1, bits, &scales[j], &mins[j]);
  }
  uint8_t ls[16], lm[16];
  float d, dmin;
  if (qw) {
    d = fp16(make_qp_quants(nsub, kmax, scales, ls, sw));
    dmin = fp16(make_qp_quants(nsub, kmax, mins, lm, sw));
  } else {
    ref_ints(scales, nsub, kmax, ls, &d);
    ref_ints(mins, nsub, kmax, lm, &dmin);
  }
  if (d <= 0.0f) d = 5.9604645e-08f; /* the smallest fp16 subnormal: scales stay positive */
  for (int j = 0; j < nsub; j++) {
    scales[j] = d * (float)(ls[j] < 1 ? 1 : ls[j]);
    mins[j] = dmin * (float)lm[j];
  }
}

/* ---- the symmetric K-quants Q3_K and Q6_K (ksearch_sym_superblock) ---- */

enum { SYM_SUB = 16, SYM_NSUB = QUANT_QK_K / SYM_SUB };

/* make_qx_quants (ggml-quants.c), rmse_type 1, transcribed: the n values x
 * on scale * l, l in [-nmax, nmax - 1], the weighted least-squares scale of
 * the best of 19 candidate rounding scales; weights qw, or x^2 when qw is
 * NULL. Returns the scale (negative when the largest magnitude is
 * positive); when L is not NULL, the chosen levels l (ggml's L - nmax) go
 * there (quantize_row_q3_K_impl's make_qx_quants(16, 32, scales, Ls, 1, sw)
 * for the sub-block scales' integers). */
static void qx_sums(int n, int nmax, const float *x, const float *qw, float iscale, float *sumlx, float *suml2) {
  *sumlx = *suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
    float w = qw ? qw[i] : x[i] * x[i];
    *sumlx += w * x[i] * l;
    *suml2 += w * l * l;
  }
}
static void qx_levels(int n, int nmax, const float *x, float iscale, int *L) {
  for (int i = 0; L && i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    L[i] = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
  }
}
static float make_qx_quants(int n, int nmax, const float *x, const float *qw, int *L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    float ax = fabsf(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < 1e-15f) {                             /* GROUP_MAX_EPS */
    for (int i = 0; L && i < n; ++i) L[i] = -nmax; /* ggml's L = 0 */
    return 0.f;
  }
  float iscale = -nmax / max, sumlx, suml2;
  qx_sums(n, nmax, x, qw, iscale, &sumlx, &suml2);
  float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
  qx_levels(n, nmax, x, iscale, L);
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    qx_sums(n, nmax, x, qw, iscale, &sumlx, &suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      scale = sumlx / suml2;
      best = scale * sumlx;
      qx_levels(n, nmax, x, iscale, L);
    }
  }
  return scale;
}

/* make_q3_quants (ggml-quants.c) with do_rmse, transcribed: weights x^2,
 * levels [-nmax, nmax - 1], up to 5 passes moving single levels. */
static float make_q3_quants(int n, int nmax, const float *x) {
  float max = 0, amax = 0;
  int L[SYM_SUB];
  for (int i = 0; i < n; ++i) {
    float ax = fabsf(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < 1e-15f) return 0.f;
  float iscale = -nmax / max, sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
    L[i] = l;
    float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (slx > 0) {
        float sl2 = suml2 - w * L[i] * L[i];
        int new_l = nearest_int(x[i] * sl2 / slx);
        new_l = new_l < -nmax ? -nmax : new_l > nmax - 1 ? nmax - 1 : new_l;
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = new_l;
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* The ref path's integers (quantize_row_q3_K_ref, quantize_row_q6_K_ref and
 * _impl): iscale = -kneg / (the signed scale of largest magnitude), sc =
 * nearest_int(iscale * scale) clamped to [-kneg, kneg - 1], d =
 * fp16(1 / iscale); d = 0 when every scale is (about) 0. */
static float signed_ints(const float *s, int nsub, int kneg, float eps, int *sc) {
  float max_scale = 0, amax = 0;
  for (int j = 0; j < nsub; j++)
    if (fabsf(s[j]) > amax) {
      amax = fabsf(s[j]);
      max_scale = s[j];
    }
  for (int j = 0; j < nsub; j++) sc[j] = 0;
  if (amax < eps || max_scale == 0.0f) return 0.0f;
  float iscale = -(float)kneg / max_scale;
  for (int j = 0; j < nsub; j++) {
    int l = nearest_int(iscale * s[j]);
    sc[j] = l < -kneg ? -kneg : l > kneg - 1 ? kneg - 1 : l;
  }
  return fp16(1 / iscale);
}

void ksearch_sym_superblock(const float *x, const float *qw, int n, int bits, float *scales) {
  int nsub = (n + SYM_SUB - 1) / SYM_SUB, q3 = bits == 3, sc[SYM_NSUB];
  float xs[QUANT_QK_K] = {0}, ws[QUANT_QK_K] = {0}, s[SYM_NSUB] = {0}, d;
  memcpy(xs, x, sizeof(float) * (size_t)n); /* a short super-block as llama.cpp's zero padding */
  if (qw) memcpy(ws, qw, sizeof(float) * (size_t)n);
  if (q3 && qw) { /* quantize_row_q3_K_impl */
    float sumx2 = 0, sw[SYM_NSUB], w[SYM_SUB];
    for (int j = 0; j < QUANT_QK_K; ++j) sumx2 += xs[j] * xs[j];
    float sigma2 = 2 * sumx2 / QUANT_QK_K;
    for (int j = 0; j < SYM_NSUB; ++j) {
      for (int l = 0; l < SYM_SUB; ++l) w[l] = ws[SYM_SUB * j + l] * sqrtf(sigma2 + xs[SYM_SUB * j + l] * xs[SYM_SUB * j + l]);
      float sumw = 0;
      for (int l = 0; l < SYM_SUB; ++l) sumw += w[l];
      sw[j] = sumw;
      s[j] = make_qx_quants(SYM_SUB, 4, xs + SYM_SUB * j, w, NULL);
    }
    d = fp16(make_qx_quants(SYM_NSUB, 32, s, sw, sc));
    if (d == 0.0f) memset(sc, 0, sizeof sc);
  } else if (q3) { /* quantize_row_q3_K_ref */
    for (int j = 0; j < SYM_NSUB; ++j) s[j] = make_q3_quants(SYM_SUB, 4, xs + SYM_SUB * j);
    d = signed_ints(s, SYM_NSUB, 32, 0.0f, sc);
  } else { /* quantize_row_q6_K_ref (qw NULL: weights x^2) and _impl (weights qw) */
    for (int j = 0; j < SYM_NSUB; ++j) s[j] = make_qx_quants(SYM_SUB, 32, xs + SYM_SUB * j, qw ? ws + SYM_SUB * j : NULL, NULL);
    d = signed_ints(s, SYM_NSUB, 128, 1e-15f, sc);
  }
  /* aptq's departure: no sub-block scale 0 (llama.cpp's sc = 0, value 0):
   * sc = +-1 on the side of the searched scale, and d > 0 when all are 0 */
  if (d == 0.0f) d = 5.9604645e-08f;
  for (int j = 0; j < nsub; j++) {
    int k = sc[j] ? sc[j] : s[j] / d < 0.0f ? -1 : 1;
    scales[j] = d * (float)k;
  }
}
