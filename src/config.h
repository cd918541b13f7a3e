/* config.json of a Hugging Face checkpoint: the architecture it names
 * (docs/models.md), read into a ModelConfig with transformers' defaults and
 * semantics; every key that would change the forward and is not
 * implemented is an error that names it. Not collective. */
#ifndef APTQ_CONFIG_H
#define APTQ_CONFIG_H

#include <stddef.h>

/* RoPE frequency scaling (config.json's rope_scaling or rope_parameters,
 * transformers' modeling_rope_utils.py): the rope types whose inverse
 * frequencies are fixed (no attention factor, no dependence on the
 * sequence length). Every other type is refused when the config is read. */
typedef enum { ROPE_DEFAULT = 0, ROPE_LINEAR, ROPE_LLAMA3 } RopeType;
typedef struct {
  int type;                  /* RopeType */
  double factor;             /* linear, llama3 */
  double low_freq_factor;    /* llama3 */
  double high_freq_factor;   /* llama3 */
  int original_max_position; /* llama3: original_max_position_embeddings */
} RopeScaling;

typedef struct {
  int dim;        /* hidden_size */
  int hidden_dim; /* intermediate_size */
  int n_layers;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  int vocab_size;
  int max_seq_len;
  float norm_eps;
  double rope_theta;
  int rope_interleaved; /* llama2.c pairs (2i,2i+1); HF rotate_half pairs (i,i+d/2) */
  int tied_embeddings;
  RopeScaling rope_scaling; /* zero: plain RoPE */
  /* Mistral's sliding_window: 0 = full causal attention; W > 0: position t
   * attends to positions t-W+1 .. t (the last W, itself included), as
   * transformers' masking_utils.sliding_window_overlay (kv_idx > q_idx - W). */
  int sliding_window;
  /* Qwen2 (docs/models.md): q_proj, k_proj and v_proj carry a bias, added
   * after the product (nn.Linear(..., bias=True) in Qwen2Attention). */
  int qkv_bias;
  /* Qwen3: q and k are RMS-normalised per head (a weight of head_dim, eps
   * rms_norm_eps) after the projection and before RoPE (Qwen3Attention's
   * q_norm, k_norm). */
  int qk_norm;
} ModelConfig;

/* The inverse frequency of RoPE pair i (i < head_dim/2): theta^(-2i/head_dim),
 * then the config's scaling (transformers' _compute_linear_scaling_rope_parameters
 * and _compute_llama3_parameters). */
double rope_inv_freq(const ModelConfig *c, int i);

/* Parse config.json's text (path names it in errors): 0, or APTQ_ERR with
 * the error recorded. */
int config_parse(const char *text, size_t len, const char *path, ModelConfig *c);

#endif
