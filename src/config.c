/* config.json reading (config.h). Followed: transformers'
 * models/llama/configuration_llama.py and models/mistral/configuration_mistral.py
 * and models/qwen2/configuration_qwen2.py, models/qwen3/configuration_qwen3.py
 * (defaults), modeling_rope_utils.py (rope types, both spellings of the type
 * key), masking_utils.py (the sliding window); docs/models.md lists every
 * key read and every key refused. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "error.h"
#include "json.h"

enum { ARCH_LLAMA, ARCH_MISTRAL, ARCH_QWEN2, ARCH_QWEN3 };

/* MistralConfig's and Qwen2Config/Qwen3Config's defaults for keys absent
 * from config.json */
enum { MISTRAL_KV_HEADS = 8, MISTRAL_WINDOW = 4096, QWEN_KV_HEADS = 32, QWEN_MAX_WINDOW_LAYERS = 28, QWEN3_HEAD_DIM = 128 };

static int cfg_int(const JsonValue *root, const char *key, int required, int def, int *out, const char *path) {
  const JsonValue *v = json_get(root, key);
  if (!v || v->type == JSON_NULL) {
    if (required) return aptq_error("%s: missing required key '%s'", path, key);
    *out = def;
    return 0;
  }
  if (v->type != JSON_NUMBER || !v->is_integer || v->integer <= 0 || v->integer > (1 << 30))
    return aptq_error("%s: '%s' must be a positive integer", path, key);
  *out = (int)v->integer;
  return 0;
}

static int cfg_num(const JsonValue *v, double def, double *out, const char *path, const char *key) {
  if (!v || v->type == JSON_NULL) {
    *out = def;
    return 0;
  }
  if (v->type != JSON_NUMBER || !(v->number > 0)) return aptq_error("%s: '%s' must be a positive number", path, key);
  *out = v->number;
  return 0;
}

/* A boolean key: absent or null gives def; anything but true/false is an error. */
static int cfg_bool(const JsonValue *root, const char *key, int def, int *out, const char *path) {
  const JsonValue *v = json_get(root, key);
  if (!v || v->type == JSON_NULL) {
    *out = def;
    return 0;
  }
  if (v->type != JSON_BOOL) return aptq_error("%s: '%s' must be true or false", path, key);
  *out = v->boolean;
  return 0;
}

static int cfg_false(const JsonValue *root, const char *key, const char *path, const char *why) {
  int on = 0;
  CHECK(cfg_bool(root, key, 0, &on, path));
  if (on) return aptq_error("%s: '%s' is true; %s", path, key, why);
  return 0;
}

/* A key the architectures here do not read, but that would change the
 * forward where it is meant: an error naming it when it is set. */
static int cfg_unset(const JsonValue *root, const char *key, const char *path, const char *why) {
  const JsonValue *v = json_get(root, key);
  if (v && v->type != JSON_NULL && !(v->type == JSON_BOOL && !v->boolean)) return aptq_error("%s: '%s' is set; %s", path, key, why);
  return 0;
}

static int read_arch(const JsonValue *root, const char *path, int *arch) {
  const JsonValue *mt = json_get(root, "model_type");
  *arch = ARCH_LLAMA; /* absent: the LLaMA layout (older exports) */
  if (!mt) return 0;
  if (mt->type == JSON_STRING && !strcmp(mt->string, "llama")) return 0;
  static const char *const names[] = {"llama", "mistral", "qwen2", "qwen3"};
  for (int a = 0; mt->type == JSON_STRING && a < (int)(sizeof names / sizeof *names); a++)
    if (!strcmp(mt->string, names[a])) {
      *arch = a;
      return 0;
    }
  return aptq_error("%s: model_type '%s' is not supported (supported: llama, mistral, qwen2, qwen3; docs/models.md)", path,
                    mt->type == JSON_STRING ? mt->string : "?");
}

/* The rope type of a rope_scaling / rope_parameters object, under either
 * spelling of its key ("rope_type", or the older "type"). */
static int rope_type_name(const JsonValue *o, const char *where, const char *path, const char **name) {
  const JsonValue *a = json_get(o, "rope_type"), *b = json_get(o, "type");
  if (a && a->type == JSON_NULL) a = NULL;
  if (b && b->type == JSON_NULL) b = NULL;
  if ((a && a->type != JSON_STRING) || (b && b->type != JSON_STRING)) return aptq_error("%s: %s's rope_type must be a string", path, where);
  if (a && b && strcmp(a->string, b->string))
    return aptq_error("%s: %s has rope_type '%s' and type '%s'; keep one", path, where, a->string, b->string);
  *name = a ? a->string : b ? b->string : "default";
  return 0;
}

