/* The layer solves of the sequential pass, once a layer's Hessian is
 * reduced: GPTQ of the layers that share their group's factor (solved
 * together), and the Kronecker form (one output factor per head). Each
 * solves this rank's rows (rowdeal.h), writes them into the output, and
 * leaves the whole quantized weight on every rank for the next forward. */
#ifndef APTQ_SOLVE_H
#define APTQ_SOLVE_H

#include <mpi.h>
#include <stdint.h>

#include "gptq.h"
#include "layer_error.h"
#include "plan.h"
#include "qfile.h"

/* The buffers of a slab of rows being quantized, owned together. */
typedef struct {
  float *W;       /* n × cols: the rows to solve (overwritten as work space) */
  float *Q;       /* n × cols: the quantized rows, dequantized (NULL if not asked for) */
  uint8_t *codes; /* n × cols */
  float *scales;  /* n × ngroups */
  int32_t *zeros; /* n × ngroups */
  float *mins;    /* n × ngroups with the K-quant grids with mins (quant_kgrid_mins), else NULL */
  double *loss;   /* nloss: per chunk or per head (NULL if nloss = 0) */
} Slab;
/* Records an error and returns it if out of memory (nothing left allocated). */
int slab_alloc(Slab *s, size_t n, int cols, int ngroups, int with_q, size_t nloss);
void slab_free(Slab *s);

/* Collective: rows [r0, r0 + n) of layer `name` hold only finite scales
 * (n × ngroups) on every rank; else one agreed error naming the layer and
 * row. Called before anything of the layer is written. */
int solve_check_finite(const char *name, int r0, int n, int ngroups, const Slab *s, MPI_Comm comm);
/* Pack and write rows [r0, r0 + n) of a layer of rows × cols into the
 * output at the width and grid of p (collective; qw NULL: a measuring pass,
 * nothing written). */
int solve_write_rows(QFileWriter *qw, const GptqParams *p, const char *name, int rows, int cols, int r0, int n, const Slab *s,
                     const int32_t *g_idx);

/* One layer of a GPTQ solve: W holds all its rows, and afterwards the
 * whole quantized weight on every rank; p its parameters (its bit width). */
typedef struct {
  char name[256];
  float *W;
  int rows;
  GptqParams p;
  LayerError *e;
} SolveLayer;

/* Collective. GPTQ of the layers lay[0..nl) that share the prepared factor
 * L (q/k/v, gate/up; form: FORM_GPTQ, or FORM_ROWSHARED for APTQ's own q/k
 * Hessian), solved together: their row chunks are dealt over the ranks as
 * one run, so that different ranks solve different layers at the same time
 * and a factor on the grid has each block of U fetched once for all. */
int solve_shared(QFileWriter *qw, const GptqLayer *L, HessianForm form, SolveLayer *lay, int nl, MPI_Comm comm);

/* A layer with a Kronecker Hessian per head of dh rows (docs/aptq.md):
 * head i has the input factor in[i] (d × d) and the output factor
 * out + i·dh² (dh × dh). Heads sharing one input factor (the same pointer)
 * share one factorization; one column order for the whole layer, from the
 * diagonal of `order` (NULL: of in[0]), so that it keeps one g_idx.
 * form: FORM_KRON, or FORM_RELAXED for BoA/aespa's factors (recorded in the
 * file; the solve is the same). */
typedef struct {
  const double *const *in;
  const double *order;
  const double *out;
  int heads, dh, d;
  HessianForm form;
} KronHessian;
/* Collective: whole heads solved per rank, written and exchanged. */
int solve_kron(QFileWriter *qw, const GptqParams *p, const KronHessian *h, const char *name, float *W, LayerError *e, MPI_Comm comm);

#endif
