/* aptq synth with shape, blocks or vocab: a whole checkpoint of a real
 * LLaMA shape as the Hugging Face hub ships it (synth.h). The tensors are
 * made a chunk at a time as they are written (st_write_stream): no rank
 * holds more than one chunk, whatever the model's size. Shards are dealt
 * round-robin over the ranks; rank 0 writes the index and config.json last,
 * so a directory with a config.json is complete. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "model.h"
#include "outpath.h"
#include "rng.h"
#include "safetensors.h"
#include "synth.h"

/* shard_size as transformers' max_shard_size (huggingface_hub's
 * parse_size_to_int): a number of bytes with KB/MB/GB/TB (powers of 1000)
 * or KiB/MiB/GiB/TiB (powers of 1024). Local. */
static int parse_shard_size(const char *text, double *bytes) {
  char *end;
  double v = strtod(text, &end);
  static const char *const units[] = {"", "B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"};
  static const double scale[] = {1, 1, 1e3, 1e6, 1e9, 1e12, 1024.0, 1048576.0, 1073741824.0, 1099511627776.0};
  for (size_t i = 0; end != text && v >= 1 && i < sizeof units / sizeof *units; i++)
    if (!strcasecmp(end, units[i]) && (i < 6 || !strcmp(end, units[i]))) {
      *bytes = v * scale[i];
      return 0;
    }
  return aptq_error("shard_size '%s' is not a size; give e.g. 5GB (5e9 bytes), 500MB or 2GiB", text);
}

void synth_shape(int shape, ModelConfig *c) {
  memset(c, 0, sizeof *c);
  c->head_dim = 128;
  c->norm_eps = 1e-5f;
  c->rope_theta = 10000.0;
  c->vocab_size = 32000;
  c->max_seq_len = 4096;
  c->n_layers = 32;
  if (shape == SHAPE_13B) {
    c->dim = 5120;
    c->hidden_dim = 13824;
    c->n_heads = c->n_kv_heads = 40;
    c->n_layers = 40;
  } else if (shape == SHAPE_70B) {
    c->dim = 8192;
    c->hidden_dim = 28672;
    c->n_heads = 64;
    c->n_kv_heads = 8;
    c->n_layers = 80;
  } else if (shape == SHAPE_TINY) { /* the embedded default's widths */
    c->dim = 128;
    c->hidden_dim = 384;
    c->n_heads = 8;
    c->n_kv_heads = 4;
    c->head_dim = 16;
    c->vocab_size = 512;
    c->max_seq_len = 512;
    c->n_layers = 4;
  } else if (shape == SHAPE_8B) { /* Llama 3.1 8B */
    c->dim = 4096;
    c->hidden_dim = 14336;
    c->n_heads = 32;
    c->n_kv_heads = 8;
    c->vocab_size = 128256;
    c->max_seq_len = 131072;
    c->rope_theta = 500000.0;
  } else {
    c->dim = 4096;
    c->hidden_dim = 11008;
    c->n_heads = c->n_kv_heads = 32;
  }
}

/* One tensor to write: its shape, shard, and seeded distribution (uniform
 * with the mean and standard deviation of synth.c's scales). */
typedef struct {
  char name[ST_NAME_MAX];
  int64_t rows, cols;
  double mean, std;
  int shard, index; /* index: in the whole model (the seed) */
} HubTensor;

typedef struct {
  HubTensor *t;
  int n, nshards;
  uint64_t seed;
} HubModel;

/* Elements first.. of tensor i (of the shard's slice): splitmix64 is a counter, so any chunk is made
 * without the ones before it, the same on any rank. */
static void hub_fill(void *ctx, int i, size_t first, size_t n, float *out) {
  const HubModel *h = ctx;
  const HubTensor *t = &h->t[i];
  Rng r = {h->seed * 1000003u + (uint64_t)t->index * 0x100000001b3ull + first * 0x9E3779B97F4A7C15ull};
  double a = t->std * sqrt(3.0);
  for (size_t e = 0; e < n; e++) out[e] = (float)(t->mean + a * (2.0 * rng_uniform(&r) - 1.0));
}

static void hub_add(HubModel *h, const char *name, int64_t rows, int64_t cols, double mean, double std) {
  HubTensor *t = &h->t[h->n];
  t->index = h->n++;
  snprintf(t->name, sizeof t->name, "%s", name);
  t->rows = rows;
  t->cols = cols;
  t->mean = mean;
  t->std = std;
}

/* The tensors in transformers' state_dict order, dealt into shards as
 * huggingface_hub does: a tensor that does not fit the current shard
 * starts the next one. Local: 0 or APTQ_ERR. */
