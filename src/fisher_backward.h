/* The Fisher sensitivities by backward passes (fisher_method = backward;
 * fisher.h, docs/mixed.md). For labels y_t drawn from the model's own
 * p_t, the gradient of L = Σ_t −log p_t(y_t) with respect to a layer's
 * weights is g = Σ_t J_tᵀ (p_t − e_{y_t}); E[(p − e_y)(p − e_y)ᵀ] = diag p − p pᵀ
 * and the positions' labels are independent with mean-zero terms, so
 *     E‖g‖² = Σ_t tr(J_tᵀ (diag p_t − p_t p_tᵀ) J_t) = tr(G),
 * the same trace the probes estimate, exactly (no second-order term). One
 * forward and, per label set (fisher_probes of them), one backward per
 * sequence give every layer's value: the cost is linear in depth. */
#ifndef APTQ_FISHER_BACKWARD_H
#define APTQ_FISHER_BACKWARD_H

#include <mpi.h>

#include "model.h"
#include "options.h"
#include "tokens.h"

/* Collective. sel[0..ns): this rank's selected sequences (indices into
 * calib), gsel[i] their places among all nsel selected ones. value
 * [(l·LIN_COUNT + k)·nsel + gsel[i]] += Σ over the fisher_probes label sets
 * of ‖∂L/∂W‖² of layer (l, k) on sequence i. Results do not depend on the
 * rank holding a sequence. */
int fisher_backward_values(const Options *o, const Model *m, const TokenShard *calib, const int *sel, const int *gsel, int ns, int nsel,
                           double *value, MPI_Comm comm);

/* Bytes per rank the estimate holds at once, for local_selected sequences
 * (the memory plan). */
double fisher_backward_memory(const Options *o, const ModelConfig *c, int local_selected);

#endif
