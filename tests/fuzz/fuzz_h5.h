/* The HDF5 fuzz targets (fuzz_qfile.c, fuzz_checkpoint.c): the shapes the
 * seeds of seed_h5.py have, and opening the fuzzer's bytes as an HDF5 file
 * image in memory (h5r_open_image). */
#ifndef APTQ_FUZZ_H5_H
#define APTQ_FUZZ_H5_H

#include "h5read.h"

enum { FUZZ_ROWS = 8, FUZZ_COLS = 16, FUZZ_DOWN_COLS = 20, FUZZ_XROWS = 4, FUZZ_DIM = 8, FUZZ_LAYERS = 2, FUZZ_NSTATS = 3 };

static const char FUZZ_Q[] = "model.layers.0.self_attn.q_proj", FUZZ_DOWN[] = "model.layers.0.mlp.down_proj";

#endif
