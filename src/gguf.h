/* A GGUF v3 file writer (the format of llama.cpp's gguf.cpp, ggml/src/gguf.cpp,
 * and gguf-py's GGUFWriter): header, key-value metadata, tensor infos, then
 * the tensor data, each tensor aligned to 32 bytes (general.alignment's
 * default). Metadata and tensor infos are collected in memory; gguf_write_head
 * writes them, then gguf_write_data writes each tensor's bytes in the order
 * the tensors were added. Little-endian hosts only. Local (one rank). */
#ifndef APTQ_GGUF_H
#define APTQ_GGUF_H

#include <stdint.h>
#include <stdio.h>

/* ggml_type values (ggml.h) of the types this writer knows */
typedef enum {
  GGML_F32 = 0,
  GGML_F16 = 1,
  GGML_Q4_0 = 2,
  GGML_Q4_1 = 3,
  GGML_Q8_0 = 8,
  GGML_Q2_K = 10,
  GGML_Q3_K = 11,
  GGML_Q4_K = 12,
  GGML_Q5_K = 13,
  GGML_Q6_K = 14
} GgmlType;
enum { GGML_TYPE_END = GGML_Q6_K + 1 }; /* past the largest value above */

enum { GGUF_ALIGNMENT = 32, GGUF_QBLOCK = 32 /* elements per Q4_0/Q4_1/Q8_0 block */ };

/* Bytes of one Q4_0 (fp16 d, 16 bytes of nibbles), Q4_1 (d, m, nibbles) and
 * Q8_0 (d, 32 int8) block: ggml-common.h block_q4_0, block_q4_1, block_q8_0. */
enum { GGUF_Q4_0_BYTES = 18, GGUF_Q4_1_BYTES = 20, GGUF_Q8_0_BYTES = 34 };
/* K-quants: super-blocks of QK_K = 256 elements; block_q3_K (hmask[32],
 * qs[64], scales[12], d), block_q6_K (ql[128], qh[64], scales[16], d),
 * block_q2_K (scales[16], qs[64], d, dmin), block_q4_K (d, dmin,
 * scales[12], qs[128]), block_q5_K (d, dmin, scales[12], qh[32], qs[128]),
 * ggml-common.h. */
enum { GGUF_QK_K = 256, GGUF_Q3_K_BYTES = 110, GGUF_Q6_K_BYTES = 210, GGUF_Q2_K_BYTES = 84, GGUF_Q4_K_BYTES = 144, GGUF_Q5_K_BYTES = 176 };

typedef struct {
  char *name;
  GgmlType type;
  int64_t ne0, ne1; /* ne0: the contiguous dimension (columns); ne1 = 0: 1-D */
  uint64_t offset, bytes;
} GgufTensor;

typedef struct {
  uint8_t *kv; /* serialized key-value pairs */
  size_t kv_len, kv_cap;
  uint64_t n_kv;
  GgufTensor *t;
  int nt, t_cap, next; /* next: the tensor gguf_write_data writes next */
  uint64_t data_bytes;
  int failed; /* out of memory while collecting: reported by gguf_write_head */
} GgufWriter;

/* Name of a ggml type ("q4_0", ...). */
const char *gguf_type_name(GgmlType t);
/* Bytes of a row of n elements (n a multiple of the block for block types). */
uint64_t gguf_row_bytes(GgmlType t, int64_t n);

void gguf_init(GgufWriter *w);
void gguf_free(GgufWriter *w);
void gguf_kv_u32(GgufWriter *w, const char *key, uint32_t v);
void gguf_kv_f32(GgufWriter *w, const char *key, float v);
void gguf_kv_bool(GgufWriter *w, const char *key, int v);
void gguf_kv_string(GgufWriter *w, const char *key, const char *v);
/* Arrays: n strings (lengths len[i], bytes s[i]), floats, int32s. */
void gguf_kv_strings(GgufWriter *w, const char *key, uint64_t n, char *const *s, const uint32_t *len);
void gguf_kv_f32s(GgufWriter *w, const char *key, uint64_t n, const float *v);
void gguf_kv_i32s(GgufWriter *w, const char *key, uint64_t n, const int32_t *v);
/* A tensor of ne1 rows of ne0 elements (ne1 = 0: a 1-D tensor of ne0). */
void gguf_add_tensor(GgufWriter *w, const char *name, GgmlType type, int64_t ne0, int64_t ne1);
/* Header, metadata and tensor infos, padded to the data section: 0, or
 * APTQ_ERR (recorded: out of memory earlier, or a write error). */
int gguf_write_head(GgufWriter *w, FILE *f, const char *path);
/* The next tensor's bytes (exactly its size), padded to the alignment. */
int gguf_write_data(GgufWriter *w, FILE *f, const char *path, const void *data, uint64_t bytes);

/* IEEE half <-> float (round to nearest even; portable, no _Float16) */
uint16_t gguf_f32_to_f16(float x);
float gguf_f16_to_f32(uint16_t h);

#endif