static int rope_number(const JsonValue *o, const char *key, const char *where, const char *type, const char *path, double *out) {
  const JsonValue *v = json_get(o, key);
  if (!v || v->type == JSON_NULL) return aptq_error("%s: %s of rope type '%s' needs '%s'", path, where, type, key);
  return cfg_num(v, 0, out, path, key);
}

/* One rope_scaling or rope_parameters object into *r. */
static int read_scaling(const JsonValue *o, const char *where, const char *path, RopeScaling *r) {
  memset(r, 0, sizeof *r);
  if (o->type != JSON_OBJECT) return aptq_error("%s: '%s' must be an object or null", path, where);
  for (int i = 0; i < o->count; i++) /* transformers 5's per-layer-type form: {"full_attention": {...}, ...} */
    if (o->items[i].type == JSON_OBJECT)
      return aptq_error("%s: %s holds per-layer-type parameters ('%s'); not supported", path, where, o->keys[i]);
  const char *type = "default";
  CHECK(rope_type_name(o, where, path, &type));
  if (!strcmp(type, "default")) {
    static const char *const scaling_keys[] = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
    for (size_t i = 0; i < sizeof scaling_keys / sizeof *scaling_keys; i++)
      if (json_get(o, scaling_keys[i]))
        return aptq_error("%s: %s has '%s' but rope type 'default'; set rope_type (linear or llama3) or remove it", path, where,
                          scaling_keys[i]);
    return 0;
  }
  if (!strcmp(type, "linear")) {
    r->type = ROPE_LINEAR;
    return rope_number(o, "factor", where, type, path, &r->factor);
  }
  if (strcmp(type, "llama3"))
    return aptq_error("%s: %s has rope type '%s', which is not supported (supported: default, linear, llama3; docs/models.md)", path, where,
                      type);
  r->type = ROPE_LLAMA3;
  CHECK(rope_number(o, "factor", where, type, path, &r->factor));
  CHECK(rope_number(o, "low_freq_factor", where, type, path, &r->low_freq_factor));
  CHECK(rope_number(o, "high_freq_factor", where, type, path, &r->high_freq_factor));
  if (!json_get(o, "original_max_position_embeddings"))
    return aptq_error("%s: %s of rope type 'llama3' needs 'original_max_position_embeddings'", path, where);
  CHECK(cfg_int(o, "original_max_position_embeddings", 1, 0, &r->original_max_position, path));
  if (!(r->high_freq_factor > r->low_freq_factor))
    return aptq_error("%s: %s: high_freq_factor %g must be greater than low_freq_factor %g", path, where, r->high_freq_factor,
                      r->low_freq_factor);
  return 0;
}

static int same_scaling(const RopeScaling *a, const RopeScaling *b) {
  return a->type == b->type && a->factor == b->factor && a->low_freq_factor == b->low_freq_factor &&
         a->high_freq_factor == b->high_freq_factor && a->original_max_position == b->original_max_position;
}

static int partial_rotary(const JsonValue *o, const char *path) {
  const JsonValue *v = json_get(o, "partial_rotary_factor");
  if (v && v->type != JSON_NULL && !(v->type == JSON_NUMBER && v->number == 1.0))
    return aptq_error("%s: 'partial_rotary_factor' is not 1; partial RoPE is not supported", path);
  return 0;
}

/* RoPE: base and scaling, from the top level (rope_theta, rope_scaling) and
 * from rope_parameters (transformers 5), which must agree where both are given. */
static int read_rope(const JsonValue *root, const char *path, ModelConfig *c) {
  const JsonValue *rs = json_get(root, "rope_scaling"), *rp = json_get(root, "rope_parameters");
  if (rs && rs->type == JSON_NULL) rs = NULL;
  if (rp && rp->type == JSON_NULL) rp = NULL;
  RopeScaling a = {0}, b = {0};
  if (rs) CHECK(read_scaling(rs, "rope_scaling", path, &a));
  if (rp) CHECK(read_scaling(rp, "rope_parameters", path, &b));
  if (rs && rp && !same_scaling(&a, &b)) return aptq_error("%s: rope_scaling and rope_parameters disagree; keep one", path);
  c->rope_scaling = rs ? a : b;
  const JsonValue *theta = json_get(root, "rope_theta"), *inner = rp ? json_get(rp, "rope_theta") : NULL;
  if (theta && theta->type == JSON_NULL) theta = NULL;
  if (inner && inner->type == JSON_NULL) inner = NULL;
  if (theta && inner && !(theta->type == JSON_NUMBER && inner->type == JSON_NUMBER && theta->number == inner->number))
    return aptq_error("%s: rope_theta and rope_parameters.rope_theta disagree; keep one", path);
  CHECK(cfg_num(theta ? theta : inner, 10000.0, &c->rope_theta, path, "rope_theta"));
  CHECK(partial_rotary(root, path));
  if (rp) CHECK(partial_rotary(rp, path));
  return 0;
}

