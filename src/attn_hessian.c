#include "attn_hessian.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collective.h"
#include "error.h"

/* out += W_O^hᵀ W_O^h (dh × dh) in float64, summed over the rows of W_O
 * (d × ld, row-major) in order: W_O^h is its columns h·dh .. h·dh+dh-1,
 * (W_O^hᵀ W_O^h)_ab = Σ_i Wo[i][h dh + a] Wo[i][h dh + b]. */
static void wo_gram_add(const float *Wo, int d, int ld, int h, int dh, double *out) {
  for (int i = 0; i < d; i++) {
    const float *row = Wo + (size_t)i * ld + (size_t)h * dh;
    for (int a = 0; a < dh; a++)
      for (int b = 0; b < dh; b++) out[a * dh + b] += (double)row[a] * row[b];
  }
}

/* P_h = W_O^hᵀ W_O^h rounded to float32, every head (heads × dh × dh);
 * work: dh × dh doubles. */
static void wo_grams_f32(const float *Wo, int d, int heads, int dh, float *P, double *work) {
  size_t dh2 = (size_t)dh * dh;
  for (int h = 0; h < heads; h++) {
    memset(work, 0, sizeof(double) * dh2);
    wo_gram_add(Wo, d, heads * dh, h, dh, work);
    for (size_t k = 0; k < dh2; k++) P[(size_t)h * dh2 + k] = (float)work[k];
  }
}

/* Collective: out (n) summed over the ranks and divided by all ranks' tokens. */
static void reduce_token_mean(double *out, size_t n, int64_t tokens, MPI_Comm comm) {
  allreduce_sum_f64(out, n, comm);
  int64_t total = tokens;
  MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_INT64_T, MPI_SUM, comm);
  for (size_t k = 0; k < n; k++) out[k] /= (double)total;
}

int vhessian_init(VHessian *v, const ModelConfig *c, int T, int relaxed) {
  memset(v, 0, sizeof *v);
  v->relaxed = relaxed;
  v->d = c->dim;
  v->dh = c->head_dim;
  v->groups = c->n_kv_heads;
  v->heads_per_group = c->n_heads / c->n_kv_heads;
  v->T = T;
  v->in = aptq_calloc((size_t)v->groups, sizeof *v->in, "v_proj input factors");
  v->out = aptq_calloc((size_t)v->groups * v->dh * v->dh, sizeof(double), "v_proj output factors");
  v->Y = aptq_malloc(sizeof(float) * (size_t)T * v->d, "attention-mixed inputs");
  v->chunk = aptq_malloc(sizeof(float) * hessian_chunk_floats(v->d), "v_proj Hessian chunk");
  if (!v->in || !v->out || !v->Y || !v->chunk) return APTQ_ERR;
  for (int g = 0; g < v->groups; g++) CHECK(hessian_init_borrow(&v->in[g], v->d, v->chunk));
  return 0;
}

void vhessian_free(VHessian *v) {
  for (int g = 0; v->in && g < v->groups; g++) hessian_free(&v->in[g]);
  aptq_free(v->in);
  aptq_free(v->out);
  aptq_free(v->Y);
  aptq_free(v->chunk);
  memset(v, 0, sizeof *v);
}

void vhessian_reset(VHessian *v) {
  for (int g = 0; g < v->groups; g++) hessian_reset(&v->in[g]);
}

void vhessian_add(VHessian *v, const ModelConfig *c, BlockScratch *s, const float *X) {
  int T = s->T, d = v->d;
  for (int h = 0; h < c->n_heads; h++) {
    int g = h / v->heads_per_group;
    attention_probs(c, s, h);
    /* Y^h = A^h X: row t is y_t^h = Σ_s A_ts x_s */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, d, T, 1.0f, s->att, T, X, d, 0.0f, v->Y, d);
    hessian_add(&v->in[g], v->Y, T);
  }
  /* hessian_add counted every head's tokens; a group's token count is T per head */
}

