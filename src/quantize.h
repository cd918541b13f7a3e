/* The quantize data path for callers that build the model and the
 * calibration shard themselves (aptq bench). */
#ifndef APTQ_QUANTIZE_H
#define APTQ_QUANTIZE_H

#include <mpi.h>

#include "model.h"
#include "options.h"
#include "tokens.h"

/* One pass at o->bits into o->output (and o->report), no checkpoint;
 * predicted: the peak memory per rank predicted by the caller, and its
 * heap part (memplan_heap_peak), for the report. Collective. The phases
 * (phases.h) are left for the caller. */
int quantize_fixed(const Options *o, const Model *m, const TokenShard *calib, double predicted, double predicted_heap, double t_start,
                   MPI_Comm comm);

#endif
