#include "activations.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "safetensors.h"

int activations_alloc(Activations *a, int count, size_t seq, int bf16) {
  memset(a, 0, sizeof *a);
  a->count = count;
  a->seq = seq;
  a->bf16 = bf16;
  size_t n = (size_t)count * seq + 1;
  if (bf16) a->b16 = aptq_malloc(sizeof(uint16_t) * n, "calibration activations (bf16)");
  else a->f32 = aptq_malloc(sizeof(float) * n, "calibration activations");
  return a->b16 || a->f32 ? 0 : APTQ_ERR;
}

void activations_free(Activations *a) {
  aptq_free(a->f32);
  aptq_free(a->b16);
  memset(a, 0, sizeof *a);
}

void activations_get(const Activations *a, int i, float *dst) {
  if (a->bf16) dtype_to_f32(DT_BF16, (const uint8_t *)a->b16, (size_t)i * a->seq, a->seq, dst);
  else memcpy(dst, a->f32 + (size_t)i * a->seq, sizeof(float) * a->seq);
}

void activations_put(Activations *a, int i, const float *src) {
  if (a->bf16) {
    uint16_t *d = a->b16 + (size_t)i * a->seq;
    for (size_t k = 0; k < a->seq; k++) d[k] = f32_to_bf16(src[k]);
  } else {
    memcpy(a->f32 + (size_t)i * a->seq, src, sizeof(float) * a->seq);
  }
}
