/* JSON reports, written by rank 0 under a temporary name and renamed. */
#ifndef APTQ_REPORT_H
#define APTQ_REPORT_H

#include <stdio.h>

typedef struct Report {
  FILE *f; /* NULL: no report requested, or not rank 0 */
  char path[4096], tmp[4160];
  int overwrite; /* may the close replace a regular file at path */
  int depth;
  int count[16]; /* members written at each nesting level */
} Report;

/* The path is checked first (output_check); overwrite as there. */
int report_open(Report *r, const char *path, int overwrite, int rank);
void report_num(Report *r, const char *key, double v);
void report_int(Report *r, const char *key, long long v);
void report_str(Report *r, const char *key, const char *v);
void report_begin(Report *r, const char *key, char bracket); /* '{' or '[' ; key NULL inside arrays */
void report_end(Report *r, char bracket);
int report_close(Report *r);

#endif