void vhessian_set_output(VHessian *v, const float *Wo) {
  int d = v->d, dh = v->dh, ld = v->groups * v->heads_per_group * dh;
  memset(v->out, 0, sizeof(double) * (size_t)v->groups * dh * dh);
  if (v->relaxed) { /* H_out = I: each kv head's rows with one d × d Hessian */
    for (int g = 0; g < v->groups; g++)
      for (int a = 0; a < dh; a++) v->out[(size_t)g * dh * dh + a * dh + a] = 1.0;
    return;
  }
  for (int g = 0; g < v->groups; g++) {
    double *out = v->out + (size_t)g * dh * dh;
    for (int k = 0; k < v->heads_per_group; k++) wo_gram_add(Wo, d, ld, g * v->heads_per_group + k, dh, out);
    for (int a = 0; a < dh * dh; a++) out[a] /= v->heads_per_group;
  }
}

int vhessian_finish(VHessian *v, MPI_Comm comm) {
  for (int g = 0; g < v->groups; g++) {
    /* per head the tokens were counted once; the factor is a sum over the group's heads, normalised per token
       (relaxed: the mean over the group's heads, so the count stays) */
    if (!v->relaxed) v->in[g].tokens /= v->heads_per_group;
    CHECK(hessian_finish(&v->in[g], comm));
  }
  return 0;
}

int qhessian_init(QHessian *q, const ModelConfig *c, int T) {
  memset(q, 0, sizeof *q);
  q->d = c->dim;
  q->dh = c->head_dim;
  q->heads = c->n_heads;
  q->hpg = c->n_heads / c->n_kv_heads;
  q->T = T;
  size_t dh2 = (size_t)q->dh * q->dh;
  q->out = aptq_calloc((size_t)q->heads * dh2, sizeof(double), "q_proj output factors");
  q->seq = aptq_calloc((size_t)q->heads * dh2, sizeof(double), "q_proj output factors");
  q->P = aptq_malloc(sizeof(float) * q->heads * dh2, "W_O^T W_O");
  q->VK = aptq_malloc(sizeof(float) * (size_t)T * dh2, "v k outer products");
  q->NT = aptq_malloc(sizeof(float) * (size_t)T * dh2, "N_t");
  q->KB = aptq_malloc(sizeof(float) * (size_t)T * q->dh, "mean keys");
  q->Xw = aptq_malloc(sizeof(float) * (size_t)T * q->d, "weighted inputs");
  q->w = aptq_malloc(sizeof(float) * (size_t)T, "token weights");
  q->Y = aptq_malloc(sizeof(float) * (size_t)T * dh2, "N_t^T P");
  q->Mf = aptq_malloc(sizeof(float) * dh2, "M_t");
  q->M = aptq_malloc(sizeof(double) * dh2, "M_t");
  q->nw = aptq_malloc(sizeof(double) * 3 * (size_t)q->dh, "q norm Jacobian");
  if (!q->nw || !q->out || !q->seq || !q->P || !q->VK || !q->NT || !q->KB || !q->Xw || !q->w || !q->Y || !q->Mf || !q->M) return APTQ_ERR;
  return hessian_init(&q->in, q->d);
}

void qhessian_free(QHessian *q) {
  hessian_free(&q->in);
  aptq_free(q->out);
  aptq_free(q->seq);
  aptq_free(q->P);
  aptq_free(q->VK);
  aptq_free(q->NT);
  aptq_free(q->KB);
  aptq_free(q->Xw);
  aptq_free(q->w);
  aptq_free(q->Y);
  aptq_free(q->Mf);
  aptq_free(q->M);
  aptq_free(q->nw);
  memset(q, 0, sizeof *q);
}

void qhessian_reset(QHessian *q) {
  hessian_reset(&q->in);
  memset(q->out, 0, sizeof(double) * (size_t)q->heads * q->dh * q->dh);
  q->tokens = 0;
}

void qhessian_set_output(QHessian *q, const float *Wo, const float *norm) {
  wo_grams_f32(Wo, q->d, q->heads, q->dh, q->P, q->M);
  q->norm = norm;
}

