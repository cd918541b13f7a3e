/* The LLaMA decoder block forward pass for one sequence of T tokens:
 * RMSNorm, RoPE, causal GQA attention, SwiGLU MLP, matrix products by BLAS;
 * Qwen2's q/k/v biases are added after the products, Qwen3's per-head q/k
 * RMSNorm sits between the products and RoPE (docs/models.md).
 * The scratch keeps every intermediate a Hessian needs: the q/k/v input
 * (xn), post-RoPE q and k (and, with q/k norms, q and k before them), v, the o_proj input (z), the gate/up input (xn2)
 * and the down_proj input (act). Attention probabilities are recomputed per
 * head from q and k when needed (attention_probs). */
#ifndef APTQ_FORWARD_H
#define APTQ_FORWARD_H

#include <stdint.h>

#include "model.h"

typedef struct {
  float *attn_norm, *ffn_norm; /* [dim] */
  float *w[LIN_COUNT];         /* row-major [out][in], HF orientation */
  float *bias[3];              /* q, k, v biases [rows]: cfg.qkv_bias only, else NULL */
  float *q_norm, *k_norm;      /* [head_dim]: cfg.qk_norm only, else NULL */
} BlockWeights;

typedef struct {
  int T;
  float *xn, *xn2, *tmp; /* T × dim */
  float *q, *z;          /* T × n_heads·head_dim */
  float *k, *v;          /* T × n_kv_heads·head_dim */
  float *qpre, *kpre;    /* cfg.qk_norm only (else NULL): q and k before q_norm/k_norm (the Jacobians' points) */
  float *att;            /* T × T, one head at a time */
  float *gate, *act;     /* T × hidden_dim */
  float *cos, *sin;      /* T × head_dim/2 */
} BlockScratch;

int block_weights_alloc(const ModelConfig *c, BlockWeights *w);
void block_weights_free(BlockWeights *w);
/* Full-precision weights of one block from the checkpoint. */
int block_weights_load(const Model *m, int layer, BlockWeights *w);

int scratch_alloc(const ModelConfig *c, int T, BlockScratch *s);
void scratch_free(BlockScratch *s);

/* How far block_forward_until runs: up to (and including) computing the
 * input of a group of projections, or the whole block. */
typedef enum { STOP_QKV_INPUT, STOP_O_INPUT, STOP_MLP_INPUT, STOP_DOWN_INPUT, STOP_FULL } BlockStop;

/* The groups of a block's projections in true-sequential order and where
 * their input is: kinds first .. first+count-1 share that input (and so
 * its Hessian). The pass and its memory plan both follow it. */
typedef struct {
  BlockStop stop;
  int first, count;
} LinearGroup;
extern const LinearGroup linear_groups[4];

/* x: T × dim residual stream, updated in place. */
void block_forward(const ModelConfig *c, const BlockWeights *w, BlockScratch *s, float *x);
/* Partial forward: s->xn (q/k/v input), s->z (o_proj input), s->xn2
 * (gate/up input) or s->act (down_proj input) is valid on return; x is
 * updated in place as far as the block got. */
void block_forward_until(const ModelConfig *c, const BlockWeights *w, BlockScratch *s, float *x, BlockStop stop);
/* From o_proj on: s->z holds attention's output (as block_forward_until(
 * STOP_O_INPUT) leaves it) and x the block input; as far as `stop`
 * (STOP_MLP_INPUT or later), the same bits as the whole block. */
void block_forward_from_o(const ModelConfig *c, const BlockWeights *w, BlockScratch *s, float *x, BlockStop stop);
/* The MLP half alone, from x holding the residual stream after attention
 * (as block_forward_until(STOP_MLP_INPUT) leaves it), as far as `stop`
 * (STOP_MLP_INPUT, STOP_DOWN_INPUT or STOP_FULL): the same arithmetic, so
 * the same bits, as the whole block from its input. */
void block_mlp_forward(const ModelConfig *c, const BlockWeights *w, BlockScratch *s, float *x, BlockStop stop);
/* The first position query t attends to: 0, or with a sliding window W
 * (config.h) max(0, t − W + 1). Every attention sum runs over
 * attention_first(c, t) .. t. */
static inline int attention_first(const ModelConfig *c, int t) {
  return c->sliding_window > 0 && t >= c->sliding_window ? t - c->sliding_window + 1 : 0;
}
/* Causal softmax probabilities of head h into s->att (T × T, zero above
 * the diagonal and before attention_first), from s->q and s->k as left by
 * block_forward. Every statistic that differentiates attention (the APTQ
 * Hessians, the golden checks) uses these masked probabilities, so the
 * softmax Jacobian A(δ − A) is zero outside the window too. */
void attention_probs(const ModelConfig *c, BlockScratch *s, int head);

/* RoPE's i-th pair of a head's dimensions (i < head_dim/2), rotated
 * together by the angle of (position, i) (s->cos, s->sin): HF's
 * rotate_half pairs (i, i + head_dim/2), llama2.c's (rope_interleaved)
 * (2i, 2i+1). The forward and every RoPE-aware statistic index by it. */
static inline void rope_pair(const ModelConfig *c, int i, int *a, int *b) {
  *a = c->rope_interleaved ? 2 * i : i;
  *b = c->rope_interleaved ? 2 * i + 1 : i + c->head_dim / 2;
}

/* Rotate each head of a T × (nheads·hd) matrix in place by the angles of
 * s->cos, s->sin: sign = 1 is RoPE, sign = -1 its inverse (the transposed
 * rotation, for the backward pass). Local. */
void rope_rotate(const ModelConfig *c, const BlockScratch *s, float *m, int nheads, float sign);

void rmsnorm(float *out, const float *x, const float *weight, int n, float eps);
int embed_tokens(const Model *m, const uint32_t *ids, int T, float *x);

/* Final norm and lm_head. nll: sum over t < T-1 of -log p(ids[t+1] | ..t).
 * logits_out (optional): T × vocab. Works in chunks of tokens. */
typedef struct {
  float *final_norm; /* [dim] */
  const TensorRef *lm_head;
  float *lm_head_f32; /* vocab × dim */
  float *buf;         /* chunk × vocab */
  float *xf;          /* chunk × dim */
} Head;
enum { HEAD_CHUNK = 64 }; /* tokens per head product */
int head_load(const Model *m, Head *h);
/* Final norm and lm_head of n ≤ HEAD_CHUNK tokens of x (n × dim) into
 * logits (n × vocab); h->xf is the scratch. */
void head_logits(const ModelConfig *c, Head *h, const float *x, int n, float *logits);
void head_free(Head *h);
/* −log softmax(row)[target] of one logit row [V], as head_forward sums
 * it (the NLLs of eval's perplexity). */
double logits_nll(const float *row, int V, uint32_t target);
void head_forward(const ModelConfig *c, Head *h, const float *x, const uint32_t *ids, int T, double *nll, float *logits_out);

#endif
