/* What a real llama.cpp makes of a GGUF file (the check of `aptq export`,
 * tests/gguf_check.sh): built against the llama.h, ggml.h and gguf.h of the
 * llama.cpp that node-llama-cpp 3.21.1 ships (its bundled source, checked
 * out by tools/llama-cpp.sh) and linked with the package's own libllama and
 * libggml, so that the struct layouts are that version's.
 *
 *   gguf_logprobs logprobs MODEL.gguf TOKENS.u32 NSEQ SEQLEN OUT.f64
 *     loads the model on the CPU, decodes each of the first NSEQ sequences of
 *     SEQLEN tokens (no BOS added: the ids as given) in one batch, and writes
 *     for every position p < SEQLEN-1 the log-probability of token p+1
 *     (log-softmax of llama_get_logits_ith(p), in double): NSEQ × (SEQLEN-1)
 *     float64.
 *   gguf_logprobs tokenize MODEL.gguf TEXT NLINES OUT.u32
 *     the first NLINES non-empty lines of TEXT, each stripped of surrounding
 *     white space, tokenized by llama.cpp (llama_tokenize with BOS) into
 *     OUT.u32: how the shared token files were made from the text with
 *     SentencePiece (BOS before every non-empty line).
 *   gguf_logprobs quantize IN.gguf OUT.gguf FTYPE [IMATRIX.gguf|-] [pure]
 *     llama.cpp's own quantizer (llama_model_quantize, as llama-quantize
 *     runs it) to llama_ftype FTYPE (2 Q4_0, 3 Q4_1, 7 Q8_0, 10 Q2_K,
 *     11 Q3_K_S, 12 Q3_K_M, 14 Q4_K_S, 15 Q4_K_M, 18 Q6_K ...), keeping
 *     token_embd and output in F32 as aptq export does (the comparison of
 *     docs/gguf.md); with IMATRIX.gguf (the format llama-imatrix writes, see
 *     imatrix below) the importance matrix is loaded as
 *     tools/quantize/quantize.cpp's load_imatrix does (each NAME.in_sum2
 *     divided by its NAME.counts) and passed as params.imatrix, an array of
 *     llama_model_imatrix_data {name, data, size} ended by a NULL name;
 *     "pure" is llama-quantize --pure (every layer the ftype's default type,
 *     no Q4_K_M-style mixture).
 *   gguf_logprobs imatrix MODEL.gguf TOKENS.u32 NSEQ SEQLEN OUT.gguf
 *     the importance matrix as llama-imatrix computes it
 *     (tools/imatrix/imatrix.cpp, IMatrixCollector::collect_imatrix): the
 *     model (normally the full-precision export) evaluates each of the
 *     first NSEQ sequences of SEQLEN tokens (the ids as given, as the
 *     logprobs command does), and an eval callback (cb_eval) adds, for every
 *     GGML_OP_MUL_MAT whose weight is named blk.* and whose float32
 *     activation src1 has at least 16 rows, x[j]^2 of every row x of src1
 *     to that weight's float sums, and the number of rows to its count.
 *     Written as llama-imatrix's GGUF: general.type = imatrix,
 *     imatrix.datasets = [TOKENS], imatrix.chunk_count = NSEQ,
 *     imatrix.chunk_size = SEQLEN, tensors NAME.in_sum2 (F32, ne = [cols, 1])
 *     and NAME.counts (F32, [1, 1]). llama_model_quantize then weighs column
 *     j of each matrix by in_sum2[j] / counts: the mean of squared
 *     activations over the calibration tokens.
 *   gguf_logprobs tensors MODEL.gguf OUTDIR [all]
 *     every 2-D tensor (with "all" every tensor) decoded to float32 by
 *     ggml's own to_float (ggml_get_type_traits(type)->to_float,
 *     ggml-quants.c) into OUTDIR/NAME.f32, and OUTDIR/types.txt: "NAME TYPE
 *     ROWS COLS" lines.
 *   gguf_logprobs bpw MODEL.gguf
 *     bits per weight of the linear layers (the blk.* matrices, norms left
 *     out) as the file stores them (bytes over elements, block scales
 *     included) and the count of each type: "4.5000 q4_0:28". */
