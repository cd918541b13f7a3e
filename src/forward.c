#include "forward.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static int64_t lin_rows(const ModelConfig *c, int k) {
  switch (k) {
    case LIN_Q: return (int64_t)c->n_heads * c->head_dim;
    case LIN_K:
    case LIN_V: return (int64_t)c->n_kv_heads * c->head_dim;
    case LIN_GATE:
    case LIN_UP: return c->hidden_dim;
    default: return c->dim;
  }
}
static int64_t lin_cols(const ModelConfig *c, int k) {
  return k == LIN_O ? (int64_t)c->n_heads * c->head_dim : k == LIN_DOWN ? c->hidden_dim : c->dim;
}

int block_weights_alloc(const ModelConfig *c, BlockWeights *w) {
  memset(w, 0, sizeof *w);
  w->attn_norm = aptq_malloc(sizeof(float) * (size_t)c->dim, "attention norm");
  w->ffn_norm = aptq_malloc(sizeof(float) * (size_t)c->dim, "MLP norm");
  if (!w->attn_norm || !w->ffn_norm) return APTQ_ERR;
  for (int k = 0; k < LIN_COUNT; k++) {
    w->w[k] = aptq_malloc(sizeof(float) * (size_t)(lin_rows(c, k) * lin_cols(c, k)), linear_names[k]);
    if (!w->w[k]) return APTQ_ERR;
  }
  for (int k = 0; c->qkv_bias && k < 3; k++)
    if (!(w->bias[k] = aptq_malloc(sizeof(float) * (size_t)lin_rows(c, k), "q/k/v bias"))) return APTQ_ERR;
  if (c->qk_norm) {
    w->q_norm = aptq_malloc(sizeof(float) * (size_t)c->head_dim, "q norm");
    w->k_norm = aptq_malloc(sizeof(float) * (size_t)c->head_dim, "k norm");
    if (!w->q_norm || !w->k_norm) return APTQ_ERR;
  }
  return 0;
}

void block_weights_free(BlockWeights *w) {
  aptq_free(w->attn_norm);
  aptq_free(w->ffn_norm);
  for (int k = 0; k < LIN_COUNT; k++) aptq_free(w->w[k]);
  for (int k = 0; k < 3; k++) aptq_free(w->bias[k]);
  aptq_free(w->q_norm);
  aptq_free(w->k_norm);
  memset(w, 0, sizeof *w);
}

int block_weights_load(const Model *m, int layer, BlockWeights *w) {
  CHECK(tensor_f32(&m->attn_norm[layer], w->attn_norm));
  CHECK(tensor_f32(&m->ffn_norm[layer], w->ffn_norm));
  for (int k = 0; k < LIN_COUNT; k++) {
    CHECK(tensor_f32(&m->linear[layer][k], w->w[k]));
    model_release(m, &m->linear[layer][k]);
  }
  for (int k = 0; m->cfg.qkv_bias && k < 3; k++) CHECK(tensor_f32(&m->qkv_bias[layer][k], w->bias[k]));
  if (m->cfg.qk_norm) {
    CHECK(tensor_f32(&m->q_norm[layer], w->q_norm));
    CHECK(tensor_f32(&m->k_norm[layer], w->k_norm));
  }
  return 0;
}

