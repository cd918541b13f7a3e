#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "inpath.h"
#include "json.h"

enum { ST_MAX_HEADER = 100 * 1024 * 1024 };

size_t dtype_size(DType t) {
  switch (t) {
    case DT_F32: return 4;
    case DT_F16:
    case DT_BF16: return 2;
    default: return 0;
  }
}

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
  if (exp == 0) {
    if (mant == 0) bits = sign;
    else { /* subnormal: value = mant * 2^-24 */ float v = (float)mant * 5.9604644775390625e-8f;
      return sign ? -v : v;
    }
  } else if (exp == 31) bits = sign | 0x7F800000u | (mant << 13);
  else bits = sign | ((exp + 112) << 23) | (mant << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

void dtype_to_f32(DType t, const uint8_t *src, size_t first, size_t n, float *dst) {
  if (t == DT_F32) {
    memcpy(dst, src + first * 4, n * 4);
    return;
  }
  const uint8_t *p = src + first * 2;
  for (size_t i = 0; i < n; i++) {
    uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
    if (t == DT_BF16) {
      uint32_t bits = (uint32_t)h << 16;
      memcpy(&dst[i], &bits, 4);
    } else dst[i] = f16_to_f32(h);
  }
}

uint16_t f32_to_bf16(float x) {
  uint32_t bits;
  memcpy(&bits, &x, 4);
  if (isnan(x)) return 0x7FC0;
  bits += 0x7FFF + ((bits >> 16) & 1); /* round to nearest even */
  return (uint16_t)(bits >> 16);
}

static DType parse_dtype(const char *s) {
  if (!strcmp(s, "F32")) return DT_F32;
  if (!strcmp(s, "F16")) return DT_F16;
  if (!strcmp(s, "BF16")) return DT_BF16;
  return DT_UNSUPPORTED;
}

static size_t known_dtype_size(const char *s) {
  static const char *names[] = {"F64", "I64", "U64", "F32", "I32",  "U32",     "F16",    "BF16",
                                "I16", "U16", "I8",  "U8",  "BOOL", "F8_E4M3", "F8_E5M2"};
  static const size_t sizes[] = {8, 8, 8, 4, 4, 4, 2, 2, 2, 2, 1, 1, 1, 1, 1};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    if (!strcmp(s, names[i])) return sizes[i];
  return 0;
}

static int cmp_offset(const void *a, const void *b) {
  const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
  return x->data < y->data ? -1 : x->data > y->data;
}

static int parse_header(StFile *f, const JsonValue *root, const uint8_t *data, size_t data_size) {
  const char *path = f->path;
  if (root->type != JSON_OBJECT) return aptq_error("%s: safetensors header is not a JSON object", path);
  f->tensors = aptq_calloc((size_t)root->count + 1, sizeof *f->tensors, "the tensor table");
  if (!f->tensors) return APTQ_ERR;
  for (int i = 0; i < root->count; i++) {
    const char *name = root->keys[i];
    const JsonValue *v = &root->items[i];
    if (!strcmp(name, "__metadata__")) {
      if (v->type != JSON_OBJECT) return aptq_error("%s: __metadata__ is not an object", path);
      continue;
    }
    if (strlen(name) >= ST_NAME_MAX) return aptq_error("%s: tensor name too long: %.60s...", path, name);
    if (v->type != JSON_OBJECT) return aptq_error("%s: entry for tensor '%s' is not an object", path, name);
    const JsonValue *dt = json_get(v, "dtype"), *shape = json_get(v, "shape"), *off = json_get(v, "data_offsets");
    if (!dt || dt->type != JSON_STRING) return aptq_error("%s: tensor '%s' has no dtype string", path, name);
    if (!shape || shape->type != JSON_ARRAY) return aptq_error("%s: tensor '%s' has no shape array", path, name);
    if (!off || off->type != JSON_ARRAY || off->count != 2)
      return aptq_error("%s: tensor '%s' has no data_offsets [begin, end]", path, name);
    if (shape->count > ST_MAX_DIMS) return aptq_error("%s: tensor '%s' has %d dimensions (max %d)", path, name, shape->count, ST_MAX_DIMS);
    size_t esize = known_dtype_size(dt->string);
    if (!esize) return aptq_error("%s: tensor '%s' has unknown dtype '%s'", path, name, dt->string);
    StTensor *t = &f->tensors[f->ntensors];
    strcpy(t->name, name);
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt->string);
    t->dtype = parse_dtype(dt->string);
    t->ndim = shape->count;
    uint64_t numel = 1;
    for (int d = 0; d < shape->count; d++) {
      const JsonValue *s = &shape->items[d];
      if (s->type != JSON_NUMBER || !s->is_integer || s->integer < 0 || s->integer > ((int64_t)1 << 40))
        return aptq_error("%s: tensor '%s' has a bad shape entry", path, name);
      t->shape[d] = s->integer;
      if (s->integer && numel > UINT64_MAX / (uint64_t)s->integer) return aptq_error("%s: tensor '%s' shape overflows", path, name);
      numel *= (uint64_t)s->integer;
    }
    const JsonValue *b = &off->items[0], *e = &off->items[1];
    if (b->type != JSON_NUMBER || !b->is_integer || e->type != JSON_NUMBER || !e->is_integer || b->integer < 0 || e->integer < b->integer)
      return aptq_error("%s: tensor '%s' has bad data_offsets", path, name);
    if ((uint64_t)e->integer > data_size)
      return aptq_error("%s: tensor '%s' data_offsets end %lld is past the end of the data (%zu bytes); the file is truncated or corrupt",
                        path, name, (long long)e->integer, data_size);
    if ((uint64_t)(e->integer - b->integer) != numel * esize)
      return aptq_error("%s: tensor '%s' has %lld bytes but dtype %s and its shape need %llu", path, name,
                        (long long)(e->integer - b->integer), dt->string, (unsigned long long)(numel * esize));
    t->data = data + b->integer;
    t->nbytes = (size_t)(e->integer - b->integer);
    for (int k = 0; k < f->ntensors; k++)
      if (!strcmp(f->tensors[k].name, name)) return aptq_error("%s: duplicate tensor '%s'", path, name);
    f->ntensors++;
  }
  /* offsets must not overlap */
  StTensor **order = aptq_malloc(((size_t)f->ntensors + 1) * sizeof *order, "tensor order");
  if (!order) return APTQ_ERR;
  for (int i = 0; i < f->ntensors; i++) order[i] = &f->tensors[i];
  qsort(order, (size_t)f->ntensors, sizeof *order, cmp_offset);
  for (int i = 1; i < f->ntensors; i++) {
    if (order[i - 1]->data + order[i - 1]->nbytes > order[i]->data) {
      int rc = aptq_error("%s: tensors '%s' and '%s' have overlapping data_offsets; the file is corrupt", path, order[i - 1]->name,
                          order[i]->name);
      aptq_free(order);
      return rc;
    }
  }
  aptq_free(order);
  return 0;
}

