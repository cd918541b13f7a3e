/* libFuzzer target: the input-deck parser (key = value lines, comments,
 * types, ranges, choices) on arbitrary bytes, plus one --key=value override
 * cut from the input. Never a crash (ASan, UBSan). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "fuzz_input.h"
#include "options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/aptq-fuzz-deck-%d", (int)getpid());
  if (!fuzz_to_file(path, data, size)) return 0;
  /* the first line of the input also serves as a command-line override */
  char arg[256] = "--";
  size_t n = 0;
  while (n < size && n < sizeof arg - 3 && data[n] != '\n' && data[n] != 0) n++;
  memcpy(arg + 2, data, n);
  arg[2 + n] = 0;
  Options o;
  char *argv[2] = {path, arg};
  options_parse(&o, 1, argv);
  aptq_clear_error();
  options_parse(&o, 2, argv);
  aptq_clear_error();
  unlink(path);
  return 0;
}
