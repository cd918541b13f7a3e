/* The parsers under fuzzing read files: write the fuzzer's bytes to PATH
 * (one per process), or return 0 if it cannot be created. */
#ifndef APTQ_FUZZ_INPUT_H
#define APTQ_FUZZ_INPUT_H

#include <stdint.h>
#include <stdio.h>

static int fuzz_to_file(const char *path, const uint8_t *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  return 1;
}

#endif
