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
/* The same for grid = q3_k | q6_k (ksearch_sym_superblock; 0 = none:
 * GPTQ's symmetric min/max scales on d * sc, quant_kgrid_row). */
void ksearch_set_sym(int mode);
int ksearch_sym_mode(void);

/* One super-block: its n values x (n <= 256; sub-blocks of sub = 32 or
 * 16 columns, the last one possibly shorter), bits 4 | 5 | 2, kmax 63 | 15
 * (the scales' and mins' largest integer); qw: n importance weights
 * (hessian) or NULL (llama). Out, for the ceil(n / sub) sub-blocks:
 * scales = d * sc (sc in [1, kmax]), mins = dmin * m (m in [0, kmax]), d
 * and dmin fp16 values: already on the grid (quant_kgrid_row_mins is not
 * applied after it). Local. */
void ksearch_superblock(const float *x, const float *qw, int n, int sub, int bits, int kmax, float *scales, float *mins);

/* grid_search = llama | hessian for the symmetric K-quants (grid = q3_k |
 * q6_k, quant_kgrid): one super-block's n <= 256 values x (sub-blocks of
 * 16; a short one treated as llama.cpp's zero padding), bits 3 | 6; qw: n
 * importance weights (hessian) or NULL (llama). Out, for the ceil(n / 16)
 * sub-blocks, the scales d * sc as llama.cpp chooses them:
 *   llama:   quantize_row_q3_K_ref (make_q3_quants, weights x^2) and
 *            quantize_row_q6_K_ref (make_qx_quants rmse_type 1, weights
 *            x^2); d = fp16(max_scale / -32) (-128), max_scale the signed
 *            scale of largest magnitude, sc = nearest_int(-32 / max_scale *
 *            scale) in [-32, 31] ([-128, 127]);
 *   hessian: quantize_row_q3_K_impl (weights qw_j * sqrt(sigma2 + x_j^2),
 *            sigma2 = 2 Σx²/256, make_qx_quants; d and sc from
 *            make_qx_quants(16, 32, scales, sw) weighted by the sub-blocks'
 *            weight sums) and quantize_row_q6_K_impl (make_qx_quants with
 *            weights qw itself; d and sc as the ref path).
 * So scales may be negative: aptq's value scale * (code - zero) is ggml's
 * d * sc * (q - zero). Where ours differs, on purpose: llama.cpp's sc = 0
 * (value 0) becomes sc = +-1 (the side of the searched scale), and d = 0
 * (an all-zero super-block) the smallest fp16 subnormal. Local. */
void ksearch_sym_superblock(const float *x, const float *qw, int n, int bits, float *scales);

#endif
