#include "report.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "outpath.h"

int report_open(Report *r, const char *path, int overwrite, int rank) {
  memset(r, 0, sizeof *r);
  if (!path[0] || rank != 0) return 0;
  r->overwrite = overwrite;
  snprintf(r->path, sizeof r->path, "%s", path);
  int fd;
  CHECK(outpath_temp(path, "report", r->tmp, sizeof r->tmp, &fd));
  r->f = fdopen(fd, "w");
  if (!r->f) {
    close(fd);
    unlink(r->tmp);
    aptq_unregister_tmpfile(r->tmp);
    return aptq_error("cannot create report '%s': %s", r->tmp, strerror(errno));
  }
  fputc('{', r->f);
  return 0;
}

static void key_prefix(Report *r, const char *key) {
  fprintf(r->f, "%s\n%*s", r->count[r->depth]++ ? "," : "", 2 * (r->depth + 1), "");
  if (key) {
    fputc('"', r->f);
    for (const char *p = key; *p; p++) fputc(*p, r->f);
    fputs("\": ", r->f);
  }
}

static void put_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
    else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
    else fputc(*p, f);
  }
  fputc('"', f);
}

void report_num(Report *r, const char *key, double v) {
  if (!r->f) return;
  key_prefix(r, key);
  if (isfinite(v)) fprintf(r->f, "%.10g", v);
  else fputs("null", r->f);
}

void report_int(Report *r, const char *key, long long v) {
  if (!r->f) return;
  key_prefix(r, key);
  fprintf(r->f, "%lld", v);
}

void report_str(Report *r, const char *key, const char *v) {
  if (!r->f) return;
  key_prefix(r, key);
  put_string(r->f, v);
}

void report_begin(Report *r, const char *key, char bracket) {
  if (!r->f) return;
  key_prefix(r, key);
  fputc(bracket, r->f);
  r->count[++r->depth] = 0;
}

void report_end(Report *r, char bracket) {
  if (!r->f) return;
  fprintf(r->f, "\n%*s%c", 2 * r->depth, "", bracket);
  r->depth--;
}

int report_close(Report *r) {
  if (!r->f) return 0;
  fputs("\n}\n", r->f);
  int bad = ferror(r->f);
  int rc = 0;
  if (fclose(r->f) != 0 || bad) {
    unlink(r->tmp);
    rc = aptq_error("error writing report '%s'", r->tmp);
  } else rc = outpath_commit(r->tmp, r->path, "report", r->overwrite);
  r->f = NULL;
  aptq_unregister_tmpfile(r->tmp);
  return rc;
}
