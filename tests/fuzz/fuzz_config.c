/* libFuzzer target: the Hugging Face config.json reader (strict JSON, then
 * the LLaMA keys and their consistency) through model_open on a directory
 * whose config.json is the input; with no weights beside it, a config that
 * parses ends in the "no safetensors" error. Never a crash (ASan, UBSan). */
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fuzz_input.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char dir[64], path[96];
  snprintf(dir, sizeof dir, "/tmp/aptq-fuzz-cfg-%d", (int)getpid());
  snprintf(path, sizeof path, "%s/config.json", dir);
  mkdir(dir, 0700);
  if (!fuzz_to_file(path, data, size)) return 0;
  Model m;
  if (model_open(dir, &m) == 0) model_close(&m);
  aptq_clear_error();
  unlink(path);
  rmdir(dir);
  return 0;
}