/* Qwen2/Qwen3's layer types: Qwen2Config.__post_init__ keeps sliding_window
 * only when use_sliding_window, and makes layer i "sliding_attention" when
 * the window is kept and i >= max_window_layers (absent: 28), unless
 * config.json lists layer_types itself. Every layer full: no window;
 * any sliding layer is refused (per-layer windows are not implemented). */
static int read_qwen_window(const JsonValue *root, const char *path, ModelConfig *c) {
  c->sliding_window = 0;
  const JsonValue *lt = json_get(root, "layer_types");
  if (lt && lt->type != JSON_NULL) {
    if (lt->type != JSON_ARRAY || lt->count != c->n_layers)
      return aptq_error("%s: 'layer_types' must be a list of num_hidden_layers (%d) strings", path, c->n_layers);
    for (int i = 0; i < lt->count; i++)
      if (lt->items[i].type != JSON_STRING || strcmp(lt->items[i].string, "full_attention"))
        return aptq_error("%s: layer_types[%d] is not \"full_attention\"; per-layer sliding windows are not supported", path, i);
    return 0;
  }
  int use = 0, window = 0, max_layers = QWEN_MAX_WINDOW_LAYERS;
  CHECK(cfg_bool(root, "use_sliding_window", 0, &use, path));
  const JsonValue *w = json_get(root, "sliding_window"), *mw = json_get(root, "max_window_layers");
  if (w && w->type != JSON_NULL) CHECK(cfg_int(root, "sliding_window", 0, 0, &window, path));
  else if (!w) window = MISTRAL_WINDOW; /* Qwen2Config's default is 4096 too */
  if (mw && mw->type != JSON_NULL) {
    if (mw->type != JSON_NUMBER || !mw->is_integer || mw->integer < 0 || mw->integer > (1 << 30))
      return aptq_error("%s: 'max_window_layers' must be a non-negative integer", path);
    max_layers = (int)mw->integer;
  }
  if (use && window > 0 && max_layers < c->n_layers)
    return aptq_error(
        "%s: use_sliding_window is true and layers %d..%d (from max_window_layers %d) would attend through a window of %d; "
        "per-layer sliding windows are not supported",
        path, max_layers, c->n_layers - 1, max_layers, window);
  return 0;
}

/* Mistral's window (absent: MistralConfig's 4096; null: none); LLaMA has none. */
static int read_window(const JsonValue *root, int arch, const char *path, ModelConfig *c) {
  if (arch == ARCH_QWEN2 || arch == ARCH_QWEN3) return read_qwen_window(root, path, c);
  const JsonValue *v = json_get(root, "sliding_window");
  CHECK(cfg_unset(root, "use_sliding_window", path, "transformers' LLaMA and Mistral do not read it; remove it"));
  CHECK(cfg_unset(root, "layer_types", path, "per-layer attention types are not supported"));
  if (arch != ARCH_MISTRAL) {
    c->sliding_window = 0;
    return v && v->type != JSON_NULL
               ? aptq_error(
                     "%s: 'sliding_window' is set but model_type llama attends to the whole sequence; set model_type to mistral or "
                     "remove it",
                     path)
               : 0;
  }
  if (!v) {
    c->sliding_window = MISTRAL_WINDOW;
    return 0;
  }
  return cfg_int(root, "sliding_window", 0, 0, &c->sliding_window, path);
}

/* rms_norm_eps is the only spelling LLaMA and Mistral read. */
static int read_eps(const JsonValue *root, const char *path, ModelConfig *c) {
  double eps = 1e-6;
  CHECK(cfg_num(json_get(root, "rms_norm_eps"), 1e-6, &eps, path, "rms_norm_eps"));
  static const char *const others[] = {"layer_norm_eps", "layer_norm_epsilon", "norm_eps", "rms_norm_epsilon"};
  for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
    const JsonValue *v = json_get(root, others[i]);
    if (v && v->type != JSON_NULL && !(v->type == JSON_NUMBER && v->number == eps))
      return aptq_error("%s: '%s' is set but the model reads 'rms_norm_eps' (%g); rename it or make them equal", path, others[i], eps);
  }
  c->norm_eps = (float)eps;
  return 0;
}

