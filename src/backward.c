/* The decoder's backward pass for squared weight-gradient norms
 * (backward.h). Row-major T × n matrices throughout, as in forward.c; the
 * products by BLAS, the reductions in double. */
#include "backward.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "error.h"

/* Rows (outputs) and columns (inputs) of projection k. */
static void lin_shape(const ModelConfig *c, int k, int *rows, int *cols) {
  int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
  const int r[LIN_COUNT] = {qd, kvd, kvd, c->dim, c->hidden_dim, c->hidden_dim, c->dim};
  const int n[LIN_COUNT] = {c->dim, c->dim, c->dim, qd, c->dim, c->dim, c->hidden_dim};
  *rows = r[k];
  *cols = n[k];
}

static int gram_cheaper(int T, int rows, int cols) { return (double)T * T * (rows + cols) / 2 < (double)rows * cols * T; }

double block_grad_bytes(const ModelConfig *c, int T) {
  double t = T, D = c->dim, F = c->hidden_dim, qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
  double largest = 0;
  for (int k = 0; k < LIN_COUNT; k++) {
    int rows, cols;
    lin_shape(c, k, &rows, &cols);
    if (!gram_cheaper(T, rows, cols) && (double)rows * cols > largest) largest = (double)rows * cols;
  }
  return (3 * t * D + 4 * t * F + 2 * t * qd + 2 * t * kvd + 3 * t * t + largest + 1) * sizeof(float);
}

int block_grad_alloc(const ModelConfig *c, int T, BlockGrad *g) {
  memset(g, 0, sizeof *g);
  CHECK(scratch_alloc(c, T, &g->s));
  size_t t = (size_t)T, D = (size_t)c->dim, F = (size_t)c->hidden_dim;
  size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim, largest = 0;
  for (int k = 0; k < LIN_COUNT; k++) {
    int rows, cols;
    lin_shape(c, k, &rows, &cols);
    g->use_gram[k] = gram_cheaper(T, rows, cols);
    if (!g->use_gram[k] && (size_t)rows * cols > largest) largest = (size_t)rows * cols;
  }
  float **bufs[] = {&g->xmid, &g->up, &g->dmid, &g->dn,   &g->dact,   &g->dgate,  &g->dup, &g->dz,
                    &g->dq,   &g->dk, &g->dv,   &g->datt, &g->gram_a, &g->gram_b, &g->gw};
  size_t sizes[] = {t * D, t * F, t * D, t * D, t * F, t * F, t * F, t * qd, t * qd, t * kvd, t * kvd, t * t, t * t, t * t, largest + 1};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    *bufs[i] = aptq_malloc(sizes[i] * sizeof(float), "backward pass buffers");
    if (!*bufs[i]) return APTQ_ERR;
  }
  return 0;
}

void block_grad_free(BlockGrad *g) {
  float *bufs[] = {g->xmid, g->up, g->dmid, g->dn,   g->dact,   g->dgate,  g->dup, g->dz,
                   g->dq,   g->dk, g->dv,   g->datt, g->gram_a, g->gram_b, g->gw};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) aptq_free(bufs[i]);
  scratch_free(&g->s);
  memset(g, 0, sizeof *g);
}

void rmsnorm_backward(float *dx, const float *x, const float *weight, const float *dy, int n, float eps) {
  /* y_i = w_i x_i r, r = (Σx²/n + eps)^(-1/2) as forward.c's rmsnorm computes it */
  float ss = 0.0f;
  for (int i = 0; i < n; i++) ss += x[i] * x[i];
  double r = 1.0f / sqrtf(ss / (float)n + eps), dot = 0;
  for (int i = 0; i < n; i++) dot += (double)dy[i] * weight[i] * x[i];
  double c = r * r * r * dot / n;
  for (int i = 0; i < n; i++) dx[i] += (float)(r * weight[i] * dy[i] - c * x[i]);
}

/* Qwen3's q_norm/k_norm (forward.c's head_rmsnorm) backward, in place:
 * each head of d (T × nheads·hd, ∂ of the normed, un-rotated q or k)
 * becomes J_nᵀ d, the ∂ of the projection's output u (pre, s->qpre or
 * s->kpre), with the Jacobian J_n = diag(g)/r (I − u uᵀ/(hd r²)) that
 * rmsnorm_backward takes; the norm weight's own gradient is not needed. */
static void head_norm_backward(const ModelConfig *c, float *d, const float *pre, const float *weight, int T, int nheads) {
  int hd = c->head_dim;
  for (size_t row = 0; row < (size_t)T * nheads; row++) {
    float *dy = d + row * hd;
    const float *u = pre + row * hd;
    float ss = 0.0f; /* r as forward.c's rmsnorm computes it, as rmsnorm_backward */
    for (int i = 0; i < hd; i++) ss += u[i] * u[i];
    double r = 1.0f / sqrtf(ss / (float)hd + c->norm_eps), dot = 0;
    for (int i = 0; i < hd; i++) dot += (double)dy[i] * weight[i] * u[i];
    double k = r * r * r * dot / hd;
    for (int i = 0; i < hd; i++) dy[i] = (float)(r * weight[i] * dy[i] - k * u[i]);
  }
}