/* M ← R_tᵀ M R_t for the RoPE rotation of position t (forward.h's rope_pair) */
static void rotate_both(const ModelConfig *c, const BlockScratch *s, int t, double *M) {
  int dh = c->head_dim, half = dh / 2;
  const float *cs = s->cos + (size_t)t * half, *sn = s->sin + (size_t)t * half;
  for (int i = 0; i < half; i++) {
    int a, b;
    rope_pair(c, i, &a, &b);
    double co = cs[i], si = sn[i];
    for (int r = 0; r < dh; r++) { /* columns: M R */
      double x = M[r * dh + a], y = M[r * dh + b];
      M[r * dh + a] = x * co + y * si;
      M[r * dh + b] = -x * si + y * co;
    }
    for (int col = 0; col < dh; col++) { /* rows: Rᵀ (M R) */
      double x = M[a * dh + col], y = M[b * dh + col];
      M[a * dh + col] = co * x + si * y;
      M[b * dh + col] = -si * x + co * y;
    }
  }
}

/* M ← J_nᵀ M J_n for Qwen3's per-head RMSNorm y = g ⊙ u / r,
 * r = sqrt(mean(u²) + eps) (transformers' Qwen3RMSNorm: normalised in
 * float32, the weight applied after; forward.c's rmsnorm), at its input u
 * (dh): J_n = diag(g)/r · (I − u uᵀ/(dh r²)) = D (I − v vᵀ) with D = diag(g)/r,
 * v = u/(r √dh). Jᵀ M J = A (D M D) A, A = I − v vᵀ symmetric: O(dh²).
 * work: 3·dh doubles. Returns the trace of the result. */
static double norm_both(const float *u, const float *g, int dh, float eps, double *M, double *work) {
  double ss = 0, *v = work, *Mv = work + dh, *dg = work + 2 * dh, vMv = 0, tr = 0;
  for (int a = 0; a < dh; a++) ss += (double)u[a] * u[a];
  double r = sqrt(ss / dh + eps);
  for (int a = 0; a < dh; a++) {
    v[a] = u[a] / (r * sqrt((double)dh));
    dg[a] = g[a] / r;
  }
  for (int a = 0; a < dh; a++)
    for (int b = 0; b < dh; b++) M[a * dh + b] *= dg[a] * dg[b];
  for (int a = 0; a < dh; a++) { /* M symmetric: vᵀM = (M v)ᵀ */
    double acc = 0;
    for (int b = 0; b < dh; b++) acc += M[a * dh + b] * v[b];
    Mv[a] = acc;
    vMv += v[a] * acc;
  }
  for (int a = 0; a < dh; a++)
    for (int b = 0; b < dh; b++) M[a * dh + b] += -v[a] * Mv[b] - Mv[a] * v[b] + v[a] * vMv * v[b];
  for (int a = 0; a < dh; a++) tr += M[a * dh + a];
  return tr;
}

/* The golden check's sums for one token x (d) of the diagnosed head, whose
 * M_t (rotated, dh × dh) and trace tr are given: u = Δ x. */
static void qdiag_add(QDiag *diag, const double *M, double tr, const float *x, int d, int dh) {
  double u[512], uu = 0, quad = 0;
  for (int a = 0; a < dh; a++) {
    double acc = 0;
    for (int j = 0; j < d; j++) acc += (double)diag->delta[(size_t)a * d + j] * x[j];
    u[a] = acc;
    uu += acc * acc;
  }
  for (int a = 0; a < dh; a++)
    for (int b = 0; b < dh; b++) {
      quad += u[a] * M[a * dh + b] * u[b] / dh;
      diag->uu[a * dh + b] += u[a] * u[b];
    }
  diag->exact += quad;
  diag->rowshared += tr / ((double)dh * dh) * uu;
}