static int hub_tensors(const ModelConfig *c, uint64_t seed, double shard_bytes, HubModel *h) {
  memset(h, 0, sizeof *h);
  h->seed = seed;
  h->t = aptq_calloc(3 + (size_t)c->n_layers * 9, sizeof *h->t, "synth tensors");
  if (!h->t) return APTQ_ERR;
  int64_t D = c->dim, F = c->hidden_dim, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
  hub_add(h, "model.embed_tokens.weight", c->vocab_size, D, 0.0, 1.0);
  for (int l = 0; l < c->n_layers; l++) {
    const int64_t shape[LIN_COUNT][2] = {{q, D}, {kv, D}, {kv, D}, {D, q}, {F, D}, {F, D}, {D, F}}; /* LinearKind order */
    char nm[ST_NAME_MAX];
    for (int k = 0; k < LIN_COUNT; k++) {
      snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, linear_names[k]);
      hub_add(h, nm, shape[k][0], shape[k][1], 0.0, synth_linear_std(c, (LinearKind)k));
    }
    snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
    hub_add(h, nm, 1, D, 1.0, 0.1);
    snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
    hub_add(h, nm, 1, D, 1.0, 0.1);
  }
  hub_add(h, "model.norm.weight", 1, D, 1.0, 0.1);
  hub_add(h, "lm_head.weight", c->vocab_size, D, 0.0, 3.0 / sqrt((double)D));
  double in_shard = 0;
  for (int i = 0; i < h->n; i++) {
    double bytes = 2.0 * (double)h->t[i].rows * (double)h->t[i].cols;
    if (in_shard > 0 && in_shard + bytes > shard_bytes) {
      h->nshards++;
      in_shard = 0;
    }
    h->t[i].shard = h->nshards;
    in_shard += bytes;
  }
  h->nshards++;
  return 0;
}

static void shard_name(const HubModel *h, int s, char *buf, size_t size) {
  snprintf(buf, size, "model-%05d-of-%05d.safetensors", s + 1, h->nshards);
}

/* FILE of the model directory: under a temporary name, renamed when
 * complete (outpath_commit). text, or the safetensors of shard s. */
static int hub_put(const char *dir, const char *file, const Options *o, const char *text, HubModel *h, int s) {
  char path[OPT_PATH_MAX + 64], tmp[OPT_PATH_MAX + 160];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  CHECK(outpath_temp(path, "output", tmp, sizeof tmp, NULL));
  int rc = 0;
  if (text) {
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(text, f) >= 0;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) rc = aptq_error("error writing '%s': %s", tmp, strerror(errno));
  } else {
    int first = 0, k = 0;
    while (h->t[first].shard != s) first++;
    while (first + k < h->n && h->t[first + k].shard == s) k++;
    StWriteTensor *w = aptq_calloc((size_t)k, sizeof *w, "synth shard");
    if (!w) rc = APTQ_ERR;
    for (int i = 0; !rc && i < k; i++) {
      const HubTensor *t = &h->t[first + i];
      w[i] = (StWriteTensor){t->name, DT_BF16, t->rows == 1 ? 1 : 2, {t->rows == 1 ? t->cols : t->rows, t->cols}, NULL};
    }
    HubModel slice = {h->t + first, k, 1, h->seed};
    if (!rc) rc = st_write_stream(tmp, w, k, hub_fill, &slice);
    aptq_free(w);
  }
  if (!rc) rc = outpath_commit(tmp, path, "output", o->overwrite);
  else unlink(tmp);
  aptq_unregister_tmpfile(tmp);
  return rc;
}

static int by_name(const void *a, const void *b) {
  return strcmp((*(const HubTensor *const *)a)->name, (*(const HubTensor *const *)b)->name);
}

/* model.safetensors.index.json as transformers writes it (json.dumps with
 * indent 2 and sorted keys). Local: the text (aptq_free) or NULL. */
static char *hub_index(const HubModel *h) {
  size_t cap = 256 + (size_t)h->n * (ST_NAME_MAX + 64), len = 0;
  char *s = aptq_malloc(cap, "synth index");
  const HubTensor **sorted = aptq_malloc(sizeof *sorted * (size_t)h->n, "synth index");
  if (!s || !sorted) {
    aptq_free(s);
    aptq_free(sorted);
    return NULL;
  }
  double total = 0;
  for (int i = 0; i < h->n; i++) {
    sorted[i] = &h->t[i];
    total += 2.0 * (double)h->t[i].rows * (double)h->t[i].cols;
  }
  qsort(sorted, (size_t)h->n, sizeof *sorted, by_name);
  len += (size_t)snprintf(s + len, cap - len, "{\n  \"metadata\": {\n    \"total_size\": %.0f\n  },\n  \"weight_map\": {", total);
  for (int i = 0; i < h->n; i++) {
    char file[64];
    shard_name(h, sorted[i]->shard, file, sizeof file);
    len += (size_t)snprintf(s + len, cap - len, "%s\n    \"%s\": \"%s\"", i ? "," : "", sorted[i]->name, file);
  }
  snprintf(s + len, cap - len, "\n  }\n}\n");
  aptq_free(sorted);
  return s;
}

