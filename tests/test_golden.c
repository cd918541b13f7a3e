/* Golden check of the attention-aware Hessians (docs/aptq.md) on block 0 of
 * a real model: for a random perturbation Δ of o_proj or v_proj the
 * attention-output error measured by re-running the block,
 * E = Σ_t ‖o_t(W+Δ) − o_t(W)‖², must equal the Gauss–Newton quadratic form
 * (exact: o is linear in these weights). For v_proj the factored Kronecker
 * form (input factors summed over a group's heads, output factors averaged)
 * is compared with the exact form and its ratio printed and bounded.
 * On a model with Qwen3's q/k norms the q and k checks carry the norm's
 * Jacobian: lin_attn applies it, written independently here, and the
 * measured error re-runs the block (norms included).
 * The relaxed (BoA/aespa) forms, per sequence (check_relaxed): the error of
 * the quantity each bounds, measured by re-running the block with the
 * perturbed weights — q_proj head 0: the scores Σ_{t,s} (δq_t·k_s)² over
 * all token pairs; k_proj kv group 0: Σ_{h∈g} Σ_{t,s} (q_t^h·δk_s)²;
 * v_proj kv group 0: the heads' attention outputs Σ_{h∈g} Σ_t ‖δz_t^h‖² —
 * equals the relaxed quadratic form built from attn_hessian.c's
 * covariances (exact: these are linear in the weights, so the ratio is 1
 * at every ε); the Kronecker form (RoPE rotations averaged over positions)
 * is reported against it; and the identity of v's relaxed input factor
 * with the Kronecker form's (× heads per group).
 * usage: test_golden MODEL TOKENS NSEQ SEQLEN [RATIO_MIN RATIO_MAX] */
#include <cblas.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "attn_hessian.h"
#include "error.h"
#include "forward.h"
#include "rng.h"
#include "tokens.h"

static double rel(double a, double b) { return fabs(a - b) / fabs(b); }

/* u ← R_t u, the RoPE rotation of position t (forward.h's rope_pair) */
static void rotate_vec(const ModelConfig *c, const BlockScratch *s, int t, double *u) {
  int half = c->head_dim / 2;
  for (int i = 0; i < half; i++) {
    int a, b;
    rope_pair(c, i, &a, &b);
    double co = s->cos[(size_t)t * half + i], si = s->sin[(size_t)t * half + i], x = u[a], y = u[b];
    u[a] = x * co - y * si;
    u[b] = x * si + y * co;
  }
}

/* u ← J_n(p) u for Qwen3's per-head RMSNorm y = g ⊙ p / r at its input p
 * (dh), r = sqrt(mean(p²) + eps): δy = g ⊙ (δp − p (p·δp)/(dh r²)) / r. */
static void norm_vec(const float *p, const float *g, int dh, double eps, double *u) {
  double ss = 0, pu = 0;
  for (int a = 0; a < dh; a++) {
    ss += (double)p[a] * p[a];
    pu += (double)p[a] * u[a];
  }
  double r2 = ss / dh + eps, r = sqrt(r2);
  for (int a = 0; a < dh; a++) u[a] = g[a] * (u[a] - p[a] * pu / (dh * r2)) / r;
}

/* The linearised attention output δo (T × D, into dout) for a perturbation
 * of W_Q's head-0 rows (is_k = 0) or of W_K's kv-group-0 rows (is_k = 1),
 * written straight from the softmax Jacobian: δs_tj = δq_t·k_j/√dh or
 * q_t·δk_j/√dh, δA_tj = A_tj(δs_tj − Σ_j' A_tj' δs_tj'), δz_t = Σ_j δA_tj v_j,
 * δo = W_O δz. Independent of attn_hessian.c. Returns Σ‖δo‖², the exact GN
 * quadratic form. s holds the forward's q, k, v, z; norm: the q_norm
 * (is_k = 0) or k_norm weight, or NULL (then δq = R ΔW x, else R J_n ΔW x
 * at the pre-norm q or k of s->qpre, s->kpre). */
static double lin_attn(const ModelConfig *c, BlockScratch *s, const float *X, const float *dW, const float *Wo, const float *norm, int is_k,
                       double *dout) {
  int T = s->T, D = c->dim, dh = c->head_dim, qd = c->n_heads * dh, kvd = c->n_kv_heads * dh, hpg = c->n_heads / c->n_kv_heads;
  double *U = TEST_MALLOC(sizeof(double) * T * dh), *dz = TEST_MALLOC(sizeof(double) * dh), total = 0;
  memset(dout, 0, sizeof(double) * (size_t)T * D);
  for (int j = 0; j < T; j++) { /* U_j = R_j ΔW x_j, post-RoPE */
    for (int a = 0; a < dh; a++) {
      double acc = 0;
      for (int l = 0; l < D; l++) acc += (double)dW[a * D + l] * X[(size_t)j * D + l];
      U[j * dh + a] = acc;
    }
    if (norm) norm_vec(is_k ? s->kpre + (size_t)j * kvd : s->qpre + (size_t)j * qd, norm, dh, c->norm_eps, U + j * dh);
    rotate_vec(c, s, j, U + j * dh);
  }
  for (int h = 0; h < (is_k ? hpg : 1); h++) { /* q: head 0; k: the heads of group 0 */
    attention_probs(c, s, h);
    for (int t = 0; t < T; t++) {
      const float *q = s->q + (size_t)t * qd + h * dh, *z = s->z + (size_t)t * qd + h * dh, *arow = s->att + (size_t)t * T;
      double bsum = 0;
      for (int a = 0; a < dh; a++) dz[a] = 0;
      for (int j = 0; j <= t; j++) {
        double sc = 0;
        const float *kj = s->k + (size_t)j * kvd, *v = s->v + (size_t)j * kvd; /* group 0 */
        for (int a = 0; a < dh; a++) sc += is_k ? q[a] * U[j * dh + a] : U[t * dh + a] * kj[a];
        double b = arow[j] * sc / sqrt((double)dh);
        bsum += b;
        for (int a = 0; a < dh; a++) dz[a] += b * v[a];
      }
      for (int a = 0; a < dh; a++) dz[a] -= bsum * z[a];
      for (int i = 0; i < D; i++) {
        double acc = 0;
        for (int a = 0; a < dh; a++) acc += (double)Wo[(size_t)i * qd + h * dh + a] * dz[a];
        dout[(size_t)t * D + i] += acc;
      }
    }
  }
  for (size_t i = 0; i < (size_t)T * D; i++) total += dout[i] * dout[i];
  aptq_free(U);
  aptq_free(dz);
  return total;
}

