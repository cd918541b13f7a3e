#define _GNU_SOURCE /* renameat2, RENAME_NOREPLACE */
#include "outpath.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "inpath.h"

/* The paths this run writes, as checked so far (rank 0). */
enum { WRITTEN_MAX = 1024 };
static struct {
  char path[PATH_MAX + 256];
  const char *key;
} written[WRITTEN_MAX];
static int nwritten;

void outpath_forget(void) { nwritten = 0; }

/* path made absolute, symbolic links resolved; a path that does not exist
 * yet: its directory resolved, its name kept. */
static void canonical(const char *path, char *out, size_t size) {
  char buf[PATH_MAX];
  if (realpath(path, buf)) {
    snprintf(out, size, "%s", buf);
    return;
  }
  char d[PATH_MAX], b[PATH_MAX];
  snprintf(d, sizeof d, "%s", path);
  snprintf(b, sizeof b, "%s", path);
  if (realpath(dirname(d), buf)) snprintf(out, size, "%s/%s", buf, basename(b));
  else snprintf(out, size, "%s", path);
}

/* Is path (with stat st, have = it exists) the file other? */
static int same_file(const char *path, int have, const struct stat *st, const char *other) {
  struct stat so;
  if (have && stat(other, &so) == 0) return st->st_dev == so.st_dev && st->st_ino == so.st_ino;
  char a[PATH_MAX + 256], b[PATH_MAX + 256];
  canonical(path, a, sizeof a);
  canonical(other, b, sizeof b);
  return strcmp(a, b) == 0;
}

/* The input (option name, value) that path is, if any: 0 or an error. */
static int not_an_input(const char *path, const char *key, const struct stat *st, const Options *o) {
  if (!o) return 0;
  const struct {
    const char *name, *value;
  } in[] = {{"model", o->model},     {"calib", o->calib}, {"tokens", o->tokens},       {"quantized", o->quantized},
            {"compare", o->compare}, {"input", o->input}, {"tokenizer", o->tokenizer}, {"deck", options_deck()}};
  for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
    const char *v = in[i].value;
    struct stat si;
    if (!v || !v[0] || stat(v, &si) != 0) continue;
    if (S_ISDIR(si.st_mode)) { /* a model directory: every file in it */
      DIR *d = opendir(v);
      struct dirent *e;
      char f[PATH_MAX + 256];
      int hit = 0;
      while (d && !hit && (e = readdir(d))) {
        struct stat sf;
        snprintf(f, sizeof f, "%s/%s", v, e->d_name);
        hit = stat(f, &sf) == 0 && S_ISREG(sf.st_mode) && sf.st_dev == st->st_dev && sf.st_ino == st->st_ino;
      }
      if (d) closedir(d);
      if (hit)
        return aptq_error("%s '%s' is a file of the input %s '%s'; writing it would destroy the input: choose another %s", key, path,
                          in[i].name, v, key);
    } else if (si.st_dev == st->st_dev && si.st_ino == st->st_ino)
      return aptq_error("%s '%s' is the input %s '%s'; writing it would destroy the input: choose another %s", key, path, in[i].name, v,
                        key);
  }
  return 0;
}

int outpath_check_dir(const char *dir, const char *key, const Options *o) {
  struct stat st;
  if (!o || stat(dir, &st) != 0) return 0; /* a new directory is no input */
  const struct {
    const char *name, *value;
  } in[] = {{"model", o->model},         {"calib", o->calib}, {"tokens", o->tokens},
            {"quantized", o->quantized}, {"input", o->input}, {"deck", options_deck()}};
  for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
    struct stat si;
    if (in[i].value && in[i].value[0] && stat(in[i].value, &si) == 0 && si.st_dev == st.st_dev && si.st_ino == st.st_ino)
      return aptq_error("%s '%s' is the input %s '%s'; the run would write and remove its files there: choose another %s directory", key,
                        dir, in[i].name, in[i].value, key);
  }
  return 0;
}