/* config.json as transformers writes it (sorted keys, indent 2): LLaMA 2's
 * keys, with Llama 3.1's token ids, RoPE base and llama3 rope_scaling for
 * the 8b shape. */
static void hub_config(const ModelConfig *c, int shape, char *buf, size_t size) {
  int l3 = shape == SHAPE_8B;
  char scaling[256] = "null";
  if (l3)
    snprintf(scaling, sizeof scaling,
             "{\n    \"factor\": 8.0,\n    \"high_freq_factor\": 4.0,\n    \"low_freq_factor\": 1.0,\n"
             "    \"original_max_position_embeddings\": 8192,\n    \"rope_type\": \"llama3\"\n  }");
  snprintf(buf, size,
           "{\n  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],\n  \"attention_bias\": false,\n  \"attention_dropout\": 0.0,\n"
           "  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"head_dim\": %d,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n"
           "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n  \"max_position_embeddings\": %d,\n  \"mlp_bias\": false,\n"
           "  \"model_type\": \"llama\",\n  \"num_attention_heads\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_key_value_heads\": %d,\n"
           "  \"pretraining_tp\": 1,\n  \"rms_norm_eps\": 1e-05,\n  \"rope_scaling\": %s,\n  \"rope_theta\": %.1f,\n"
           "  \"tie_word_embeddings\": false,\n  \"torch_dtype\": \"bfloat16\",\n  \"transformers_version\": \"4.43.0\",\n"
           "  \"use_cache\": true,\n  \"vocab_size\": %d\n}\n",
           l3 ? 128000 : 1, l3 ? 128001 : 2, c->head_dim, c->dim, c->hidden_dim, c->max_seq_len, c->n_heads, c->n_layers, c->n_kv_heads,
           scaling, c->rope_theta, c->vocab_size);
}

int synth_output_dir(const Options *o) {
  char path[OPT_PATH_MAX + 64];
  struct stat st;
  if (stat(o->output, &st) == 0 && !S_ISDIR(st.st_mode)) return aptq_error("output '%s' exists and is not a directory", o->output);
  if (stat(o->output, &st) != 0 && mkdir(o->output, 0777) != 0)
    return aptq_error("cannot create directory '%s': %s", o->output, strerror(errno));
  snprintf(path, sizeof path, "%s/config.json", o->output);
  if (!o->overwrite && stat(path, &st) == 0)
    return aptq_error("'%s' already holds a model; set overwrite = yes to replace it, or choose another output", o->output);
  return 0;
}

/* Local (rank 0): the output is a directory we may fill. */
static int hub_prepare(const Options *o, const HubModel *h) {
  char path[OPT_PATH_MAX + 64], file[64];
  CHECK(synth_output_dir(o));
  for (int s = 0; s <= h->nshards + 1; s++) {
    if (s < h->nshards) shard_name(h, s, file, sizeof file);
    snprintf(path, sizeof path, "%s/%s", o->output,
             s < h->nshards    ? file
             : s == h->nshards ? "model.safetensors.index.json"
                               : "config.json");
    CHECK(outpath_check(path, "output", o->overwrite, o));
  }
  return 0;
}

int synth_hub(const Options *o, int shape, const ModelConfig *c, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  HubModel h = {0};
  double shard_bytes = 0;
  int rc = parse_shard_size(o->shard_size, &shard_bytes);
  if (!rc) rc = hub_tensors(c, (uint64_t)o->seed, shard_bytes, &h);
  if (!rc && rank == 0) rc = hub_prepare(o, &h);
  rc = aptq_agree(comm, rc); /* each failure agreed once: one error line */
  if (!rc) {
    for (int s = rank; !rc && s < h.nshards; s += size) {
      char file[64];
      shard_name(&h, s, file, sizeof file);
      rc = hub_put(o->output, file, o, NULL, &h, s);
    }
    rc = aptq_agree(comm, rc);
  }
  if (!rc) {
    if (rank == 0) { /* last: a directory with a config.json is complete */
      char *index = hub_index(&h), cfg[4096];
      rc = index ? hub_put(o->output, "model.safetensors.index.json", o, index, &h, 0) : APTQ_ERR;
      aptq_free(index);
      hub_config(c, shape, cfg, sizeof cfg);
      if (!rc) rc = hub_put(o->output, "config.json", o, cfg, &h, 0);
    }
    rc = aptq_agree(comm, rc);
  }
  static const char *const names[] = {"7b", "13b", "70b", "tiny", "8b"};
  if (!rc && rank == 0)
    printf(
        "aptq synth: wrote a %d-layer %s-shaped LLaMA checkpoint (hidden %d, intermediate %d, %d heads, %d kv heads, vocab %d, BF16, "
        "%d shard%s, seed %d) to %s\n",
        c->n_layers, names[shape], c->dim, c->hidden_dim, c->n_heads, c->n_kv_heads, c->vocab_size, h.nshards, h.nshards > 1 ? "s" : "",
        o->seed, o->output);
  aptq_free(h.t);
  return rc;
}
