/* safetensors files: mapped read-only, header validated before any tensor is
 * touched (length vs file size, JSON, dtypes, shapes, offsets in range and
 * non-overlapping). Also a small writer for the synthetic default model. */
#ifndef APTQ_SAFETENSORS_H
#define APTQ_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { DT_F32, DT_F16, DT_BF16, DT_UNSUPPORTED } DType;

enum { ST_MAX_DIMS = 8, ST_NAME_MAX = 256 };

typedef struct {
  char name[ST_NAME_MAX];
  char dtype_name[16];
  DType dtype;
  int ndim;
  int64_t shape[ST_MAX_DIMS];
  const uint8_t *data;
  size_t nbytes;
} StTensor;

typedef struct {
  char path[4096];
  uint8_t *map;
  size_t size;
  int ntensors;
  StTensor *tensors;
} StFile;

int st_open(const char *path, StFile *f);
void st_close(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);

size_t dtype_size(DType t);
/* Convert n elements starting at element `first` to float32 (unaligned safe). */
void dtype_to_f32(DType t, const uint8_t *src, size_t first, size_t n, float *dst);
uint16_t f32_to_bf16(float x);

typedef struct {
  const char *name;
  DType dtype; /* DT_F32 or DT_BF16 */
  int ndim;
  int64_t shape[ST_MAX_DIMS];
  const float *data; /* converted on write; NULL: made by the fill of st_write_stream */
} StWriteTensor;

int st_write(const char *path, const StWriteTensor *tensors, int n);
/* Elements of tensor `tensor` first .. first + n - 1 into out (float32). */
typedef void (*StFill)(void *ctx, int tensor, size_t first, size_t n, float *out);
/* The same, streamed: a tensor without data is made by fill, in order, a
 * chunk of 2^20 elements at a time (the file is never held in memory). */
int st_write_stream(const char *path, const StWriteTensor *tensors, int n, StFill fill, void *ctx);
size_t st_write_numel(const StWriteTensor *t);

#endif