int st_open(const char *path, StFile *f) {
  memset(f, 0, sizeof *f);
  snprintf(f->path, sizeof f->path, "%s", path);
  CHECK(inpath_check(path, "safetensors file", "give a model directory of regular files"));
  int fd = open(path, O_RDONLY);
  if (fd < 0) return aptq_error("cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return aptq_error("cannot stat '%s': %s", path, strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return aptq_error("'%s' is not a regular file", path);
  }
  f->size = (size_t)st.st_size;
  if (f->size < 8) {
    close(fd);
    return aptq_error("%s: file is %zu bytes, too short for a safetensors header", path, f->size);
  }
  f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (f->map == MAP_FAILED) {
    f->map = NULL;
    return aptq_error("cannot map '%s': %s", path, strerror(errno));
  }
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)f->map[i] << (8 * i);
  if (hlen < 2 || hlen > ST_MAX_HEADER || hlen > f->size - 8) {
    int rc = aptq_error("%s: safetensors header length %llu does not fit the file size %zu; the file is truncated or not safetensors", path,
                        (unsigned long long)hlen, f->size);
    st_close(f);
    return rc;
  }
  JsonValue *root = NULL;
  char what[4200];
  snprintf(what, sizeof what, "%s (safetensors header)", path);
  /* trailing spaces are allowed padding in safetensors */
  size_t jlen = (size_t)hlen;
  while (jlen > 0 && f->map[8 + jlen - 1] == ' ') jlen--;
  if (json_parse((const char *)f->map + 8, jlen, what, &root)) {
    st_close(f);
    return APTQ_ERR;
  }
  int rc = parse_header(f, root, f->map + 8 + hlen, f->size - 8 - (size_t)hlen);
  json_free(root);
  if (rc) st_close(f);
  return rc;
}

