/* aptq export: a quantized HDF5 result and its model as one GGUF v3 file for
 * llama.cpp (docs/gguf.md). The metadata follows llama.cpp's
 * convert_hf_to_gguf.py (LlamaModel: hyperparameters, the SentencePiece
 * vocabulary of _set_vocab_sentencepiece, tensor names of gguf-py's
 * tensor_mapping); embeddings, norms and lm_head go as F32 (exact for F32,
 * F16 and BF16 checkpoints); every quantized layer goes in the ggml type that
 * holds its values exactly (ggml_blocks.h; without a quantized file, the
 * model's own weights as F32), q_proj and k_proj rows permuted
 * as LlamaModel.permute does for llama.cpp's RoPE, or the export is refused
 * before anything is written. Rank 0 reads and writes; the others wait for
 * the agreed result. Collective. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "error.h"
#include "ggml_blocks.h"
#include "gguf.h"
#include "model.h"
#include "outpath.h"
#include "qfile.h"
#include "quant.h"
#include "spm.h"

/* gguf-py's tensor names (MODEL_TENSOR.ATTN_Q ...) in LinearKind order */
static const char *const gguf_linear[LIN_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

/* ---- one stored layer, read on this rank alone ---- */

/* A layer's stored form (qfile_read_stored: every value checked) and its view. */
typedef struct {
  QLayerView v;
  QLayerBuffers b;
} StoredLayer;

static void stored_free(StoredLayer *s) {
  qlayer_buffers_free(&s->b);
  memset(s, 0, sizeof *s);
}

static int stored_read(QFileReader *r, const char *name, int rows, int cols, StoredLayer *s) {
  memset(s, 0, sizeof *s);
  QLayerView *v = &s->v;
  int rc = qfile_read_stored(r, name, rows, cols, &s->b, &v->bits, &v->group_size);
  v->rows = rows;
  v->cols = cols;
  v->scales = s->b.scales;
  v->zeros = s->b.zeros;
  v->g_idx = s->b.g_idx;
  v->mins = s->b.mins;
  if (rc) stored_free(s);
  return rc;
}

/* Codes of all rows (rows × cols) of a stored layer, unpacked. */
static void stored_codes(const StoredLayer *s, uint8_t *codes) {
  const QLayerView *v = &s->v;
  int wpr = quant_words_per_row(v->cols, v->bits);
  for (int i = 0; i < v->rows; i++) quant_unpack_row(s->b.qweight + (size_t)i * wpr, v->cols, v->bits, codes + (size_t)i * v->cols);
}

/* ---- the export ---- */

typedef struct {
  const Options *o;
  const Model *m;
  QFileReader r;
  int r_open;
  SpmVocab vocab;
  GgmlType (*type)[LIN_COUNT]; /* [n_layers] */
  GgufWriter w;
  FILE *f;
  char tmp[OPT_PATH_MAX + 32];
  double q_bytes, q_params; /* the linear layers as llama.cpp stores them */
  int ff;                   /* the MLP width in the file: hidden_dim, or padded to block (padded_mlp) */
  int block;                /* columns of the layers' ggml blocks: 32, or 256 (K-quants) */
  int count[GGML_TYPE_END];
  uint32_t mixture; /* several types (grid = ggml): the llama_ftype written (mixture_ftype), else 0 */
} Export;

/* Output row i of a q_proj/k_proj of heads of hd rows comes from this row:
 * LlamaModel.permute (convert_hf_to_gguf.py) turns HF's rotate_half pairs
 * (r, r + hd/2) into llama.cpp's adjacent pairs (2a, 2a + 1):
 * out[h·hd + 2a + b] = in[h·hd + b·hd/2 + a]. */
static int source_row(const Model *m, int kind, int i) {
  int hd = m->cfg.head_dim;
  if (m->cfg.rope_interleaved || (kind != LIN_Q && kind != LIN_K)) return i;
  int r = i % hd;
  return i - r + (r % 2) * (hd / 2) + r / 2;
}

/* The shape of layer k in the file: the MLP's intermediate dimension
 * (gate/up rows, down columns) is x->ff. */
static void file_shape(const Export *x, int k, int *rows, int *cols) {
  const TensorRef *t = &x->m->linear[0][k];
  *rows = k == LIN_GATE || k == LIN_UP ? x->ff : (int)t->rows;
  *cols = k == LIN_DOWN ? x->ff : (int)t->cols;
}

/* The MLP width not a multiple of ggml's blocks (32 columns; 256 for the
 * K-quants' super-blocks, when the quantized file's layers are in groups of
 * 16 at 3 or 6 bits or have mins: the largest ggml_block_cols of the
 * down_proj layers, so that a mixed file's K-quants fit too; wt2-llama-s:
 * 688 -> 704, or 768) is padded with zeros to the next multiple: gate and up
 * get zero rows, down zero columns, so each added hidden unit is silu(0)·0 =
 * 0 and contributes 0 to the output: the same function, exactly, with every
 * layer in its block type (docs/gguf.md). The F32 export (no quantized
 * file) is padded to 32 too (mlp_block = auto | 32), or to 256 (mlp_block =
 * 256), so that llama.cpp's own quantizer can put every layer of it in a
 * block type, or in a K-quant. With a quantized file the layers' block
 * decides and an explicit mlp_block is refused. */
static int padded_mlp(Export *x) {
  int h = x->m->cfg.hidden_dim;
  const char *mb = x->o->mlp_block;
  x->block = !strcmp(mb, "256") ? 256 : GGUF_QBLOCK;
  if (x->r_open && strcmp(mb, "auto"))
    return aptq_error("mlp_block = %s applies to the full-precision export only; leave it out with quantized (the layers' block decides)",
                      mb);
  for (int l = 0; x->r_open && l < x->m->cfg.n_layers; l++) { /* the largest block of any down_proj (grid = ggml mixes them) */
    char name[256];
    StoredLayer s;
    linear_layer_name(l, LIN_DOWN, name, sizeof name);
    CHECK(stored_read(&x->r, name, (int)x->m->linear[l][LIN_DOWN].rows, (int)x->m->linear[l][LIN_DOWN].cols, &s));
    int b = ggml_block_cols(&s.v);
    x->block = l == 0 || b > x->block ? b : x->block;
    stored_free(&s);
  }
  x->ff = h % x->block ? (h + x->block - 1) / x->block * x->block : h;
  return 0;
}

static int decide_types(Export *x) {
  const Model *m = x->m;
  for (int l = 0; !x->r_open && l < m->cfg.n_layers; l++)
    for (int k = 0; k < LIN_COUNT; k++) x->type[l][k] = GGML_F32; /* no quantized file: the model's weights */
  for (int l = 0; x->r_open && l < m->cfg.n_layers; l++)
    for (int k = 0; k < LIN_COUNT; k++) {
      char name[256];
      linear_layer_name(l, k, name, sizeof name);
      StoredLayer s;
      CHECK(stored_read(&x->r, name, (int)m->linear[l][k].rows, (int)m->linear[l][k].cols, &s));
      int rows, cols;
      file_shape(x, k, &rows, &cols);
      int rc = ggml_exact_type(name, &s.v, cols, &x->type[l][k]);
      stored_free(&s);
      if (rc) return rc;
    }
  return 0;
}

/* A file of several types (grid = ggml): the llama_ftype of llama.cpp's
 * mixture named after the type that holds the most weights (llama.h:
 * MOSTLY_Q2_K 10 (itself a mixture), Q3_K_M 12, Q4_K_M 15, Q5_K_M 17,
 * Q6_K 18, Q8_0 7, Q4_0 2, Q4_1 3; F32 layers (none of these) 0). Like
 * llama.cpp's own *_M files, the mixture is what the tensors' types say;
 * general.file_type only names it. */
static uint32_t mixture_ftype(Export *x) {
  long long weights[GGML_TYPE_END] = {0};
  for (int l = 0; l < x->m->cfg.n_layers; l++)
    for (int k = 0; k < LIN_COUNT; k++) weights[x->type[l][k]] += x->m->linear[l][k].rows * x->m->linear[l][k].cols;
  static const struct {
    GgmlType t;
    uint32_t ftype;
  } mix[] = {{GGML_Q2_K, 10}, {GGML_Q3_K, 12}, {GGML_Q4_K, 15}, {GGML_Q5_K, 17},
             {GGML_Q6_K, 18}, {GGML_Q8_0, 7},  {GGML_Q4_0, 2},  {GGML_Q4_1, 3}};
  uint32_t ftype = 0;
  long long most = 0;
  for (size_t i = 0; i < sizeof mix / sizeof *mix; i++)
    if (weights[mix[i].t] > most) {
      most = weights[mix[i].t];
      ftype = mix[i].ftype;
    }
  return ftype;
}

static void metadata(Export *x) {
  const ModelConfig *c = &x->m->cfg;
  GgufWriter *w = &x->w;
  const char *base = strrchr(x->m->source, '/');
  char name[sizeof x->m->source];
  snprintf(name, sizeof name, "%s", base && base[1] ? base + 1 : x->m->source);
  int n[GGML_TYPE_END] = {0}, kinds = 0;
  for (int l = 0; l < c->n_layers; l++)
    for (int k = 0; k < LIN_COUNT; k++) kinds += !n[x->type[l][k]]++;
  /* llama_ftype (llama.h): ALL_F32 0, MOSTLY_Q4_0 2, MOSTLY_Q4_1 3, MOSTLY_Q8_0 7, MOSTLY_Q2_K 10, MOSTLY_Q3_K_S 11 (every
   * layer Q3_K), MOSTLY_Q4_K_S 14, MOSTLY_Q5_K_S 16 (every layer Q4_K, Q5_K), MOSTLY_Q6_K 18 */
  uint32_t ftype = !x->r_open     ? 0
                   : n[GGML_Q6_K] ? 18
                   : n[GGML_Q5_K] ? 16
                   : n[GGML_Q4_K] ? 14
                   : n[GGML_Q3_K] ? 11
                   : n[GGML_Q2_K] ? 10
                   : n[GGML_Q8_0] ? 7
                   : n[GGML_Q4_1] ? 3
                                  : 2;
  if (x->r_open && kinds > 1) ftype = x->mixture = mixture_ftype(x);
  gguf_kv_string(w, "general.architecture", "llama");
  gguf_kv_string(w, "general.name", name);
  gguf_kv_string(w, "general.quantized_by", "aptq " APTQ_VERSION);
  gguf_kv_u32(w, "general.file_type", ftype);
  gguf_kv_u32(w, "general.quantization_version", 2); /* GGML_QNT_VERSION */
  gguf_kv_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size);
  gguf_kv_u32(w, "llama.context_length", (uint32_t)c->max_seq_len);
  gguf_kv_u32(w, "llama.embedding_length", (uint32_t)c->dim);
  gguf_kv_u32(w, "llama.block_count", (uint32_t)c->n_layers);
  gguf_kv_u32(w, "llama.feed_forward_length", (uint32_t)x->ff);
  gguf_kv_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim);
  gguf_kv_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads);
  gguf_kv_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
  gguf_kv_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim);
  gguf_kv_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim);
  gguf_kv_f32(w, "llama.rope.freq_base", (float)c->rope_theta);
  gguf_kv_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
}

