/* Mixed precision (docs/mixed.md): the layers' sensitivities (Fisher
 * traces of the full-precision model, or the layer Hessians' traces of a
 * measuring pass at 4 bits), then for each value of R an allocation of bit
 * widths and one output file. */
#ifndef APTQ_SWEEP_H
#define APTQ_SWEEP_H

#include <mpi.h>

#include "model.h"
#include "options.h"
#include "output.h"
#include "plan.h"
#include "tokens.h"

/* Collective: outputs out[j] (reports rep[j], "" for none) for R[0..nR).
 * info: the run's load time and predicted peak, used for every output. */
int sweep_run(const Options *o, const Plan *p, const Model *m, const TokenShard *calib, const double *R, int nR, char (*out)[OPT_PATH_MAX],
              char (*rep)[OPT_PATH_MAX], OutputInfo *info, double t_start, MPI_Comm comm);

#endif
