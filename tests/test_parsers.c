/* Loader and parser unit tests: good files load with the right values;
 * every malformed variant fails with an error that names the problem. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "config.h"
#include "error.h"
#include "memory.h"
#include "json.h"
#include "model.h"
#include "options.h"
#include "safetensors.h"

#include "expect.h"

static char dir[256];

/* rc must be an error whose message contains `want`. */
static void expect_error(int rc, const char *want, const char *what) {
  checks++;
  if (!rc) {
    failures++;
    printf("FAIL %s: accepted, expected an error containing '%s'\n", what, want);
  } else if (!strstr(aptq_error_message(), want)) {
    failures++;
    printf("FAIL %s: error '%s' does not contain '%s'\n", what, aptq_error_message(), want);
  } else printf("ok   %s: %s\n", what, aptq_error_message());
  aptq_clear_error();
}

static void expect_ok(int rc, const char *what) {
  checks++;
  if (rc) {
    failures++;
    printf("FAIL %s: %s\n", what, aptq_error_message());
  } else printf("ok   %s\n", what);
  aptq_clear_error();
}

static const char *path_of(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static void write_bytes(const char *name, const void *data, size_t n) {
  FILE *f = fopen(path_of(name), "wb");
  fwrite(data, 1, n, f);
  fclose(f);
}

/* safetensors file from a header string, header length field and payload */
static void write_st(const char *name, const char *header, uint64_t declared_len, size_t payload) {
  size_t hl = strlen(header);
  size_t total = 8 + hl + payload;
  uint8_t *buf = TEST_CALLOC(1, total);
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(declared_len >> (8 * i));
  memcpy(buf + 8, header, hl);
  for (size_t i = 0; i < payload; i++) buf[8 + hl + i] = (uint8_t)(i * 7);
  write_bytes(name, buf, total);
  aptq_free(buf);
}

static int st_try(const char *name, const char *header, size_t payload) {
  write_st(name, header, strlen(header), payload);
  StFile f;
  int rc = st_open(path_of(name), &f);
  if (!rc) st_close(&f);
  return rc;
}

static void test_json(void) {
  JsonValue *v;
  const char *good = "{\"a\": [1, -2.5e3, true, false, null], \"s\": \"x\\u00e9\\ud83d\\ude00\\n\", \"n\": 123456789012}";
  expect_ok(json_parse(good, strlen(good), "json", &v), "json: good document");
  const JsonValue *a = json_get(v, "a"), *s = json_get(v, "s"), *n = json_get(v, "n");
  EXPECT(a && a->count == 5 && a->items[1].number == -2500.0 && a->items[2].boolean, "array values");
  EXPECT(s && !strcmp(s->string, "x\xc3\xa9\xf0\x9f\x98\x80\n"), "unicode escapes decoded: %s", s ? s->string : "(null)");
  EXPECT(n && n->is_integer && n->integer == 123456789012LL, "large integer exact");
  json_free(v);
  const struct {
    const char *text, *want;
  } bad[] = {
      {"{\"a\": 1,}", "expected a string key"},
      {"{\"a\" 1}", "expected ':'"},
      {"[1, 2", "unterminated"},
      {"{\"a\": 1} x", "trailing"},
      {"{\"a\": 1, \"a\": 2}", "duplicate key"},
      {"\"\\ud800\"", "surrogate"},
      {"\"abc", "unterminated string"},
      {"01", "trailing"},
      {"-", "bad number"},
      {"tru", "unexpected token"},
      {"\"a\\qb\"", "unknown escape"},
      {"1e999", "out of range"},
      {"\"\\u0000\"", "NUL"},
      {"", "unexpected end"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char what[128];
    snprintf(what, sizeof what, "json: reject %s", bad[i].text);
    int rc = json_parse(bad[i].text, strlen(bad[i].text), "json", &v);
    if (!rc) json_free(v);
    expect_error(rc, bad[i].want, what);
  }
  char deep[300];
  memset(deep, '[', 200);
  deep[200] = 0;
  expect_error(json_parse(deep, 200, "json", &v), "nesting too deep", "json: depth limit");
}

static void test_safetensors(void) {
  /* good: one F32 [2,2] and one BF16 [3] */
  const char *hdr =
      "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]}}  ";
  size_t hl = strlen(hdr);
  uint8_t buf[512] = {0};
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
  memcpy(buf + 8, hdr, hl);
  float a[4] = {1.5f, -2.0f, 0.25f, 3.0e-3f};
  memcpy(buf + 8 + hl, a, 16);
  uint16_t b[3] = {0x3F80, 0xC000, 0x3E80}; /* 1, -2, 0.25 */
  memcpy(buf + 8 + hl + 16, b, 6);
  write_bytes("good.safetensors", buf, 8 + hl + 22);
  StFile f;
  expect_ok(st_open(path_of("good.safetensors"), &f), "safetensors: good file");
  const StTensor *ta = st_find(&f, "a"), *tb = st_find(&f, "b");
  EXPECT(ta && tb && ta->dtype == DT_F32 && tb->dtype == DT_BF16 && ta->shape[1] == 2, "tensor table");
  float out[4];
  if (ta && tb) {
    dtype_to_f32(ta->dtype, ta->data, 0, 4, out);
    EXPECT(!memcmp(out, a, 16), "F32 values");
    dtype_to_f32(tb->dtype, tb->data, 0, 3, out);
    EXPECT(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.25f, "BF16 values %g %g %g", out[0], out[1], out[2]);
  }
  st_close(&f);
  uint8_t h[2] = {0x00, 0x3C}; /* F16 1.0 */
  dtype_to_f32(DT_F16, h, 0, 1, out);
  EXPECT(out[0] == 1.0f, "F16 1.0");
  uint8_t sub[2] = {0x01, 0x00};
  dtype_to_f32(DT_F16, sub, 0, 1, out);
  EXPECT(out[0] == 5.9604644775390625e-8f, "F16 smallest subnormal");

  write_bytes("short.safetensors", "abc", 3);
  expect_error(st_open(path_of("short.safetensors"), &f), "too short", "safetensors: 3-byte file");
  write_st("len.safetensors", "{}", 1000, 0);
  expect_error(st_open(path_of("len.safetensors"), &f), "does not fit the file size", "safetensors: header length past the end");
  write_st("huge.safetensors", "{}", (uint64_t)1 << 40, 0);
  expect_error(st_open(path_of("huge.safetensors"), &f), "does not fit", "safetensors: oversized header length");
  expect_error(st_try("json.safetensors", "{\"a\": ", 0), "invalid JSON", "safetensors: header not JSON");
  expect_error(st_try("arr.safetensors", "[1,2]", 0), "not a JSON object", "safetensors: header not an object");
  expect_error(st_try("past.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8), "past the end",
               "safetensors: data past the end (truncated)");
  expect_error(st_try("overlap.safetensors",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_"
                      "offsets\":[4,12]}}",
                      16),
               "overlapping", "safetensors: overlapping offsets");
  expect_error(st_try("size.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8), "need 12",
               "safetensors: bytes do not match dtype and shape");
  expect_error(st_try("dtype.safetensors", "{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2), "unknown dtype",
               "safetensors: unknown dtype");
  expect_error(st_try("nodtype.safetensors", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "no dtype", "safetensors: no dtype");
  expect_error(st_try("shape.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8), "bad shape",
               "safetensors: negative shape");
  expect_error(st_try("offs.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8), "bad data_offsets",
               "safetensors: reversed offsets");
  expect_error(
      st_try(
          "dup.safetensors",
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
          8),
      "duplicate", "safetensors: duplicate tensor");
  expect_error(st_open(path_of("missing.safetensors"), &f), "cannot open", "safetensors: missing file");
}

/* A tiny HF directory built with st_write, then broken one way at a time. */
static const char *tiny_config =
    "{\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 12, \"num_hidden_layers\": 1,"
    " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"vocab_size\": 16, \"rms_norm_eps\": 1e-5%s}";

static void write_tiny(const char *sub, const char *config_extra, int skip_tensor, int bad_shape) {
  char d[512], p[600];
  snprintf(d, sizeof d, "%s/%s", dir, sub);
  mkdir(d, 0777);
  snprintf(p, sizeof p, "%s/config.json", d);
  FILE *f = fopen(p, "w");
  fprintf(f, tiny_config, config_extra);
  fclose(f);
  static float zeros[16 * 12];
  for (int i = 0; i < 16 * 12; i++) zeros[i] = 0.01f * (float)(i % 7);
  StWriteTensor t[16];
  int n = 0;
#define T2(nm, r, c) t[n++] = (StWriteTensor){nm, DT_F32, 2, {r, c}, zeros}
#define T1(nm, c) \
  t[n++] = (StWriteTensor) { nm, DT_BF16, 1, {c}, zeros }
  T2("model.embed_tokens.weight", 16, 8);
  T1("model.norm.weight", 8);
  T2("lm_head.weight", 16, 8);
  T1("model.layers.0.input_layernorm.weight", 8);
  T1("model.layers.0.post_attention_layernorm.weight", 8);
  T2("model.layers.0.self_attn.q_proj.weight", 8, bad_shape ? 7 : 8);
  T2("model.layers.0.self_attn.k_proj.weight", 4, 8);
  T2("model.layers.0.self_attn.v_proj.weight", 4, 8);
  T2("model.layers.0.self_attn.o_proj.weight", 8, 8);
  T2("model.layers.0.mlp.gate_proj.weight", 12, 8);
  T2("model.layers.0.mlp.up_proj.weight", 12, 8);
  T2("model.layers.0.mlp.down_proj.weight", 8, 12);
#undef T1
#undef T2
  if (skip_tensor >= 0) t[skip_tensor] = t[--n];
  snprintf(p, sizeof p, "%s/model.safetensors", d);
  st_write(p, t, n);
}

/* config.json keys one at a time (config_parse): accepted with the
 * values transformers would use, or refused naming the key. */
static const char *base_config =
    "{\"hidden_size\": 8, \"intermediate_size\": 12, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
    " \"vocab_size\": 16%s}";

static int parse_with(const char *extra, ModelConfig *c) {
  char text[2048];
  snprintf(text, sizeof text, base_config, extra);
  return config_parse(text, strlen(text), "config.json", c);
}

static void test_config_keys(void) {
  ModelConfig c;
  static const char *const llama3 =
      ", \"rope_theta\": 500000.0, \"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
      " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}";
  expect_ok(parse_with(llama3, &c), "config: Llama 3.2 rope_scaling");
  EXPECT(c.rope_scaling.type == ROPE_LLAMA3 && c.rope_scaling.factor == 32.0 && c.rope_scaling.low_freq_factor == 1.0 &&
             c.rope_scaling.high_freq_factor == 4.0 && c.rope_scaling.original_max_position == 8192 && c.rope_theta == 500000.0,
         "llama3 parameters read");
  /* _compute_llama3_parameters on head_dim 4, theta 500000: wavelengths 2pi (kept) and 2pi*sqrt(500000) = 4443 (smoothed) */
  c.head_dim = 4;
  double f1 = 1.0 / sqrt(500000.0), wl = 2 * 3.14159265358979323846 / f1, sm = (8192 / wl - 1.0) / 3.0;
  EXPECT(rope_inv_freq(&c, 0) == 1.0 && fabs(rope_inv_freq(&c, 1) - ((1 - sm) * f1 / 32 + sm * f1)) < 1e-15 * f1,
         "llama3 inverse frequencies");
  expect_ok(parse_with(", \"rope_parameters\": {\"type\": \"linear\", \"factor\": 4.0, \"rope_theta\": 1000.0}", &c),
            "config: linear under rope_parameters, type spelled 'type'");
  EXPECT(c.rope_scaling.type == ROPE_LINEAR && c.rope_scaling.factor == 4.0 && c.rope_theta == 1000.0, "rope_parameters read");
  c.head_dim = 4;
  EXPECT(rope_inv_freq(&c, 1) == 1.0 / sqrt(1000.0) / 4.0, "linear inverse frequency");
  expect_ok(parse_with(", \"model_type\": \"mistral\", \"num_key_value_heads\": 2", &c), "config: mistral, sliding_window absent");
  EXPECT(c.sliding_window == 4096, "MistralConfig default window 4096");
  expect_ok(parse_with(", \"model_type\": \"mistral\", \"sliding_window\": null, \"num_key_value_heads\": null", &c),
            "config: mistral, window null");
  EXPECT(c.sliding_window == 0 && c.n_kv_heads == 2, "window null: full attention; kv heads null: heads");
  expect_ok(parse_with(", \"model_type\": \"mistral\", \"sliding_window\": 16, \"num_key_value_heads\": 1", &c), "config: mistral window");
  EXPECT(c.sliding_window == 16, "sliding_window read");
  /* Qwen2Config/Qwen3Config: kv heads 32 when absent; the window kept only
   * with use_sliding_window, and then on layers >= max_window_layers (28) */
  expect_ok(parse_with(", \"model_type\": \"qwen2\", \"num_key_value_heads\": 1, \"sliding_window\": 16, \"attention_bias\": false", &c),
            "config: qwen2, window without use_sliding_window");
  EXPECT(c.qkv_bias && !c.qk_norm && c.sliding_window == 0 && c.n_kv_heads == 1, "qwen2: biases, no window");
  expect_ok(parse_with(", \"model_type\": \"qwen2\", \"num_key_value_heads\": 1, \"use_sliding_window\": true", &c),
            "config: qwen2, use_sliding_window but 1 layer < max_window_layers 28");
  EXPECT(c.sliding_window == 0, "qwen2: no layer slides");
  expect_ok(parse_with(", \"model_type\": \"qwen2\", \"num_key_value_heads\": 2, \"layer_types\": [\"full_attention\"]", &c),
            "config: qwen2, layer_types all full");
  expect_ok(parse_with(", \"model_type\": \"qwen3\", \"num_key_value_heads\": 2", &c), "config: qwen3, head_dim absent");
  EXPECT(c.qk_norm && !c.qkv_bias && c.head_dim == 128, "qwen3: q/k norms, Qwen3Config's head_dim 128");
  expect_ok(parse_with(", \"model_type\": \"qwen3\", \"num_key_value_heads\": 2, \"head_dim\": 6, \"tie_word_embeddings\": true", &c),
            "config: qwen3, explicit head_dim");
  EXPECT(c.head_dim == 6 && c.tied_embeddings, "qwen3: head_dim 6 (hidden 8 / 2 heads is 4), tied embeddings");
  expect_ok(parse_with(", \"rms_norm_eps\": 1e-5, \"layer_norm_eps\": 1e-5, \"partial_rotary_factor\": 1.0", &c),
            "config: equal eps spellings, partial_rotary_factor 1");
  static const struct {
    const char *extra, *want;
  } bad[] = {
      {", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}", "rope type 'yarn'"},
      {", \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}", "rope type 'dynamic'"},
      {", \"rope_theta\": 10000.0, \"rope_parameters\": {\"rope_type\": \"longrope\"}", "rope type 'longrope'"},
      {", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0}",
       "original_max_position_embeddings"},
      {", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 4.0, \"high_freq_factor\": 4.0,"
       " \"original_max_position_embeddings\": 64}",
       "high_freq_factor"},
      {", \"rope_scaling\": {\"rope_type\": \"linear\"}", "needs 'factor'"},
      {", \"rope_scaling\": {\"rope_type\": \"linear\", \"type\": \"llama3\", \"factor\": 2.0}", "keep one"},
      {", \"rope_parameters\": {\"factor\": 2.0}", "rope type 'default'"},
      {", \"rope_parameters\": {\"full_attention\": {\"rope_type\": \"default\", \"rope_theta\": 1e6}}", "per-layer-type"},
      {", \"rope_scaling\": \"linear\"", "must be an object"},
      {", \"rope_theta\": 10000.0, \"rope_parameters\": {\"rope_theta\": 500000.0}", "disagree"},
      {", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}, \"rope_parameters\": {\"rope_type\": \"default\"}", "disagree"},
      {", \"partial_rotary_factor\": 0.5", "partial_rotary_factor"},
      {", \"rope_parameters\": {\"rope_type\": \"default\", \"partial_rotary_factor\": 0.25}", "partial_rotary_factor"},
      {", \"model_type\": \"qwen2\"", "not a multiple of num_key_value_heads 32"}, /* Qwen2Config's default */
      {", \"model_type\": \"gemma\"", "model_type 'gemma'"},
      {", \"model_type\": \"qwen2\", \"num_key_value_heads\": 1, \"use_sliding_window\": true, \"max_window_layers\": 0",
       "per-layer sliding windows"},
      {", \"model_type\": \"qwen3\", \"num_key_value_heads\": 1, \"layer_types\": [\"sliding_attention\"]", "layer_types[0]"},
      {", \"model_type\": \"qwen3\", \"num_key_value_heads\": 1, \"layer_types\": []", "'layer_types' must be a list"},
      {", \"model_type\": \"qwen2\", \"num_key_value_heads\": 1, \"max_window_layers\": -1", "max_window_layers"},
      {", \"model_type\": \"qwen3\", \"num_key_value_heads\": 1, \"head_dim\": null", "'head_dim' is null"},
      {", \"model_type\": \"qwen3\", \"num_key_value_heads\": 1, \"attention_bias\": true", "o_proj"},
      {", \"sliding_window\": 16", "'sliding_window' is set"},
      {", \"model_type\": \"mistral\", \"num_key_value_heads\": 1, \"sliding_window\": 0", "sliding_window"},
      {", \"model_type\": \"mistral\", \"num_key_value_heads\": 1, \"use_sliding_window\": true", "use_sliding_window"},
      {", \"model_type\": \"mistral\", \"num_key_value_heads\": 1, \"layer_types\": [\"sliding_attention\"]", "layer_types"},
      {", \"model_type\": \"mistral\"", "not a multiple of num_key_value_heads 8"}, /* MistralConfig's default */
      {", \"attention_bias\": true", "attention_bias"},
      {", \"attention_bias\": \"no\"", "'attention_bias' must be true or false"},
      {", \"mlp_bias\": true", "mlp_bias"},
      {", \"quantization_config\": {\"bits\": 4, \"quant_method\": \"gptq\"}", "'quantization_config' is set"},
      {", \"tie_word_embeddings\": 1", "'tie_word_embeddings' must be true or false"},
      {", \"hidden_act\": \"gelu\"", "hidden_act"},
      {", \"layer_norm_eps\": 1e-5", "'layer_norm_eps' is set"},
      {", \"rms_norm_eps\": 1e-5, \"layer_norm_epsilon\": 1e-6", "'layer_norm_epsilon' is set"},
      {", \"norm_eps\": 1e-5", "'norm_eps' is set"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char what[256];
    snprintf(what, sizeof what, "config: refuse%s", bad[i].extra);
    expect_error(parse_with(bad[i].extra, &c), bad[i].want, what);
  }
}

static void test_hf(const char *data) {
  Model m;
  write_tiny("tiny", "", -1, 0);
  expect_ok(model_open(path_of("tiny"), &m), "hf: tiny synthetic checkpoint");
  EXPECT(m.cfg.head_dim == 4 && m.cfg.n_kv_heads == 1 && m.cfg.rope_theta == 10000.0, "tiny config defaults");
  model_close(&m);
  write_tiny("theta", ", \"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": \"default\"}", -1, 0);
  expect_ok(model_open(path_of("theta"), &m), "hf: rope_parameters.rope_theta");
  EXPECT(m.cfg.rope_theta == 500000.0, "rope theta from rope_parameters");
  model_close(&m);
  write_tiny("missing", "", 6, 0);
  expect_error(model_open(path_of("missing"), &m), "k_proj.weight' is missing", "hf: missing tensor");
  write_tiny("shape", "", -1, 1);
  expect_error(model_open(path_of("shape"), &m), "has shape [8x7]", "hf: shape mismatch with config");
  write_tiny("kv", ", \"num_key_value_heads\": 3", -1, 0);
  expect_error(model_open(path_of("kv"), &m), "duplicate key", "hf: duplicate config key");
  write_tiny("scaling", ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", -1, 0);
  expect_ok(model_open(path_of("scaling"), &m), "hf: linear rope_scaling");
  EXPECT(m.cfg.rope_scaling.type == ROPE_LINEAR && m.cfg.rope_scaling.factor == 2.0, "linear rope_scaling read");
  model_close(&m);
  write_tiny("bias", ", \"attention_bias\": true", -1, 0);
  expect_error(model_open(path_of("bias"), &m), "attention_bias", "hf: biased attention refused");
  write_tiny("type", ", \"model_type\": \"gpt2\"", -1, 0);
  expect_error(model_open(path_of("type"), &m), "duplicate key", "hf: conflicting model_type");
  char p[600];
  snprintf(p, sizeof p, "%s/noconf", dir);
  mkdir(p, 0777);
  expect_error(model_open(p, &m), "config.json", "hf: no config.json");
  snprintf(p, sizeof p, "%s/badconf", dir);
  mkdir(p, 0777);
  snprintf(p, sizeof p, "%s/badconf/config.json", dir);
  FILE *f = fopen(p, "w");
  fputs("{\"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 16}", f);
  fclose(f);
  expect_error(model_open(path_of("badconf"), &m), "missing required key 'intermediate_size'", "hf: missing config key");
  f = fopen(p, "w");
  fputs(
      "{\"hidden_size\": 8, \"intermediate_size\": 12, \"num_hidden_layers\": 1, \"num_attention_heads\": 3, \"num_key_value_heads\": 2, "
      "\"head_dim\": 4, \"vocab_size\": 16}",
      f);
  fclose(f);
  expect_error(model_open(path_of("badconf"), &m), "not a multiple of num_key_value_heads", "hf: GQA heads inconsistent");
  f = fopen(p, "w");
  fputs("{\"hidden_size\": -8}", f);
  fclose(f);
  expect_error(model_open(path_of("badconf"), &m), "positive integer", "hf: negative hidden_size");
  expect_error(model_open(path_of("nonexistent"), &m), "not found", "model path missing");

  /* shard index naming a shard that is absent */
  write_tiny("index", "", -1, 0);
  snprintf(p, sizeof p, "%s/index/model.safetensors.index.json", dir);
  f = fopen(p, "w");
  fputs("{\"weight_map\": {\"model.norm.weight\": \"model-00002-of-00002.safetensors\"}}", f);
  fclose(f);
  expect_error(model_open(path_of("index"), &m), "model-00002-of-00002.safetensors", "hf: index names a missing shard");

  /* the shared real models */
  char real[600];
  snprintf(real, sizeof real, "%s/wt2-llama-s", data);
  expect_ok(model_open(real, &m), "hf: wt2-llama-s (3 bf16 shards, GQA)");
  EXPECT(m.cfg.dim == 256 && m.cfg.n_layers == 4 && m.cfg.n_heads == 8 && m.cfg.n_kv_heads == 4 && m.cfg.head_dim == 32 &&
             m.cfg.hidden_dim == 688 && m.cfg.vocab_size == 32000 && !m.cfg.tied_embeddings && m.nfiles == 3 && m.cfg.rope_theta == 10000.0,
         "wt2-llama-s config");
  model_close(&m);
  snprintf(real, sizeof real, "%s/stories260K/stories260K.bin", data);
  expect_ok(model_open(real, &m), "llama2.c: stories260K");
  EXPECT(m.cfg.dim == 64 && m.cfg.hidden_dim == 172 && m.cfg.n_layers == 5 && m.cfg.n_heads == 8 && m.cfg.n_kv_heads == 4 &&
             m.cfg.vocab_size == 512 && m.cfg.rope_interleaved,
         "stories260K config");
  model_close(&m);
  /* truncated llama2.c checkpoint */
  FILE *in = fopen(real, "rb");
  uint8_t *buf = TEST_MALLOC(100000);
  size_t got = in ? fread(buf, 1, 100000, in) : 0;
  if (in) fclose(in);
  write_bytes("trunc.bin", buf, got);
  expect_error(model_open(path_of("trunc.bin"), &m), "truncated", "llama2.c: truncated checkpoint");
  int32_t hdr[7] = {64, 172, 5, 8, 3, 512, 512};
  write_bytes("heads.bin", hdr, sizeof hdr);
  expect_error(model_open(path_of("heads.bin"), &m), "inconsistent", "llama2.c: kv heads do not divide heads");
  aptq_free(buf);
}

static void test_nonfinite(void) {
  float v[3] = {1.0f, 0.0f, 2.0f};
  v[1] = v[1] / v[1];
  TensorRef t = {"bad.weight", DT_F32, 1, 3, (const uint8_t *)v};
  float out[3];
  expect_error(tensor_f32(&t, out), "non-finite", "tensor with NaN");
}

static void test_options(void) {
  Options o;
  char deck[600];
  snprintf(deck, sizeof deck, "%s/ok.deck", dir);
  FILE *f = fopen(deck, "w");
  fputs("# a deck\nmodel = /m   # trailing comment\nbits=3\n\n  group_size = 32\nsym = yes\n", f);
  fclose(f);
  char *argv1[] = {deck, "--bits=2", "--nseq=7"};
  expect_ok(options_parse(&o, 3, argv1), "options: deck plus overrides");
  EXPECT(!strcmp(o.model, "/m") && o.bits == 2 && o.group_size == 32 && o.sym == 1 && o.nseq == 7 && o.seqlen == 256,
         "deck values and command-line precedence");
  const struct {
    const char *line, *want;
  } bad[] = {
      {"colour = blue\n", "unknown key 'colour'"},
      {"bits = 7\n", "expected one of 2|3|4|5|6|8"},
      {"bits = four\n", "bad value 'four'"},
      {"nseq = 0\n", "bad value '0' for 'nseq'"},
      {"just words\n", "expected 'key = value'"},
      {"= 3\n", "missing key"},
      {"sym = maybe\n", "expected yes or no"},
      {"method = awq\n", "bad value 'awq' for 'method'"},
      {"seqlen =\n", "empty value"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    f = fopen(deck, "w");
    fputs(bad[i].line, f);
    fclose(f);
    char *argv2[] = {deck};
    char what[128];
    snprintf(what, sizeof what, "options: reject deck line '%.*s'", (int)strlen(bad[i].line) - 1, bad[i].line);
    expect_error(options_parse(&o, 1, argv2), bad[i].want, what);
  }
  char *argv3[] = {"--bits"};
  expect_error(options_parse(&o, 1, argv3), "expected --key=value", "options: flag without value");
  char *argv4[] = {"--frobnicate=1"};
  expect_error(options_parse(&o, 1, argv4), "unknown key 'frobnicate'", "options: unknown flag");
  char *argv5[] = {"a.deck", "b.deck"};
  expect_error(options_parse(&o, 2, argv5), "two input decks", "options: two decks");
  char *argv6[] = {"/nonexistent/deck"};
  expect_error(options_parse(&o, 1, argv6), "cannot open input deck", "options: missing deck");
  char *argv7[] = {"--bits=4"};
  options_parse(&o, 1, argv7);
  expect_error(options_require(&o, "model"), "missing required key 'model'", "options: required key");
}

/* max_memory sizes (memory.c) */
static void test_memory_sizes(void) {
  const struct {
    const char *text;
    double bytes;
  } good[] = {{"8G", 8.0 * (1 << 30)},
              {"512M", 512.0 * (1 << 20)},
              {"1.5GB", 1.5 * (1 << 30)},
              {"64GiB", 64.0 * (1 << 30)},
              {"2t", 2.0 * (1 << 30) * 1024},
              {"4096", 4096},
              {"10 K", 10240}};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    double b = -1;
    aptq_clear_error();
    EXPECT(memory_parse(good[i].text, &b) == 0 && b == good[i].bytes, "max_memory '%s' = %g bytes (got %g)", good[i].text, good[i].bytes,
           b);
  }
  const char *bad[] = {"", "lots", "8X", "-1G", "8GG", "G"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    double b;
    char what[64];
    snprintf(what, sizeof what, "max_memory '%s' refused", bad[i]);
    expect_error(memory_parse(bad[i], &b), "is not a size", what);
  }
}

int main(int argc, char **argv) {
  const char *data = argc > 1 ? argv[1] : "../shared/data";
  snprintf(dir, sizeof dir, "/tmp/aptq-test-parsers-XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_json();
  test_safetensors();
  test_config_keys();
  test_hf(data);
  test_nonfinite();
  test_options();
  test_memory_sizes();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("warning: could not remove %s\n", dir);
  printf("%d checks, %d failed\n", checks, failures);
  return failures != 0;
}