/* _create_vocab_sentencepiece: the pieces, scores and types; ids past the
 * tokenizer's up to vocab_size are "[PAD<i>]", -10000, UNUSED. */
static int vocabulary(Export *x) {
  const SpmVocab *v = &x->vocab;
  int V = x->m->cfg.vocab_size;
  if (v->n > V)
    return aptq_error("the tokenizer has %d pieces but the model's vocab_size is %d; give the tokenizer this model was trained with", v->n,
                      V);
  char **tok = aptq_calloc((size_t)V, sizeof *tok, "tokens");
  uint32_t *len = aptq_calloc((size_t)V, sizeof *len, "tokens");
  float *score = aptq_calloc((size_t)V, sizeof *score, "scores");
  int32_t *type = aptq_calloc((size_t)V, sizeof *type, "token types");
  char *pad = aptq_calloc((size_t)(V - v->n) * 16 + 1, 1, "pad tokens");
  int rc = !tok || !len || !score || !type || !pad;
  for (int i = 0; !rc && i < V; i++) {
    if (i < v->n) {
      tok[i] = v->piece[i], len[i] = v->len[i], score[i] = v->score[i], type[i] = v->type[i];
      continue;
    }
    tok[i] = pad + (size_t)(i - v->n) * 16;
    len[i] = (uint32_t)snprintf(tok[i], 16, "[PAD%d]", i);
    score[i] = -10000.0f;
    type[i] = 5;
  }
  if (!rc) {
    GgufWriter *w = &x->w;
    int bos = spm_find(v, "<s>"), eos = spm_find(v, "</s>"), unk = spm_find(v, "<unk>");
    gguf_kv_string(w, "tokenizer.ggml.model", "llama");
    gguf_kv_string(w, "tokenizer.ggml.pre", "default");
    gguf_kv_strings(w, "tokenizer.ggml.tokens", (uint64_t)V, tok, len);
    gguf_kv_f32s(w, "tokenizer.ggml.scores", (uint64_t)V, score);
    gguf_kv_i32s(w, "tokenizer.ggml.token_type", (uint64_t)V, type);
    if (bos >= 0) gguf_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (eos >= 0) gguf_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (unk >= 0) gguf_kv_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk);
    gguf_kv_bool(w, "tokenizer.ggml.add_bos_token", 1);
    gguf_kv_bool(w, "tokenizer.ggml.add_eos_token", 0);
  }
  aptq_free(tok);
  aptq_free(len);
  aptq_free(score);
  aptq_free(type);
  aptq_free(pad);
  return rc ? APTQ_ERR : 0;
}

