/* One quantized output: the pass (RTN, or the sequential pass) into a new
 * file under a temporary name, its metadata, the commit, and the report
 * (stdout summary and JSON, docs/hdf5-schema.md and docs/options.md). */
#ifndef APTQ_OUTPUT_H
#define APTQ_OUTPUT_H

#include <mpi.h>

#include "checkpoint.h"
#include "layer_error.h"
#include "model.h"
#include "options.h"
#include "pass.h"
#include "plan.h"
#include "tokens.h"

/* What one output file holds beyond the per-layer errors. */
typedef struct {
  const char *output, *report;
  double R, R_achieved, average_bits; /* R, R_achieved: mixed precision only (plan->mixed) */
  double ggml_bits;                   /* grid = ggml: the bits per weight llama.cpp counts (knap_ggml), else 0 */
  const double *alloc_sens;           /* the sensitivities the allocation used, or NULL */
  const double *alloc_sens_err;       /* their standard errors (Fisher estimates), or NULL */
  double predicted_peak;              /* the predicted peak memory per rank (memory.h), for the report */
  double predicted_heap;              /* its heap part (memplan_heap_peak), for the heap audit (heap.h) */
  double t_load, t_sensitivity, t_measure, t_pass, t_write;
  PassTimes pass; /* filled by quantize_output */
} OutputInfo;

/* Collective: one pass into info->output, then its report. o: the run's
 * options, recorded in the file; bits: per layer (NULL: o->bits); err:
 * every layer's result. ck: checkpoint (NULL: none). A failure leaves no
 * file. */
int quantize_output(const Options *o, const Plan *p, const Model *m, const TokenShard *calib, const int *bits, OutputInfo *info,
                    LayerError *err, Checkpoint *ck, double t_start, MPI_Comm comm);

#endif