void qhessian_add(QHessian *q, const ModelConfig *c, BlockScratch *s, const float *X, QDiag *diag) {
  int T = s->T, d = q->d, dh = q->dh, dh2 = dh * dh, kvd = c->n_kv_heads * dh, qd = q->heads * dh;
  float *Y = q->Y, *Mf = q->Mf;
  double *M = q->M;
  for (int t = 0; t < T; t++) q->w[t] = 0.0f;
  memset(q->seq, 0, sizeof(double) * (size_t)q->heads * dh2);
  int vk_group = -1;
  for (int h = 0; h < q->heads; h++) {
    int g = h / q->hpg;
    const float *K = s->k + (size_t)g * dh, *V = s->v + (size_t)g * dh, *P = q->P + (size_t)h * dh2;
    if (g != vk_group) { /* outer products k_s v_sᵀ, once per kv group */
      for (int t = 0; t < T; t++)
        for (int b = 0; b < dh; b++)
          for (int a = 0; a < dh; a++) q->VK[(size_t)t * dh2 + b * dh + a] = K[(size_t)t * kvd + b] * V[(size_t)t * kvd + a];
      vk_group = g;
    }
    attention_probs(c, s, h);
    /* NT row t = N_tᵀ = Σ_s A_ts k_s v_sᵀ − k̄_t z_tᵀ (dh × dh, rows over key dims) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh2, T, 1.0f, s->att, T, q->VK, dh2, 0.0f, q->NT, dh2);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh, T, 1.0f, s->att, T, K, kvd, 0.0f, q->KB, dh);
    for (int t = 0; t < T; t++) {
      const float *z = s->z + (size_t)t * qd + h * dh, *kb = q->KB + (size_t)t * dh;
      float *nt = q->NT + (size_t)t * dh2;
      for (int b = 0; b < dh; b++)
        for (int a = 0; a < dh; a++) nt[b * dh + a] -= kb[b] * z[a];
    }
    /* Y_t = N_tᵀ P for all tokens at once: (T·dh × dh)(dh × dh) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T * dh, dh, dh, 1.0f, q->NT, dh, P, dh, 0.0f, Y, dh);
    double *out = q->seq + (size_t)h * dh2;
    for (int t = 0; t < T; t++) {
      const float *nt = q->NT + (size_t)t * dh2, *y = Y + (size_t)t * dh2;
      /* M_t = N_tᵀ P N_t = Y_t (N_tᵀ)ᵀ; its trace is Σ Y_t ∘ N_tᵀ */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, dh, dh, dh, 1.0f, y, dh, nt, dh, 0.0f, Mf, dh);
      double tr = 0;
      for (int a = 0; a < dh; a++) tr += Mf[a * dh + a];
      for (int k = 0; k < dh2; k++) M[k] = Mf[k];
      rotate_both(c, s, t, M);
      /* q_norm between q_proj and RoPE: G_t → G_t J_n(u_t) at the head's pre-norm q */
      if (q->norm) tr = norm_both(s->qpre + (size_t)t * qd + h * dh, q->norm, dh, c->norm_eps, M, q->nw);
      q->w[t] += (float)(tr / ((double)dh * dh));
      if (diag && diag->head == h) qdiag_add(diag, M, tr, X + (size_t)t * d, d, dh);
      for (int k = 0; k < dh2; k++) out[k] += M[k] / dh;
    }
  }
  for (int t = 0; t < T; t++) {
    float r = sqrtf(q->w[t]);
    for (int j = 0; j < d; j++) q->Xw[(size_t)t * d + j] = r * X[(size_t)t * d + j];
  }
  hessian_add(&q->in, q->Xw, T);
  /* The sequence's sums, rounded to float32, are added exactly in float64
   * (as in hessian_add): the total does not depend on the order of the
   * sequences, so neither on how they are spread over ranks. */
  for (size_t i = 0; i < (size_t)q->heads * dh2; i++) q->out[i] += (float)q->seq[i];
  q->tokens += T;
}

int qhessian_finish(QHessian *q, MPI_Comm comm) {
  reduce_token_mean(q->out, (size_t)q->heads * q->dh * q->dh, q->tokens, comm);
  return hessian_finish(&q->in, comm);
}