static void tensor_infos(Export *x) {
  const Model *m = x->m;
  const ModelConfig *c = &m->cfg;
  GgufWriter *w = &x->w;
  char name[128];
  gguf_add_tensor(w, "token_embd.weight", GGML_F32, c->dim, c->vocab_size);
  for (int l = 0; l < c->n_layers; l++) {
    snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
    gguf_add_tensor(w, name, GGML_F32, c->dim, 0);
    for (int k = 0; k < LIN_COUNT; k++) {
      int rows, cols;
      file_shape(x, k, &rows, &cols);
      snprintf(name, sizeof name, "blk.%d.%s.weight", l, gguf_linear[k]);
      gguf_add_tensor(w, name, x->type[l][k], cols, rows);
    }
    snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
    gguf_add_tensor(w, name, GGML_F32, c->dim, 0);
  }
  gguf_add_tensor(w, "output_norm.weight", GGML_F32, c->dim, 0);
  if (!c->tied_embeddings) gguf_add_tensor(w, "output.weight", GGML_F32, c->dim, c->vocab_size);
}

static int write_full(Export *x, const TensorRef *t) {
  size_t n = (size_t)t->rows * t->cols;
  float *buf = aptq_malloc(sizeof(float) * n, "full-precision tensor");
  if (!buf) return APTQ_ERR;
  int rc = tensor_f32(t, buf);
  if (!rc) rc = gguf_write_data(&x->w, x->f, x->tmp, buf, sizeof(float) * n);
  aptq_free(buf);
  return rc;
}

