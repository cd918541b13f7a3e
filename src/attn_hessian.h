/* Attention-aware Hessian factors (docs/aptq.md). v_proj, per kv group g:
 * H_in^g = Σ_{h∈g} Σ_t y_t^h y_t^hᵀ with Y^h = A^h X (attention-mixed block
 * inputs) and H_out^g = mean_{h∈g} W_O^hᵀ W_O^h. Sums are unnormalised and
 * reduced across ranks like the GPTQ Hessians. */
#ifndef APTQ_ATTN_HESSIAN_H
#define APTQ_ATTN_HESSIAN_H

#include <mpi.h>
#include <stdint.h>

#include "forward.h"
#include "hessian.h"

typedef struct {
  int d, dh, groups, heads_per_group;
  Hessian *in;      /* [groups], d × d */
  double *out;      /* groups × dh × dh */
  float *Y;         /* T × d scratch: A^h X */
  int T;
} VHessian;

int vhessian_init(VHessian *v, const ModelConfig *c, int T);
void vhessian_free(VHessian *v);
void vhessian_reset(VHessian *v);
/* One sequence: s holds q, k (post-RoPE) from block_forward_until(STOP_O_INPUT)
 * or later; X is the q/k/v input (s->xn). Recomputes each head's attention. */
void vhessian_add(VHessian *v, const ModelConfig *c, BlockScratch *s, const float *X);
/* Output factors from W_O (d × n_heads·dh, row-major). */
void vhessian_set_output(VHessian *v, const float *Wo);
/* Collective: reduce the input factors, scale by 2/N. */
int vhessian_finish(VHessian *v, MPI_Comm comm);

#endif
