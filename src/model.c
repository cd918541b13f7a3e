#include "model.h"

#include <dirent.h>
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
#include "sha256.h"

const char *const linear_names[LIN_COUNT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                             "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

static int read_file(const char *path, char **out, size_t *len) {
  CHECK(inpath_check(path, "model file", "give a model directory of regular files"));
  FILE *f = fopen(path, "rb");
  if (!f) return aptq_error("cannot open '%s': %s", path, strerror(errno));
  if (fseek(f, 0, SEEK_END) != 0) {
    fclose(f);
    return aptq_error("cannot read '%s'", path);
  }
  long n = ftell(f);
  if (n < 0 || n > 64 * 1024 * 1024) {
    fclose(f);
    return aptq_error("'%s' is too large for a JSON file", path);
  }
  rewind(f);
  char *buf = aptq_malloc((size_t)n + 1, "JSON file");
  if (!buf) {
    fclose(f);
    return APTQ_ERR;
  }
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    aptq_free(buf);
    return aptq_error("cannot read '%s'", path);
  }
  fclose(f);
  buf[n] = 0;
  *out = buf;
  *len = (size_t)n;
  return 0;
}

/* --- tensor lookup ----------------------------------------------------- */

static int bind(Model *m, const char *name, int64_t rows, int64_t cols, TensorRef *out) {
  for (int i = 0; i < m->nfiles; i++) {
    const StTensor *t = st_find(&m->files[i], name);
    if (!t) continue;
    if (t->dtype == DT_UNSUPPORTED)
      return aptq_error("%s: tensor '%s' has dtype %s; supported are F32, F16, BF16", m->files[i].path, name, t->dtype_name);
    int ok = rows == 1 ? (t->ndim == 1 && t->shape[0] == cols) : (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok) {
      char got[128] = "";
      for (int d = 0; d < t->ndim; d++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "x" : "", (long long)t->shape[d]);
      return aptq_error("%s: tensor '%s' has shape [%s] but config.json implies [%lld%s%lld]", m->files[i].path, name, got,
                        (long long)(rows == 1 ? cols : rows), rows == 1 ? "" : "x", (long long)(rows == 1 ? 0 : cols));
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    out->dtype = t->dtype;
    out->rows = rows;
    out->cols = cols;
    out->data = t->data;
    return 0;
  }
  return aptq_error("%s: required tensor '%s' is missing from the checkpoint", m->source, name);
}

int model_alloc_layers(Model *m) {
  int L = m->cfg.n_layers;
  m->attn_norm = aptq_calloc((size_t)L, sizeof *m->attn_norm, "the tensor table");
  m->ffn_norm = aptq_calloc((size_t)L, sizeof *m->ffn_norm, "the tensor table");
  m->linear = aptq_calloc((size_t)L, sizeof *m->linear, "the tensor table");
  if (!m->attn_norm || !m->ffn_norm || !m->linear) return APTQ_ERR;
  if (m->cfg.qkv_bias && !(m->qkv_bias = aptq_calloc((size_t)L, sizeof *m->qkv_bias, "the tensor table"))) return APTQ_ERR;
  if (m->cfg.qk_norm) {
    m->q_norm = aptq_calloc((size_t)L, sizeof *m->q_norm, "the tensor table");
    m->k_norm = aptq_calloc((size_t)L, sizeof *m->k_norm, "the tensor table");
    if (!m->q_norm || !m->k_norm) return APTQ_ERR;
  }
  return 0;
}

static void linear_shape(const ModelConfig *c, int kind, int64_t *rows, int64_t *cols) {
  int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
  switch (kind) {
    case LIN_Q:
      *rows = q;
      *cols = c->dim;
      break;
    case LIN_K:
    case LIN_V:
      *rows = kv;
      *cols = c->dim;
      break;
    case LIN_O:
      *rows = c->dim;
      *cols = q;
      break;
    case LIN_GATE:
    case LIN_UP:
      *rows = c->hidden_dim;
      *cols = c->dim;
      break;
    default:
      *rows = c->dim;
      *cols = c->hidden_dim;
      break;
  }
}

/* Qwen2's q/k/v biases (1-D, the projection's rows) and Qwen3's q/k norm
 * weights (head_dim) of layer l, where the config has them. */
static int bind_attention_extras(Model *m, int l) {
  const ModelConfig *c = &m->cfg;
  char name[ST_NAME_MAX];
  for (int k = 0; c->qkv_bias && k < 3; k++) {
    int64_t rows, cols;
    linear_shape(c, k, &rows, &cols);
    snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, linear_names[k]);
    CHECK(bind(m, name, 1, rows, &m->qkv_bias[l][k]));
  }
  if (!c->qk_norm) return 0;
  snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
  CHECK(bind(m, name, 1, c->head_dim, &m->q_norm[l]));
  snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", l);
  return bind(m, name, 1, c->head_dim, &m->k_norm[l]);
}