/* One quantized layer: encoded row by row in the output row order, each
 * row decoded again as ggml does and compared with our dequantized row
 * (and the padding with zeros). */
static int write_linear(Export *x, int l, int k) {
  const TensorRef *t = &x->m->linear[l][k];
  int rows = (int)t->rows, cols = (int)t->cols, frows, fcols;
  file_shape(x, k, &frows, &fcols);
  GgmlType type = x->type[l][k];
  char name[256];
  linear_layer_name(l, k, name, sizeof name);
  StoredLayer s = {0};
  if (x->r_open) CHECK(stored_read(&x->r, name, rows, cols, &s));
  uint64_t rb = gguf_row_bytes(type, fcols);
  float *W = aptq_malloc(sizeof(float) * (size_t)rows * cols, "dequantized layer"), *y = aptq_malloc(sizeof(float) * (size_t)fcols, "row");
  uint8_t *codes = aptq_malloc((size_t)rows * cols, "codes"), *out = aptq_calloc((size_t)rb, (size_t)frows, "GGUF tensor");
  int rc = !W || !y || !codes || !out;
  if (!rc && x->r_open) /* the layer already read and checked by stored_read */
    qlayer_dequantize(&s.b, rows, cols, s.v.bits, quant_ngroups(cols, s.v.group_size), codes, W);
  else if (!rc) rc = tensor_f32(t, W);
  if (!rc && type != GGML_F32) stored_codes(&s, codes);
  for (int i = 0; !rc && i < frows; i++) { /* rows past rows: all zero bytes, d = 0 */
    int src = i < rows ? source_row(x->m, k, i) : -1;
    uint8_t *dst = out + (size_t)i * rb;
    if (src >= 0 && type == GGML_F32) memcpy(dst, W + (size_t)src * cols, sizeof(float) * (size_t)cols);
    else if (src >= 0) ggml_encode_row(&s.v, type, src, codes + (size_t)src * cols, fcols, dst);
    ggml_decode_row(type, dst, fcols, y);
    for (int j = 0; !rc && j < fcols; j++) {
      float want = src < 0 ? 0.0f : j < cols ? W[(size_t)src * cols + j] : type == GGML_F32 ? 0.0f : ggml_pad_value(&s.v, src, j);
      if (y[j] != want)
        rc = aptq_error("internal: layer %s row %d column %d decodes as %.9g in %s, not %.9g", name, src, j, (double)y[j],
                        gguf_type_name(type), (double)want);
    }
  }
  if (!rc) rc = gguf_write_data(&x->w, x->f, x->tmp, out, rb * (uint64_t)frows);
  x->q_bytes += (double)rb * frows;
  x->q_params += (double)frows * fcols;
  x->count[type]++;
  aptq_free(W);
  aptq_free(y);
  aptq_free(codes);
  aptq_free(out);
  stored_free(&s);
  return rc ? APTQ_ERR : 0;
}