int scratch_alloc(const ModelConfig *c, int T, BlockScratch *s) {
  memset(s, 0, sizeof *s);
  s->T = T;
  size_t t = (size_t)T, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
  float **bufs[] = {&s->xn, &s->xn2, &s->tmp, &s->q, &s->z, &s->k, &s->v, &s->att, &s->gate, &s->act, &s->cos, &s->sin};
  size_t sizes[] = {t * c->dim,        t * c->dim,          t * c->dim,         t * qd, t * qd, t * kvd, t * kvd, t * t, t * c->hidden_dim,
                    t * c->hidden_dim, t * c->head_dim / 2, t * c->head_dim / 2};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    *bufs[i] = aptq_malloc(sizes[i] * sizeof(float), "activations");
    if (!*bufs[i]) return APTQ_ERR;
  }
  if (c->qk_norm) {
    s->qpre = aptq_malloc(t * qd * sizeof(float), "activations");
    s->kpre = aptq_malloc(t * kvd * sizeof(float), "activations");
    if (!s->qpre || !s->kpre) return APTQ_ERR;
  }
  /* RoPE tables: angle = pos · inv_freq_i, theta^(-2i/head_dim) scaled as
   * the config says (config.h's rope_inv_freq) */
  int half = c->head_dim / 2;
  for (int i = 0; i < half; i++) {
    float inv_freq = (float)rope_inv_freq(c, i);
    for (int p = 0; p < T; p++) {
      float angle = (float)p * inv_freq;
      s->cos[p * half + i] = cosf(angle);
      s->sin[p * half + i] = sinf(angle);
    }
  }
  return 0;
}

void scratch_free(BlockScratch *s) {
  float *bufs[] = {s->xn, s->xn2, s->tmp, s->q, s->z, s->k, s->v, s->att, s->gate, s->act, s->cos, s->sin};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) aptq_free(bufs[i]);
  aptq_free(s->qpre);
  aptq_free(s->kpre);
  memset(s, 0, sizeof *s);
}

void rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
  float ss = 0.0f;
  for (int i = 0; i < n; i++) ss += x[i] * x[i];
  float r = 1.0f / sqrtf(ss / (float)n + eps);
  for (int i = 0; i < n; i++) out[i] = weight[i] * (x[i] * r);
}

void rope_rotate(const ModelConfig *c, const BlockScratch *s, float *m, int nheads, float sign) {
  int hd = c->head_dim, half = hd / 2, ld = nheads * hd;
  for (int p = 0; p < s->T; p++) {
    const float *cs = s->cos + p * half, *sn = s->sin + p * half;
    for (int h = 0; h < nheads; h++) {
      float *v = m + (size_t)p * ld + h * hd;
      for (int i = 0; i < half; i++) {
        int a, b;
        rope_pair(c, i, &a, &b);
        float x0 = v[a], x1 = v[b], sin = sign * sn[i]; /* exact: sign is ±1 */
        v[a] = x0 * cs[i] - x1 * sin;
        v[b] = x0 * sin + x1 * cs[i];
      }
    }
  }
}

/* out (T × rows) = in (T × cols) · Wᵀ */
static void linear(const float *in, const float *w, float *out, int T, int64_t rows, int64_t cols) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, (int)rows, (int)cols, 1.0f, in, (int)cols, w, (int)cols, 0.0f, out, (int)rows);
}

void attention_probs(const ModelConfig *c, BlockScratch *s, int head) {
  int T = s->T, hd = c->head_dim, group = c->n_heads / c->n_kv_heads, g = head / group;
  int qld = c->n_heads * hd, kld = c->n_kv_heads * hd;
  float scale = 1.0f / sqrtf((float)hd);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, s->q + head * hd, qld, s->k + g * hd, kld, 0.0f, s->att, T);
  for (int t = 0; t < T; t++) {
    int j0 = attention_first(c, t);
    float *row = s->att + (size_t)t * T, mx = row[j0];
    for (int j = 0; j < j0; j++) row[j] = 0.0f;
    for (int j = j0 + 1; j <= t; j++) mx = row[j] > mx ? row[j] : mx;
    float sum = 0.0f;
    for (int j = j0; j <= t; j++) {
      row[j] = expf(row[j] - mx);
      sum += row[j];
    }
    float inv = 1.0f / sum;
    for (int j = j0; j <= t; j++) row[j] *= inv;
    for (int j = t + 1; j < T; j++) row[j] = 0.0f;
  }
}

