#include "inpath.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"

const char *inpath_kind(mode_t m) {
  return S_ISDIR(m)    ? "a directory"
         : S_ISCHR(m)  ? "a character device"
         : S_ISBLK(m)  ? "a block device"
         : S_ISFIFO(m) ? "a FIFO"
         : S_ISSOCK(m) ? "a socket"
                       : "not a regular file";
}

int inpath_check(const char *path, const char *what, const char *fix) {
  struct stat st;
  if (stat(path, &st) != 0) return aptq_error("cannot open %s '%s': %s; %s", what, path, strerror(errno), fix);
  if (!S_ISREG(st.st_mode)) return aptq_error("%s '%s' is %s, not a regular file; %s", what, path, inpath_kind(st.st_mode), fix);
  return 0;
}