static int bind_all(Model *m) {
  const ModelConfig *c = &m->cfg;
  char name[ST_NAME_MAX];
  CHECK(model_alloc_layers(m));
  CHECK(bind(m, "model.embed_tokens.weight", c->vocab_size, c->dim, &m->embed));
  CHECK(bind(m, "model.norm.weight", 1, c->dim, &m->final_norm));
  if (c->tied_embeddings) m->lm_head = m->embed;
  else CHECK(bind(m, "lm_head.weight", c->vocab_size, c->dim, &m->lm_head));
  for (int l = 0; l < c->n_layers; l++) {
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    CHECK(bind(m, name, 1, c->dim, &m->attn_norm[l]));
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    CHECK(bind(m, name, 1, c->dim, &m->ffn_norm[l]));
    for (int k = 0; k < LIN_COUNT; k++) {
      int64_t rows, cols;
      linear_shape(c, k, &rows, &cols);
      snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, linear_names[k]);
      CHECK(bind(m, name, rows, cols, &m->linear[l][k]));
    }
    CHECK(bind_attention_extras(m, l));
  }
  return 0;
}

static int open_hf(const char *dir, Model *m) {
  char path[4200];
  snprintf(path, sizeof path, "%s/config.json", dir);
  char *text = NULL;
  size_t len;
  CHECK(read_file(path, &text, &len));
  int crc = config_parse(text, len, path, &m->cfg);
  aptq_free(text);
  CHECK(crc);
  text = NULL;
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  if (access(path, F_OK) == 0) {
    CHECK(read_file(path, &text, &len));
    JsonValue *root = NULL;
    int rc = json_parse(text, len, path, &root);
    aptq_free(text);
    if (rc) return rc;
    const JsonValue *map = json_get(root, "weight_map");
    if (!map || map->type != JSON_OBJECT || map->count == 0) {
      json_free(root);
      return aptq_error("%s: no weight_map object", path);
    }
    /* unique shard names, in order of first appearance */
    char **names = aptq_calloc((size_t)map->count, sizeof *names, "shard names");
    if (!names) {
      json_free(root);
      return APTQ_ERR;
    }
    int n = 0;
    for (int i = 0; i < map->count && !rc; i++) {
      const JsonValue *v = &map->items[i];
      if (v->type != JSON_STRING || !v->string[0] || strchr(v->string, '/')) {
        rc = aptq_error("%s: bad shard file name for '%s'", path, map->keys[i]);
        break;
      }
      int seen = 0;
      for (int k = 0; k < n; k++) seen |= !strcmp(names[k], v->string);
      if (!seen) names[n++] = v->string;
    }
    if (!rc) m->files = aptq_calloc((size_t)n + 1, sizeof *m->files, "shard files");
    if (!rc && !m->files) rc = APTQ_ERR;
    for (int k = 0; k < n && !rc; k++) {
      snprintf(path, sizeof path, "%s/%s", dir, names[k]);
      rc = st_open(path, &m->files[k]);
      if (!rc) m->nfiles++;
    }
    /* every tensor the index names must be in the shard it names */
    for (int i = 0; i < map->count && !rc; i++) {
      for (int k = 0; k < m->nfiles; k++) {
        const char *base = strrchr(m->files[k].path, '/') + 1;
        if (!strcmp(base, map->items[i].string) && !st_find(&m->files[k], map->keys[i]))
          rc = aptq_error("%s: index says tensor '%s' is in it, but it is not", m->files[k].path, map->keys[i]);
      }
    }
    aptq_free(names);
    json_free(root);
    CHECK(rc);
  } else {
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, F_OK) != 0)
      return aptq_error("%s: no model.safetensors.index.json and no model.safetensors; not a Hugging Face checkpoint directory", dir);
    m->files = aptq_calloc(1, sizeof *m->files, "shard files");
    if (!m->files) return APTQ_ERR;
    CHECK(st_open(path, &m->files[0]));
    m->nfiles = 1;
  }
  return bind_all(m);
}