/* m (T × rows) += bias in every row */
static void add_bias(float *m, const float *bias, int T, int64_t rows) {
  for (int t = 0; t < T; t++)
    for (int64_t i = 0; i < rows; i++) m[(size_t)t * rows + i] += bias[i];
}

/* Qwen3's q_norm / k_norm: each head of a T × (nheads·hd) matrix
 * RMS-normalised in place with weight (hd), Qwen3RMSNorm over head_dim. */
static void head_rmsnorm(const ModelConfig *c, float *m, const float *weight, int T, int nheads) {
  for (size_t r = 0; r < (size_t)T * nheads; r++) rmsnorm(m + r * c->head_dim, m + r * c->head_dim, weight, c->head_dim, c->norm_eps);
}

const LinearGroup linear_groups[4] = {
    {STOP_QKV_INPUT, LIN_Q, 3}, {STOP_O_INPUT, LIN_O, 1}, {STOP_MLP_INPUT, LIN_GATE, 2}, {STOP_DOWN_INPUT, LIN_DOWN, 1}};

void block_forward(const ModelConfig *c, const BlockWeights *w, BlockScratch *s, float *x) { block_forward_until(c, w, s, x, STOP_FULL); }

void block_forward_until(const ModelConfig *c, const BlockWeights *w, BlockScratch *s, float *x, BlockStop stop) {
  int T = s->T, D = c->dim, hd = c->head_dim;
  int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, group = c->n_heads / c->n_kv_heads;

  /* attention */
  for (int t = 0; t < T; t++) rmsnorm(s->xn + (size_t)t * D, x + (size_t)t * D, w->attn_norm, D, c->norm_eps);
  if (stop == STOP_QKV_INPUT) return;
  linear(s->xn, w->w[LIN_Q], s->q, T, qd, D);
  linear(s->xn, w->w[LIN_K], s->k, T, kvd, D);
  linear(s->xn, w->w[LIN_V], s->v, T, kvd, D);
  if (w->bias[LIN_Q]) {
    add_bias(s->q, w->bias[LIN_Q], T, qd);
    add_bias(s->k, w->bias[LIN_K], T, kvd);
    add_bias(s->v, w->bias[LIN_V], T, kvd);
  }
  if (w->q_norm) {
    memcpy(s->qpre, s->q, sizeof(float) * (size_t)T * qd);
    memcpy(s->kpre, s->k, sizeof(float) * (size_t)T * kvd);
    head_rmsnorm(c, s->q, w->q_norm, T, c->n_heads);
    head_rmsnorm(c, s->k, w->k_norm, T, c->n_kv_heads);
  }
  rope_rotate(c, s, s->q, c->n_heads, 1.0f);
  rope_rotate(c, s, s->k, c->n_kv_heads, 1.0f);
  for (int h = 0; h < c->n_heads; h++) {
    attention_probs(c, s, h);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, s->att, T, s->v + (h / group) * hd, kvd, 0.0f, s->z + h * hd,
                qd);
  }
  if (stop == STOP_O_INPUT) return;
  block_forward_from_o(c, w, s, x, stop);
}

void block_forward_from_o(const ModelConfig *c, const BlockWeights *w, BlockScratch *s, float *x, BlockStop stop) {
  int T = s->T, D = c->dim, qd = c->n_heads * c->head_dim;
  linear(s->z, w->w[LIN_O], s->tmp, T, D, qd);
  for (size_t i = 0; i < (size_t)T * D; i++) x[i] += s->tmp[i];
  block_mlp_forward(c, w, s, x, stop);
}