/* kv group 0's row-shared k weights written from the Jacobian, into w (T):
 * w_s = Σ_{h∈g} Σ_{t≥s} A_ts² |W_O^h(v_s − z_t)|² |J_sᵀ R_sᵀ q_t|² / dh²
 * (M_ts's squared Frobenius norm / dh), |Jᵀ Rᵀ q|² = Σ_i (q · R J e_i)²
 * over the basis vectors e_i, J = J_n(s->kpre) or I. Independent of
 * attn_hessian.c's closed forms. s holds the forward's q, k, v, z. */
static void k_weights(const ModelConfig *c, BlockScratch *s, const float *Wo, const float *norm, double *w) {
  int T = s->T, D = c->dim, dh = c->head_dim, qd = c->n_heads * dh, kvd = c->n_kv_heads * dh, hpg = c->n_heads / c->n_kv_heads;
  double *RJ = TEST_MALLOC(sizeof(double) * T * dh * dh), *ov = TEST_MALLOC(sizeof(double) * T * D),
         *oz = TEST_MALLOC(sizeof(double) * T * D);
  for (int j = 0; j < T; j++) /* RJ[j] row i = R_j J_j e_i */
    for (int i = 0; i < dh; i++) {
      double *u = RJ + ((size_t)j * dh + i) * dh;
      for (int a = 0; a < dh; a++) u[a] = a == i;
      if (norm) norm_vec(s->kpre + (size_t)j * kvd, norm, dh, c->norm_eps, u);
      rotate_vec(c, s, j, u);
    }
  memset(w, 0, sizeof(double) * T);
  for (int h = 0; h < hpg; h++) {
    attention_probs(c, s, h);
    for (int t = 0; t < T; t++) /* W_O^h v_t, W_O^h z_t */
      for (int l = 0; l < D; l++) {
        double a = 0, b = 0;
        for (int e = 0; e < dh; e++) {
          a += (double)Wo[(size_t)l * qd + h * dh + e] * s->v[(size_t)t * kvd + e];
          b += (double)Wo[(size_t)l * qd + h * dh + e] * s->z[(size_t)t * qd + h * dh + e];
        }
        ov[(size_t)t * D + l] = a;
        oz[(size_t)t * D + l] = b;
      }
    for (int t = 0; t < T; t++) {
      const float *q = s->q + (size_t)t * qd + h * dh;
      for (int j = 0; j <= t; j++) {
        double a = s->att[(size_t)t * T + j], cts = 0, qq = 0;
        if (a == 0) continue;
        for (int l = 0; l < D; l++)
          cts += (ov[(size_t)j * D + l] - oz[(size_t)t * D + l]) * (ov[(size_t)j * D + l] - oz[(size_t)t * D + l]);
        for (int i = 0; i < dh; i++) {
          double p = 0;
          for (int e = 0; e < dh; e++) p += q[e] * RJ[((size_t)j * dh + i) * dh + e];
          qq += p * p;
        }
        w[j] += a * a * cts * qq / ((double)dh * dh);
      }
    }
  }
  aptq_free(RJ);
  aptq_free(ov);
  aptq_free(oz);
}

/* Attention output o = z W_Oᵀ of the block run with weights w on sequence ids. */
static void attn_out(const Model *m, const BlockWeights *w, BlockScratch *s, const uint32_t *ids, float *x, float *o) {
  const ModelConfig *c = &m->cfg;
  int T = s->T, D = c->dim, qd = c->n_heads * c->head_dim;
  embed_tokens(m, ids, T, x);
  block_forward_until(c, w, s, x, STOP_O_INPUT);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, D, qd, 1.0f, s->z, qd, w->w[LIN_O], qd, 0.0f, o, D);
}

/* Finite-difference check of the softmax-Jacobian linearisation: the
 * central difference (o(W+εΔ) − o(W−εΔ))/2ε against lin_attn's δo, on one
 * sequence, relative error in the 2-norm at ε and ε/2 (O(ε²): ratio ≈ 4). */
