#include "gguf.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* gguf_type (gguf.h of llama.cpp) of a metadata value */
enum { V_U32 = 4, V_I32 = 5, V_F32 = 6, V_BOOL = 7, V_STRING = 8, V_ARRAY = 9 };

const char *gguf_type_name(GgmlType t) {
  switch (t) {
    case GGML_F32: return "f32";
    case GGML_F16: return "f16";
    case GGML_Q4_0: return "q4_0";
    case GGML_Q4_1: return "q4_1";
    case GGML_Q8_0: return "q8_0";
    case GGML_Q2_K: return "q2_K";
    case GGML_Q3_K: return "q3_K";
    case GGML_Q4_K: return "q4_K";
    case GGML_Q5_K: return "q5_K";
    case GGML_Q6_K: return "q6_K";
  }
  return "?";
}

uint64_t gguf_row_bytes(GgmlType t, int64_t n) {
  switch (t) {
    case GGML_F32: return 4 * (uint64_t)n;
    case GGML_F16: return 2 * (uint64_t)n;
    case GGML_Q4_0: return (uint64_t)n / GGUF_QBLOCK * GGUF_Q4_0_BYTES;
    case GGML_Q4_1: return (uint64_t)n / GGUF_QBLOCK * GGUF_Q4_1_BYTES;
    case GGML_Q8_0: return (uint64_t)n / GGUF_QBLOCK * GGUF_Q8_0_BYTES;
    case GGML_Q2_K: return (uint64_t)n / GGUF_QK_K * GGUF_Q2_K_BYTES;
    case GGML_Q3_K: return (uint64_t)n / GGUF_QK_K * GGUF_Q3_K_BYTES;
    case GGML_Q4_K: return (uint64_t)n / GGUF_QK_K * GGUF_Q4_K_BYTES;
    case GGML_Q5_K: return (uint64_t)n / GGUF_QK_K * GGUF_Q5_K_BYTES;
    case GGML_Q6_K: return (uint64_t)n / GGUF_QK_K * GGUF_Q6_K_BYTES;
  }
  return 0;
}

void gguf_init(GgufWriter *w) { memset(w, 0, sizeof *w); }

void gguf_free(GgufWriter *w) {
  for (int i = 0; i < w->nt; i++) free(w->t[i].name);
  free(w->t);
  free(w->kv);
  memset(w, 0, sizeof *w);
}

/* ---- serialized metadata ---- */

