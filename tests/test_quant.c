/* Quantizer unit tests: GPTQ quant.py semantics on hand-worked rows, the
 * bit packing round trip for every width, IEEE half conversion, and the
 * ggml grids (grid = q4_1's fp16 mins; Q4_0/Q4_1/Q8_0 blocks decoding to our
 * values exactly; grid = q6_k | q3_k: super-block scales d * sc, Q6_K and
 * Q3_K blocks decoding to our values exactly). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_blocks.h"
#include "gguf.h"
#include "quant.h"
#include "rng.h"

#include "expect.h"

static void rtn_row(const float *w, int cols, int gs, int bits, int sym, uint8_t *codes, float *scales, int32_t *zeros) {
  double e = 0;
  quant_rtn(w, 1, cols, gs, bits, sym, codes, scales, zeros, &e);
}

/* Are the n values v[g] d * k[g] exactly, d an fp16 value and k[g] integers
 * in [lo, kmax] (all 0 for lo 0: d = 0)? */
static int kgrid_of(const float *v, int n, int lo, int kmax, float *d) {
  float vmax = 0.0f;
  for (int g = 0; g < n; g++) vmax = v[g] > vmax ? v[g] : vmax;
  if (vmax == 0.0f) return lo == 0;
  for (int m = kmax; m >= 1; m--) {
    *d = vmax / (float)m;
    int ok = gguf_f16_to_f32(gguf_f32_to_f16(*d)) == *d;
    for (int g = 0; ok && g < n; g++) {
      float r = rintf(v[g] / *d);
      ok = r >= (float)lo && r <= (float)kmax && *d * r == v[g];
    }
    if (ok) return 1;
  }
  return 0;
}