#define _POSIX_C_SOURCE 200809L /* strndup */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-backend.h"
#include "ggml.h"
#include "gguf.h"
#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
  (void)user;
  if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static bool no_progress(float progress, void *user) {
  (void)progress, (void)user;
  return true;
}

/* CPU threads of a llama.cpp context: LLAMA_THREADS, default 2 (1 is faster
 * on an oversubscribed machine: ggml's threads wait for each other spinning) */
static int threads(void) {
  const char *t = getenv("LLAMA_THREADS");
  return t && atoi(t) > 0 ? atoi(t) : 2;
}

/* nseq x T token ids from the front of a raw int32 token file (malloc'd;
 * NULL, with the message printed, when it cannot be read) */
static int32_t *read_tokens(const char *path, int nseq, int T) {
  FILE *f = fopen(path, "rb");
  int32_t *tok = malloc(sizeof(int32_t) * (size_t)nseq * T);
  if (!f || !tok || fread(tok, 4, (size_t)nseq * T, f) != (size_t)nseq * T) {
    fprintf(stderr, "gguf_logprobs: cannot read %d x %d tokens from %s\n", nseq, T, path);
    if (f) fclose(f);
    free(tok);
    return NULL;
  }
  fclose(f);
  return tok;
}

static int logprobs(const char *model_path, const char *tokens_path, int nseq, int T, const char *out_path) {
  int32_t *tok = read_tokens(tokens_path, nseq, T);
  if (!tok) return 1;
  struct llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  mp.progress_callback = no_progress;
  struct llama_model *model = llama_model_load_from_file(model_path, mp);
  if (!model) {
    fprintf(stderr, "gguf_logprobs: llama.cpp cannot load %s\n", model_path);
    return 1;
  }
  struct llama_context_params cp = llama_context_default_params();
  cp.n_ctx = (uint32_t)T;
  cp.n_batch = (uint32_t)T;
  cp.n_ubatch = (uint32_t)T;
  cp.n_seq_max = 1;
  cp.n_threads = cp.n_threads_batch = threads();
  cp.no_perf = true;
  struct llama_context *ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    fprintf(stderr, "gguf_logprobs: cannot make a llama.cpp context for %s\n", model_path);
    return 1;
  }
  int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
  FILE *out = fopen(out_path, "wb");
  struct llama_batch b = llama_batch_init(T, 0, 1);
  int rc = !out;
  for (int s = 0; !rc && s < nseq; s++) {
    const int32_t *t = tok + (size_t)s * T;
    llama_memory_clear(llama_get_memory(ctx), true);
    b.n_tokens = T;
    for (int p = 0; p < T; p++) {
      b.token[p] = t[p];
      b.pos[p] = p;
      b.n_seq_id[p] = 1;
      b.seq_id[p][0] = 0;
      b.logits[p] = 1;
    }
    if (llama_decode(ctx, b)) {
      fprintf(stderr, "gguf_logprobs: llama_decode failed on sequence %d\n", s);
      rc = 1;
      break;
    }
    for (int p = 0; p + 1 < T; p++) {
      const float *z = llama_get_logits_ith(ctx, p);
      double mx = z[0], sum = 0.0;
      for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
      for (int v = 0; v < V; v++) sum += exp((double)z[v] - mx);
      double lp = (double)z[t[p + 1]] - mx - log(sum);
      rc |= fwrite(&lp, sizeof lp, 1, out) != 1;
    }
  }
  if (out && fclose(out)) rc = 1;
  llama_batch_free(b);
  llama_free(ctx);
  llama_model_free(model);
  free(tok);
  return rc;
}

/* ---- imatrix: llama-imatrix's collector (collect_imatrix) for dense matrices ---- */

enum { IM_MAX = 4096 };

typedef struct {
  int n;
  char name[IM_MAX][GGML_MAX_NAME];
  float *sum[IM_MAX];
  int64_t cols[IM_MAX], count[IM_MAX];
  int failed;
} Imatrix;

