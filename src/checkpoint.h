/* Checkpoint and restart of the sequential pass (docs/operations.md).
 * After every finished decoder block the pass leaves, in the checkpoint
 * directory, a file per finished block with its quantized layers
 * (block-L.h5) and a state file (state.h5) with the calibration activations
 * that enter the next block, the per-layer statistics so far, and what the
 * run was (options, model fingerprint, calibration hash). Both are written
 * under temporary names and renamed, the block file first, so the state file
 * always describes a consistent set. Resuming reads the activations back for
 * any rank count (they are stored by sequence) and copies the finished
 * blocks into the new output: the result is bit-identical to an
 * uninterrupted run. */
#ifndef APTQ_CHECKPOINT_H
#define APTQ_CHECKPOINT_H

#include <mpi.h>

#include "model.h"
#include "h5read.h"
#include "options.h"
#include "qfile.h"
#include "tokens.h"

typedef struct {
  int on;
  char dir[OPT_PATH_MAX];
  int next_block;      /* first block still to do (resume) */
  int nstats;          /* doubles per layer in the saved statistics */
  double *stats;       /* resume: n_layers·LIN_COUNT × nstats, from state.h5 */
  QFileWriter block;   /* the block file being written */
  const Options *opts; /* the run's options, recorded with every state */
} Checkpoint;

/* What state.h5 says about the run that wrote it (/meta attributes). */
typedef struct {
  char options[65536]; /* "key = value" lines of the result-affecting options */
  char fingerprint[65], calib_sha256[65];
  int next_block, layers, stats; /* first block still to do; layers; doubles per layer in /state/stats */
} CheckpointMeta;
/* The /meta attributes of an open state file f, each checked as one value
 * of its class (h5read.h), format "aptq-checkpoint". Local. */
int checkpoint_read_meta(const H5Src *s, hid_t f, CheckpointMeta *cm);

/* Collective. checkpoint unset: ck->on = 0. Otherwise prepare the directory;
 * with resume = yes read and check state.h5 (same result-affecting options,
 * model and calibration), else refuse a directory that already holds one. */
int checkpoint_begin(Checkpoint *ck, const Options *o, const Model *m, const TokenShard *calib, int nstats, MPI_Comm comm);
/* Collective, resume: this rank's activations (its sequences) into X, and
 * the finished blocks' layers into the output. */
int checkpoint_restore(Checkpoint *ck, const Model *m, const TokenShard *calib, float *X, QFileWriter *out, MPI_Comm comm);
/* Collective: start block l's file; the caller tees the output writer into ck->block. */
int checkpoint_block_begin(Checkpoint *ck, int l, MPI_Comm comm);
/* Collective: commit block l's file, then the state after it: X (this
 * rank's sequences), stats (every layer, identical on all ranks). */
int checkpoint_save(Checkpoint *ck, const Model *m, const TokenShard *calib, int l, const float *X, const double *stats, MPI_Comm comm);
/* Collective: the run finished; remove the checkpoint files. */
void checkpoint_finish(Checkpoint *ck, const Model *m, MPI_Comm comm);

#endif