static void fd_check(const Model *m, const BlockWeights *w, BlockWeights *wp, BlockScratch *s, const uint32_t *ids, const float *dW,
                     int is_k, double err[2]) {
  const ModelConfig *c = &m->cfg;
  int T = s->T, D = c->dim, kvd = c->n_kv_heads * c->head_dim, qd = c->n_heads * c->head_dim, dh = c->head_dim, lin = is_k ? LIN_K : LIN_Q;
  size_t nw = (size_t)(is_k ? kvd : qd) * D;
  float *x = TEST_MALLOC(sizeof(float) * T * D), *op = TEST_MALLOC(sizeof(float) * T * D), *om = TEST_MALLOC(sizeof(float) * T * D);
  float *X = TEST_MALLOC(sizeof(float) * T * D);
  double *dout = TEST_MALLOC(sizeof(double) * T * D);
  embed_tokens(m, ids, T, x);
  block_forward_until(c, w, s, x, STOP_O_INPUT);
  memcpy(X, s->xn, sizeof(float) * T * D);
  double nl = lin_attn(c, s, X, dW, w->w[LIN_O], is_k ? w->k_norm : w->q_norm, is_k, dout);
  const double eps[2] = {1e-2, 5e-3};
  for (int k = 0; k < 2; k++) {
    float *o2[2] = {op, om};
    for (int sign = 0; sign < 2; sign++) {
      memcpy(wp->w[LIN_Q], w->w[LIN_Q], sizeof(float) * (size_t)qd * D);
      memcpy(wp->w[LIN_K], w->w[LIN_K], sizeof(float) * (size_t)kvd * D);
      memcpy(wp->w[LIN_V], w->w[LIN_V], sizeof(float) * (size_t)kvd * D);
      for (int j = 0; j < dh * D; j++) wp->w[lin][j] += (float)((sign ? -eps[k] : eps[k]) * dW[j]);
      attn_out(m, wp, s, ids, x, o2[sign]);
    }
    double e2 = 0;
    for (int i = 0; i < T * D; i++) {
      double fd = ((double)op[i] - om[i]) / (2 * eps[k]) - dout[i];
      e2 += fd * fd;
    }
    err[k] = sqrt(e2 / nl);
  }
  memcpy(wp->w[lin], w->w[lin], sizeof(float) * nw);
  aptq_free(x);
  aptq_free(op);
  aptq_free(om);
  aptq_free(X);
  aptq_free(dout);
}

/* What the checks share: the model and its tokens, block 0's weights (w)
 * and a copy to perturb (wp), the scratch, per-sequence buffers and the
 * perturbations' random stream. */
typedef struct {
  Model m;
  TokenShard tok;
  int nseq, T;
  BlockWeights w, wp;
  BlockScratch s;
  float *x, *o, *o2, *X; /* T × D */
  double *dout;          /* T × D */
  Rng rng;
} Golden;

/* The figures the checks print. */
typedef struct {
  double N, e_o, q_o, e_v, e_v_exact, q_v;
  double e_q[2], q_exact, q_rowshared, q_kron, q_lin;
  double e_k[2], k_gn, k_rs, k_kron, k_w_diff, k_w_sum;
  double fd_q[2], fd_k[2];
} Figures;

static const double eps[2] = {1e-2, 5e-3};

/* n random entries as large as W's first n (their rms): E is exactly quadratic in them. */
static float *perturbation(const float *W, int n, Rng *rng) {
  double rms = 0;
  for (int i = 0; i < n; i++) rms += (double)W[i] * W[i];
  rms = sqrt(rms / n);
  float *d = TEST_MALLOC(sizeof(float) * n);
  for (int i = 0; i < n; i++) d[i] = (float)(rms * rng_normal(rng));
  return d;
}

/* E(εΔ) for both ε: the attention output's squared change on sequence ids
 * with projection `lin` (its first dh rows) perturbed by εΔ, against g->o;
 * e[k] += each. */
static void measure_eps(Golden *g, const uint32_t *ids, int lin, const float *delta, double e[2]) {
  const ModelConfig *c = &g->m.cfg;
  int T = g->T, D = c->dim, dh = c->head_dim, qd = c->n_heads * dh, kvd = c->n_kv_heads * dh;
  for (int k = 0; k < 2; k++) {
    memcpy(g->wp.w[LIN_Q], g->w.w[LIN_Q], sizeof(float) * qd * D);
    memcpy(g->wp.w[LIN_V], g->w.w[LIN_V], sizeof(float) * kvd * D);
    memcpy(g->wp.w[LIN_K], g->w.w[LIN_K], sizeof(float) * kvd * D);
    for (int j = 0; j < dh * D; j++) g->wp.w[lin][j] += (float)eps[k] * delta[j];
    embed_tokens(&g->m, ids, T, g->x);
    block_forward_until(c, &g->wp, &g->s, g->x, STOP_O_INPUT);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, D, qd, 1.0f, g->s.z, qd, g->w.w[LIN_O], qd, 0.0f, g->o2, D);
    for (int t = 0; t < T * D; t++) e[k] += ((double)g->o2[t] - g->o[t]) * ((double)g->o2[t] - g->o[t]);
  }
}

/* ½ Σ_g tr(Δ_gᵀ H_out^g Δ_g H_in^g): v_proj's factored form. */
static double v_factored(const VHessian *Hv, const float *dV, int dh, int D) {
  double q_v = 0;
  for (int g = 0; g < Hv->groups; g++) {
    const float *Dg = dV + (size_t)g * dh * D;
    const double *Hin = Hv->in[g].sum, *Hout = Hv->out + (size_t)g * dh * dh;
    double *DH = TEST_CALLOC((size_t)dh * D, sizeof(double)); /* Δ_g H_in */
    for (int a = 0; a < dh; a++)
      for (int k = 0; k < D; k++) {
        double acc = 0;
        for (int l = 0; l < D; l++) acc += Dg[a * D + l] * Hin[(size_t)l * D + k];
        DH[a * D + k] = acc;
      }
    for (int a = 0; a < dh; a++)
      for (int b = 0; b < dh; b++) {
        double acc = 0;
        for (int k = 0; k < D; k++) acc += Dg[a * D + k] * DH[b * D + k];
        q_v += 0.5 * Hout[a * dh + b] * acc;
      }
    aptq_free(DH);
  }
  return q_v;
}

