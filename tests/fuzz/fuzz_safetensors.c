/* libFuzzer target: the safetensors reader (header length, JSON, dtypes,
 * shapes, offsets) on arbitrary bytes. Every input must be accepted or
 * refused with an error, never crash or read out of bounds (ASan, UBSan). */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "error.h"
#include "fuzz_input.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/aptq-fuzz-st-%d.safetensors", (int)getpid());
  if (!fuzz_to_file(path, data, size)) return 0;
  StFile st;
  if (st_open(path, &st) == 0) {
    for (int i = 0; i < st.ntensors; i++) {
      const StTensor *t = st_find(&st, st.tensors[i].name);
      float x;
      if (t && t->nbytes >= dtype_size(t->dtype)) dtype_to_f32(t->dtype, t->data, 0, 1, &x); /* touch the data */
    }
    st_close(&st);
  }
  aptq_clear_error();
  unlink(path);
  return 0;
}
