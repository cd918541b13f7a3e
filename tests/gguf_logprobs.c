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
 *   gguf_logprobs quantize IN.gguf OUT.gguf FTYPE
 *     llama.cpp's own quantizer (llama_model_quantize, as llama-quantize
 *     runs it) to llama_ftype FTYPE (2 Q4_0, 3 Q4_1, 7 Q8_0), keeping
 *     token_embd and output in F32 as aptq export does (the comparison of
 *     docs/gguf.md).
 *   gguf_logprobs tensors MODEL.gguf OUTDIR
 *     every 2-D tensor decoded to float32 by ggml's own to_float
 *     (ggml_get_type_traits(type)->to_float, ggml-quants.c) into
 *     OUTDIR/NAME.f32, and OUTDIR/types.txt: "NAME TYPE ROWS COLS" lines. */
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

static int logprobs(const char *model_path, const char *tokens_path, int nseq, int T, const char *out_path) {
  FILE *f = fopen(tokens_path, "rb");
  int32_t *tok = malloc(sizeof(int32_t) * (size_t)nseq * T);
  if (!f || !tok || fread(tok, 4, (size_t)nseq * T, f) != (size_t)nseq * T) {
    fprintf(stderr, "gguf_logprobs: cannot read %d x %d tokens from %s\n", nseq, T, tokens_path);
    return 1;
  }
  fclose(f);
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
  cp.n_threads = cp.n_threads_batch = 2;
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

static int tensors(const char *model_path, const char *dir) {
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
    if (t->ne[1] <= 1) continue;
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
  if (argc == 5 && !strcmp(argv[1], "quantize")) {
    llama_backend_init();
    llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.nthread = 2;
    qp.ftype = (enum llama_ftype)atoi(argv[4]);
    qp.token_embedding_type = GGML_TYPE_F32;
    qp.output_tensor_type = GGML_TYPE_F32;
    qp.quantize_output_tensor = false;
    return llama_model_quantize(argv[2], argv[3], &qp) != 0;
  }
  if (argc == 4 && !strcmp(argv[1], "tensors")) return tensors(argv[2], argv[3]);
  fprintf(stderr,
          "usage: gguf_logprobs logprobs MODEL.gguf TOKENS.u32 NSEQ SEQLEN OUT.f64 | tokenize MODEL.gguf TEXT NLINES OUT.u32 | quantize "
          "IN.gguf "
          "OUT.gguf FTYPE | tensors "
          "MODEL.gguf OUTDIR\n");
  return 2;
}