/* "CUDA0#blk.0.attn_k.weight#0" -> "blk.0.attn_k.weight" (filter_tensor_name) */
static void weight_name(const char *name, char *out) {
  const char *p = strchr(name, '#');
  p = p ? p + 1 : name;
  const char *q = strchr(p, '#');
  size_t n = q ? (size_t)(q - p) : strlen(p);
  if (n >= GGML_MAX_NAME) n = GGML_MAX_NAME - 1;
  memcpy(out, p, n);
  out[n] = 0;
}

static bool collect(struct ggml_tensor *t, bool ask, void *user) {
  Imatrix *im = user;
  const struct ggml_tensor *src0 = t->src[0], *src1 = t->src[1];
  char w[GGML_MAX_NAME];
  if (ask) { /* the same filter as collect_imatrix (no MoE: MUL_MAT_ID refused below) */
    if (t->op == GGML_OP_MUL_MAT_ID) return true;
    if (t->op != GGML_OP_MUL_MAT) return false;
    weight_name(src0->name, w);
    return src1->ne[1] >= 16 && src1->type == GGML_TYPE_F32 && !strncmp(w, "blk.", 4);
  }
  if (t->op != GGML_OP_MUL_MAT || src0->ne[2] * src0->ne[3] != 1 || !ggml_backend_buffer_is_host(src1->buffer) ||
      src1->nb[0] != sizeof(float)) {
    fprintf(stderr, "gguf_logprobs imatrix: %s is not a dense 2-D matrix product on the CPU; not supported here\n", t->name);
    im->failed = 1;
    return false;
  }
  weight_name(src0->name, w);
  int e = 0;
  while (e < im->n && strcmp(im->name[e], w)) e++;
  if (e == im->n) {
    if (im->n == IM_MAX || !(im->sum[e] = calloc((size_t)src1->ne[0], sizeof(float)))) return im->failed = 1, false;
    snprintf(im->name[e], GGML_MAX_NAME, "%s", w);
    im->cols[e] = src1->ne[0];
    im->n++;
  }
  if (im->cols[e] != src1->ne[0]) return im->failed = 1, false;
  float *acc = im->sum[e];
  for (int64_t i3 = 0; i3 < src1->ne[3]; i3++)
    for (int64_t i2 = 0; i2 < src1->ne[2]; i2++)
      for (int64_t r = 0; r < src1->ne[1]; r++) {
        const float *x = (const float *)((const char *)src1->data + r * src1->nb[1] + i2 * src1->nb[2] + i3 * src1->nb[3]);
        for (int64_t j = 0; j < src1->ne[0]; j++) acc[j] += x[j] * x[j]; /* float sums, as collect_imatrix */
      }
  im->count[e] += ggml_nrows(src1);
  for (int64_t j = 0; j < src1->ne[0]; j++)
    if (!isfinite(acc[j])) {
      fprintf(stderr, "gguf_logprobs imatrix: non-finite values in %s\n", w);
      return im->failed = 1, false;
    }
  return true;
}

static int imatrix_write(const Imatrix *im, const char *dataset, int nseq, int T, const char *out_path) {
  struct ggml_init_params ip = {.mem_size = (size_t)im->n * (2 * ggml_tensor_overhead() + 64) + 4096, .mem_buffer = NULL, .no_alloc = true};
  struct ggml_context *g = ggml_init(ip);
  struct gguf_context *gf = gguf_init_empty();
  gguf_set_val_str(gf, "general.type", "imatrix");
  gguf_set_arr_str(gf, "imatrix.datasets", &dataset, 1);
  gguf_set_val_u32(gf, "imatrix.chunk_count", (uint32_t)nseq);
  gguf_set_val_u32(gf, "imatrix.chunk_size", (uint32_t)T);
  float *counts = malloc(sizeof(float) * (size_t)(im->n + 1));
  for (int e = 0; e < im->n; e++) {
    struct ggml_tensor *s = ggml_new_tensor_2d(g, GGML_TYPE_F32, im->cols[e], 1);
    struct ggml_tensor *c = ggml_new_tensor_2d(g, GGML_TYPE_F32, 1, 1);
    ggml_format_name(s, "%s.in_sum2", im->name[e]);
    ggml_format_name(c, "%s.counts", im->name[e]);
    counts[e] = (float)im->count[e];
    s->data = im->sum[e];
    c->data = counts + e;
    gguf_add_tensor(gf, s);
    gguf_add_tensor(gf, c);
  }
  int rc = !gguf_write_to_file(gf, out_path, false);
  if (rc) fprintf(stderr, "gguf_logprobs imatrix: cannot write %s\n", out_path);
  gguf_free(gf);
  ggml_free(g);
  free(counts);
  return rc;
}