void block_grad_recompute(const ModelConfig *c, const BlockWeights *w, BlockGrad *g, const float *x) {
  int T = g->s.T, D = c->dim, F = c->hidden_dim;
  memcpy(g->xmid, x, sizeof(float) * (size_t)T * D);
  block_forward_until(c, w, &g->s, g->xmid, STOP_MLP_INPUT);
  block_mlp_forward(c, w, &g->s, g->xmid, STOP_DOWN_INPUT);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, F, D, 1.0f, g->s.xn2, D, w->w[LIN_UP], D, 0.0f, g->up, F);
}

/* ‖Gᵀ X‖²_F for G (T × rows, the layer's output gradients) and X (T × cols,
 * its inputs): from the matrix, or from the two token Grams. */
static double grad_sq(BlockGrad *g, int gram, const float *G, const float *X, int T, int rows, int cols) {
  double s = 0;
  if (!gram) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, cols, T, 1.0f, G, rows, X, cols, 0.0f, g->gw, cols);
    for (size_t i = 0; i < (size_t)rows * cols; i++) s += (double)g->gw[i] * g->gw[i];
    return s;
  }
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, T, rows, 1.0f, G, rows, 0.0f, g->gram_a, T);
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, T, cols, 1.0f, X, cols, 0.0f, g->gram_b, T);
  for (int t = 0; t < T; t++) {
    const float *a = g->gram_a + (size_t)t * T, *b = g->gram_b + (size_t)t * T;
    double off = 0;
    for (int u = t + 1; u < T; u++) off += (double)a[u] * b[u];
    s += (double)a[t] * b[t] + 2 * off;
  }
  return s;
}

/* Attention: from dz (∂ of the o_proj input) to dq, dk (before RoPE: after
 * the inverse rotation) and dv. */
static void attention_backward(const ModelConfig *c, BlockGrad *g) {
  BlockScratch *s = &g->s;
  int T = s->T, hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
  int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
  float scale = 1.0f / sqrtf((float)hd);
  memset(g->dk, 0, sizeof(float) * (size_t)T * kvd);
  memset(g->dv, 0, sizeof(float) * (size_t)T * kvd);
  for (int h = 0; h < c->n_heads; h++) {
    int kv = h / group;
    float *P = s->att, *dS = g->datt;
    attention_probs(c, s, h);
    /* z_h = P v: dv += Pᵀ dz_h, dP = dz_h vᵀ */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, P, T, g->dz + h * hd, qd, 1.0f, g->dv + kv * hd, kvd);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, g->dz + h * hd, qd, s->v + kv * hd, kvd, 0.0f, dS, T);
    /* softmax over the keys a query sees: dS_tj = P_tj (dP_tj − Σ_j' P_tj' dP_tj') */
    for (int t = 0; t < T; t++) {
      float *p = P + (size_t)t * T, *d = dS + (size_t)t * T;
      int lo = attn_first_key(c, t);
      double dot = 0;
      for (int j = lo; j <= t; j++) dot += (double)p[j] * d[j];
      for (int j = 0; j < lo; j++) d[j] = 0.0f;
      for (int j = lo; j <= t; j++) d[j] = p[j] * (d[j] - (float)dot);
      for (int j = t + 1; j < T; j++) d[j] = 0.0f;
    }
    /* S = scale q kᵀ: dq_h = scale dS k, dk += scale dSᵀ q_h */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, scale, dS, T, s->k + kv * hd, kvd, 0.0f, g->dq + h * hd, qd);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, scale, dS, T, s->q + h * hd, qd, 1.0f, g->dk + kv * hd, kvd);
  }
  rope_rotate(c, s, g->dq, c->n_heads, -1.0f); /* the inverse rotation */
  rope_rotate(c, s, g->dk, c->n_kv_heads, -1.0f);
}

/* out (T × cols) (+)= dy (T × rows) · W (rows × cols): ∂ of a layer's input */
static void linear_backward(const float *dy, const float *w, float *out, int T, int rows, int cols, float beta) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, cols, rows, 1.0f, dy, rows, w, cols, beta, out, cols);
}

