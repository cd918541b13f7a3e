/* The GPTQ column-sequential solver with lazy block updates, semantics of the
 * IST-DASLab reference (gptq.py fasterquant, quant.py): dead columns, damping,
 * act-order, groups (dynamic or static), symmetric or asymmetric grid, the
 * optional MSE clipping search. Rows are independent given the factor, so a
 * caller solves any slab of rows; the slabs of all ranks make the layer. */
#ifndef APTQ_GPTQ_H
#define APTQ_GPTQ_H

#include <mpi.h>
#include <stdint.h>

#include "factor.h"

typedef struct {
  int bits, group_size, sym;
  int act_order, static_groups, mse;
  int block_size;
  double damp;
  FactorPath factor_path;
  FactorAlgorithm factor_algorithm;
  int nb;
} GptqParams;

/* Everything shared by the row slabs of one layer. */
typedef struct {
  int cols;
  int *perm;        /* solve order → column (identity without act-order) */
  int *g_idx;       /* column → group */
  uint8_t *dead;    /* column had diag(H) = 0 */
  float *qw;        /* grid_search = hessian with a grid with mins: diag(H) (the imatrix, ksearch.h), else NULL */
  float *U;         /* cols × cols upper factor of (H+λI)⁻¹ in solve order, or NULL: */
  DistFactor *dist; /* the factor left on the ScaLAPACK grid (gptq_prepare_partial) */
  int U_cached;     /* U is the reused buffer (see gptq.c) */
  FactorInfo factor;
} GptqLayer;

/* H: cols × cols (replicated, not modified). Collective (factorization). */
int gptq_prepare(const double *H, int cols, const GptqParams *p, MPI_Comm comm, GptqLayer *L);
/* The same with the act-order taken from the diagonal of another matrix, so
 * that several factors share one column order (and one g_idx). */
int gptq_prepare_ordered(const double *H, const double *order, int cols, const GptqParams *p, MPI_Comm comm, GptqLayer *L);
/* The same from this rank's partial (unreduced, symmetric) sum H and
 * the reduced diagonal scaled by `scale` (hessian_finish_diag): the matrix
 * is reduced straight into the ScaLAPACK layout, so p->factor_path must
 * resolve to ScaLAPACK (factor_uses_scalapack). */
int gptq_prepare_partial(const double *H, const double *diag, double scale, int cols, const GptqParams *p, MPI_Comm comm, GptqLayer *L);
/* The same from a streamed sum (hessian_stream.h): grid_sum is this rank's
 * pieces of the reduced Σ x xᵀ on the grid of comm with block size p->nb,
 * index-reversed if `reversed`. */
int gptq_prepare_stream(const double *grid_sum, int reversed, const double *diag, double scale, int cols, const GptqParams *p,
                        MPI_Comm comm, GptqLayer *L);
void gptq_layer_free(GptqLayer *L);
/* L's g_idx made again for p's group_size and static_groups (the column
 * order and the factor unchanged), so that layers on grids of different
 * group sizes can be solved in turn with one factor (grid = ggml), each
 * exactly as if prepared alone. Local. */
void gptq_layer_regroup(GptqLayer *L, const GptqParams *p);

/* Rows are solved in chunks of GPTQ_ROW_CHUNK; a chunk's result depends only
 * on its own rows, so slabs that start on chunk boundaries give results that
 * are bit-identical for any number of ranks. */
enum { GPTQ_ROW_CHUNK = 64 };

/* Which rows each rank solves, and the loss summed in chunk order over
 * the ranks: rowdeal.h. */

/* Solve rows × cols of W (row-major, overwritten as work space). Outputs in
 * the original column order: codes rows × cols, Q (dequantized) rows × cols,
 * scales/zeros rows × ngroups; chunk_loss[i] = Σ (w − q)² / U_jj² / 2 over
 * chunk i of the slab (summed over a layer: the figure gptq.py reports as
 * the error). */
int gptq_solve(const GptqLayer *L, const GptqParams *p, float *W, int rows, uint8_t *codes, float *Q, float *scales, int32_t *zeros,
               double *chunk_loss);

/* One layer's slab for gptq_solve_slabs, the arguments of gptq_solve. */
typedef struct {
  const GptqParams *p; /* bits may differ between the slabs; block_size, group_size and static_groups may not */
  float *W;
  int rows;
  uint8_t *codes;
  float *Q, *scales;
  int32_t *zeros;
  double *chunk_loss;
  float *mins; /* rows × ngroups with the K-quant grids with mins (quant_kgrid_mins, static groups), else NULL */
} GptqSlab;
/* gptq_solve of several layers' slabs that share the factor L, in one sweep:
 * with the factor on the grid each block of U is fetched once for all of
 * them. Each slab's results are bit-identical to its own gptq_solve. */
int gptq_solve_slabs(const GptqLayer *L, const GptqSlab *slabs, int nslabs);
/* The work space gptq_solve_slabs allocates for `rows` rows of `cols`
 * columns in all (its slabs together), with `threads` OpenMP threads: one
 * chunk's sweep per thread with U replicated, every row's with the factor
 * on the grid (streamed). The memory plan counts it from here. */
double gptq_solve_work_bytes(int rows, int cols, int block_size, int threads, int streamed);
/* Kronecker form H = H_in ⊗ H_out (docs/aptq.md): the rows come in heads of
 * dh rows, head i with the upper factor U_out[i] (dh × dh, float) of
 * (H_out + λI)⁻¹; columns use L's factor of H_in as in GPTQ. Within a column
 * the rows of a head are quantized in turn with compensation through U_out
 * (head-wise simultaneous quantization); the column's error vector U_outᵀ e
 * then updates the later columns. rows = nheads · dh; heads are independent
 * given the factors, so callers split the rows by heads. losses[i]: head i's
 * Σ (w − q)²/(U_in,jj U_out,rr)²/2. With U_out = I this is gptq_solve.
 * mins: as GptqSlab's (NULL: none). */
int gptq_solve_kron(const GptqLayer *L, const GptqParams *p, const float *const *U_out, int dh, float *W, int nheads, uint8_t *codes,
                    float *Q, float *scales, int32_t *zeros, float *mins, double *losses);

/* The upper factor of (H_out + λI)⁻¹ in float32, λ = damp·mean(diag), with
 * the same retry as factor_inverse_cholesky (LAPACK, local). */
int gptq_output_factor(const double *H_out, int dh, double damp, float *U_out, double *damp_used);

/* quant.py find_params with mse = True: shrink the grid in 100 steps down
 * to 20% and keep the scale with the least Σ|q − w|^2.4 */
void quant_find_params_mse(const float *w, int n, int stride, int bits, int sym, float *scale, int32_t *zero);

#endif
