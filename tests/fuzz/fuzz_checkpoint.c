/* libFuzzer target: the checkpoint readers on HDF5 images mutated from a
 * valid state file and a valid block file (seed_h5.py): the state's /meta
 * attributes (checkpoint_read_meta), its activations and statistics of the
 * expected shapes (h5r_read), and a block file's layer (qlayer_read_rows),
 * all tried on every input. Every input must be read or refused with an
 * error, never crash, read out of bounds (ASan, UBSan) or leave an HDF5
 * object open. */
#include <stdint.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "error.h"
#include "fuzz_h5.h"
#include "qfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static CheckpointMeta cm;
  static float X[FUZZ_XROWS * FUZZ_DIM];
  static double stats[FUZZ_LAYERS * FUZZ_NSTATS];
  H5Src s = {"checkpoint", "fuzz.h5", "fuzz"};
  hid_t f;
  if (h5r_open_image(&s, data, size, &f) == 0) {
    if (checkpoint_read_meta(&s, f, &cm) == 0 &&
        h5r_read(&s, f, "/state/stats", H5T_NATIVE_DOUBLE, FUZZ_LAYERS, FUZZ_NSTATS, 0, FUZZ_LAYERS, H5P_DEFAULT, stats) == 0)
      h5r_read(&s, f, "/state/X", H5T_NATIVE_FLOAT, FUZZ_XROWS, FUZZ_DIM, 1, FUZZ_XROWS, H5P_DEFAULT, X);
    aptq_clear_error();
    QLayerBuffers b = {0};
    QLayerSlab slab;
    qlayer_read_rows(&s, f, FUZZ_Q, FUZZ_ROWS, FUZZ_COLS, 2, 5, &b, &slab);
    qlayer_buffers_free(&b);
    H5Fclose(f);
    if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) abort(); /* an identifier left open */
  }
  aptq_clear_error();
  return 0;
}