int khessian_init(KHessian *k, const ModelConfig *c, int T, int kron) {
  memset(k, 0, sizeof *k);
  k->kron = kron;
  k->d = c->dim;
  k->dh = c->head_dim;
  k->heads = c->n_heads;
  k->hpg = c->n_heads / c->n_kv_heads;
  k->T = T;
  k->P = aptq_malloc(sizeof(float) * (size_t)k->heads * k->dh * k->dh, "W_O^T W_O");
  k->VP = aptq_malloc(sizeof(float) * (size_t)T * k->dh, "V P");
  k->C = aptq_malloc(sizeof(float) * (size_t)T * T, "v P z");
  k->Xw = aptq_malloc(sizeof(float) * (size_t)T * k->d, "weighted inputs");
  k->w = aptq_malloc(sizeof(float) * (size_t)T, "token weights");
  k->ws = aptq_malloc(sizeof(double) * (size_t)T, "token weights");
  k->avec = aptq_malloc(sizeof(double) * (size_t)T, "v P v");
  k->M = aptq_malloc(sizeof(double) * (size_t)k->dh * k->dh, "B_s");
  k->nw = aptq_malloc(sizeof(double) * 3 * (size_t)k->dh, "k norm Jacobian");
  if (!k->nw || !k->P || !k->VP || !k->C || !k->Xw || !k->w || !k->ws || !k->avec || !k->M) return APTQ_ERR;
  size_t dh2 = (size_t)k->dh * k->dh;
  if (kron) {
    k->out = aptq_calloc((size_t)c->n_kv_heads * dh2, sizeof(double), "k_proj output factors");
    k->seq = aptq_calloc((size_t)c->n_kv_heads * dh2, sizeof(double), "k_proj output factors");
    if (!k->out || !k->seq) return APTQ_ERR;
  }
  if (kron || c->qk_norm) { /* the per-key factors B_s: Kronecker, or k_norm's Jacobian in the row-shared weights */
    k->QQ = aptq_malloc(sizeof(float) * (size_t)T * dh2, "q q^T");
    k->CS = aptq_malloc(sizeof(float) * (size_t)T * dh2, "k_proj per-key factors");
    if (!k->QQ || !k->CS) return APTQ_ERR;
  }
  return hessian_init(&k->in, k->d);
}

void khessian_free(KHessian *k) {
  hessian_free(&k->in);
  aptq_free(k->P);
  aptq_free(k->VP);
  aptq_free(k->C);
  aptq_free(k->Xw);
  aptq_free(k->w);
  aptq_free(k->ws);
  aptq_free(k->avec);
  aptq_free(k->M);
  aptq_free(k->out);
  aptq_free(k->seq);
  aptq_free(k->QQ);
  aptq_free(k->CS);
  aptq_free(k->nw);
  memset(k, 0, sizeof *k);
}

void khessian_reset(KHessian *k) {
  hessian_reset(&k->in);
  if (k->out) memset(k->out, 0, sizeof(double) * (size_t)(k->heads / k->hpg) * k->dh * k->dh);
  k->tokens = 0;
}

void khessian_set_output(KHessian *k, const float *Wo, const float *norm) {
  wo_grams_f32(Wo, k->d, k->heads, k->dh, k->P, k->M);
  k->norm = norm;
}