/* o_proj and v_proj: measured E against the GN forms (exact: o is linear in these weights). */
static int check_o_v(Golden *g, Figures *f) {
  const ModelConfig *c = &g->m.cfg;
  int T = g->T, D = c->dim, dh = c->head_dim, qd = c->n_heads * dh, kvd = c->n_kv_heads * dh, hpg = c->n_heads / c->n_kv_heads;
  float *dO = perturbation(g->w.w[LIN_O], D * qd, &g->rng), *dV = perturbation(g->w.w[LIN_V], kvd * D, &g->rng);
  for (int i = 0; i < kvd * D; i++) g->wp.w[LIN_V][i] += dV[i];
  float *z = TEST_MALLOC(sizeof(float) * T * qd), *dz = TEST_MALLOC(sizeof(float) * T * dh), *dov = TEST_MALLOC(sizeof(float) * T * D);
  Hessian Hz;
  VHessian Hv;
  if (hessian_init(&Hz, qd) || vhessian_init(&Hv, c, T, 0)) return 1;
  for (int i = 0; i < g->nseq; i++) {
    const uint32_t *ids = g->tok.ids + (size_t)i * T;
    /* unperturbed attention output */
    embed_tokens(&g->m, ids, T, g->x);
    block_forward_until(c, &g->w, &g->s, g->x, STOP_O_INPUT);
    memcpy(z, g->s.z, sizeof(float) * T * qd);
    memcpy(g->X, g->s.xn, sizeof(float) * T * D);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, D, qd, 1.0f, z, qd, g->w.w[LIN_O], qd, 0.0f, g->o, D);
    hessian_add(&Hz, z, T);
    vhessian_add(&Hv, c, &g->s, g->X);
    /* o_proj: measured E of W_O + ΔO */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, D, qd, 1.0f, z, qd, dO, qd, 0.0f, g->o2, D);
    cblas_saxpy(T * D, 1.0f, g->o, 1, g->o2, 1);
    for (int k = 0; k < T * D; k++) f->e_o += ((double)g->o2[k] - g->o[k]) * ((double)g->o2[k] - g->o[k]);
    /* exact linearisation for v: δo = Σ_h (A^h X Δ_gᵀ) W_O^hᵀ */
    memset(dov, 0, sizeof(float) * T * D);
    for (int h = 0; h < c->n_heads; h++) {
      attention_probs(c, &g->s, h);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1.0f, g->s.att, T, g->X, D, 0.0f, Hv.Y, D);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, dh, D, 1.0f, Hv.Y, D, dV + (size_t)(h / hpg) * dh * D, D, 0.0f, dz, dh);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, D, dh, 1.0f, dz, dh, g->w.w[LIN_O] + (size_t)h * dh, qd, 1.0f, dov, D);
    }
    for (int k = 0; k < T * D; k++) f->e_v_exact += (double)dov[k] * dov[k];
    /* v_proj: measured E by re-running the attention with W_V + ΔV */
    attn_out(&g->m, &g->wp, &g->s, ids, g->x, g->o2);
    for (int k = 0; k < T * D; k++) f->e_v += ((double)g->o2[k] - g->o[k]) * ((double)g->o2[k] - g->o[k]);
  }
  vhessian_set_output(&Hv, g->w.w[LIN_O]);
  if (hessian_finish(&Hz, MPI_COMM_SELF) || vhessian_finish(&Hv, MPI_COMM_SELF)) return 1;
  f->N = (double)Hz.tokens;
  /* o_proj: ½ vec(Δ)ᵀ (H ⊗ I) vec(Δ) = ½ Σ_rows Δ_r H Δ_rᵀ, H = 2/N Σ z zᵀ */
  for (int r = 0; r < D; r++) {
    const float *dr = dO + (size_t)r * qd;
    for (int a = 0; a < qd; a++) {
      double acc = 0;
      for (int b = 0; b < qd; b++) acc += Hz.sum[(size_t)a * qd + b] * dr[b];
      f->q_o += 0.5 * dr[a] * acc;
    }
  }
  f->q_v = v_factored(&Hv, dV, dh, D);
  hessian_free(&Hz);
  vhessian_free(&Hv);
  aptq_free(dO);
  aptq_free(dV);
  aptq_free(z);
  aptq_free(dz);
  aptq_free(dov);
  return 0;
}

/* q_proj, head 0 (dQ): second order, E(εΔ)/ε² → Δᵀ(GN)Δ as ε → 0, measured
 * at ε and ε/2; the row-shared and Kronecker forms; the GN form from N_t
 * against the explicit Jacobian. */