/* The MLP half: dx (∂ block output) to g->dmid (∂ residual after attention). */
static void mlp_backward(const ModelConfig *c, const BlockWeights *w, BlockGrad *g, const float *dx, double sq[LIN_COUNT]) {
  BlockScratch *s = &g->s;
  int T = s->T, D = c->dim, F = c->hidden_dim;
  sq[LIN_DOWN] += grad_sq(g, g->use_gram[LIN_DOWN], dx, s->act, T, D, F);
  linear_backward(dx, w->w[LIN_DOWN], g->dact, T, D, F, 0.0f);
  /* act = up · silu(gate), silu(x) = x σ(x), silu' = σ (1 + x (1 − σ)) */
  for (size_t i = 0; i < (size_t)T * F; i++) {
    float x = s->gate[i], sig = 1.0f / (1.0f + expf(-x));
    g->dup[i] = g->dact[i] * x * sig;
    g->dgate[i] = g->dact[i] * g->up[i] * sig * (1.0f + x * (1.0f - sig));
  }
  sq[LIN_GATE] += grad_sq(g, g->use_gram[LIN_GATE], g->dgate, s->xn2, T, F, D);
  sq[LIN_UP] += grad_sq(g, g->use_gram[LIN_UP], g->dup, s->xn2, T, F, D);
  linear_backward(g->dgate, w->w[LIN_GATE], g->dn, T, F, D, 0.0f);
  linear_backward(g->dup, w->w[LIN_UP], g->dn, T, F, D, 1.0f);
  memcpy(g->dmid, dx, sizeof(float) * (size_t)T * D);
  for (int t = 0; t < T; t++)
    rmsnorm_backward(g->dmid + (size_t)t * D, g->xmid + (size_t)t * D, w->ffn_norm, g->dn + (size_t)t * D, D, c->norm_eps);
}

void block_grad_backward(const ModelConfig *c, const BlockWeights *w, BlockGrad *g, const float *x, float *dx, double sq[LIN_COUNT]) {
  BlockScratch *s = &g->s;
  int T = s->T, D = c->dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
  mlp_backward(c, w, g, dx, sq);
  /* o_proj: x_mid = x + z W_oᵀ */
  sq[LIN_O] += grad_sq(g, g->use_gram[LIN_O], g->dmid, s->z, T, D, qd);
  linear_backward(g->dmid, w->w[LIN_O], g->dz, T, D, qd, 0.0f);
  attention_backward(c, g);
  if (w->q_norm) { /* q_norm/k_norm sit between the projections and RoPE */
    head_norm_backward(c, g->dq, s->qpre, w->q_norm, T, c->n_heads);
    head_norm_backward(c, g->dk, s->kpre, w->k_norm, T, c->n_kv_heads);
  }
  sq[LIN_Q] += grad_sq(g, g->use_gram[LIN_Q], g->dq, s->xn, T, qd, D);
  sq[LIN_K] += grad_sq(g, g->use_gram[LIN_K], g->dk, s->xn, T, kvd, D);
  sq[LIN_V] += grad_sq(g, g->use_gram[LIN_V], g->dv, s->xn, T, kvd, D);
  linear_backward(g->dq, w->w[LIN_Q], g->dn, T, qd, D, 0.0f);
  linear_backward(g->dk, w->w[LIN_K], g->dn, T, kvd, D, 1.0f);
  linear_backward(g->dv, w->w[LIN_V], g->dn, T, kvd, D, 1.0f);
  memcpy(dx, g->dmid, sizeof(float) * (size_t)T * D);
  for (int t = 0; t < T; t++) rmsnorm_backward(dx + (size_t)t * D, x + (size_t)t * D, w->attn_norm, g->dn + (size_t)t * D, D, c->norm_eps);
}

/* A label from a probability row (n entries summing to about 1): inverse
 * CDF of one uniform draw, in double. */
static int sample_label(const float *p, int n, Rng *rng) {
  double total = 0;
  for (int j = 0; j < n; j++) total += p[j];
  double u = rng_uniform(rng) * total, cum = 0;
  int last = 0;
  for (int j = 0; j < n; j++) {
    if (p[j] <= 0.0f) continue;
    cum += p[j];
    last = j;
    if (u < cum) return j;
  }
  return last;
}

void head_grad_sampled(const ModelConfig *c, Head *h, const float *x, int T, Rng *rng, float *prob, float *dx) {
  int D = c->dim, V = c->vocab_size;
  memset(dx, 0, sizeof(float) * (size_t)T * D);
  for (int t0 = 0; t0 < T; t0 += HEAD_CHUNK) {
    int n = T - t0 < HEAD_CHUNK ? T - t0 : HEAD_CHUNK;
    head_logits(c, h, x + (size_t)t0 * D, n, prob);
    /* ∂(−log p_y)/∂logits = p − e_y */
    for (int i = 0; i < n; i++) {
      float *p = prob + (size_t)i * V, mx = p[0];
      for (int j = 1; j < V; j++) mx = p[j] > mx ? p[j] : mx;
      double sum = 0;
      for (int j = 0; j < V; j++) sum += p[j] = expf(p[j] - mx);
      float inv = (float)(1.0 / sum);
      for (int j = 0; j < V; j++) p[j] *= inv;
      p[sample_label(p, V, rng)] -= 1.0f;
    }
    /* logits = xf W_headᵀ: ∂xf = ∂logits W_head, into h->xf */
    linear_backward(prob, h->lm_head_f32, h->xf, n, V, D, 0.0f);
    for (int i = 0; i < n; i++) {
      size_t r = (size_t)(t0 + i) * D;
      rmsnorm_backward(dx + r, x + r, h->final_norm, h->xf + (size_t)i * D, D, c->norm_eps);
    }
  }
}