static void put(GgufWriter *w, const void *p, size_t n) {
  if (w->failed) return;
  if (w->kv_len + n > w->kv_cap) {
    size_t cap = w->kv_cap ? w->kv_cap : 4096;
    while (cap < w->kv_len + n) cap *= 2;
    uint8_t *kv = realloc(w->kv, cap);
    if (!kv) {
      w->failed = 1;
      return;
    }
    w->kv = kv;
    w->kv_cap = cap;
  }
  memcpy(w->kv + w->kv_len, p, n);
  w->kv_len += n;
}
static void put_u32(GgufWriter *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(GgufWriter *w, uint64_t v) { put(w, &v, 8); }
static void put_str(GgufWriter *w, const char *s, uint64_t n) {
  put_u64(w, n);
  put(w, s, n);
}
static void key(GgufWriter *w, const char *k, uint32_t type) {
  put_str(w, k, strlen(k));
  put_u32(w, type);
  w->n_kv++;
}

void gguf_kv_u32(GgufWriter *w, const char *k, uint32_t v) {
  key(w, k, V_U32);
  put_u32(w, v);
}
void gguf_kv_f32(GgufWriter *w, const char *k, float v) {
  key(w, k, V_F32);
  put(w, &v, 4);
}
void gguf_kv_bool(GgufWriter *w, const char *k, int v) {
  uint8_t b = v != 0;
  key(w, k, V_BOOL);
  put(w, &b, 1);
}
void gguf_kv_string(GgufWriter *w, const char *k, const char *v) {
  key(w, k, V_STRING);
  put_str(w, v, strlen(v));
}
void gguf_kv_strings(GgufWriter *w, const char *k, uint64_t n, char *const *s, const uint32_t *len) {
  key(w, k, V_ARRAY);
  put_u32(w, V_STRING);
  put_u64(w, n);
  for (uint64_t i = 0; i < n; i++) put_str(w, s[i], len[i]);
}
void gguf_kv_f32s(GgufWriter *w, const char *k, uint64_t n, const float *v) {
  key(w, k, V_ARRAY);
  put_u32(w, V_F32);
  put_u64(w, n);
  put(w, v, 4 * n);
}
void gguf_kv_i32s(GgufWriter *w, const char *k, uint64_t n, const int32_t *v) {
  key(w, k, V_ARRAY);
  put_u32(w, V_I32);
  put_u64(w, n);
  put(w, v, 4 * n);
}

/* ---- tensors ---- */

static uint64_t align_up(uint64_t x) { return (x + GGUF_ALIGNMENT - 1) / GGUF_ALIGNMENT * GGUF_ALIGNMENT; }

void gguf_add_tensor(GgufWriter *w, const char *name, GgmlType type, int64_t ne0, int64_t ne1) {
  if (w->failed) return;
  if (w->nt == w->t_cap) {
    int cap = w->t_cap ? 2 * w->t_cap : 64;
    GgufTensor *t = realloc(w->t, sizeof *t * (size_t)cap);
    if (!t) {
      w->failed = 1;
      return;
    }
    w->t = t;
    w->t_cap = cap;
  }
  GgufTensor *t = &w->t[w->nt];
  t->name = strdup(name);
  if (!t->name) {
    w->failed = 1;
    return;
  }
  t->type = type;
  t->ne0 = ne0;
  t->ne1 = ne1;
  t->offset = w->data_bytes;
  t->bytes = gguf_row_bytes(type, ne0) * (uint64_t)(ne1 ? ne1 : 1);
  w->data_bytes = align_up(w->data_bytes + t->bytes);
  w->nt++;
}

static int write_all(FILE *f, const char *path, const void *p, size_t n) {
  if (n && fwrite(p, 1, n, f) != n) return aptq_error("cannot write '%s': %s", path, strerror(errno));
  return 0;
}

static int pad(FILE *f, const char *path, uint64_t pos) {
  static const uint8_t zeros[GGUF_ALIGNMENT];
  return write_all(f, path, zeros, (size_t)(align_up(pos) - pos));
}

int gguf_write_head(GgufWriter *w, FILE *f, const char *path) {
  /* the tensor infos go into the same buffer, after the metadata */
  for (int i = 0; i < w->nt; i++) {
    const GgufTensor *t = &w->t[i];
    put_str(w, t->name, strlen(t->name));
    put_u32(w, t->ne1 ? 2 : 1);
    put_u64(w, (uint64_t)t->ne0);
    if (t->ne1) put_u64(w, (uint64_t)t->ne1);
    put_u32(w, (uint32_t)t->type);
    put_u64(w, t->offset);
  }
  if (w->failed) return aptq_error("out of memory while building the GGUF metadata of '%s'", path);
  uint32_t head[2] = {0x46554747u /* "GGUF" */, 3};
  uint64_t counts[2] = {(uint64_t)w->nt, w->n_kv};
  CHECK(write_all(f, path, head, sizeof head));
  CHECK(write_all(f, path, counts, sizeof counts));
  CHECK(write_all(f, path, w->kv, w->kv_len));
  CHECK(pad(f, path, sizeof head + sizeof counts + w->kv_len));
  w->next = 0;
  return 0;
}

int gguf_write_data(GgufWriter *w, FILE *f, const char *path, const void *data, uint64_t bytes) {
  if (w->next >= w->nt || w->t[w->next].bytes != bytes)
    return aptq_error("internal: GGUF tensor %d written with %llu bytes out of order", w->next, (unsigned long long)bytes);
  w->next++;
  CHECK(write_all(f, path, data, (size_t)bytes));
  return pad(f, path, bytes);
}

/* ---- half precision ---- */

uint16_t gguf_f32_to_f16(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a >= 0x7F800000u) return sign | (a > 0x7F800000u ? 0x7E00u : 0x7C00u); /* NaN, Inf */
  if (a >= 0x477FF000u) return sign | 0x7C00u;                               /* rounds past 65504 */
  if (a < 0x38800000u) {                                                     /* below 2^-14: subnormal half */
    float v;
    memcpy(&v, &a, 4);
    return sign | (uint16_t)rintf(v * 16777216.0f); /* multiples of 2^-24, exact scaling, ties to even */
  }
  uint32_t mant = a & 0x1FFFu, h = (a - 0x38000000u) >> 13; /* rebias exponent 127 -> 15 */
  if (mant > 0x1000u || (mant == 0x1000u && (h & 1u))) h++;
  return sign | (uint16_t)h;
}

float gguf_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu, u;
  if (e == 0) {
    float v = (float)m / 16777216.0f;
    return sign ? -v : v;
  }
  u = e == 31 ? sign | 0x7F800000u | (m << 13) : sign | ((e + 112u) << 23) | (m << 13);
  float v;
  memcpy(&v, &u, 4);
  return v;
}