void st_close(StFile *f) {
  if (f->map) munmap(f->map, f->size);
  aptq_free(f->tensors);
  f->map = NULL;
  f->tensors = NULL;
  f->ntensors = 0;
}

const StTensor *st_find(const StFile *f, const char *name) {
  for (int i = 0; i < f->ntensors; i++)
    if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
  return NULL;
}

/* The header: offsets are known from the shapes. Returns its padded
 * length, or 0 (error recorded). *out: aptq_malloc'd. */
static size_t st_header(const StWriteTensor *tensors, int n, char **out) {
  size_t cap = 256 + (size_t)n * 512, len = 0, offset = 0;
  char *header = *out = aptq_malloc(cap, "safetensors header");
  if (!header) return 0;
  len += (size_t)snprintf(header + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
  for (int i = 0; i < n; i++) {
    size_t bytes = st_write_numel(&tensors[i]) * dtype_size(tensors[i].dtype);
    len += (size_t)snprintf(header + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", tensors[i].name,
                            tensors[i].dtype == DT_F32 ? "F32" : "BF16");
    for (int d = 0; d < tensors[i].ndim; d++)
      len += (size_t)snprintf(header + len, cap - len, "%s%lld", d ? "," : "", (long long)tensors[i].shape[d]);
    len += (size_t)snprintf(header + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", offset, offset + bytes);
    offset += bytes;
  }
  len += (size_t)snprintf(header + len, cap - len, "}");
  while (len % 8) header[len++] = ' '; /* keep tensor data 8-byte aligned */
  return len;
}

size_t st_write_numel(const StWriteTensor *t) {
  size_t numel = 1;
  for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
  return numel;
}

/* Tensor i's elements in chunks of ST_CHUNK: from its data or fill, as
 * little-endian F32 or BF16 bytes. 1 when all were written. */
enum { ST_CHUNK = 1 << 20 };
static int st_write_data(FILE *f, const StWriteTensor *t, int i, StFill fill, void *ctx, float *vals, uint8_t *bytes) {
  size_t numel = st_write_numel(t), es = dtype_size(t->dtype);
  for (size_t j = 0; j < numel; j += ST_CHUNK) {
    size_t m = numel - j < ST_CHUNK ? numel - j : ST_CHUNK;
    const float *v = t->data ? t->data + j : vals;
    if (!t->data) fill(ctx, i, j, m, vals);
    for (size_t e = 0; e < m; e++) {
      uint32_t u;
      if (t->dtype == DT_F32) memcpy(&u, &v[e], 4);
      else u = f32_to_bf16(v[e]);
      for (size_t b = 0; b < es; b++) bytes[e * es + b] = (uint8_t)(u >> (8 * b));
    }
    if (fwrite(bytes, es, m, f) != m) return 0;
  }
  return 1;
}

int st_write_stream(const char *path, const StWriteTensor *tensors, int n, StFill fill, void *ctx) {
  char *header;
  size_t len = st_header(tensors, n, &header);
  if (!len) return APTQ_ERR;
  float *vals = aptq_malloc(sizeof(float) * ST_CHUNK, "safetensors write buffer");
  uint8_t *bytes = aptq_malloc(4 * (size_t)ST_CHUNK, "safetensors write buffer");
  FILE *f = vals && bytes ? fopen(path, "wb") : NULL;
  int rc = !vals || !bytes ? APTQ_ERR : !f ? aptq_error("cannot create '%s': %s", path, strerror(errno)) : 0;
  if (f) {
    uint8_t lenbytes[8];
    for (int i = 0; i < 8; i++) lenbytes[i] = (uint8_t)((uint64_t)len >> (8 * i));
    int ok = fwrite(lenbytes, 1, 8, f) == 8 && fwrite(header, 1, len, f) == len;
    for (int i = 0; ok && i < n; i++) ok = st_write_data(f, &tensors[i], i, fill, ctx, vals, bytes);
    if (fclose(f) != 0) ok = 0;
    if (!ok) rc = aptq_error("error writing '%s': %s", path, strerror(errno));
  }
  aptq_free(header);
  aptq_free(vals);
  aptq_free(bytes);
  return rc;
}

int st_write(const char *path, const StWriteTensor *tensors, int n) { return st_write_stream(path, tensors, n, NULL, NULL); }
