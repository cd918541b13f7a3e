/* Attention-aware Hessian factors (docs/aptq.md). v_proj, per kv group g:
 * H_in^g = Σ_{h∈g} Σ_t y_t^h y_t^hᵀ with Y^h = A^h X (attention-mixed block
 * inputs) and H_out^g = mean_{h∈g} W_O^hᵀ W_O^h. Sums are unnormalised and
 * reduced across ranks like the GPTQ Hessians.
 * Relaxed (BoA/aespa) v_proj (v_form = relaxed): the value objective of
 * aespa Eq. (17), ‖ΔW_V X Aᵀ‖²_F, reconstructing each head's attention
 * output before W_O: H_in^g = mean_{h∈g} 2/N Σ_t y_t^h y_t^hᵀ (the released
 * code's mean over the heads that share a kv head) and H_out^g = I, i.e.
 * one d × d Hessian for the rows of each kv head. */
#ifndef APTQ_ATTN_HESSIAN_H
#define APTQ_ATTN_HESSIAN_H

#include <mpi.h>
#include <stdint.h>

#include "forward.h"
#include "hessian.h"

typedef struct {
  int d, dh, groups, heads_per_group, relaxed;
  Hessian *in;  /* [groups], d × d */
  float *chunk; /* the groups' one float32 scratch (hessian_init_borrow) */
  double *out;  /* groups × dh × dh */
  float *Y;     /* T × d scratch: A^h X */
  int T;
} VHessian;

/* relaxed: v_form = relaxed (above): the input factors become the mean over
 * a group's heads and vhessian_set_output sets H_out = I. */
int vhessian_init(VHessian *v, const ModelConfig *c, int T, int relaxed);
void vhessian_free(VHessian *v);
void vhessian_reset(VHessian *v);
/* One sequence: s holds q, k (post-RoPE) from block_forward_until(STOP_O_INPUT)
 * or later; X is the q/k/v input (s->xn). Recomputes each head's attention. */
void vhessian_add(VHessian *v, const ModelConfig *c, BlockScratch *s, const float *X);
/* Output factors from W_O (d × n_heads·dh, row-major). */
void vhessian_set_output(VHessian *v, const float *Wo);
/* Collective: reduce the input factors, scale by 2/N. */
int vhessian_finish(VHessian *v, MPI_Comm comm);

/* q_proj (docs/aptq.md): δo_t = G_t^h Δ_h x_t with
 * G_t^h = W_O^h N_t^h R_t / √dh, N_t^h = Σ_s A_ts v_s (k_s − k̄_t)ᵀ.
 * Accumulates, per sequence and head, M_t^h = N_tᵀ P_h N_t (P_h = W_O^hᵀ W_O^h),
 * in float32 with BLAS (N_tᵀ P for all tokens in one GEMM):
 *  - row-shared: w_t = Σ_h tr(M_t^h)/dh², in = Σ_t w_t x_t x_tᵀ (one d × d);
 *  - Kronecker: out_h = Σ_t R_tᵀ M_t^h R_t / dh (pre-RoPE coordinates),
 *    the input factor being the plain Σ_t x_t x_tᵀ (K-FAC).
 * Cost per head: T²·dh² for N_t (the attention with dh² values). */
typedef struct {
  int d, dh, heads, hpg, T;
  Hessian in;  /* row-shared input factor */
  double *out; /* heads × dh × dh, summed over tokens */
  double *seq; /* the same for the current sequence (see qhessian_add) */
  int64_t tokens;
  float *P;                     /* heads × dh × dh */
  float *VK, *NT, *KB, *Xw, *w; /* scratch */
  float *Y, *Mf;                /* scratch: N_tᵀ P for all tokens (T × dh²), one M_t (dh²) */
  double *M;                    /* scratch: one M_t in float64 (dh²) */
  const float *norm;            /* q_norm's weight (dh, the caller's) or NULL: see qhessian_set_output */
  double *nw;                   /* scratch: 3·dh for the norm's Jacobian */
} QHessian;

int qhessian_init(QHessian *q, const ModelConfig *c, int T);
void qhessian_free(QHessian *q);
void qhessian_reset(QHessian *q);
/* Output factors from W_O; norm: Qwen3's q_norm weight (dh) or NULL.
 * With a norm, q_t = R_t n(u_t), u_t = W_Q^h x_t (s->qpre), so
 * δq_t = R_t J_n(u_t) Δ x_t with the RMSNorm Jacobian
 * J_n(u) = diag(g)/r (I − u uᵀ/(dh r²)), r = sqrt(mean(u²) + eps): every
 * M_t above becomes J_nᵀ R_tᵀ M_t R_t J_n and the row-shared weight its
 * trace / dh² (pre-norm coordinates). norm must stay valid while adding. */
void qhessian_set_output(QHessian *q, const float *Wo, const float *norm);
/* Golden-check diagnostics for a perturbation delta (dh × d) of one head's
 * rows of W_Q, accumulated over tokens: the exact Gauss–Newton form
 * Σ_t u_tᵀ G_tᵀG_t u_t (u_t = Δ x_t), the row-shared form
 * Σ_t tr(G_tᵀG_t)/dh · |u_t|², and Σ_t u_t u_tᵀ for the Kronecker form. */
typedef struct {
  const float *delta;
  int head;
  double exact, rowshared;
  double *uu; /* dh × dh */
} QDiag;