/* The next float32 tensor, rows × cols, at *p of a llama2.c file. */
static void take(TensorRef *ref, const char *name, int64_t rows, int64_t cols, const uint8_t **p) {
  snprintf(ref->name, sizeof ref->name, "%s", name);
  ref->dtype = DT_F32;
  ref->rows = rows;
  ref->cols = cols;
  ref->data = *p;
  *p += 4 * rows * cols;
}

/* Every layer's norm weight `which` (input_layernorm, post_attention_layernorm). */
static void take_norms(Model *m, TensorRef *norms, const char *which, const uint8_t **p) {
  char name[ST_NAME_MAX];
  for (int l = 0; l < m->cfg.n_layers; l++) {
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, which);
    take(&norms[l], name, 1, m->cfg.dim, p);
  }
}

/* Every layer's projections of the n kinds, kind after kind. */
static void take_linears(Model *m, const int *kinds, int n, const uint8_t **p) {
  char name[ST_NAME_MAX];
  for (int k = 0; k < n; k++)
    for (int l = 0; l < m->cfg.n_layers; l++) {
      int64_t rows, cols;
      linear_shape(&m->cfg, kinds[k], &rows, &cols);
      snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, linear_names[kinds[k]]);
      take(&m->linear[l][kinds[k]], name, rows, cols, p);
    }
}