static int check_q(Golden *g, const float *dQ, Figures *f) {
  const ModelConfig *c = &g->m.cfg;
  int T = g->T, D = c->dim, dh = c->head_dim;
  QHessian Hq;
  if (qhessian_init(&Hq, c, T)) return 1;
  qhessian_set_output(&Hq, g->w.w[LIN_O], g->w.q_norm);
  double *uu = TEST_CALLOC((size_t)dh * dh, sizeof(double));
  QDiag qd0 = {dQ, 0, 0, 0, uu};
  for (int i = 0; i < g->nseq; i++) {
    const uint32_t *ids = g->tok.ids + (size_t)i * T;
    attn_out(&g->m, &g->w, &g->s, ids, g->x, g->o);
    qhessian_add(&Hq, c, &g->s, g->s.xn, &qd0);
    memcpy(g->X, g->s.xn, sizeof(float) * T * D);
    f->q_lin += lin_attn(c, &g->s, g->X, dQ, g->w.w[LIN_O], g->w.q_norm, 0, g->dout);
    measure_eps(g, ids, LIN_Q, dQ, f->e_q);
  }
  if (qhessian_finish(&Hq, MPI_COMM_SELF)) return 1;
  for (int k = 0; k < dh * dh; k++) f->q_kron += Hq.out[k] * uu[k]; /* tr(H_out^0 Σ u uᵀ) */
  f->q_exact = qd0.exact;
  f->q_rowshared = qd0.rowshared;
  qhessian_free(&Hq);
  aptq_free(uu);
  return 0;
}

/* k_proj, kv group 0 (dK): second order, and the row-shared and Kronecker
 * forms (s = s' terms) against the exact GN. */
static int check_k(Golden *g, const float *dK, Figures *f) {
  const ModelConfig *c = &g->m.cfg;
  int T = g->T, D = c->dim, dh = c->head_dim;
  KHessian Hk;
  if (khessian_init(&Hk, c, T, 1)) return 1;
  khessian_set_output(&Hk, g->w.w[LIN_O], g->w.k_norm);
  double *wk = TEST_MALLOC(sizeof(double) * T), *wg = TEST_MALLOC(sizeof(double) * T * c->n_kv_heads),
         *uuk = TEST_CALLOC((size_t)dh * dh, sizeof(double));
  for (int i = 0; i < g->nseq; i++) {
    const uint32_t *ids = g->tok.ids + (size_t)i * T;
    attn_out(&g->m, &g->w, &g->s, ids, g->x, g->o);
    memcpy(g->X, g->s.xn, sizeof(float) * T * D);
    khessian_add(&Hk, c, &g->s, g->X, wg);
    f->k_gn += lin_attn(c, &g->s, g->X, dK, g->w.w[LIN_O], g->w.k_norm, 1, g->dout);
    k_weights(c, &g->s, g->w.w[LIN_O], g->w.k_norm, wk);
    for (int t = 0; t < T; t++) {
      f->k_w_diff += fabs(wg[(size_t)t * c->n_kv_heads] - wk[t]);
      f->k_w_sum += wk[t];
    }
    for (int t = 0; t < T; t++) {
      double uu = 0, u[512];
      for (int a = 0; a < dh; a++) {
        double acc = 0;
        for (int l = 0; l < D; l++) acc += (double)dK[a * D + l] * g->X[(size_t)t * D + l];
        u[a] = acc;
        uu += acc * acc;
      }
      for (int a = 0; a < dh; a++)
        for (int b = 0; b < dh; b++) uuk[a * dh + b] += u[a] * u[b];
      f->k_rs += wg[(size_t)t * c->n_kv_heads] * uu;
    }
    measure_eps(g, ids, LIN_K, dK, f->e_k);
  }
  if (khessian_finish(&Hk, MPI_COMM_SELF)) return 1;
  for (int k = 0; k < dh * dh; k++) f->k_kron += Hk.out[k] * uuk[k]; /* tr(H_out^0 Σ u uᵀ), group 0 */
  khessian_free(&Hk);
  aptq_free(wk);
  aptq_free(wg);
  aptq_free(uuk);
  return 0;
}

/* The relaxed forms' figures. */
typedef struct {
  double e_q[2], q_exact, q_kron, e_k[2], k_exact, k_kron, e_v[2], v_form, v_ident;
} RelaxedFigures;

/* (T/2) Σ_t (R_t u_t)ᵀ C (R_t u_t) (rotated = 1) or (T/2) Σ_t u_tᵀ C u_t,
 * u_t = Δ x_t (Δ: dh × D). */
static double relaxed_quad(const ModelConfig *c, const BlockScratch *s, const float *X, const float *dW, const double *C, int rotated) {
  int T = s->T, D = c->dim, dh = c->head_dim;
  double total = 0, u[512];
  for (int t = 0; t < T; t++) {
    for (int a = 0; a < dh; a++) {
      double acc = 0;
      for (int l = 0; l < D; l++) acc += (double)dW[a * D + l] * X[(size_t)t * D + l];
      u[a] = acc;
    }
    if (rotated) rotate_vec(c, s, t, u);
    for (int a = 0; a < dh; a++)
      for (int b = 0; b < dh; b++) total += u[a] * C[a * dh + b] * u[b];
  }
  return total * T / 2;
}

/* The block re-run with projection lin's first dh rows + εΔ: the scratch
 * holds the perturbed q, k, z. */
