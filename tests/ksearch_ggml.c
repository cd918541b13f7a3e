/* grid_search = llama | hessian (src/ksearch.c) against ggml itself: random
 * rows quantized by ggml_quantize_chunk of the real llama.cpp (node-llama-cpp
 * 3.21.1: without an importance matrix it runs quantize_row_q4_K_ref /
 * q5_K_ref / q2_K_ref, with one quantize_row_*_K_impl), each block's d,
 * dmin and 6-bit (Q2_K: 4-bit) scales and mins decoded, d * sc and dmin * m
 * compared with ksearch_superblock's scales and mins for the same values
 * (and the importance weights as qw). Sub-blocks where ggml stores sc = 0
 * are not compared (aptq keeps sc >= 1, ksearch.h). Prints per type and
 * mode the sub-blocks compared and those that differ; exit 1 if any does.
 *   ksearch_ggml NROWS */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"
#include "ksearch.h"

static uint64_t state = 0x9E3779B97F4A7C15ull;
static double uniform(void) {
  state = state * 6364136223846793005ull + 1442695040888963407ull;
  return ((state >> 11) + 0.5) / 9007199254740992.0;
}
static float gauss(void) { return (float)(sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform())); }

static float h2f(const uint8_t *p) { return ggml_fp16_to_fp32((ggml_fp16_t)(p[0] | p[1] << 8)); }

/* Block b's d, dmin and the nsub integers sc, m (get_scale_min_k4 for Q4_K/Q5_K). */
static void decode(enum ggml_type t, const uint8_t *blk, float *d, float *dmin, int *sc, int *m) {
  if (t == GGML_TYPE_Q2_K) {
    for (int j = 0; j < 16; j++) sc[j] = blk[j] & 15, m[j] = blk[j] >> 4;
    *d = h2f(blk + 80);
    *dmin = h2f(blk + 82);
    return;
  }
  *d = h2f(blk);
  *dmin = h2f(blk + 2);
  const uint8_t *q = blk + 4;
  for (int j = 0; j < 8; j++)
    if (j < 4) sc[j] = q[j] & 63, m[j] = q[j + 4] & 63;
    else sc[j] = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), m[j] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
}