/* llama2.c checkpoint: 7 int32 then float32 tensors in a fixed order. */
static int open_llama2c(const char *path, Model *m) {
  CHECK(inpath_check(path, "model", "give a Hugging Face directory or a llama2.c .bin file"));
  int fd = open(path, O_RDONLY);
  if (fd < 0) return aptq_error("cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return aptq_error("'%s' is not a regular file", path);
  }
  m->map_size = (size_t)st.st_size;
  if (m->map_size < 28) {
    close(fd);
    return aptq_error("%s: %zu bytes is too short for a llama2.c checkpoint header", path, m->map_size);
  }
  m->map = mmap(NULL, m->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m->map == MAP_FAILED) {
    m->map = NULL;
    return aptq_error("cannot map '%s': %s", path, strerror(errno));
  }
  int32_t h[7];
  memcpy(h, m->map, sizeof h);
  ModelConfig *c = &m->cfg;
  c->dim = h[0];
  c->hidden_dim = h[1];
  c->n_layers = h[2];
  c->n_heads = h[3];
  c->n_kv_heads = h[4];
  c->vocab_size = h[5] < 0 ? -h[5] : h[5];
  c->tied_embeddings = h[5] > 0;
  c->max_seq_len = h[6];
  for (int i = 0; i < 7; i++)
    if (i != 5 && (h[i] <= 0 || h[i] > (1 << 24))) return aptq_error("%s: header field %d is %d; not a llama2.c checkpoint", path, i, h[i]);
  if (h[5] == 0 || h[5] == INT32_MIN) return aptq_error("%s: vocab_size is 0; not a llama2.c checkpoint", path);
  if (c->dim % c->n_heads || c->n_heads % c->n_kv_heads || (c->dim / c->n_heads) % 2)
    return aptq_error("%s: dim %d, n_heads %d, n_kv_heads %d are inconsistent", path, c->dim, c->n_heads, c->n_kv_heads);
  c->head_dim = c->dim / c->n_heads;
  c->norm_eps = 1e-5f;
  c->rope_theta = 10000.0;
  c->rope_interleaved = 1;
  int64_t D = c->dim, F = c->hidden_dim, L = c->n_layers, V = c->vocab_size, kv = (int64_t)c->n_kv_heads * c->head_dim;
  int64_t floats = V * D + L * D + L * D * D + 2 * L * D * kv + L * D * D + L * D + 3 * L * F * D + D +
                   (int64_t)c->max_seq_len * c->head_dim + (c->tied_embeddings ? 0 : V * D);
  if ((int64_t)m->map_size != 28 + 4 * floats)
    return aptq_error("%s: file is %zu bytes but its header implies %lld; truncated or not a llama2.c checkpoint", path, m->map_size,
                      (long long)(28 + 4 * floats));
  CHECK(model_alloc_layers(m));
  const uint8_t *p = m->map + 28;
  static const int attn[4] = {LIN_Q, LIN_K, LIN_V, LIN_O}, mlp[3] = {LIN_GATE, LIN_DOWN, LIN_UP}; /* w1, w2, w3 */
  take(&m->embed, "model.embed_tokens.weight", V, D, &p);
  take_norms(m, m->attn_norm, "input_layernorm", &p);
  take_linears(m, attn, 4, &p);
  take_norms(m, m->ffn_norm, "post_attention_layernorm", &p);
  take_linears(m, mlp, 3, &p);
  take(&m->final_norm, "model.norm.weight", 1, D, &p);
  p += 4 * (int64_t)c->max_seq_len * c->head_dim; /* freq_cis_real, freq_cis_imag: recomputed */
  if (c->tied_embeddings) m->lm_head = m->embed;
  else take(&m->lm_head, "lm_head.weight", V, D, &p);
  return 0;
}

int model_open(const char *path, Model *m) {
  memset(m, 0, sizeof *m);
  snprintf(m->source, sizeof m->source, "%s", path);
  struct stat st;
  if (stat(path, &st) != 0)
    return aptq_error("model '%s' not found: %s; set model = a Hugging Face directory or a llama2.c .bin", path, strerror(errno));
  int rc;
  if (S_ISDIR(st.st_mode)) {
    m->format = MODEL_HF;
    rc = open_hf(path, m);
  } else {
    m->format = MODEL_LLAMA2C;
    rc = open_llama2c(path, m);
  }
  if (rc) model_close(m);
  return rc;
}