static int write_tensors(Export *x) {
  const Model *m = x->m;
  CHECK(write_full(x, &m->embed));
  for (int l = 0; l < m->cfg.n_layers; l++) {
    CHECK(write_full(x, &m->attn_norm[l]));
    for (int k = 0; k < LIN_COUNT; k++) CHECK(write_linear(x, l, k));
    CHECK(write_full(x, &m->ffn_norm[l]));
  }
  CHECK(write_full(x, &m->final_norm));
  if (!m->cfg.tied_embeddings) CHECK(write_full(x, &m->lm_head));
  return 0;
}

static int tokenizer_path(const Options *o, char *buf, size_t size) {
  struct stat st;
  if (o->tokenizer[0]) snprintf(buf, size, "%s", o->tokenizer);
  else if (stat(o->model, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(buf, size, "%s/tokenizer.model", o->model);
  else return aptq_error("the model '%s' has no tokenizer.model beside it; give tokenizer = PATH (a SentencePiece .model)", o->model);
  if (access(buf, R_OK) != 0)
    return aptq_error("tokenizer '%s' cannot be read; give tokenizer = PATH (the checkpoint's SentencePiece tokenizer.model)", buf);
  return 0;
}

static void print_summary(const Export *x) {
  printf("aptq export: GGUF v3, %d tensors, %.1f MB of tensor data; linear layers:", x->w.nt, (double)x->w.data_bytes / 1e6);
  for (int t = 0; t < GGML_TYPE_END; t++)
    if (x->count[t]) printf(" %d %s", x->count[t], gguf_type_name((GgmlType)t));
  printf(", %.4f bits per weight\n", 8.0 * x->q_bytes / x->q_params);
  if (x->mixture) printf("  mixed types: general.file_type %u (llama.cpp's mixture of the type with the most weights)\n", x->mixture);
  if (x->ff != x->m->cfg.hidden_dim)
    printf("  MLP width %d padded with zeros to %d (ggml blocks of %d; the same function)\n", x->m->cfg.hidden_dim, x->ff, x->block);
  printf("  output: %s\n", x->o->output);
}

/* Rank 0's part: everything. */
static int export_local(Export *x) {
  const Options *o = x->o;
  if (o->quantized[0]) {
    CHECK(qfile_open(&x->r, o->quantized, MPI_COMM_SELF));
    x->r_open = 1;
  }
  if (x->r_open && strcmp(x->r.model_fingerprint, x->m->fingerprint))
    return aptq_error("'%s' was made from a different model (fingerprint %.12s...); give the model it was quantized from", o->quantized,
                      x->r.model_fingerprint);
  char tok[OPT_PATH_MAX + 32];
  CHECK(tokenizer_path(o, tok, sizeof tok));
  CHECK(spm_load(tok, &x->vocab));
  x->type = aptq_calloc((size_t)x->m->cfg.n_layers, sizeof *x->type, "layer types");
  if (!x->type) return APTQ_ERR;
  CHECK(padded_mlp(x));
  CHECK(decide_types(x));
  metadata(x);
  CHECK(vocabulary(x));
  tensor_infos(x);
  snprintf(x->tmp, sizeof x->tmp, "%s.partial-%d", o->output, (int)getpid());
  x->f = fopen(x->tmp, "wb");
  if (!x->f) return aptq_error("cannot create '%s'", x->tmp);
  aptq_register_tmpfile(x->tmp);
  int rc = gguf_write_head(&x->w, x->f, x->tmp);
  if (!rc) rc = write_tensors(x);
  if (fclose(x->f) && !rc) rc = aptq_error("cannot write '%s'", x->tmp);
  x->f = NULL;
  if (!rc) rc = outpath_commit(x->tmp, o->output, "output", o->overwrite);
  else unlink(x->tmp);
  aptq_unregister_tmpfile(x->tmp);
  if (!rc) print_summary(x);
  return rc;
}

static int is_gguf_path(const char *p) {
  size_t n = strlen(p);
  return n > 5 && !strcmp(p + n - 5, ".gguf");
}

int cmd_export(const Options *o, MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  int rc = options_require(o, "model") || options_require(o, "output");
  if (!rc && strcmp(o->format, "gguf") && !is_gguf_path(o->output))
    rc = aptq_error("output '%s' does not end in .gguf; name it FILE.gguf or give format = gguf", o->output);
  CHECK(aptq_agree(comm, rc));
  CHECK(output_check(o->output, "output", o->overwrite, o, comm));
  Model m;
  CHECK(aptq_agree(comm, model_open(o->model, &m)));
  rc = model_fingerprint(&m, comm);
  Export x = {.o = o, .m = &m};
  gguf_init(&x.w);
  if (!rc && rank == 0) rc = export_local(&x);
  rc = aptq_agree(comm, rc);
  if (x.r_open) qfile_close(&x.r);
  gguf_free(&x.w);
  spm_free(&x.vocab);
  aptq_free(x.type);
  model_close(&m);
  return rc;
}
