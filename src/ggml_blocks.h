/* Our quantized layers as ggml block types, exactly or not at all.
 *
 * A layer stores W[i][j] = scale[i][g] * (code[i][j] - zero[i][g]),
 * g = g_idx[j] (docs/hdf5-schema.md). ggml's blocks of 32 consecutive
 * columns decode (ggml-quants.c, dequantize_row_q4_0/q4_1/q8_0) as
 *   Q4_0: d * (q - 8),  q in 0..15, d fp16
 *   Q4_1: d * q + m,    q in 0..15, d and m fp16
 *   Q8_0: d * q,        q in -128..127, d fp16
 * so a layer maps exactly when its groups are those 32-column blocks
 * (group_size 32, g_idx[j] = j / 32) and every scale is an fp16 value, and
 *   Q4_0: 4 bits, every zero 8 (sym);
 *   Q4_1: 4 bits, every -scale * zero an fp16 value (grid = q4_1 makes it so);
 *   Q8_0: 8 bits, every zero 128 (sym).
 * The products d*(q-8), d*q and d*q + m (= d*(q - zero) with m = -d*zero)
 * have at most 15 significant bits, so ggml's float arithmetic gives our
 * float32 values bit for bit.
 * The K-quants (super-blocks of 256 columns, 16 sub-blocks of 16;
 * ggml-common.h block_q6_K, block_q3_K; dequantize_row_q6_K/q3_K) decode as
 *   Q6_K: d * sc * (q - 32),  q in 0..63, sc int8, d fp16
 *   Q3_K: d * sc * (q - 4),   q in 0..7, sc = 6-bit scale - 32, d fp16
 * so a layer maps exactly when its groups are those 16-column sub-blocks,
 * sym (zero 32 at 6 bits, 4 at 3 bits), and each super-block's scales are
 * d * sc with one fp16 d and nonzero integers sc in [-128, 127] (Q6_K)
 * or [-32, 31] (Q3_K; negative with grid_search, ksearch.h), products exact
 * in float (grid = q6_k | q3_k makes them so, quant_kgrid_row or
 * ksearch_sym_superblock): then ggml's (d * sc) * (q - zero) is our
 * scale * (q - zero).
 * The K-quants with a min per sub-block (block_q4_K, block_q5_K,
 * block_q2_K; dequantize_row_q4_K/q5_K/q2_K) decode as
 *   Q4_K: d * sc * q - dmin * m,  q in 0..15, 8 sub-blocks of 32, sc, m 6-bit
 *   Q5_K: the same with q in 0..31
 *   Q2_K: the same with q in 0..3, 16 sub-blocks of 16, sc, m 4-bit
 * (d1 = d * sc and m1 = dmin * m in float, then d1 * q - m1), so a layer
 * with mins (scale * code - min, zero 0) maps exactly when its groups are
 * those sub-blocks and each super-block's scales are d * sc (sc in
 * [1, 63] or [1, 15]) and its mins dmin * m (m in [0, 63] or [0, 15]), d and
 * dmin fp16 (grid = q4_k | q5_k | q2_k makes them so, quant_kgrid_row_mins):
 * d1 * q is exact (at most 22 significant bits), so both round once, at the
 * same subtraction. Local. */
#ifndef APTQ_GGML_BLOCKS_H
#define APTQ_GGML_BLOCKS_H

#include <stdint.h>

#include "gguf.h"

/* One stored layer (the arrays of docs/hdf5-schema.md). */
typedef struct {
  int rows, cols, bits, group_size;
  const float *scales;  /* rows × ngroups */
  const int32_t *zeros; /* rows × ngroups */
  const int32_t *g_idx; /* cols */
  const float *mins;    /* rows × ngroups, or NULL (a layer without mins) */
} QLayerView;

/* Columns of the ggml block the layer's grid would take: 256 (a K-quant
 * super-block) for groups of 16 at 3 or 6 bits and for layers with mins,
 * else 32. */
int ggml_block_cols(const QLayerView *L);

/* The ggml type that holds the layer exactly (Q4_0 before Q4_1) in rows of
 * padded_cols >= cols columns (the columns past cols hold exact zeros: the
 * code equal to the zero point), or F32 (our dequantized values, exact) when
 * padded_cols is not a multiple of 32; else APTQ_ERR with one message naming
 * the layer and the setting to use. */
int ggml_exact_type(const char *name, const QLayerView *L, int padded_cols, GgmlType *type);

/* The value column col >= cols of row i decodes to in rows padded past
 * cols: 0, except in a layer with mins, whose last group's sub-block
 * holds the code nearest 0 (scale * code - min): such padding multiplies
 * padded hidden units, which are exactly 0 (docs/gguf.md). */
float ggml_pad_value(const QLayerView *L, int i, int col);
/* Row i of the layer as padded_cols / 32 blocks of type t (Q4_0, Q4_1,
 * Q8_0; Q3_K, Q6_K: padded_cols / 256 super-blocks): codes are the row's unpacked codes (cols); the columns past cols
 * get the zero point's code (value 0 exactly), whole blocks past the
 * layer's groups d = 0 (value 0). */
void ggml_encode_row(const QLayerView *L, GgmlType t, int i, const uint8_t *codes, int padded_cols, uint8_t *dst);
/* n values of a row of type t (F32, F16, Q4_0, Q4_1, Q8_0, Q2_K .. Q6_K) decoded as ggml's
 * dequantize_row_* does. */
void ggml_decode_row(GgmlType t, const uint8_t *src, int n, float *y);

#endif