void khessian_add(KHessian *k, const ModelConfig *c, BlockScratch *s, const float *X, double *wg) {
  int T = s->T, d = k->d, dh = k->dh, kvd = c->n_kv_heads * dh, qd = k->heads * dh, groups = c->n_kv_heads;
  double *ws = k->ws, *avec = k->avec;
  int full = k->kron || k->norm; /* the per-key factors B_s are formed */
  memset(ws, 0, sizeof(double) * (size_t)T);
  if (wg) memset(wg, 0, sizeof(double) * (size_t)T * groups);
  if (k->kron) memset(k->seq, 0, sizeof(double) * (size_t)groups * dh * dh);
  for (int h = 0; h < k->heads; h++) {
    int g = h / k->hpg;
    const float *V = s->v + (size_t)g * dh, *Q = s->q + (size_t)h * dh, *Z = s->z + (size_t)h * dh, *P = k->P + (size_t)h * dh * dh;
    attention_probs(c, s, h);
    /* C[t][s] = v_sᵀ P z_t: (Z P)(Vᵀ) with P symmetric */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh, dh, 1.0f, V, kvd, P, dh, 0.0f, k->VP, dh);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, dh, 1.0f, Z, qd, k->VP, dh, 0.0f, k->C, T);
    for (int j = 0; j < T; j++) { /* a_j = v_jᵀ P v_j */
      double aj = 0;
      for (int a = 0; a < dh; a++) aj += (double)k->VP[(size_t)j * dh + a] * V[(size_t)j * kvd + a];
      avec[j] = aj;
    }
    for (int t = 0; t < T; t++) {
      /* b_t = z_tᵀ P z_t, |q_t|² */
      double bt = 0, qn = 0;
      const float *z = Z + (size_t)t * qd, *q = Q + (size_t)t * qd;
      for (int a = 0; a < dh; a++) {
        double pz = 0;
        for (int b = 0; b < dh; b++) pz += (double)P[a * dh + b] * z[b];
        bt += z[a] * pz;
        qn += (double)q[a] * q[a];
      }
      const float *arow = s->att + (size_t)t * T;
      float *crow = k->C + (size_t)t * T;
      for (int j = 0; j <= t; j++) {
        double cts = avec[j] - 2.0 * crow[j] + bt, contrib = (double)arow[j] * arow[j] * cts * qn / ((double)dh * dh);
        if (!k->norm) { /* with k_norm the weights are traces of the normed B_s, below */
          ws[j] += contrib;
          if (wg) wg[(size_t)j * groups + g] += contrib;
        }
        if (full) crow[j] = (float)((double)arow[j] * arow[j] * cts); /* C becomes A∘A∘c */
      }
      if (full)
        for (int j = t + 1; j < T; j++) crow[j] = 0.0f;
    }
    if (full) {
      int dh2 = dh * dh;
      for (int t = 0; t < T; t++) {
        const float *q = Q + (size_t)t * qd;
        for (int a = 0; a < dh; a++)
          for (int b = 0; b < dh; b++) k->QQ[(size_t)t * dh2 + a * dh + b] = q[a] * q[b];
      }
      /* CS row s = Σ_t (A∘A∘c)_ts q_t q_tᵀ */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, dh2, T, 1.0f, k->C, T, k->QQ, dh2, 0.0f, k->CS, dh2);
      double *M = k->M, *out = k->kron ? k->seq + (size_t)g * dh2 : NULL;
      for (int j = 0; j < T; j++) {
        for (int a = 0; a < dh2; a++) M[a] = k->CS[(size_t)j * dh2 + a];
        rotate_both(c, s, j, M);
        if (k->norm) { /* k_norm between k_proj and RoPE: B_s → J_n(u_s)ᵀ B_s J_n(u_s), u_s the group's pre-norm k */
          double tr = norm_both(s->kpre + (size_t)j * kvd + g * dh, k->norm, dh, c->norm_eps, M, k->nw) / ((double)dh * dh);
          ws[j] += tr;
          if (wg) wg[(size_t)j * groups + g] += tr;
        }
        if (out)
          for (int a = 0; a < dh2; a++) out[a] += M[a] / dh;
      }
    }
  }
  for (int t = 0; t < T; t++) {
    float r = sqrtf((float)(ws[t] > 0 ? ws[t] : 0));
    k->w[t] = (float)ws[t];
    for (int j = 0; j < d; j++) k->Xw[(size_t)t * d + j] = r * X[(size_t)t * d + j];
  }
  hessian_add(&k->in, k->Xw, T);
  if (k->kron) /* order-independent total, as in qhessian_add */
    for (size_t i = 0; i < (size_t)groups * dh * dh; i++) k->out[i] += (float)k->seq[i];
  k->tokens += T;
}

int khessian_finish(KHessian *k, MPI_Comm comm) {
  if (k->kron) reduce_token_mean(k->out, (size_t)(k->heads / k->hpg) * k->dh * k->dh, k->tokens, comm);
  return hessian_finish(&k->in, comm);
}

/* ---- the relaxed (BoA/aespa) q_proj and k_proj forms -------------------- */

int relaxed_init(RelaxedQK *r, const ModelConfig *c, int T) {
  memset(r, 0, sizeof *r);
  r->dh = c->head_dim;
  r->heads = c->n_heads;
  r->groups = c->n_kv_heads;
  r->hpg = c->n_heads / c->n_kv_heads;
  r->T = T;
  size_t dh2 = (size_t)r->dh * r->dh;
  r->kk = aptq_calloc((size_t)r->groups, sizeof *r->kk, "key covariances");
  r->qq = aptq_calloc((size_t)r->heads, sizeof *r->qq, "query covariances");
  r->buf = aptq_malloc(sizeof(float) * (size_t)T * r->dh, "head vectors");
  r->qout = aptq_malloc(sizeof(double) * (size_t)r->heads * dh2, "q_proj output factors");
  r->kout = aptq_malloc(sizeof(double) * (size_t)r->groups * dh2, "k_proj output factors");
  r->M = aptq_malloc(sizeof(double) * 2 * dh2, "rotated covariance");
  if (!r->kk || !r->qq || !r->buf || !r->qout || !r->kout || !r->M) return APTQ_ERR;
  for (int g = 0; g < r->groups; g++) CHECK(hessian_init(&r->kk[g], r->dh));
  for (int h = 0; h < r->heads; h++) CHECK(hessian_init(&r->qq[h], r->dh));
  return 0;
}

