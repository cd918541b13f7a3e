/* The calibration activations of this rank's sequences between blocks
 * (the residual stream entering the next block), in float32 or, to halve
 * the largest buffer of the pass, bf16 (activations = bf16: each block's
 * output is rounded to bf16 before it is stored). */
#ifndef APTQ_ACTIVATIONS_H
#define APTQ_ACTIVATIONS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int count, bf16;
  size_t seq;    /* elements per sequence (T · dim) */
  float *f32;    /* count × seq, or NULL */
  uint16_t *b16; /* count × seq, or NULL */
} Activations;

int activations_alloc(Activations *a, int count, size_t seq, int bf16);
void activations_free(Activations *a);
/* Sequence i to float32 (dst: seq elements), and back. */
void activations_get(const Activations *a, int i, float *dst);
void activations_put(Activations *a, int i, const float *src);
/* Bytes per element of the stored activations. */
static inline size_t activations_elem_size(int bf16) { return bf16 ? 2 : 4; }

#endif
