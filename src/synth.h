/* The seeded weights of the embedded default model, shared with the
 * synthetic blocks of `aptq bench`: the scale of each projection, chosen so
 * that attention is neither flat nor saturated. */
#ifndef APTQ_SYNTH_H
#define APTQ_SYNTH_H

#include "model.h"

/* Standard deviation of projection k's weights (mean 0). */
double synth_linear_std(const ModelConfig *c, LinearKind k);

#endif
