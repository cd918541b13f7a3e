/* Shrinkage of APTQ's attention-aware Hessian factors toward GPTQ's
 * (aptq_shrink = λ, docs/aptq.md#shrinkage-toward-gptq). The factors are
 * weighted sums over few effective tokens (attention weights concentrate
 * them), so they are noisy estimates; the classical cure is a convex
 * combination with a low-variance target (Ledoit and Wolf), here GPTQ's
 * factor for the same layer: the layer-input Hessian H_x for an input
 * factor, the identity for an output factor. Both are combined after
 * normalising to unit mean diagonal (the solve is invariant to a factor's
 * scale), and the result is given the interpolated mean diagonal, so that
 * λ = 0 and λ = 1 return the form's and the target's matrix bit for bit.
 * Serial, no MPI: every rank applies them to the same reduced matrices. */
#ifndef APTQ_SHRINK_H
#define APTQ_SHRINK_H

/* H (n × n) ← a·H + b·X with m_H, m_X the mean diagonals,
 * m = (1 − λ)·m_H + λ·m_X, a = (1 − λ)·m/m_H, b = λ·m/m_X
 * (= m · ((1 − λ)·H/m_H + λ·X/m_X); a term whose mean diagonal is not
 * positive gets weight 0). H is left alone at λ = 0. */
void shrink_toward(double *H, const double *X, int n, double lambda);
/* H (n × n) ← (1 − λ)·H + λ·m_H·I: toward the identity at H's own mean
 * diagonal (which is kept). H is left alone at λ = 0. */
void shrink_to_identity(double *H, int n, double lambda);

#endif