static void rerun(Golden *g, const uint32_t *ids, int lin, const float *delta, double eps_k) {
  const ModelConfig *c = &g->m.cfg;
  int D = c->dim, dh = c->head_dim, qd = c->n_heads * dh, kvd = c->n_kv_heads * dh;
  memcpy(g->wp.w[LIN_Q], g->w.w[LIN_Q], sizeof(float) * qd * D);
  memcpy(g->wp.w[LIN_V], g->w.w[LIN_V], sizeof(float) * kvd * D);
  memcpy(g->wp.w[LIN_K], g->w.w[LIN_K], sizeof(float) * kvd * D);
  for (int j = 0; j < dh * D; j++) g->wp.w[lin][j] += (float)eps_k * delta[j];
  embed_tokens(&g->m, ids, g->T, g->x);
  block_forward_until(c, &g->wp, &g->s, g->x, STOP_O_INPUT);
}

/* Σ_{h ∈ heads} Σ_{t,s} (a_t^h · b_s)² over all token pairs: A (T × lda,
 * head h at column h·dh), B (T × ldb, one head at column 0). */
static double score_sq(const float *A, int lda, int h0, int nh, const float *B, int ldb, int T, int dh) {
  double total = 0;
  for (int h = h0; h < h0 + nh; h++)
    for (int t = 0; t < T; t++)
      for (int j = 0; j < T; j++) {
        double sc = 0;
        for (int a = 0; a < dh; a++) sc += (double)A[(size_t)t * lda + h * dh + a] * B[(size_t)j * ldb + a];
        total += sc * sc;
      }
  return total;
}

/* The relaxed forms of q_proj (head 0, dQ), k_proj and v_proj (kv group 0,
 * dK, dV), one sequence at a time so that the statistics are the
 * sequence's own (the form pools the covariances over all tokens). */
static int check_relaxed(Golden *g, const float *dQ, const float *dK, RelaxedFigures *f) {
  const ModelConfig *c = &g->m.cfg;
  int T = g->T, D = c->dim, dh = c->head_dim, qd = c->n_heads * dh, kvd = c->n_kv_heads * dh, hpg = c->n_heads / c->n_kv_heads;
  RelaxedQK R;
  VHessian Vr, Vk;
  if (relaxed_init(&R, c, T) || vhessian_init(&Vr, c, T, 1) || vhessian_init(&Vk, c, T, 0)) return 1;
  float *dV = TEST_CALLOC((size_t)kvd * D, sizeof(float)), *dV0 = perturbation(g->w.w[LIN_V], dh * D, &g->rng);
  memcpy(dV, dV0, sizeof(float) * dh * D); /* group 0's rows */
  float *q0 = TEST_MALLOC(sizeof(float) * T * qd), *k0 = TEST_MALLOC(sizeof(float) * T * kvd), *z0 = TEST_MALLOC(sizeof(float) * T * qd);
  float *dq = TEST_MALLOC(sizeof(float) * T * dh);
  double *Cq = TEST_MALLOC(sizeof(double) * dh * dh);
  for (int i = 0; i < g->nseq; i++) {
    const uint32_t *ids = g->tok.ids + (size_t)i * T;
    embed_tokens(&g->m, ids, T, g->x);
    block_forward_until(c, &g->w, &g->s, g->x, STOP_O_INPUT);
    memcpy(g->X, g->s.xn, sizeof(float) * T * D);
    memcpy(q0, g->s.q, sizeof(float) * T * qd);
    memcpy(k0, g->s.k, sizeof(float) * T * kvd);
    memcpy(z0, g->s.z, sizeof(float) * T * qd);
    relaxed_reset(&R);
    vhessian_reset(&Vr);
    vhessian_reset(&Vk);
    relaxed_add(&R, c, &g->s);
    vhessian_add(&Vr, c, &g->s, g->X);
    vhessian_add(&Vk, c, &g->s, g->X);
    vhessian_set_output(&Vr, g->w.w[LIN_O]);
    if (relaxed_finish(&R, c, &g->s, MPI_COMM_SELF) || vhessian_finish(&Vr, MPI_COMM_SELF) || vhessian_finish(&Vk, MPI_COMM_SELF)) return 1;
    /* the forms from the module's statistics */
    f->q_exact += relaxed_quad(c, &g->s, g->X, dQ, R.kk[0].sum, 1);
    f->q_kron += relaxed_quad(c, &g->s, g->X, dQ, R.qout, 0);
    memset(Cq, 0, sizeof(double) * dh * dh);
    for (int h = 0; h < hpg; h++)
      for (int k = 0; k < dh * dh; k++) Cq[k] += R.qq[h].sum[k];
    f->k_exact += relaxed_quad(c, &g->s, g->X, dK, Cq, 1);
    f->k_kron += hpg * relaxed_quad(c, &g->s, g->X, dK, R.kout, 0);
    f->v_form += (double)T * hpg * v_factored(&Vr, dV, dh, D);
    for (int gr = 0; gr < Vr.groups; gr++)
      for (int k = 0; k < D * D; k++) {
        double a = Vk.in[gr].sum[k], b = hpg * Vr.in[gr].sum[k], r = fabs(a - b) / (fabs(a) + 1e-300);
        if (a != 0 && r > f->v_ident) f->v_ident = r;
      }
    /* measured: re-run the block with each perturbation */
    for (int k = 0; k < 2; k++) {
      double e2 = eps[k] * eps[k];
      rerun(g, ids, LIN_Q, dQ, eps[k]);
      for (int t = 0; t < T; t++)
        for (int a = 0; a < dh; a++) dq[t * dh + a] = g->s.q[(size_t)t * qd + a] - q0[(size_t)t * qd + a];
      f->e_q[k] += score_sq(dq, dh, 0, 1, k0, kvd, T, dh) / e2;
      rerun(g, ids, LIN_K, dK, eps[k]);
      for (int t = 0; t < T; t++)
        for (int a = 0; a < dh; a++) dq[t * dh + a] = g->s.k[(size_t)t * kvd + a] - k0[(size_t)t * kvd + a];
      f->e_k[k] += score_sq(q0, qd, 0, hpg, dq, dh, T, dh) / e2;
      rerun(g, ids, LIN_V, dV0, eps[k]);
      double ez = 0;
      for (int t = 0; t < T; t++)
        for (int a = 0; a < hpg * dh; a++) {
          double d = (double)g->s.z[(size_t)t * qd + a] - z0[(size_t)t * qd + a];
          ez += d * d;
        }
      f->e_v[k] += ez / e2;
    }
  }
  relaxed_free(&R);
  vhessian_free(&Vr);
  vhessian_free(&Vk);
  aptq_free(dV);
  aptq_free(dV0);
  aptq_free(q0);
  aptq_free(k0);
  aptq_free(z0);
  aptq_free(dq);
  aptq_free(Cq);
  return 0;
}

