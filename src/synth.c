/* aptq synth: the embedded default model. Writes a small LLaMA-architecture
 * checkpoint in the real Hugging Face layout (config.json, two safetensors
 * shards, one BF16 and one F32, and the index), with GQA and seeded weights,
 * so the whole pipeline runs with no download. With shape, blocks, vocab or
 * shard_size a checkpoint of a real shape instead (synth_hub.c). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "error.h"
#include "model.h"
#include "outpath.h"
#include "rng.h"
#include "safetensors.h"
#include "synth.h"

static const ModelConfig synth_config = {.dim = 128,
                                         .hidden_dim = 384,
                                         .n_layers = 4,
                                         .n_heads = 8,
                                         .n_kv_heads = 4,
                                         .head_dim = 16,
                                         .vocab_size = 512,
                                         .max_seq_len = 512,
                                         .norm_eps = 1e-5f,
                                         .rope_theta = 10000.0};

typedef struct {
  char name[ST_NAME_MAX];
  int64_t rows, cols;
  float *data;
  int shard;
} SynthTensor;

static int add(SynthTensor *t, int *n, const char *name, int64_t rows, int64_t cols, int shard, Rng *rng, double mean, double std) {
  SynthTensor *s = &t[(*n)++];
  snprintf(s->name, sizeof s->name, "%s", name);
  s->rows = rows;
  s->cols = cols;
  s->shard = shard;
  s->data = aptq_malloc(sizeof(float) * (size_t)(rows * cols), name);
  if (!s->data) return APTQ_ERR;
  for (int64_t i = 0; i < rows * cols; i++) s->data[i] = (float)(mean + std * rng_normal(rng));
  return 0;
}

double synth_linear_std(const ModelConfig *c, LinearKind k) {
  double D = c->dim, F = c->hidden_dim, q = (double)c->n_heads * c->head_dim;
  switch (k) {
    case LIN_Q:
    case LIN_K: return 2.0 / sqrt(D);
    case LIN_V: return 1.0 / sqrt(D);
    case LIN_O: return 0.5 / sqrt(q);
    case LIN_GATE:
    case LIN_UP: return 1.0 / sqrt(D);
    default: return 0.5 / sqrt(F);
  }
}

static int write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return aptq_error("cannot create '%s': %s", path, strerror(errno));
  int ok = fputs(text, f) >= 0;
  if (fclose(f) != 0 || !ok) return aptq_error("error writing '%s'", path);
  return 0;
}

/* FILE of the model directory, written under FILE.partial-PID and renamed
 * (outpath_commit): the text, or the safetensors of k tensors w. */
static int put_file(const char *path, const Options *o, const char *text, const StWriteTensor *w, int k) {
  char tmp[OPT_PATH_MAX + 96];
  CHECK(outpath_temp(path, "output", tmp, sizeof tmp, NULL)); /* then rewritten: it is ours, new and empty */
  int rc = text ? write_text(tmp, text) : st_write(tmp, w, k);
  if (!rc) rc = outpath_commit(tmp, path, "output", o->overwrite);
  else unlink(tmp);
  aptq_unregister_tmpfile(tmp);
  return rc;
}