/* Q3_K / Q6_K: block b's d and 16 signed sub-block scales sc. */
static void decode_sym(enum ggml_type t, const uint8_t *blk, float *d, int *sc) {
  if (t == GGML_TYPE_Q6_K) {
    for (int j = 0; j < 16; j++) sc[j] = (int8_t)blk[192 + j];
    *d = h2f(blk + 208);
    return;
  }
  const uint8_t *s = blk + 96;
  for (int j = 0; j < 16; j++) sc[j] = ((j < 8 ? s[j] & 0xF : s[j - 8] >> 4) | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
  *d = h2f(blk + 108);
}

/* Q3_K, Q6_K, each mode: ksearch_sym_superblock's scales against ggml's d *
 * sc, and ggml's decoded values against scale * clamp(round(x / scale))
 * (aptq's RTN on that grid, quant_code) for every sub-block with sc != 0.
 * Returns the number that differ. */
static int check_sym(const float *x, const float *qw, int nrows, int ncols, uint8_t *dst) {
  struct {
    enum ggml_type t;
    const char *name;
    int bits;
  } types[] = {{GGML_TYPE_Q3_K, "q3_k", 3}, {GGML_TYPE_Q6_K, "q6_k", 6}};
  int bad_total = 0;
  float *y = malloc(sizeof(float) * (size_t)ncols);
  for (int ti = 0; ti < 2; ti++)
    for (int mode = 0; mode < 2; mode++) {
      enum ggml_type t = types[ti].t;
      int zero = 1 << (types[ti].bits - 1), maxq = (1 << types[ti].bits) - 1;
      size_t rs = ggml_row_size(t, ncols), bs = rs / (ncols / 256);
      ggml_quantize_chunk(t, x, dst, 0, nrows, ncols, mode ? qw : NULL);
      int compared = 0, bad = 0, negative = 0, values_bad = 0;
      for (int r = 0; r < nrows; r++) {
        ggml_get_type_traits(t)->to_float(dst + r * rs, y, ncols);
        for (int b = 0; b < ncols / 256; b++) {
          const float *xb = x + (size_t)r * ncols + b * 256;
          float s[16], d;
          int sc[16];
          ksearch_sym_superblock(xb, mode ? qw + b * 256 : NULL, 256, types[ti].bits, s);
          decode_sym(t, dst + r * rs + b * bs, &d, sc);
          for (int j = 0; j < 16; j++) {
            if (sc[j] == 0) continue;
            compared++;
            negative += s[j] < 0.0f;
            if (s[j] != d * (float)sc[j]) bad++;
            for (int l = 0; l < 16; l++) {
              float q = rintf(xb[16 * j + l] / s[j]) + (float)zero;
              q = q < 0.0f ? 0.0f : q > (float)maxq ? (float)maxq : q;
              if (s[j] * (q - (float)zero) != y[b * 256 + 16 * j + l]) values_bad++;
            }
          }
        }
      }
      printf("%s %s: %d sub-blocks compared (%d with negative scales), %d differ; values: %d differ\n", types[ti].name,
             mode ? "hessian (imatrix)" : "llama (ref)", compared, negative, bad, values_bad);
      bad_total += bad + values_bad;
    }
  free(y);
  return bad_total;
}

int main(int argc, char **argv) {
  int nrows = argc > 1 ? atoi(argv[1]) : 64, ncols = 512, bad_total = 0;
  float *x = malloc(sizeof(float) * (size_t)nrows * ncols), *qw = malloc(sizeof(float) * ncols);
  uint8_t *dst = malloc((size_t)nrows * 512 * 2);
  for (int i = 0; i < nrows * ncols; i++) x[i] = 0.02f * gauss() * (i % 97 == 0 ? 8.0f : 1.0f) + (i % 256 < 16 ? 0.01f : 0.0f);
  for (int j = 0; j < ncols; j++) qw[j] = (float)exp(2.0 * gauss());
  struct {
    enum ggml_type t;
    const char *name;
    int bits, sub, kmax;
  } types[] = {{GGML_TYPE_Q4_K, "q4_k", 4, 32, 63}, {GGML_TYPE_Q5_K, "q5_k", 5, 32, 63}, {GGML_TYPE_Q2_K, "q2_k", 2, 16, 15}};
  for (int ti = 0; ti < 3; ti++)
    for (int mode = 0; mode < 2; mode++) {
      enum ggml_type t = types[ti].t;
      size_t rs = ggml_row_size(t, ncols), bs = rs / (ncols / 256);
      ggml_quantize_chunk(t, x, dst, 0, nrows, ncols, mode ? qw : NULL);
      int nsub = 256 / types[ti].sub, compared = 0, bad = 0;
      for (int r = 0; r < nrows; r++)
        for (int b = 0; b < ncols / 256; b++) {
          float s[16], mn[16], d, dmin;
          int sc[16], m[16];
          ksearch_superblock(x + (size_t)r * ncols + b * 256, mode ? qw + b * 256 : NULL, 256, types[ti].sub, types[ti].bits,
                             types[ti].kmax, s, mn);
          decode(t, dst + r * rs + b * bs, &d, &dmin, sc, m);
          for (int j = 0; j < nsub; j++) {
            if (sc[j] == 0) continue;
            compared++;
            if (s[j] != d * (float)sc[j] || mn[j] != dmin * (float)m[j]) bad++;
          }
        }
      printf("%s %s: %d sub-blocks compared, %d differ\n", types[ti].name, mode ? "hessian (imatrix)" : "llama (ref)", compared, bad);
      bad_total += bad;
    }
  bad_total += check_sym(x, qw, nrows, ncols, dst);
  free(x);
  free(qw);
  free(dst);
  return bad_total ? 1 : 0;
}