static int imatrix(const char *model_path, const char *tokens_path, int nseq, int T, const char *out_path) {
  int32_t *tok = read_tokens(tokens_path, nseq, T);
  if (!tok) return 1;
  static Imatrix im;
  struct llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  mp.progress_callback = no_progress;
  struct llama_model *model = llama_model_load_from_file(model_path, mp);
  struct llama_context_params cp = llama_context_default_params();
  cp.n_ctx = cp.n_batch = cp.n_ubatch = (uint32_t)T; /* one sequence per ubatch: every matrix sees its T rows at once */
  cp.n_seq_max = 1;
  cp.n_threads = cp.n_threads_batch = threads();
  cp.no_perf = true;
  cp.cb_eval = collect;
  cp.cb_eval_user_data = &im;
  struct llama_context *ctx = model ? llama_init_from_model(model, cp) : NULL;
  if (!ctx) {
    fprintf(stderr, "gguf_logprobs: llama.cpp cannot load %s\n", model_path);
    return 1;
  }
  struct llama_batch b = llama_batch_init(T, 0, 1);
  int rc = 0;
  for (int s = 0; !rc && s < nseq; s++) {
    llama_memory_clear(llama_get_memory(ctx), true);
    b.n_tokens = T;
    for (int p = 0; p < T; p++) {
      b.token[p] = tok[(size_t)s * T + p];
      b.pos[p] = p;
      b.n_seq_id[p] = 1;
      b.seq_id[p][0] = 0;
      b.logits[p] = 1; /* all outputs, as llama-imatrix (its perplexity): no row of the last layer is pruned */
    }
    rc = llama_decode(ctx, b) != 0 || im.failed;
  }
  if (rc) fprintf(stderr, "gguf_logprobs imatrix: evaluating %s failed\n", model_path);
  if (!rc) rc = imatrix_write(&im, tokens_path, nseq, T, out_path);
  if (!rc) printf("gguf_logprobs imatrix: %d matrices, %d x %d tokens\n", im.n, nseq, T);
  llama_batch_free(b);
  llama_free(ctx);
  llama_model_free(model);
  for (int e = 0; e < im.n; e++) free(im.sum[e]);
  free(tok);
  return rc;
}

/* IMATRIX.gguf -> params.imatrix as tools/quantize/quantize.cpp's load_imatrix
 * and main build it: e[j] = in_sum2[j] / count (count 0: 1), {NULL} last. */
static struct llama_model_imatrix_data *imatrix_load(const char *path, struct gguf_context **gfo, struct ggml_context **go) {
  struct gguf_init_params ip = {.no_alloc = false, .ctx = go};
  struct gguf_context *gf = *gfo = gguf_init_from_file(path, ip);
  if (!gf || gguf_find_key(gf, "imatrix.chunk_size") < 0) {
    fprintf(stderr, "gguf_logprobs: %s is no GGUF imatrix (llama-imatrix's format)\n", path);
    return NULL;
  }
  int64_t n = gguf_get_n_tensors(gf);
  struct llama_model_imatrix_data *d = calloc((size_t)n + 1, sizeof *d);
  int k = 0;
  for (int64_t i = 0; d && i < n; i++) {
    const char *name = gguf_get_tensor_name(gf, i);
    size_t len = strlen(name);
    if (len < 8 || strcmp(name + len - 8, ".in_sum2")) continue;
    char cname[GGML_MAX_NAME + 8];
    snprintf(cname, sizeof cname, "%.*s.counts", (int)(len - 8), name);
    struct ggml_tensor *s = ggml_get_tensor(*go, name), *c = ggml_get_tensor(*go, cname);
    if (!c || s->type != GGML_TYPE_F32 || c->type != GGML_TYPE_F32 || ggml_nelements(c) != 1) {
      fprintf(stderr, "gguf_logprobs: %s: %s has no single F32 count\n", path, name);
      free(d);
      return NULL;
    }
    float count = *(const float *)c->data, *e = (float *)s->data; /* divided in place: ours */
    for (int64_t j = 0; j < ggml_nelements(s); j++) e[j] = count > 0.0f ? e[j] / count : 1.0f;
    char *wname = strndup(name, len - 8);
    d[k++] = (struct llama_model_imatrix_data){wname, e, (size_t)ggml_nelements(s)};
  }
  return d;
}

