/* Input files may come from someone else (issue 13): before a file is
 * opened it must be a regular file (after symbolic links), never a FIFO, a
 * device, a socket or a directory, so that opening it cannot block or read
 * an endless stream. Local; no MPI. */
#ifndef APTQ_INPATH_H
#define APTQ_INPATH_H

#include <sys/types.h>

/* 0 if path is a regular file; otherwise one error recorded, naming what
 * the file is ("quantized file", "input deck", ...), what was found, and
 * fix (e.g. "give the file written by aptq quantize"). */
int inpath_check(const char *path, const char *what, const char *fix);
/* "a directory", "a FIFO", ... for messages about a path that is not a regular file. */
const char *inpath_kind(mode_t mode);

#endif
