#include "attn_hessian.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

int vhessian_init(VHessian *v, const ModelConfig *c, int T) {
  memset(v, 0, sizeof *v);
  v->d = c->dim;
  v->dh = c->head_dim;
  v->groups = c->n_kv_heads;
  v->heads_per_group = c->n_heads / c->n_kv_heads;
  v->T = T;
  v->in = aptq_calloc((size_t)v->groups, sizeof *v->in, "v_proj input factors");
  v->out = aptq_calloc((size_t)v->groups * v->dh * v->dh, sizeof(double), "v_proj output factors");
  v->Y = aptq_malloc(sizeof(float) * (size_t)T * v->d, "attention-mixed inputs");
  if (!v->in || !v->out || !v->Y) return APTQ_ERR;
  for (int g = 0; g < v->groups; g++) CHECK(hessian_init(&v->in[g], v->d));
  return 0;
}

void vhessian_free(VHessian *v) {
  for (int g = 0; v->in && g < v->groups; g++) hessian_free(&v->in[g]);
  free(v->in);
  free(v->out);
  free(v->Y);
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
  for (int g = 0; g < v->groups; g++) {
    double *out = v->out + (size_t)g * dh * dh;
    for (int k = 0; k < v->heads_per_group; k++) {
      int h = g * v->heads_per_group + k;
      /* W_O^h is columns h·dh .. h·dh+dh-1 of W_O: (W_O^hᵀ W_O^h)_ab = Σ_i Wo[i][h dh + a] Wo[i][h dh + b] */
      for (int i = 0; i < d; i++) {
        const float *row = Wo + (size_t)i * ld + (size_t)h * dh;
        for (int a = 0; a < dh; a++)
          for (int b = 0; b < dh; b++) out[a * dh + b] += (double)row[a] * row[b];
      }
    }
    for (int a = 0; a < dh * dh; a++) out[a] /= v->heads_per_group;
  }
}

int vhessian_finish(VHessian *v, MPI_Comm comm) {
  for (int g = 0; g < v->groups; g++) {
    /* per head the tokens were counted once; the factor is a sum over the group's heads, normalised per token */
    v->in[g].tokens /= v->heads_per_group;
    CHECK(hessian_finish(&v->in[g], comm));
  }
  return 0;
}
