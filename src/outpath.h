/* Checks made before any work on a path the run will create, so that a bad
 * output is refused at once and an existing result is never clobbered. */
#ifndef APTQ_OUTPATH_H
#define APTQ_OUTPATH_H

#include <mpi.h>

/* key: option name for the message. Collective (agrees across ranks). */
int output_check(const char *path, const char *key, int overwrite, MPI_Comm comm);

#endif
