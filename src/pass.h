/* The sequential pass of GPTQ and APTQ. Block by block, each rank runs its
 * shard of the calibration sequences through the block (whose inputs come
 * from the already quantized earlier blocks) and accumulates the
 * layer-input Hessians of a group of projections; the ranks reduce them,
 * factor them, solve the group's layers (solve.h) and write them; every
 * rank then holds the quantized group for the next group's forward, and
 * the quantized block makes the next block's inputs. */
#ifndef APTQ_PASS_H
#define APTQ_PASS_H

#include <mpi.h>

#include "checkpoint.h"
#include "layer_error.h"
#include "model.h"
#include "plan.h"
#include "qfile.h"
#include "tokens.h"

/* Seconds of the pass spent on the calibration forwards and the Hessians'
 * accumulation and reduction, and on factor + solve + write. */
typedef struct {
  double hessian, solve;
} PassTimes;

/* Collective. layer_bits[l·LIN_COUNT + k], or NULL for p->gptq.bits
 * everywhere; err[l·LIN_COUNT + k] receives each layer's result (bits set
 * by the caller). qw NULL: a measuring pass (errors, sensitivities), nothing
 * written. ck: the checkpoint (NULL or off: none), resumed from if it holds
 * finished blocks. */
int pass_run(QFileWriter *qw, const Plan *p, const Model *m, const TokenShard *calib, const int *layer_bits, LayerError *err,
             Checkpoint *ck, double t_start, PassTimes *times, MPI_Comm comm);

#endif