/* s: after block_forward_until(STOP_O_INPUT); X = s->xn; diag optional. */
void qhessian_add(QHessian *q, const ModelConfig *c, BlockScratch *s, const float *X, QDiag *diag);
/* Collective: in scaled by 2/N (row-shared); out averaged over tokens (mean G_tᵀG_t). */
int qhessian_finish(QHessian *q, MPI_Comm comm);

/* k_proj (docs/aptq.md): δo_t = Σ_{h∈g} Σ_s M_ts Δ_g x_s with
 * M_ts = A_ts W_O^h (v_s − z_t) q_tᵀ R_s/√dh. Keeping the s = s' terms,
 * Σ_t M_tsᵀ M_ts = R_sᵀ (Σ_t A_ts² c_ts q_t q_tᵀ) R_s / dh with the scalar
 * c_ts = (v_s − z_t)ᵀ P_h (v_s − z_t). Row-shared weight of token s:
 * w_s = Σ_h Σ_t A_ts² c_ts |q_t|² / dh², at the attention's cost (T²·dh per
 * head); in = Σ_s w_s x_s x_sᵀ. If wg (T × kv groups) is given, each
 * group's own weights are written there too (golden check). */
typedef struct {
  int d, dh, heads, hpg, T, kron;
  Hessian in;
  double *out;            /* kron: kv groups × dh × dh, Σ_s Σ_{h∈g} B_s^h */
  double *seq;            /* kron: the same for the current sequence */
  float *P;               /* heads × dh × dh */
  float *VP, *C, *Xw, *w; /* scratch */
  double *ws, *avec, *M;  /* scratch: token weights and v_jᵀ P v_j (T each), one B_s (dh²) */
  float *QQ, *CS;         /* kron or k norm scratch: q_t q_tᵀ and C_s, T × dh² each */
  const float *norm;      /* k_norm's weight (dh, the caller's) or NULL */
  double *nw;             /* scratch: 3·dh */
  int64_t tokens;
} KHessian;

/* kron: also the Kronecker output factors (K-FAC, input factor = the layer
 * inputs' Hessian): out_g = mean_s Σ_{h∈g} B_s^h with
 * B_s^h = R_sᵀ (Σ_t A_ts² c_ts q_t q_tᵀ) R_s / dh, pre-RoPE coordinates;
 * T²·dh² per head (one GEMM (A∘A∘C)ᵀ [q_t q_tᵀ]), like q_proj's N_t. */
int khessian_init(KHessian *k, const ModelConfig *c, int T, int kron);
void khessian_free(KHessian *k);
void khessian_reset(KHessian *k);
/* norm: Qwen3's k_norm weight (dh) or NULL. With a norm every B_s^h becomes
 * J_n(u_s)ᵀ B_s^h J_n(u_s) (u_s the group's pre-norm k, s->kpre; J_n as
 * for q) and the row-shared weight w_s = Σ_h tr(that)/dh²: J_n is not
 * orthogonal, so w_s needs the B_s (T²·dh² per head, the Kronecker form's
 * cost) and they are formed for either form. */
void khessian_set_output(KHessian *k, const float *Wo, const float *norm);
void khessian_add(KHessian *k, const ModelConfig *c, BlockScratch *s, const float *X, double *wg);
/* Collective: in scaled by 2/N; out (kron) averaged over tokens. */
int khessian_finish(KHessian *k, MPI_Comm comm);

/* The relaxed (BoA/aespa) q_proj and k_proj forms (q_form, k_form =
 * relaxed; docs/aptq.md): the softmax Jacobian is dropped and the error of
 * the pre-softmax scores S = Q Kᵀ bounded instead (aespa Eqs. (21), (22);
 * BoA's relaxed Hessian), so that H = H_in ⊗ H_out with H_in the layer
 * inputs' 2/N Σ x xᵀ and
 *   q_proj head h:    H_out = mean_l R_lᵀ C_K^{g(h)} R_l,
 *   k_proj kv head g: H_out = mean_l R_lᵀ (mean_{h∈g} C_Q^h) R_l,
 * C_K^g = 2/N Σ_s k_s k_sᵀ and C_Q^h = 2/N Σ_t q_t q_tᵀ the covariances of
 * the post-RoPE keys and queries over all tokens, R_l the RoPE rotation of
 * position l, the mean over the positions 0..T−1 of a sequence (as the
 * released code, SamsungLabs/aespa quantize.py and SamsungLabs/TurboBoA
 * quantize.py, compute_Hessian). Cost: T·dh² per head, like q kᵀ. */
typedef struct {
  int dh, heads, groups, hpg, T;
  Hessian *kk;  /* [groups]: Σ k kᵀ (dh × dh); 2/N-scaled after finish */
  Hessian *qq;  /* [heads]: Σ q qᵀ */
  float *buf;   /* T × dh: one head's vectors, contiguous */
  double *qout; /* heads × dh²: q_proj's output factors (after finish) */
  double *kout; /* groups × dh²: k_proj's */
  double *M;    /* 2·dh² scratch */
} RelaxedQK;

int relaxed_init(RelaxedQK *r, const ModelConfig *c, int T);
void relaxed_free(RelaxedQK *r);
void relaxed_reset(RelaxedQK *r);
/* One sequence: s after block_forward_until(STOP_O_INPUT) or later (q, k
 * post-RoPE). */
void relaxed_add(RelaxedQK *r, const ModelConfig *c, const BlockScratch *s);
/* Collective: the covariances reduced and scaled by 2/N, then the output
 * factors (un-rotated with s's RoPE tables of T positions). */
int relaxed_finish(RelaxedQK *r, const ModelConfig *c, const BlockScratch *s, MPI_Comm comm);

#endif