void relaxed_free(RelaxedQK *r) {
  for (int g = 0; r->kk && g < r->groups; g++) hessian_free(&r->kk[g]);
  for (int h = 0; r->qq && h < r->heads; h++) hessian_free(&r->qq[h]);
  aptq_free(r->kk);
  aptq_free(r->qq);
  aptq_free(r->buf);
  aptq_free(r->qout);
  aptq_free(r->kout);
  aptq_free(r->M);
  memset(r, 0, sizeof *r);
}

void relaxed_reset(RelaxedQK *r) {
  for (int g = 0; g < r->groups; g++) hessian_reset(&r->kk[g]);
  for (int h = 0; h < r->heads; h++) hessian_reset(&r->qq[h]);
}

/* Σ v vᵀ of one head's columns [off, off + dh) of V (T × ld) into H. */
static void head_cov_add(Hessian *H, float *buf, const float *V, int T, int ld, int off, int dh) {
  for (int t = 0; t < T; t++) memcpy(buf + (size_t)t * dh, V + (size_t)t * ld + off, sizeof(float) * (size_t)dh);
  hessian_add(H, buf, T);
}

void relaxed_add(RelaxedQK *r, const ModelConfig *c, const BlockScratch *s) {
  int T = s->T, dh = r->dh, kvd = c->n_kv_heads * dh, qd = c->n_heads * dh;
  for (int g = 0; g < r->groups; g++) head_cov_add(&r->kk[g], r->buf, s->k, T, kvd, g * dh, dh);
  for (int h = 0; h < r->heads; h++) head_cov_add(&r->qq[h], r->buf, s->q, T, qd, h * dh, dh);
}

/* out = mean_l R_lᵀ C R_l over the T positions of s's RoPE tables (dh × dh). */
static void unrotate_mean(const ModelConfig *c, const BlockScratch *s, int T, const double *C, double *M, double *out) {
  size_t dh2 = (size_t)c->head_dim * c->head_dim;
  memset(out, 0, sizeof(double) * dh2);
  for (int l = 0; l < T; l++) {
    memcpy(M, C, sizeof(double) * dh2);
    rotate_both(c, s, l, M);
    for (size_t k = 0; k < dh2; k++) out[k] += M[k];
  }
  for (size_t k = 0; k < dh2; k++) out[k] /= T;
}

int relaxed_finish(RelaxedQK *r, const ModelConfig *c, const BlockScratch *s, MPI_Comm comm) {
  size_t dh2 = (size_t)r->dh * r->dh;
  for (int g = 0; g < r->groups; g++) CHECK(hessian_finish(&r->kk[g], comm));
  for (int h = 0; h < r->heads; h++) CHECK(hessian_finish(&r->qq[h], comm));
  /* q_proj head h: its kv head's key covariance (the released code expands
     C_K over the heads of a group) */
  for (int h = 0; h < r->heads; h++) unrotate_mean(c, s, r->T, r->kk[h / r->hpg].sum, r->M, r->qout + (size_t)h * dh2);
  /* k_proj kv head g: the mean of its query heads' covariances */
  double *C = r->M + dh2;
  for (int g = 0; g < r->groups; g++) {
    memset(C, 0, sizeof(double) * dh2);
    for (int j = 0; j < r->hpg; j++)
      for (size_t k = 0; k < dh2; k++) C[k] += r->qq[g * r->hpg + j].sum[k] / r->hpg;
    unrotate_mean(c, s, r->T, C, r->M, r->kout + (size_t)g * dh2);
  }
  return 0;
}
