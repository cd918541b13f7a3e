/* The seeded weights of the embedded default model, shared with the
 * synthetic blocks of `aptq bench` and the hub-shaped checkpoints of `aptq
 * synth --shape`: the scale of each projection, chosen so that attention
 * is neither flat nor saturated. */
#ifndef APTQ_SYNTH_H
#define APTQ_SYNTH_H

#include <mpi.h>

#include "model.h"
#include "options.h"

/* Standard deviation of projection k's weights (mean 0). */
double synth_linear_std(const ModelConfig *c, LinearKind k);

/* The shapes (the index of option shape's value in its choice list). */
enum { SHAPE_7B, SHAPE_13B, SHAPE_70B, SHAPE_TINY, SHAPE_8B };
/* The real model of a shape (widths, heads, vocabulary, depth, RoPE):
 * 7b LLaMA 2 7B, 13b LLaMA 2 13B, 70b LLaMA 2 70B, 8b Llama 3.1 8B, tiny
 * the embedded default's widths (synth_hub.c). */
void synth_shape(int shape, ModelConfig *c);
/* Local (rank 0): the output directory is made if absent, refused when it is
 * something else or already holds a model (config.json) and overwrite is
 * not set. */
int synth_output_dir(const Options *o);

/* Collective: write checkpoint c of that shape into o->output as the hub
 * ships it: BF16, sharded model-0000k-of-0000n.safetensors (5 GB shards),
 * model.safetensors.index.json and config.json as transformers writes
 * them, seeded weights with synth_linear_std's scales. Streamed: memory
 * does not grow with the model; shards are written by ranks in turn. */
int synth_hub(const Options *o, int shape, const ModelConfig *c, MPI_Comm comm);

#endif