/* The relaxed lines: 1 when all passed. */
static int print_relaxed(const RelaxedFigures *f) {
  double q1 = f->e_q[0] / f->q_exact, q2 = f->e_q[1] / f->q_exact, k1 = f->e_k[0] / f->k_exact, k2 = f->e_k[1] / f->k_exact;
  double v1 = f->e_v[0] / f->v_form, v2 = f->e_v[1] / f->v_form;
  int ok_q = fabs(q1 - 1) < 1e-3 && fabs(q2 - 1) < 1e-3, ok_k = fabs(k1 - 1) < 1e-3 && fabs(k2 - 1) < 1e-3;
  int ok_v = fabs(v1 - 1) < 1e-3 && fabs(v2 - 1) < 1e-3, ok_id = f->v_ident < 1e-12;
  printf("relaxed q_proj head 0: measured score error / relaxed form at eps %.0e: %.5f, at eps %.0e: %.5f (linear: 1)  %s\n", eps[0], q1,
         eps[1], q2, ok_q ? "PASSED" : "FAILED");
  printf("relaxed q_proj head 0: Kronecker (rotations averaged) / relaxed form = %.4f\n", f->q_kron / f->q_exact);
  printf("relaxed k_proj group 0: measured score error / relaxed form at eps %.0e: %.5f, at eps %.0e: %.5f (linear: 1)  %s\n", eps[0], k1,
         eps[1], k2, ok_k ? "PASSED" : "FAILED");
  printf("relaxed k_proj group 0: Kronecker (rotations averaged) / relaxed form = %.4f\n", f->k_kron / f->k_exact);
  printf("relaxed v_proj group 0: measured head-output error / relaxed form at eps %.0e: %.5f, at eps %.0e: %.5f (linear: 1)  %s\n", eps[0],
         v1, eps[1], v2, ok_v ? "PASSED" : "FAILED");
  printf("relaxed v_proj: input factor x heads per group = Kronecker form's input factor, max rel diff %.1e  %s\n", f->v_ident,
         ok_id ? "PASSED" : "FAILED");
  return ok_q && ok_k && ok_v && ok_id;
}

static int golden_open(Golden *g, const char *model, const char *tokens) {
  if (model_open(model, &g->m) || tokens_load(tokens, "tokens", g->T, g->nseq, g->m.cfg.vocab_size, MPI_COMM_SELF, &g->tok)) return 1;
  const ModelConfig *c = &g->m.cfg;
  if (block_weights_alloc(c, &g->w) || block_weights_alloc(c, &g->wp) || block_weights_load(&g->m, 0, &g->w) ||
      block_weights_load(&g->m, 0, &g->wp) || scratch_alloc(c, g->T, &g->s))
    return 1;
  size_t TD = (size_t)g->T * c->dim;
  g->x = TEST_MALLOC(sizeof(float) * TD);
  g->o = TEST_MALLOC(sizeof(float) * TD);
  g->o2 = TEST_MALLOC(sizeof(float) * TD);
  g->X = TEST_MALLOC(sizeof(float) * TD);
  g->dout = TEST_MALLOC(sizeof(double) * TD);
  g->rng = (Rng){2024};
  return 0;
}