static int quantize(const char *in, const char *out, int ftype, const char *imatrix_path, int pure) {
  llama_model_quantize_params qp = llama_model_quantize_default_params();
  qp.nthread = threads();
  qp.ftype = (enum llama_ftype)ftype;
  qp.token_embedding_type = GGML_TYPE_F32;
  qp.output_tensor_type = GGML_TYPE_F32;
  qp.quantize_output_tensor = false;
  qp.pure = pure;
  struct gguf_context *gf = NULL;
  struct ggml_context *g = NULL;
  struct llama_model_imatrix_data *d = NULL;
  if (imatrix_path && strcmp(imatrix_path, "-")) {
    d = imatrix_load(imatrix_path, &gf, &g);
    if (!d) return 1;
    qp.imatrix = d;
  }
  int rc = llama_model_quantize(in, out, &qp) != 0;
  for (int k = 0; d && d[k].name; k++) free((char *)d[k].name);
  free(d);
  if (gf) gguf_free(gf);
  if (g) ggml_free(g);
  return rc;
}

static int tokenize(const char *model_path, const char *text_path, int nlines, const char *out_path) {
  struct llama_model_params mp = llama_model_default_params();
  mp.vocab_only = true;
  struct llama_model *model = llama_model_load_from_file(model_path, mp);
  FILE *f = fopen(text_path, "r"), *out = fopen(out_path, "wb");
  if (!model || !f || !out) {
    fprintf(stderr, "gguf_logprobs: cannot load %s or open %s / %s\n", model_path, text_path, out_path);
    return 1;
  }
  const struct llama_vocab *vocab = llama_model_get_vocab(model);
  static char line[1 << 20];
  static llama_token ids[1 << 18];
  int rc = 0;
  while (!rc && nlines > 0 && fgets(line, sizeof line, f)) {
    char *s = line, *e = line + strlen(line);
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) e--;
    if (e == s) continue;
    int n = llama_tokenize(vocab, s, (int32_t)(e - s), ids, 1 << 18, true, false);
    rc = n < 0 || fwrite(ids, sizeof *ids, (size_t)n, out) != (size_t)n;
    nlines--;
  }
  fclose(f);
  if (fclose(out)) rc = 1;
  llama_model_free(model);
  return rc;
}

