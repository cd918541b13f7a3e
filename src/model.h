/* A LLaMA-family checkpoint: configuration plus read-only views of its
 * tensors (mapped files, converted to float32 on demand, block by block). */
#ifndef APTQ_MODEL_H
#define APTQ_MODEL_H

#include <mpi.h>
#include <stdint.h>

#include "config.h"
#include "safetensors.h"

/* The seven quantized projections of a decoder block, in solve order. */
typedef enum { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_COUNT } LinearKind;
extern const char *const linear_names[LIN_COUNT]; /* "self_attn.q_proj", ... */

typedef struct {
  char name[ST_NAME_MAX]; /* Hugging Face name */
  DType dtype;
  int64_t rows, cols; /* 1-D tensors: rows = 1 */
  const uint8_t *data;
} TensorRef;

enum { MODEL_HF = 1, MODEL_LLAMA2C = 2 };

typedef struct {
  ModelConfig cfg;
  int format;
  char source[4096];
  TensorRef embed, final_norm, lm_head;
  TensorRef *attn_norm, *ffn_norm; /* [n_layers] */
  TensorRef (*linear)[LIN_COUNT];  /* [n_layers][LIN_COUNT] */
  TensorRef (*qkv_bias)[3];        /* [n_layers][q, k, v], cfg.qkv_bias only (else NULL) */
  TensorRef *q_norm, *k_norm;      /* [n_layers] of head_dim, cfg.qk_norm only (else NULL) */
  StFile *files;
  int nfiles;
  uint8_t *map; /* llama2.c file mapping */
  size_t map_size;
  char fingerprint[65]; /* sha256 of config and every tensor used, see docs */
} Model;

/* Open and validate (collective only through model_fingerprint). */
int model_open(const char *path, Model *m);
/* Releases what model_open (or model_alloc_layers) made; a zeroed Model is fine. */
void model_close(Model *m);
/* The per-layer tensor tables (attn_norm, ffn_norm, linear) for
 * m->cfg.n_layers layers, zeroed (model_open's, and a synthetic model's):
 * 0, or APTQ_ERR (out of memory, recorded). */
int model_alloc_layers(Model *m);
/* Rows [r0, r1) of a 2-D tensor (or the whole 1-D tensor) to float32; NaN
 * and Inf are errors that name the tensor. */
int tensor_rows_f32(const TensorRef *t, int64_t r0, int64_t r1, float *dst);
int tensor_f32(const TensorRef *t, float *dst);
/* Drop a tensor's pages of a read-only file mapping from this process's
 * resident set (they stay in the page cache; a later read maps them again),
 * so that the peak RSS holds the block in use, not the whole checkpoint. */
void model_release(const Model *m, const TensorRef *t);
/* The same for rows [r0, r1) (whole pages inside them only). */
void model_release_rows(const Model *m, const TensorRef *t, int64_t r0, int64_t r1);
/* Large tensors are converted and hashed MODEL_CHUNK_BYTES of stored rows
 * at a time (at least one row), each chunk's pages released after it, so
 * that at most one chunk of them is resident (memory.h). */
#define MODEL_CHUNK_BYTES ((int64_t)16 << 20)
int64_t model_chunk_rows(const TensorRef *t);
/* tensor_f32, chunk by chunk, each chunk's mapped pages released once converted. */
int tensor_f32_release(const Model *m, const TensorRef *t, float *dst);
/* Content hash, computed in parallel (tensors dealt round-robin over ranks);
 * also checks every weight is finite. Collective. */
int model_fingerprint(Model *m, MPI_Comm comm);
void model_config_json(const ModelConfig *c, char *buf, int size);

#endif