static int synth(const Options *o) {
  const ModelConfig *c = &synth_config;
  char path[OPT_PATH_MAX + 64];
  CHECK(synth_output_dir(o));
  static const char *const files[] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                      "model.safetensors.index.json", "config.json"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    snprintf(path, sizeof path, "%s/%s", o->output, files[i]);
    CHECK(outpath_check(path, "output", o->overwrite, o));
  }

  Rng rng = {(uint64_t)o->seed};
  enum { MAXT = 64 };
  SynthTensor t[MAXT];
  int n = 0, rc = 0;
  int64_t D = c->dim, F = c->hidden_dim, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
  rc = add(t, &n, "model.embed_tokens.weight", c->vocab_size, D, 0, &rng, 0.0, 1.0);
  for (int l = 0; !rc && l < c->n_layers; l++) {
    int shard = l < c->n_layers / 2 ? 0 : 1;
    char nm[ST_NAME_MAX];
    const struct {
      const char *what;
      int64_t rows, cols;
      double mean, std;
    } parts[] = {{"input_layernorm", 1, D, 1.0, 0.1},
                 {"self_attn.q_proj", q, D, 0, synth_linear_std(c, LIN_Q)},
                 {"self_attn.k_proj", kv, D, 0, synth_linear_std(c, LIN_K)},
                 {"self_attn.v_proj", kv, D, 0, synth_linear_std(c, LIN_V)},
                 {"self_attn.o_proj", D, q, 0, synth_linear_std(c, LIN_O)},
                 {"post_attention_layernorm", 1, D, 1.0, 0.1},
                 {"mlp.gate_proj", F, D, 0, synth_linear_std(c, LIN_GATE)},
                 {"mlp.up_proj", F, D, 0, synth_linear_std(c, LIN_UP)},
                 {"mlp.down_proj", D, F, 0, synth_linear_std(c, LIN_DOWN)}};
    for (size_t p = 0; !rc && p < sizeof parts / sizeof parts[0]; p++) {
      snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, parts[p].what);
      rc = add(t, &n, nm, parts[p].rows, parts[p].cols, shard, &rng, parts[p].mean, parts[p].std);
    }
  }
  if (!rc) rc = add(t, &n, "model.norm.weight", 1, D, 1, &rng, 1.0, 0.1);
  if (!rc) rc = add(t, &n, "lm_head.weight", c->vocab_size, D, 1, &rng, 0.0, 3.0 / sqrt((double)D));

  /* shard 1 in BF16, shard 2 in F32: both converters are exercised */
  char index[32768];
  int entries = 0;
  size_t len =
      (size_t)snprintf(index, sizeof index, "{\n  \"metadata\": {\"generator\": \"aptq synth seed %d\"},\n  \"weight_map\": {", o->seed);
  for (int s = 0; !rc && s < 2; s++) {
    StWriteTensor w[MAXT];
    int k = 0;
    for (int i = 0; i < n; i++) {
      if (t[i].shard != s) continue;
      w[k] = (StWriteTensor){t[i].name, s == 0 ? DT_BF16 : DT_F32, t[i].rows == 1 ? 1 : 2, {0}, t[i].data};
      if (t[i].rows == 1) w[k].shape[0] = t[i].cols;
      else {
        w[k].shape[0] = t[i].rows;
        w[k].shape[1] = t[i].cols;
      }
      k++;
      len += (size_t)snprintf(index + len, sizeof index - len, "%s\n    \"%s\": \"model-%05d-of-00002.safetensors\"", entries++ ? "," : "",
                              t[i].name, s + 1);
    }
    snprintf(path, sizeof path, "%s/model-%05d-of-00002.safetensors", o->output, s + 1);
    rc = put_file(path, o, NULL, w, k);
  }
  snprintf(index + len, sizeof index - len, "\n  }\n}\n");
  if (!rc) {
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", o->output);
    rc = put_file(path, o, index, NULL, 0);
  }
  if (!rc) {
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n  \"hidden_act\": \"silu\",\n"
             "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
             "  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n"
             "  \"rms_norm_eps\": %g,\n  \"rope_theta\": %.1f,\n  \"tie_word_embeddings\": false,\n  \"bos_token_id\": 1,\n"
             "  \"eos_token_id\": 2,\n  \"torch_dtype\": \"bfloat16\"\n}\n",
             c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size, c->max_seq_len, (double)c->norm_eps,
             c->rope_theta);
    snprintf(path, sizeof path, "%s/config.json", o->output);
    rc = put_file(path, o, cfg, NULL, 0);
  }
  for (int i = 0; i < n; i++) aptq_free(t[i].data);
  if (!rc)
    printf("aptq synth: wrote a %d-layer LLaMA-architecture checkpoint (hidden %d, %d heads, %d kv heads, vocab %d, seed %d) to %s\n",
           c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->vocab_size, o->seed, o->output);
  return rc;
}

int cmd_synth(const Options *o, MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  CHECK(aptq_agree(comm, options_require(o, "output")));
  if (!options_given("shape") && !options_given("blocks") && !options_given("vocab") && !options_given("shard_size"))
    return aptq_agree(comm, rank == 0 ? synth(o) : 0);
  int shape = options_given("shape") ? options_choice(o, "shape") : SHAPE_TINY;
  ModelConfig c;
  synth_shape(shape, &c);
  if (options_given("blocks")) c.n_layers = o->blocks;
  if (options_given("vocab")) c.vocab_size = o->vocab;
  return synth_hub(o, shape, &c, comm);
}