static int tensors(const char *model_path, const char *dir, int all) {
  struct ggml_context *g = NULL;
  struct gguf_init_params ip = {.no_alloc = false, .ctx = &g};
  struct gguf_context *gf = gguf_init_from_file(model_path, ip);
  if (!gf) {
    fprintf(stderr, "gguf_logprobs: ggml cannot read %s\n", model_path);
    return 1;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/types.txt", dir);
  FILE *types = fopen(path, "w");
  int rc = !types;
  for (struct ggml_tensor *t = ggml_get_first_tensor(g); !rc && t; t = ggml_get_next_tensor(g, t)) {
    if ((t->ne[1] <= 1 && !all) || gguf_find_tensor(gf, ggml_get_name(t)) < 0) continue; /* not the data blob */
    const struct ggml_type_traits *tr = ggml_get_type_traits(t->type);
    int64_t n = ggml_nelements(t);
    float *y = malloc(sizeof(float) * (size_t)n);
    if (!y || (t->type != GGML_TYPE_F32 && !tr->to_float)) return 1;
    if (t->type == GGML_TYPE_F32) memcpy(y, t->data, sizeof(float) * (size_t)n);
    else tr->to_float(t->data, y, n);
    snprintf(path, sizeof path, "%s/%s.f32", dir, ggml_get_name(t));
    FILE *f = fopen(path, "wb");
    rc = !f || fwrite(y, sizeof(float), (size_t)n, f) != (size_t)n;
    if (f && fclose(f)) rc = 1;
    fprintf(types, "%s %s %lld %lld\n", ggml_get_name(t), tr->type_name, (long long)t->ne[1], (long long)t->ne[0]);
    free(y);
  }
  if (types && fclose(types)) rc = 1;
  gguf_free(gf);
  ggml_free(g);
  return rc;
}

/* bits per weight of the blk.* matrices (the linear layers) as llama.cpp
 * stores them, and the count of each type: "BPW TYPE:N ..." */
static int bpw(const char *model_path) {
  struct gguf_init_params ip = {.no_alloc = true, .ctx = NULL};
  struct gguf_context *gf = gguf_init_from_file(model_path, ip);
  if (!gf) {
    fprintf(stderr, "gguf_logprobs: ggml cannot read %s\n", model_path);
    return 1;
  }
  double bytes = 0, n = 0;
  int count[GGML_TYPE_COUNT] = {0};
  for (int64_t i = 0; i < gguf_get_n_tensors(gf); i++) {
    const char *name = gguf_get_tensor_name(gf, i);
    if (strncmp(name, "blk.", 4) || strstr(name, "_norm")) continue; /* the linear layers only */
    enum ggml_type t = gguf_get_tensor_type(gf, i);
    size_t sz = gguf_get_tensor_size(gf, i);
    bytes += (double)sz;
    n += (double)sz / ggml_type_size(t) * ggml_blck_size(t);
    count[t]++;
  }
  printf("%.4f", 8.0 * bytes / n);
  for (int t = 0; t < GGML_TYPE_COUNT; t++)
    if (count[t]) printf(" %s:%d", ggml_type_name((enum ggml_type)t), count[t]);
  printf("\n");
  gguf_free(gf);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 7 && !strcmp(argv[1], "logprobs")) {
    llama_log_set(quiet, NULL);
    const char *libdir = getenv("LLAMA_LIB_DIR"); /* the CPU backend variants (libggml-cpu-*.so) */
    if (libdir) ggml_backend_load_all_from_path(libdir);
    else ggml_backend_load_all();
    llama_backend_init();
    int rc = logprobs(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), argv[6]);
    llama_backend_free();
    return rc;
  }
  if (argc == 6 && !strcmp(argv[1], "tokenize")) {
    llama_log_set(quiet, NULL);
    llama_backend_init();
    return tokenize(argv[2], argv[3], atoi(argv[4]), argv[5]);
  }
  if (argc >= 5 && argc <= 7 && !strcmp(argv[1], "quantize")) {
    llama_backend_init();
    return quantize(argv[2], argv[3], atoi(argv[4]), argc > 5 ? argv[5] : NULL, argc > 6 && !strcmp(argv[6], "pure"));
  }
  if (argc == 7 && !strcmp(argv[1], "imatrix")) {
    llama_log_set(quiet, NULL);
    const char *libdir = getenv("LLAMA_LIB_DIR");
    if (libdir) ggml_backend_load_all_from_path(libdir);
    else ggml_backend_load_all();
    llama_backend_init();
    int rc = imatrix(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), argv[6]);
    llama_backend_free();
    return rc;
  }
  if (argc == 3 && !strcmp(argv[1], "bpw")) return bpw(argv[2]);
  if ((argc == 4 || argc == 5) && !strcmp(argv[1], "tensors")) return tensors(argv[2], argv[3], argc == 5 && !strcmp(argv[4], "all"));
  fprintf(stderr,
          "usage: gguf_logprobs logprobs MODEL.gguf TOKENS.u32 NSEQ SEQLEN OUT.f64 | tokenize MODEL.gguf TEXT NLINES OUT.u32 | "
          "quantize IN.gguf OUT.gguf FTYPE [IMATRIX.gguf|-] [pure] | imatrix MODEL.gguf TOKENS.u32 NSEQ SEQLEN OUT.gguf | tensors "
          "MODEL.gguf OUTDIR [all] | bpw MODEL.gguf\n");
  return 2;
}
