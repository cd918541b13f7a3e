/* Quantizer unit tests: GPTQ quant.py semantics on hand-worked rows, and the
 * bit packing round trip for every width. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "rng.h"

#include "expect.h"

static void rtn_row(const float *w, int cols, int gs, int bits, int sym, uint8_t *codes, float *scales, int32_t *zeros) {
  double e = 0;
  quant_rtn(w, 1, cols, gs, bits, sym, codes, scales, zeros, &e);
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

  printf("%d checks, %d failed\n", checks, failures);
  return failures != 0;
}
