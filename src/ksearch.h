/* grid_search = llama | hessian for the K-quant grids with mins (grid =
 * q4_k | q5_k | q2_k, quant_kgrid_mins): each super-block's sub-block scales
 * and mins chosen as llama.cpp's quantizer chooses them (ggml-quants.c of
 * the node-llama-cpp 3.21.1 bundle, docs/gguf.md), instead of GPTQ's
 * min/max range:
 *   llama:   quantize_row_q4_K_ref / q5_K_ref / q2_K_ref (no importance
 *            matrix): make_qkx2_quants per sub-block (Q4_K: weights
 *            av_x + |x|, av_x the sub-block's rms, 15 levels, rmin -1,
 *            rdelta 0.1, 20 steps; Q5_K: 31 levels, -0.5, 0.1, 15; Q2_K:
 *            weights |x|, 3 levels, -0.5, 0.1, 15, absolute error), then
 *            d = fp16(max scale / kmax), sc = nearest_int(kmax / max scale
 *            * scale) (the same for the mins);
 *   hessian: quantize_row_q4_K_impl / q5_K_impl / q2_K_impl with
 *            quant_weights = qw (our Hessian's diagonal, the imatrix):
 *            weights qw_j * sqrt(sigma2 + x_j^2) (sigma2 = 2 Σx²/256 for
 *            Q4_K/Q5_K, Σx²/256 for Q2_K), make_qkx3_quants (rmin -0.9,
 *            rdelta 0.05, 36 steps, squared error), then d and sc from
 *            make_qp_quants weighted by each sub-block's weight sum.
 * Where ours differs, on purpose: sc is at least 1 (aptq's scales are
 * positive; llama.cpp may store sc 0), and a sub-block whose search gives
 * scale 0 (all its values equal) takes GPTQ's min/max scale and min. */
#ifndef APTQ_KSEARCH_H
#define APTQ_KSEARCH_H

enum { KSEARCH_NONE = 0, KSEARCH_LLAMA = 1, KSEARCH_HESSIAN = 2 };

/* Process-wide, set once per run (grid_search; 0 = none: min/max). */
void ksearch_set(int mode);
int ksearch_mode(void);

/* One super-block: its n values x (n <= 256; sub-blocks of sub = 32 or
 * 16 columns, the last one possibly shorter), bits 4 | 5 | 2, kmax 63 | 15
 * (the scales' and mins' largest integer); qw: n importance weights
 * (hessian) or NULL (llama). Out, for the ceil(n / sub) sub-blocks:
 * scales = d * sc (sc in [1, kmax]), mins = dmin * m (m in [0, kmax]), d
 * and dmin fp16 values: already on the grid (quant_kgrid_row_mins is not
 * applied after it). Local. */
void ksearch_superblock(const float *x, const float *qw, int n, int sub, int bits, int kmax, float *scales, float *mins);

#endif
