/* libFuzzer target: the quantized-file reader (qfile_attach, then
 * qfile_read_linear of the two layers of seed_h5.py's file) on HDF5 images
 * mutated from a valid file. Every input must be read or refused with an
 * error, never crash, read out of bounds (ASan, UBSan) or leave an HDF5
 * object open. */
#include <stdint.h>
#include <stdlib.h>

#include "error.h"
#include "fuzz_h5.h"
#include "qfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static float W[FUZZ_ROWS * FUZZ_DOWN_COLS];
  H5Src s = {"quantized file", "fuzz.h5", "fuzz"};
  hid_t f;
  if (h5r_open_image(&s, data, size, &f) == 0) {
    QFileReader r;
    if (qfile_attach(&r, "fuzz.h5", f) == 0 && qfile_read_linear(&r, FUZZ_Q, FUZZ_ROWS, FUZZ_COLS, W) == 0)
      qfile_read_linear(&r, FUZZ_DOWN, FUZZ_ROWS, FUZZ_DOWN_COLS, W);
    qfile_close(&r);
    if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) abort(); /* an identifier left open */
  }
  aptq_clear_error();
  return 0;
}