void model_release_rows(const Model *m, const TensorRef *t, int64_t r0, int64_t r1) {
  if (!m->nfiles && !m->map) return; /* not a file mapping: nothing to give back */
  long page = sysconf(_SC_PAGESIZE);
  size_t row = (size_t)t->cols * dtype_size(t->dtype);
  uintptr_t a = (uintptr_t)t->data + (size_t)r0 * row, b = (uintptr_t)t->data + (size_t)r1 * row;
  a = (a + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page; /* whole pages inside the rows only */
  b = b / (uintptr_t)page * (uintptr_t)page;
  if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

void model_release(const Model *m, const TensorRef *t) { model_release_rows(m, t, 0, t->rows); }

int64_t model_chunk_rows(const TensorRef *t) {
  int64_t row = t->cols * (int64_t)dtype_size(t->dtype);
  int64_t n = row > 0 ? MODEL_CHUNK_BYTES / row : t->rows;
  return n < 1 ? 1 : n;
}

int tensor_f32_release(const Model *m, const TensorRef *t, float *dst) {
  int64_t chunk = model_chunk_rows(t);
  for (int64_t r = 0; r < t->rows; r += chunk) {
    int64_t e = r + chunk < t->rows ? r + chunk : t->rows;
    CHECK(tensor_rows_f32(t, r, e, dst + (size_t)(r * t->cols)));
    model_release_rows(m, t, r, e);
  }
  return 0;
}

void model_close(Model *m) {
  for (int i = 0; i < m->nfiles; i++) st_close(&m->files[i]);
  aptq_free(m->files);
  if (m->map) munmap(m->map, m->map_size);
  aptq_free(m->attn_norm);
  aptq_free(m->ffn_norm);
  aptq_free(m->linear);
  aptq_free(m->qkv_bias);
  aptq_free(m->q_norm);
  aptq_free(m->k_norm);
  m->qkv_bias = NULL;
  m->q_norm = m->k_norm = NULL;
  m->files = NULL;
  m->map = NULL;
  m->attn_norm = m->ffn_norm = NULL;
  m->linear = NULL;
  m->nfiles = 0;
}

int tensor_rows_f32(const TensorRef *t, int64_t r0, int64_t r1, float *dst) {
  size_t n = (size_t)((r1 - r0) * t->cols);
  dtype_to_f32(t->dtype, t->data, (size_t)(r0 * t->cols), n, dst);
  for (size_t i = 0; i < n; i++)
    if (!isfinite(dst[i]))
      return aptq_error("tensor '%s' holds a non-finite value (%g) at row %lld column %lld; the checkpoint is corrupt", t->name,
                        (double)dst[i], (long long)(r0 + (int64_t)i / t->cols), (long long)((int64_t)i % t->cols));
  return 0;
}

int tensor_f32(const TensorRef *t, float *dst) { return tensor_rows_f32(t, 0, t->rows, dst); }

/* The keys a plain LLaMA has are written alone, as before scaled RoPE and
 * the window existed, so that its fingerprint does not change. */
void model_config_json(const ModelConfig *c, char *buf, int size) {
  int n = snprintf(buf, (size_t)size,
                   "{\"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                   "\"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, \"max_position_embeddings\": %d, "
                   "\"rms_norm_eps\": %.9g, \"rope_theta\": %.17g, \"rope_interleaved\": %s, \"tie_word_embeddings\": %s",
                   c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size, c->max_seq_len,
                   (double)c->norm_eps, c->rope_theta, c->rope_interleaved ? "true" : "false", c->tied_embeddings ? "true" : "false");
  const RopeScaling *r = &c->rope_scaling;
  static const char *const types[] = {"default", "linear", "llama3"};
  if (n >= 0 && n < size && r->type != ROPE_DEFAULT)
    n += snprintf(buf + n, (size_t)(size - n),
                  ", \"rope_scaling\": {\"rope_type\": \"%s\", \"factor\": %.17g, \"low_freq_factor\": %.17g, \"high_freq_factor\": %.17g, "
                  "\"original_max_position_embeddings\": %d}",
                  types[r->type], r->factor, r->low_freq_factor, r->high_freq_factor, r->original_max_position);
  if (n >= 0 && n < size && c->sliding_window > 0)
    n += snprintf(buf + n, (size_t)(size - n), ", \"sliding_window\": %d", c->sliding_window);
  if (n >= 0 && n < size && c->qkv_bias) n += snprintf(buf + n, (size_t)(size - n), ", \"qkv_bias\": true");
  if (n >= 0 && n < size && c->qk_norm) n += snprintf(buf + n, (size_t)(size - n), ", \"qk_norm\": true");
  if (n >= 0 && n < size) snprintf(buf + n, (size_t)(size - n), "}");
}

/* All tensors in a fixed order: embed, per layer (norms, q..down, then
 * the q/k/v biases and the q/k norms where the model has them), final
 * norm, lm_head. */
static int tensor_list(const Model *m, const TensorRef ***out) {
  int L = m->cfg.n_layers, n = 0;
  const TensorRef **list = aptq_malloc(sizeof *list * (size_t)(3 + L * (2 + LIN_COUNT + 5)), "tensor list");
  if (!list) return -1;
  list[n++] = &m->embed;
  for (int l = 0; l < L; l++) {
    list[n++] = &m->attn_norm[l];
    list[n++] = &m->ffn_norm[l];
    for (int k = 0; k < LIN_COUNT; k++) list[n++] = &m->linear[l][k];
    for (int k = 0; m->qkv_bias && k < 3; k++) list[n++] = &m->qkv_bias[l][k];
    if (m->q_norm) list[n++] = &m->q_norm[l];
    if (m->k_norm) list[n++] = &m->k_norm[l];
  }
  list[n++] = &m->final_norm;
  if (!m->cfg.tied_embeddings) list[n++] = &m->lm_head;
  *out = list;
  return n;
}

int model_fingerprint(Model *m, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const TensorRef **list;
  int n = tensor_list(m, &list);
  if (n < 0) return aptq_agree(comm, APTQ_ERR);
  uint8_t *digests = aptq_calloc((size_t)n, 32, "tensor digests");
  int rc = digests ? 0 : APTQ_ERR;
  float *buf = NULL;
  size_t buf_size = 0; /* floats */
  for (int i = rank; i < n && !rc; i += size) {
    const TensorRef *t = list[i];
    int64_t chunk = t->cols > 0 ? (1 << 20) / t->cols + 1 : 1; /* rows of about 2^20 elements */
    size_t need = (size_t)(chunk * t->cols);
    if (need > buf_size) { /* by elements: fewer, longer rows may need more */
      aptq_free(buf);
      buf = aptq_malloc(need * sizeof *buf, "tensor rows");
      buf_size = buf ? need : 0;
      if (!buf) {
        rc = APTQ_ERR;
        break;
      }
    }
    /* the hash is over the stored bytes, chunk by chunk (the same digest),
     * each chunk's pages released once hashed and converted (the conversion
     * checks finiteness): one chunk of the checkpoint resident at a time */
    Sha256 s;
    sha256_init(&s);
    size_t row = (size_t)t->cols * dtype_size(t->dtype);
    for (int64_t r = 0; r < t->rows && !rc; r += chunk) {
      int64_t e = r + chunk < t->rows ? r + chunk : t->rows;
      sha256_update(&s, t->data + (size_t)r * row, (size_t)(e - r) * row);
      rc = tensor_rows_f32(t, r, e, buf);
      model_release_rows(m, t, r, e);
    }
    sha256_final(&s, digests + 32 * i);
  }
  aptq_free(buf);
  if (aptq_agree(comm, rc)) {
    aptq_free(digests);
    aptq_free(list);
    return APTQ_ERR;
  }
  /* each rank owns digests i ≡ rank (mod size); a sum-reduce merges them */
  MPI_Allreduce(MPI_IN_PLACE, digests, 32 * n, MPI_UNSIGNED_CHAR, MPI_BOR, comm);
  Sha256 s;
  sha256_init(&s);
  char cfg[1024];
  model_config_json(&m->cfg, cfg, sizeof cfg);
  sha256_update(&s, cfg, strlen(cfg));
  for (int i = 0; i < n; i++) {
    char head[512];
    snprintf(head, sizeof head, "%s %d %lld %lld ", list[i]->name, (int)list[i]->dtype, (long long)list[i]->rows, (long long)list[i]->cols);
    sha256_update(&s, head, strlen(head));
    sha256_update(&s, digests + 32 * i, 32);
  }
  uint8_t d[32];
  sha256_final(&s, d);
  sha256_digest_to_hex(d, m->fingerprint);
  aptq_free(digests);
  aptq_free(list);
  return 0;
}