/* The o_proj and v_proj lines: 1 when all passed. */
static int print_o_v(const Golden *g, const Figures *f, const char *model, double ratio_min, double ratio_max) {
  const ModelConfig *c = &g->m.cfg;
  double N = f->N, ratio = f->q_v / (f->e_v_exact / N);
  int ok_o = rel(f->e_o / N, f->q_o) < 1e-6, ok_v = rel(f->e_v, f->e_v_exact) < 1e-6, ok_ratio = ratio >= ratio_min && ratio <= ratio_max;
  printf("golden %s block 0, %d x %d tokens, %d heads / %d kv heads\n", model, g->nseq, g->T, c->n_heads, c->n_kv_heads);
  printf("o_proj: measured %.9e  GN quadratic %.9e  rel diff %.2e  %s\n", f->e_o / N, f->q_o, rel(f->e_o / N, f->q_o),
         ok_o ? "PASSED" : "FAILED");
  printf("v_proj: measured %.9e  exact GN %.9e  rel diff %.2e  %s\n", f->e_v / N, f->e_v_exact / N, rel(f->e_v, f->e_v_exact),
         ok_v ? "PASSED" : "FAILED");
  printf("v_proj: Kronecker form / exact = %.4f (bounds [%g, %g])  %s\n", ratio, ratio_min, ratio_max, ok_ratio ? "PASSED" : "FAILED");
  return ok_o && ok_v && ok_ratio;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  if (argc < 5) {
    fprintf(stderr, "usage: test_golden MODEL TOKENS NSEQ SEQLEN [RATIO_MIN RATIO_MAX]\n");
    return 2;
  }
  Golden g = {.nseq = atoi(argv[3]), .T = atoi(argv[4])};
  double ratio_min = argc > 6 ? atof(argv[5]) : 0.0, ratio_max = argc > 6 ? atof(argv[6]) : INFINITY;
  if (golden_open(&g, argv[1], argv[2])) {
    fprintf(stderr, "%s\n", aptq_error_message());
    return 1;
  }
  const ModelConfig *c = &g.m.cfg;
  int D = c->dim, dh = c->head_dim;
  Figures f = {0};
  if (check_o_v(&g, &f)) return 1;
  float *dQ = perturbation(g.w.w[LIN_Q], dh * D, &g.rng);
  if (check_q(&g, dQ, &f)) return 1;
  float *dK = perturbation(g.w.w[LIN_K], dh * D, &g.rng);
  if (check_k(&g, dK, &f)) return 1;
  /* finite differences of the Jacobian itself, first sequence */
  fd_check(&g.m, &g.w, &g.wp, &g.s, g.tok.ids, dQ, 0, f.fd_q);
  fd_check(&g.m, &g.w, &g.wp, &g.s, g.tok.ids, dK, 1, f.fd_k);
  /* the relaxed forms leave out Qwen3's q/k norms (quantize refuses them there) */
  RelaxedFigures rf = {0};
  if (!c->qk_norm && check_relaxed(&g, dQ, dK, &rf)) return 1;

  double N = f.N, r1 = f.e_q[0] / (eps[0] * eps[0]) / f.q_exact, r2 = f.e_q[1] / (eps[1] * eps[1]) / f.q_exact;
  double rs_ratio = f.q_rowshared / f.q_exact, kron_ratio = f.q_kron / f.q_exact;
  int ok_q = fabs(r2 - 1) < 0.05 && fabs(r2 - 1) <= fabs(r1 - 1) + 1e-3;
  double k1 = f.e_k[0] / (eps[0] * eps[0]) / f.k_gn, k2 = f.e_k[1] / (eps[1] * eps[1]) / f.k_gn, k_rs_ratio = f.k_rs / f.k_gn;
  /* truncation O(ε²) until float32 round-off (~1e-4 here) takes over; the
     missing or wrong term of a Jacobian shows as a constant error */
  int ok_fdq = f.fd_q[0] < 2e-3 && f.fd_q[1] < 2e-3, ok_fdk = f.fd_k[0] < 2e-3 && f.fd_k[1] < 2e-3, ok_fd = ok_fdq && ok_fdk;
  int ok_qlin = rel(f.q_lin, f.q_exact) < 1e-4;
  int ok_k = fabs(k2 - 1) < 0.05 && fabs(k2 - 1) <= fabs(k1 - 1) + 1e-3;
  int ok_kw = f.k_w_diff / f.k_w_sum < 1e-4;

  int ok_ov = print_o_v(&g, &f, argv[1], ratio_min, ratio_max);
  printf("q_proj head 0: measured/GN at eps %.0e: %.4f, at eps %.0e: %.4f (-> 1 at second order)  %s\n", eps[0], r1, eps[1], r2,
         ok_q ? "PASSED" : "FAILED");
  printf("q_proj head 0: row-shared / exact GN = %.4f, Kronecker / exact GN = %.4f\n", rs_ratio, kron_ratio);
  printf("k_proj group 0: measured/GN at eps %.0e: %.4f, at eps %.0e: %.4f (-> 1 at second order)  %s\n", eps[0], k1, eps[1], k2,
         ok_k ? "PASSED" : "FAILED");
  printf("k_proj group 0: row-shared (s = s' terms) / exact GN = %.4f, Kronecker (s = s' terms) / exact GN = %.4f\n", k_rs_ratio,
         f.k_kron / f.k_gn);
  printf("k_proj group 0: row-shared weights (attn_hessian.c) vs from the explicit Jacobian: rel diff %.1e (< 1e-4)  %s\n",
         f.k_w_diff / f.k_w_sum, ok_kw ? "PASSED" : "FAILED");
  printf("q_proj head 0: GN form from N_t (attn_hessian.c) / from the explicit Jacobian = %.7f  %s\n", f.q_exact / f.q_lin,
         ok_qlin ? "PASSED" : "FAILED");
  printf("fd q_proj head 0: central difference vs Jacobian, rel error at eps %.0e: %.1e, at eps %.0e: %.1e (< 2e-3)  %s\n", eps[0],
         f.fd_q[0], eps[1], f.fd_q[1], ok_fdq ? "PASSED" : "FAILED");
  printf("fd k_proj group 0: central difference vs Jacobian, rel error at eps %.0e: %.1e, at eps %.0e: %.1e (< 2e-3)  %s\n", eps[0],
         f.fd_k[0], eps[1], f.fd_k[1], ok_fdk ? "PASSED" : "FAILED");
  int ok_relaxed = c->qk_norm || print_relaxed(&rf);
  aptq_free(dQ);
  aptq_free(dK);
  MPI_Finalize();
  return ok_ov && ok_q && ok_k && ok_kw && ok_fd && ok_qlin && ok_relaxed ? 0 : 1;
}
