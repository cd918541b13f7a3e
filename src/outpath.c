#include "outpath.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

static int check(const char *path, const char *key, int overwrite) {
  struct stat st;
  if (!path[0]) return aptq_error("missing required key '%s'", key);
  if (stat(path, &st) == 0) {
    if (S_ISDIR(st.st_mode)) return aptq_error("%s '%s' is a directory; give a file name", key, path);
    if (!overwrite) return aptq_error("%s '%s' already exists; set overwrite = yes to replace it, or choose another %s", key, path, key);
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  const char *d = dirname(dir);
  if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
    return aptq_error("directory '%s' for %s '%s' does not exist; create it first", d, key, path);
  if (access(d, W_OK) != 0) return aptq_error("directory '%s' for %s '%s' is not writable: %s", d, key, path, strerror(errno));
  return 0;
}

int output_check(const char *path, const char *key, int overwrite, MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  int rc = rank == 0 ? check(path, key, overwrite) : 0;
  return aptq_agree(comm, rc);
}