void block_mlp_forward(const ModelConfig *c, const BlockWeights *w, BlockScratch *s, float *x, BlockStop stop) {
  int T = s->T, D = c->dim, F = c->hidden_dim;
  /* SwiGLU MLP */
  for (int t = 0; t < T; t++) rmsnorm(s->xn2 + (size_t)t * D, x + (size_t)t * D, w->ffn_norm, D, c->norm_eps);
  if (stop == STOP_MLP_INPUT) return;
  linear(s->xn2, w->w[LIN_GATE], s->gate, T, F, D);
  linear(s->xn2, w->w[LIN_UP], s->act, T, F, D);
  for (size_t i = 0; i < (size_t)T * F; i++) {
    float g = s->gate[i];
    s->act[i] *= g / (1.0f + expf(-g));
  }
  if (stop == STOP_DOWN_INPUT) return;
  linear(s->act, w->w[LIN_DOWN], s->tmp, T, D, F);
  for (size_t i = 0; i < (size_t)T * D; i++) x[i] += s->tmp[i];
}

int embed_tokens(const Model *m, const uint32_t *ids, int T, float *x) {
  for (int t = 0; t < T; t++) CHECK(tensor_rows_f32(&m->embed, ids[t], ids[t] + 1, x + (size_t)t * m->cfg.dim));
  return 0;
}

int head_load(const Model *m, Head *h) {
  const ModelConfig *c = &m->cfg;
  memset(h, 0, sizeof *h);
  h->lm_head = &m->lm_head;
  h->final_norm = aptq_malloc(sizeof(float) * (size_t)c->dim, "final norm");
  h->lm_head_f32 = aptq_malloc(sizeof(float) * (size_t)c->vocab_size * c->dim, "lm_head");
  h->buf = aptq_malloc(sizeof(float) * (size_t)HEAD_CHUNK * c->vocab_size, "logits");
  h->xf = aptq_malloc(sizeof(float) * (size_t)HEAD_CHUNK * c->dim, "final norm output");
  if (!h->final_norm || !h->lm_head_f32 || !h->buf || !h->xf) return APTQ_ERR;
  CHECK(tensor_f32(&m->final_norm, h->final_norm));
  /* chunk by chunk: at most one chunk of its mapped pages resident (memory.h) */
  CHECK(tensor_f32_release(m, &m->lm_head, h->lm_head_f32));
  return 0;
}

void head_free(Head *h) {
  aptq_free(h->final_norm);
  aptq_free(h->lm_head_f32);
  aptq_free(h->buf);
  aptq_free(h->xf);
  memset(h, 0, sizeof *h);
}

void head_logits(const ModelConfig *c, Head *h, const float *x, int n, float *logits) {
  int D = c->dim;
  for (int i = 0; i < n; i++) rmsnorm(h->xf + (size_t)i * D, x + (size_t)i * D, h->final_norm, D, c->norm_eps);
  linear(h->xf, h->lm_head_f32, logits, n, c->vocab_size, D);
}

double logits_nll(const float *row, int V, uint32_t target) {
  float mx = row[0];
  for (int j = 1; j < V; j++) mx = row[j] > mx ? row[j] : mx;
  /* float exponentials (the vocabulary makes this the hot loop), summed in double */
  double sum = 0.0;
  for (int j0 = 0; j0 < V; j0 += 256) {
    float part = 0.0f;
    for (int j = j0; j < V && j < j0 + 256; j++) part += expf(row[j] - mx);
    sum += part;
  }
  return log(sum) + (double)mx - (double)row[target];
}

void head_forward(const ModelConfig *c, Head *h, const float *x, const uint32_t *ids, int T, double *nll, float *logits_out) {
  int D = c->dim, V = c->vocab_size;
  double total = 0.0;
  for (int t0 = 0; t0 < T; t0 += HEAD_CHUNK) {
    int n = T - t0 < HEAD_CHUNK ? T - t0 : HEAD_CHUNK;
    float *logits = logits_out ? logits_out + (size_t)t0 * V : h->buf;
    head_logits(c, h, x + (size_t)t0 * D, n, logits);
    for (int i = 0; i < n; i++) {
      int t = t0 + i;
      if (t + 1 >= T) break;
      total += logits_nll(logits + (size_t)i * V, V, ids[t + 1]);
    }
  }
  if (nll) *nll = total;
}