int outpath_check(const char *path, const char *key, int overwrite, const Options *o) {
  struct stat st, sl;
  if (!path[0]) return aptq_error("missing required key '%s'", key);
  int have = stat(path, &st) == 0, link_only = !have && lstat(path, &sl) == 0;
  if (have && S_ISDIR(st.st_mode)) return aptq_error("%s '%s' is a directory; give a file name", key, path);
  if (have && !S_ISREG(st.st_mode))
    return aptq_error("%s '%s' exists and is %s; aptq replaces only regular files, even with overwrite = yes: choose another %s", key, path,
                      inpath_kind(st.st_mode), key);
  if (link_only) return aptq_error("%s '%s' is a symbolic link to nothing; remove it or choose another %s", key, path, key);
  if (have) CHECK(not_an_input(path, key, &st, o));
  for (int i = 0; i < nwritten; i++)
    if (same_file(path, have, &st, written[i].path))
      return aptq_error("%s '%s' is also this run's %s '%s'; give each file the run writes a path of its own", key, path, written[i].key,
                        written[i].path);
  if (have && !overwrite)
    return aptq_error("%s '%s' already exists; set overwrite = yes to replace it, or choose another %s", key, path, key);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  const char *d = dirname(dir);
  if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
    return aptq_error("directory '%s' for %s '%s' does not exist; create it first", d, key, path);
  if (access(d, W_OK) != 0) return aptq_error("directory '%s' for %s '%s' is not writable: %s", d, key, path, strerror(errno));
  if (nwritten < WRITTEN_MAX) {
    snprintf(written[nwritten].path, sizeof written[nwritten].path, "%s", path);
    written[nwritten++].key = key;
  }
  return 0;
}

int output_check(const char *path, const char *key, int overwrite, const Options *o, MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  int rc = rank == 0 ? outpath_check(path, key, overwrite, o) : 0;
  return aptq_agree(comm, rc);
}

int outpath_temp(const char *path, const char *key, char *tmp, size_t size, int *fd) {
  int f = -1, pid = (int)getpid();
  for (int n = 0; f < 0 && n < 100; n++) {
    if (n) snprintf(tmp, size, "%s.partial-%d-%d", path, pid, n);
    else snprintf(tmp, size, "%s.partial-%d", path, pid);
    f = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (f < 0 && errno != EEXIST)
      return aptq_error("cannot create the temporary file '%s' for %s '%s': %s; check that its directory is writable", tmp, key, path,
                        strerror(errno));
  }
  if (f < 0) return aptq_error("cannot create a temporary file for %s '%s': '%s' and 99 others exist; remove them", key, path, tmp);
  aptq_register_tmpfile(tmp);
  if (fd) *fd = f;
  else close(f);
  return 0;
}

/* rename(2) that fails with EEXIST rather than replace: renameat2 where the
 * kernel and file system have it, else link + unlink. */
static int rename_noreplace(const char *tmp, const char *path) {
  if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) return -1;
  if (link(tmp, path) != 0) return -1;
  unlink(tmp);
  return 0;
}

int outpath_commit(const char *tmp, const char *path, const char *key, int overwrite) {
  int rc = 0;
  struct stat st;
  if (!overwrite) {
    if (rename_noreplace(tmp, path) != 0)
      rc = errno == EEXIST ? aptq_error(
                                 "%s '%s' was created by another run while this one worked; this run's %s was discarded and "
                                 "nothing was replaced: choose another %s, or set overwrite = yes",
                                 key, path, key, key)
                           : aptq_error("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
  } else if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    rc = aptq_error("%s '%s' is now %s; aptq replaces only regular files: this run's %s was discarded, choose another %s", key, path,
                    inpath_kind(st.st_mode), key, key);
  } else if (stat(path, &st) != 0 && lstat(path, &st) == 0) {
    rc = aptq_error("%s '%s' is now a symbolic link to nothing; this run's %s was discarded: remove the link or choose another %s", key,
                    path, key, key);
  } else if (rename(tmp, path) != 0) rc = aptq_error("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
  if (rc) unlink(tmp);
  return rc;
}