static int read_sizes(const JsonValue *root, int arch, const char *path, ModelConfig *c) {
  CHECK(cfg_int(root, "hidden_size", 1, 0, &c->dim, path));
  CHECK(cfg_int(root, "intermediate_size", 1, 0, &c->hidden_dim, path));
  CHECK(cfg_int(root, "num_hidden_layers", 1, 0, &c->n_layers, path));
  CHECK(cfg_int(root, "num_attention_heads", 1, 0, &c->n_heads, path));
  CHECK(cfg_int(root, "vocab_size", 1, 0, &c->vocab_size, path));
  /* absent: LlamaConfig's None (= heads), MistralConfig's 8, Qwen2Config's
   * and Qwen3Config's 32; null: heads */
  int kv_absent = !json_get(root, "num_key_value_heads");
  int kv_def = kv_absent && arch == ARCH_MISTRAL                         ? MISTRAL_KV_HEADS
               : kv_absent && (arch == ARCH_QWEN2 || arch == ARCH_QWEN3) ? QWEN_KV_HEADS
                                                                         : c->n_heads;
  CHECK(cfg_int(root, "num_key_value_heads", 0, kv_def, &c->n_kv_heads, path));
  CHECK(cfg_int(root, "max_position_embeddings", 0, 1 << 20, &c->max_seq_len, path));
  const JsonValue *hd = json_get(root, "head_dim");
  if (arch == ARCH_QWEN3) { /* Qwen3Config: head_dim = 128 when absent; Qwen3Attention cannot use a null one */
    if (hd && hd->type == JSON_NULL) return aptq_error("%s: 'head_dim' is null; Qwen3 needs it (its default is 128)", path);
    CHECK(cfg_int(root, "head_dim", 0, QWEN3_HEAD_DIM, &c->head_dim, path));
  } else if (c->dim % c->n_heads && (!hd || hd->type == JSON_NULL))
    return aptq_error("%s: hidden_size %d is not divisible by num_attention_heads %d", path, c->dim, c->n_heads);
  else CHECK(cfg_int(root, "head_dim", 0, c->dim / c->n_heads, &c->head_dim, path));
  if (c->head_dim % 2) return aptq_error("%s: head_dim %d must be even for RoPE", path, c->head_dim);
  if (c->n_heads % c->n_kv_heads)
    return aptq_error("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path, c->n_heads, c->n_kv_heads);
  return 0;
}

/* Biases and the q/k norms by architecture: Qwen2Attention's q/k/v_proj
 * always carry a bias (attention_bias is not read; Qwen2MLP has none, so
 * neither is mlp_bias); Qwen3Attention has q_norm/k_norm, and biases on
 * q/k/v and o_proj only with attention_bias (refused: no o_proj bias here);
 * LLaMA and Mistral read attention_bias and mlp_bias (refused when true). */
static int read_biases(const JsonValue *root, int arch, const char *path, ModelConfig *c) {
  c->qkv_bias = arch == ARCH_QWEN2;
  c->qk_norm = arch == ARCH_QWEN3;
  if (arch == ARCH_QWEN2) return 0;
  CHECK(
      cfg_false(root, "attention_bias", path,
                arch == ARCH_QWEN3 ? "Qwen3 would then bias o_proj too, which is not supported" : "biased projections are not supported"));
  if (arch == ARCH_QWEN3) return 0;
  return cfg_false(root, "mlp_bias", path, "biased projections are not supported");
}

static int read_config(const JsonValue *root, const char *path, ModelConfig *c) {
  if (root->type != JSON_OBJECT) return aptq_error("%s: not a JSON object", path);
  int arch;
  CHECK(read_arch(root, path, &arch));
  const JsonValue *act = json_get(root, "hidden_act");
  if (act && act->type != JSON_NULL && (act->type != JSON_STRING || strcmp(act->string, "silu")))
    return aptq_error("%s: hidden_act must be \"silu\" (the only activation implemented)", path);
  CHECK(read_sizes(root, arch, path, c));
  CHECK(read_eps(root, path, c));
  CHECK(read_rope(root, path, c));
  CHECK(read_window(root, arch, path, c));
  CHECK(cfg_unset(root, "quantization_config", path, "the checkpoint is already quantized; give the full-precision one"));
  CHECK(read_biases(root, arch, path, c));
  return cfg_bool(root, "tie_word_embeddings", 0, &c->tied_embeddings, path);
}

int config_parse(const char *text, size_t len, const char *path, ModelConfig *c) {
  memset(c, 0, sizeof *c);
  JsonValue *root = NULL;
  CHECK(json_parse(text, len, path, &root));
  int rc = read_config(root, path, c);
  json_free(root);
  return rc;
}

double rope_inv_freq(const ModelConfig *c, int i) {
  double f = 1.0 / pow(c->rope_theta, (double)(2 * i) / c->head_dim);
  const RopeScaling *r = &c->rope_scaling;
  if (r->type == ROPE_LINEAR) return f / r->factor;
  if (r->type != ROPE_LLAMA3) return f;
  /* _compute_llama3_parameters: wavelengths shorter than old/high kept,
   * longer than old/low divided by factor, smoothly interpolated between */
  double old = r->original_max_position, wavelen = 2.0 * 3.14159265358979323846 / f;
  if (wavelen < old / r->high_freq_factor) return f;
  if (wavelen > old / r->low_freq_factor) return f / r->factor;
  double smooth = (old / wavelen - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
  return (1.0 - smooth) * f / r->factor + smooth * f;
}
