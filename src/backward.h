/* The LLaMA decoder's backward pass, for the Fisher sensitivities
 * (fisher.h, docs/mixed.md): the gradient of the cross-entropy of one
 * sequence, with labels drawn from the model's own next-token
 * distribution, with respect to every linear layer's weights, reduced to
 * its squared Frobenius norm ‖∂L/∂W‖². No MPI, no I/O: the caller loads
 * the weights and keeps each block's input from its forward pass.
 *
 * Per block (block_grad_recompute, then block_grad_backward once per label
 * set): the block's intermediates are recomputed from its input with
 * forward.c's own calls (same bits as the forward), then the gradient of
 * the block output is taken back through the SwiGLU MLP, its RMSNorm,
 * o_proj, the causal softmax attention (GQA: a kv head's gradient sums its
 * query heads), the inverse RoPE rotation, Qwen3's per-head q/k RMSNorm
 * (its Jacobian transposed), q/k/v and the first RMSNorm, to
 * the gradient of the block input. For a layer y = W x, ∂L/∂W = Σ_t g_t x_tᵀ
 * (g_t = ∂L/∂y_t): its squared norm is formed either from the matrix
 * (rows·cols·T flops) or from the token Grams, ‖GᵀX‖² = Σ_ts (G Gᵀ)_ts
 * (X Xᵀ)_ts (T²(rows + cols)/2 flops), whichever is cheaper. */
#ifndef APTQ_BACKWARD_H
#define APTQ_BACKWARD_H

#include <stdint.h>

#include "forward.h"
#include "rng.h"

/* The first key a query at position t may attend to: the forward's own
 * (forward.h attention_first: 0, or the start of Mistral's sliding
 * window). Every loop of the attention backward over a query's keys runs
 * from here to t. */
static inline int attn_first_key(const ModelConfig *c, int t) { return attention_first(c, t); }

typedef struct {
  BlockScratch s;            /* the forward's intermediates (forward.h) */
  float *xmid;               /* T × dim: residual stream after attention */
  float *up;                 /* T × hidden: up_proj's output */
  float *dmid, *dn;          /* T × dim: ∂ residual after attention, ∂ of a norm's output */
  float *dact, *dgate, *dup; /* T × hidden */
  float *dz, *dq;            /* T × n_heads·head_dim */
  float *dk, *dv;            /* T × n_kv_heads·head_dim */
  float *datt;               /* T × T: one head's ∂ probabilities, then ∂ scores */
  float *gram_a, *gram_b;    /* T × T: token Grams */
  float *gw;                 /* the largest layer (rows × cols): a gradient matrix */
  int use_gram[LIN_COUNT];   /* per layer: the Gram form is the cheaper one */
} BlockGrad;

/* 0, or APTQ_ERR (recorded; block_grad_free anyway). */
int block_grad_alloc(const ModelConfig *c, int T, BlockGrad *g);
void block_grad_free(BlockGrad *g);
/* Bytes block_grad_alloc takes beyond its BlockScratch (forward.h's
 * scratch_alloc; for the memory plan). */
double block_grad_bytes(const ModelConfig *c, int T);

/* The intermediates of one block (weights w) from its input x (T × dim,
 * not modified), for block_grad_backward. */
void block_grad_recompute(const ModelConfig *c, const BlockWeights *w, BlockGrad *g, const float *x);
/* dx (T × dim): in, ∂L/∂(block output); out, ∂L/∂(block input). x: the
 * block input given to block_grad_recompute. sq[k] += ‖∂L/∂W_k‖² for the
 * block's seven layers. */
void block_grad_backward(const ModelConfig *c, const BlockWeights *w, BlockGrad *g, const float *x, float *dx, double sq[LIN_COUNT]);

/* The head's part for one sequence: final norm and lm_head of x (T × dim,
 * the last block's output), a label per position drawn from the softmax
 * of its logits (rng, position by position), and dx (T × dim) =
 * ∂L/∂x for L = Σ_t −log p_t(label_t). prob: HEAD_CHUNK × vocab scratch;
 * h->xf and h->buf are used as scratch too. */
void head_grad_sampled(const ModelConfig *c, Head *h, const float *x, int T, Rng *rng, float *prob, float *dx);

/* Backward of y = rmsnorm(x, weight) (forward.c's rmsnorm) for one row:
 * dx += ∂/∂x of Σ dy·y. */
void rmsnorm_backward(float *dx, const float *x, const float *weight, const float *dy, int n, float eps);

#endif
