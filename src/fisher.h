/* Loss-level sensitivity of every linear layer (docs/mixed.md): the mean
 * diagonal of the Gauss-Newton (Fisher) Hessian of the model's cross-entropy
 * with respect to the layer's weights,
 *     s_l = tr(G_l) / (N · n_l),   G_l = Σ_t J_tᵀ (diag p_t − p_t p_tᵀ) J_t,
 * J_t the Jacobian of token t's logits, p_t the model's next-token
 * distribution, N the tokens and n_l the layer's parameters. One unit for
 * every layer, wherever it sits: an error's propagation through the later
 * blocks to the output is part of it.
 *
 * Estimated by Hutchinson probes that need forward passes only: for a weight
 * perturbation Δ with independent N(0, σ²) entries the logits move by δ_t,
 * and E[Σ_t δ_tᵀ (diag p_t − p_t p_tᵀ) δ_t] = σ² tr(G) to second order in σ
 * (δ_tᵀ(diag p − ppᵀ)δ_t is the variance of δ_t under p_t: no labels, no
 * backward pass). σ = FISHER_ALPHA · rms(W_l). Their cost grows as the
 * square of the depth: each block's probes run through every later block.
 *
 * fisher_method = backward (fisher_backward.h): the same trace, with the
 * same normalisation, from squared weight gradients of the loss at labels
 * drawn from p_t: one forward and one backward per sequence, linear in
 * depth. */
#ifndef APTQ_FISHER_H
#define APTQ_FISHER_H

#include <mpi.h>

#include "model.h"
#include "options.h"
#include "tokens.h"

/* relative probe size; the estimate's second-order error is O(alpha) */
#define FISHER_ALPHA 0.01

/* Which calibration sequences the estimate uses: fisher_nseq of them, evenly
 * spaced over the whole set (so that every rank's shard holds its share). */
int fisher_selected(int nseq, int fisher_nseq, int global_index);

/* Collective. sens[l·LIN_COUNT + k] (and stderr_out, the standard error over
 * the sequences; may be NULL) for every linear layer of the full-precision
 * model. Bit-identical for any rank count. */
int fisher_sensitivities(const Options *o, const Model *m, const TokenShard *calib, double *sens, double *stderr_out, MPI_Comm comm);

/* Bytes per rank the estimate holds at once (for the memory plan). */
double fisher_memory(const Options *o, const ModelConfig *c, int local_selected);

#endif