int main(void) {
  uint8_t c[16];
  float s[4];
  int32_t z[4];

  const float r1[4] = {-1.0f, 0.5f, 1.0f, 2.0f}; /* 2-bit: scale 1, zero 1, 0.5 rounds half to even */
  rtn_row(r1, 4, 0, 2, 0, c, s, z);
  EXPECT(s[0] == 1.0f && z[0] == 1, "asym params: scale %g zero %d", s[0], z[0]);
  EXPECT(c[0] == 0 && c[1] == 1 && c[2] == 2 && c[3] == 3, "asym codes %d %d %d %d", c[0], c[1], c[2], c[3]);

  const float r2[4] = {1.0f, 2.0f, 3.0f, 4.0f}; /* range includes 0: xmin = 0 */
  rtn_row(r2, 4, 0, 2, 0, c, s, z);
  EXPECT(z[0] == 0 && c[0] == 1 && c[1] == 2 && c[2] == 2 && c[3] == 3, "positive row: zero %d codes %d %d %d %d", z[0], c[0], c[1], c[2],
         c[3]);

  const float r3[4] = {0, 0, 0, 0}; /* dead row: grid [-1, 1]; 1/fl(2/15) = 7.4999996 rounds to 7, as in float32 torch */
  rtn_row(r3, 4, 0, 4, 0, c, s, z);
  EXPECT(s[0] == 2.0f / 15.0f && z[0] == 7 && c[0] == 7 && quant_dequant(c[0], s[0], z[0]) == 0.0f, "zero row: scale %g zero %d code %d",
         s[0], z[0], c[0]);

  const float r4[2] = {-3.0f, 1.5f}; /* symmetric 4-bit: scale 0.4, zero 8; -7.5 rounds to -8 -> clamp 0 */
  rtn_row(r4, 2, 0, 4, 1, c, s, z);
  EXPECT(z[0] == 8 && s[0] == 6.0f / 15.0f && c[0] == 0 && c[1] == 12, "sym: scale %g zero %d codes %d %d", s[0], z[0], c[0], c[1]);

  const float r5[4] = {-1.0f, 1.0f, 10.0f, 20.0f}; /* two groups of 2 with separate grids */
  rtn_row(r5, 4, 2, 8, 0, c, s, z);
  EXPECT(s[0] == 2.0f / 255.0f && s[1] == 20.0f / 255.0f && z[1] == 0, "groups: scales %g %g zeros %d %d", s[0], s[1], z[0], z[1]);
  EXPECT(c[3] == 255 && c[2] == 127, "groups: codes %d %d", c[2], c[3]); /* 10/fl(20/255) = 127.49999 */

  const float r6[5] = {-1.0f, 1.0f, 2.0f, 4.0f, -8.0f}; /* group 2 over 5 columns: last group is {-8} alone */
  rtn_row(r6, 5, 2, 4, 0, c, s, z);
  EXPECT(s[2] == 8.0f / 15.0f && z[2] == 15 && c[4] == 0, "partial last group: scale %g zero %d code %d", s[2], z[2], c[4]);

  /* error bound: |w - q| <= scale/2 inside the grid */
  Rng rng = {7};
  float w[256];
  uint8_t codes[256];
  float sc[8];
  int32_t zz[8];
  for (int i = 0; i < 256; i++) w[i] = (float)rng_normal(&rng);
  for (int bits = 2; bits <= 8; bits++) {
    rtn_row(w, 256, 32, bits, 0, codes, sc, zz);
    float worst = 0;
    for (int j = 0; j < 256; j++) {
      float d = fabsf(w[j] - quant_dequant(codes[j], sc[j / 32], zz[j / 32])) / sc[j / 32];
      worst = d > worst ? d : worst;
    }
    EXPECT(worst <= 0.5f + 1e-4f, "bits %d: worst error %g steps", bits, worst);
  }

  /* packing round trip, widths 1..8, lengths that straddle words */
  for (int bits = 1; bits <= 8; bits++)
    for (int cols = 1; cols <= 100; cols += 33) {
      uint8_t in[128], out[128];
      uint32_t words[64];
      for (int j = 0; j < cols; j++) in[j] = (uint8_t)(rng_next(&rng) & ((1u << bits) - 1));
      quant_pack_row(in, cols, bits, words);
      quant_unpack_row(words, cols, bits, out);
      EXPECT(!memcmp(in, out, (size_t)cols), "pack round trip bits %d cols %d", bits, cols);
      EXPECT(quant_words_per_row(cols, bits) == (cols * bits + 31) / 32, "words per row");
    }
  /* layout is LSB first: code j at bit j*bits */
  uint8_t three[3] = {1, 2, 3};
  uint32_t word[1];
  quant_pack_row(three, 3, 4, word);
  EXPECT(word[0] == 0x321u, "LSB-first layout: 0x%x", word[0]);

  /* IEEE half: every finite half round-trips; float -> half is the same
   * round-to-nearest-even as scale_dtype = fp16's */
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000u; h++)
    if ((h & 0x7C00u) != 0x7C00u && gguf_f32_to_f16(gguf_f16_to_f32((uint16_t)h)) != h) bad++;
  EXPECT(bad == 0, "%d halves do not round-trip", bad);
  quant_set_fp16_scales(1);
  bad = 0;
  for (int i = 0; i < 100000; i++) {
    float x = (float)exp(rng_uniform(&rng) * 30.0 - 20.0); /* 2e-9 .. 2.2e4 */
    if (x >= 6e-8f && gguf_f16_to_f32(gguf_f32_to_f16(x)) != quant_scale_round(x)) bad++;
  }
  EXPECT(bad == 0, "%d floats round to another half than quant_scale_round", bad);

  /* grid = q4_1: asymmetric 4-bit groups of 32 whose min -scale*zero is an
   * fp16 value, within 8 fp16 steps of the plain fp16 scale; the blocks
   * decode (as ggml does) to exactly scale * (code - zero) */
  int far = 0, notmin = 0, exact = 1;
  for (int t = 0; t < 2000; t++) {
    float w[32], s0, s1;
    int32_t z0, z1;
    double amp = exp(rng_uniform(&rng) * 8.0 - 6.0);
    for (int j = 0; j < 32; j++) w[j] = (float)(amp * rng_normal(&rng) + amp * (rng_uniform(&rng) - 0.5));
    quant_set_fp16_mins(0);
    quant_find_params(w, 32, 1, 4, 0, &s0, &z0);
    quant_set_fp16_mins(1);
    quant_find_params(w, 32, 1, 4, 0, &s1, &z1);
    int steps = abs((int)gguf_f32_to_f16(s1) - (int)gguf_f32_to_f16(s0));
    far += steps > 8;
    notmin += gguf_f16_to_f32(gguf_f32_to_f16(-s1 * (float)z1)) != -s1 * (float)z1 || z1 < 0 || z1 > 15;
    uint8_t codes[32], blk[GGUF_Q4_1_BYTES];
    for (int j = 0; j < 32; j++) codes[j] = (uint8_t)quant_code(w[j], s1, z1, 15);
    int32_t gi[32];
    for (int j = 0; j < 32; j++) gi[j] = 0;
    QLayerView v = {.rows = 1, .cols = 32, .bits = 4, .group_size = 32, .scales = &s1, .zeros = &z1, .g_idx = gi};
    GgmlType type;
    int rc = ggml_exact_type("test", &v, 32, &type);
    ggml_encode_row(&v, GGML_Q4_1, 0, codes, 32, blk);
    float y[32];
    ggml_decode_row(GGML_Q4_1, blk, 32, y);
    for (int j = 0; j < 32; j++) exact &= !rc && (type == GGML_Q4_1 || type == GGML_Q4_0) && y[j] == quant_dequant(codes[j], s1, z1);
  }
  quant_set_fp16_mins(0);
  quant_set_fp16_scales(0);
  EXPECT(far == 0 && notmin == 0, "grid q4_1: %d scales moved more than 8 fp16 steps, %d mins not fp16", far, notmin);
  EXPECT(exact, "grid q4_1: a Q4_1 block does not decode to scale * (code - zero)");

  /* Q4_0 and Q8_0 blocks of symmetric groups; a 16-column row padded to 32 decodes to zeros past it */
  {
    float sc = 0.375f;
    int32_t z4 = 8, z8 = 128, gi[32] = {0};
    uint8_t codes[32], blk[GGUF_Q8_0_BYTES];
    float y[32];
    for (int j = 0; j < 32; j++) codes[j] = (uint8_t)(rng_next(&rng) & 15);
    QLayerView v4 = {.rows = 1, .cols = 16, .bits = 4, .group_size = 32, .scales = &sc, .zeros = &z4, .g_idx = gi};
    ggml_encode_row(&v4, GGML_Q4_0, 0, codes, 32, blk);
    ggml_decode_row(GGML_Q4_0, blk, 32, y);
    int ok = 1;
    for (int j = 0; j < 32; j++) ok &= y[j] == (j < 16 ? quant_dequant(codes[j], sc, z4) : 0.0f);
    EXPECT(ok, "Q4_0 block with padding");
    for (int j = 0; j < 32; j++) codes[j] = (uint8_t)(rng_next(&rng) & 255);
    QLayerView v8 = {.rows = 1, .cols = 32, .bits = 8, .group_size = 32, .scales = &sc, .zeros = &z8, .g_idx = gi};
    ggml_encode_row(&v8, GGML_Q8_0, 0, codes, 32, blk);
    ggml_decode_row(GGML_Q8_0, blk, 32, y);
    ok = 1;
    for (int j = 0; j < 32; j++) ok &= y[j] == quant_dequant(codes[j], sc, z8);
    EXPECT(ok, "Q8_0 block");
  }

  /* grid = q6_k | q3_k: rows of 432 columns (a super-block and 11 of 16
   * groups of the next) at amplitudes from 1e-7 (subnormal d) to 10 and with
   * one group 1000 times smaller than the rest: every super-block's scales
   * are d * sc (d fp16, sc in [1, sc_max]); ggml_exact_type takes the row
   * padded to 512 as Q6_K/Q3_K, and the blocks decode to scale * (code -
   * zero), zeros past column 432 */
  for (int k = 0; k < 2; k++) {
    int bits = k ? 3 : 6, sc_max = k ? 31 : 127, ng = 27, okgrid = 1, okdec = 1;
    GgmlType want = k ? GGML_Q3_K : GGML_Q6_K;
    quant_set_kgrid(sc_max);
    for (int t = 0; t < 200; t++) {
      float w[432], scales[27], y[512];
      int32_t zeros[27], gi[432];
      uint8_t codes[432], blk[2 * GGUF_Q6_K_BYTES];
      double amp = exp(rng_uniform(&rng) * 18.4 - 16.1);
      for (int j = 0; j < 432; j++) w[j] = (float)(amp * rng_normal(&rng) * (j / 16 == 5 ? 1e-3 : 1.0)), gi[j] = j / 16;
      rtn_row(w, 432, 16, bits, 1, codes, scales, zeros);
      for (int b = 0; b < 2; b++) {
        float smax = 0.0f;
        for (int g = b * 16; g < ng && g < b * 16 + 16; g++) smax = scales[g] > smax ? scales[g] : smax;
        int found = 0;
        for (int m = sc_max; m >= 1 && !found; m--) {
          float d = smax / (float)m;
          int ok = gguf_f16_to_f32(gguf_f32_to_f16(d)) == d;
          for (int g = b * 16; ok && g < ng && g < b * 16 + 16; g++) {
            float r = rintf(scales[g] / d);
            ok = r >= 1.0f && r <= (float)sc_max && d * r == scales[g];
          }
          found = ok;
        }
        okgrid &= found;
      }
      QLayerView v = {.rows = 1, .cols = 432, .bits = bits, .group_size = 16, .scales = scales, .zeros = zeros, .g_idx = gi};
      GgmlType type;
      int rc = ggml_exact_type("test", &v, 512, &type);
      okgrid &= !rc && type == want;
      if (rc) continue;
      ggml_encode_row(&v, type, 0, codes, 512, blk);
      ggml_decode_row(type, blk, 512, y);
      for (int j = 0; j < 512; j++) okdec &= y[j] == (j < 432 ? quant_dequant(codes[j], scales[j / 16], zeros[j / 16]) : 0.0f);
    }
    quant_set_kgrid(0);
    EXPECT(okgrid, "grid %s: scales not d * sc per super-block, or not taken as %s", k ? "q3_k" : "q6_k", gguf_type_name(want));
    EXPECT(okdec, "%s blocks do not decode to scale * (code - zero)", gguf_type_name(want));
  }

  /* grid = q4_k | q5_k | q2_k: rows of 688 columns (down_proj of
   * wt2-llama-s: 2 super-blocks and 5.5 sub-blocks of 32, 11 of 16) at
   * amplitudes from 1e-7 to 10, some rows all positive (mins 0), one group
   * 1000 times smaller: every super-block's scales are d * sc (sc in
   * [1, max]) and its mins dmin * m (m in [0, max]), d and dmin fp16;
   * ggml_exact_type takes the row padded to 768 as Q4_K/Q5_K/Q2_K, the
   * blocks decode to scale * code - min and past column 688 to
   * ggml_pad_value (0 past the last group); a min moved by one float step
   * is refused. */
  for (int k = 0; k < 3; k++) {
    int bits = k == 2 ? 2 : 4 + k, gs = k == 2 ? 16 : 32, mmax = k == 2 ? 15 : 63, ng = quant_ngroups(688, gs), per = 256 / gs;
    int okgrid = 1, okdec = 1, okref = 1;
    GgmlType want = k == 0 ? GGML_Q4_K : k == 1 ? GGML_Q5_K : GGML_Q2_K;
    quant_set_kgrid_mins(mmax);
    for (int t = 0; t < 200; t++) {
      float w[688], scales[43], mins[43], y[768];
      int32_t zeros[43], gi[688];
      uint8_t codes[688], blk[3 * GGUF_Q5_K_BYTES];
      double amp = exp(rng_uniform(&rng) * 18.4 - 16.1), shift = t % 4 == 0 ? 3.0 : 0.0;
      for (int j = 0; j < 688; j++) w[j] = (float)(amp * (rng_normal(&rng) + shift) * (j / gs == 5 ? 1e-3 : 1.0)), gi[j] = j / gs;
      double e = 0.0;
      quant_rtn_mins(w, 1, 688, gs, bits, codes, scales, zeros, mins, &e);
      for (int b = 0; b * per < ng; b++) {
        float d, dmin;
        int n = ng - b * per < per ? ng - b * per : per;
        okgrid &= kgrid_of(scales + b * per, n, 1, mmax, &d) && kgrid_of(mins + b * per, n, 0, mmax, &dmin);
      }
      QLayerView v = {.rows = 1, .cols = 688, .bits = bits, .group_size = gs, .scales = scales, .zeros = zeros, .g_idx = gi, .mins = mins};
      GgmlType type;
      int rc = ggml_exact_type("test", &v, 768, &type);
      okgrid &= !rc && type == want;
      if (rc) continue;
      ggml_encode_row(&v, type, 0, codes, 768, blk);
      ggml_decode_row(type, blk, 768, y);
      for (int j = 0; j < 768; j++)
        okdec &= y[j] == (j < 688 ? quant_dequant_min(codes[j], scales[j / gs], 0, mins[j / gs]) : ggml_pad_value(&v, 0, j));
      for (int j = 688; j < 768; j++) okdec &= j / gs < ng || y[j] == 0.0f;
      int g = (int)(rng_uniform(&rng) * ng);
      mins[g] = nextafterf(mins[g], INFINITY);
      okref &= ggml_exact_type("test", &v, 768, &type) != 0;
    }
    quant_set_kgrid_mins(0);
    EXPECT(okgrid, "grid %s: scales and mins not d * sc, dmin * m per super-block, or not taken as %s", gguf_type_name(want),
           gguf_type_name(want));
    EXPECT(okdec, "%s blocks do not decode to scale * code - min", gguf_type_name(want));
    EXPECT(okref, "%s: a min off the grid was not refused", gguf_type_name(want));
  }

  printf("%d checks, %d failed\n", checks, failures);
  return failures != 0;
}
