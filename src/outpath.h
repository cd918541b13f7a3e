/* The one place that decides whether the run may write a path, and the one
 * place that puts a finished file there.
 *
 * output_check, before any work: a path the run writes (output, report,
 * logits, checkpoint file) must not be any input of the run (the model's
 * files, the llama2.c .bin, calib, tokens, quantized, input, the deck: same
 * inode or the same path after realpath), must not be another path this run
 * writes, may exist only with overwrite and only as a regular file (never a
 * device node, FIFO, directory or a link to one, whatever overwrite says).
 *
 * outpath_commit, at the end: the temporary file renamed onto the path.
 * Without overwrite the rename cannot replace anything (renameat2
 * RENAME_NOREPLACE, or link + unlink), so of two runs with the same output
 * started together exactly one wins and the other fails cleanly. */
#ifndef APTQ_OUTPATH_H
#define APTQ_OUTPATH_H

#include <mpi.h>

#include "options.h"

/* key: option name for the messages; o: the run's options (its inputs; may
 * be NULL for none). Collective (rank 0 checks, agreed across ranks). A
 * path that passes is remembered: a later check of the same file fails. */
int output_check(const char *path, const char *key, int overwrite, const Options *o, MPI_Comm comm);
/* The same check, local (one rank writes, e.g. synth): 0 or APTQ_ERR. */
int outpath_check(const char *path, const char *key, int overwrite, const Options *o);

/* Local: a directory the run writes files into and removes them from
 * (checkpoint = DIR) is not an input of the run (the model directory, or
 * any input file): 0 or one message naming both. */
int outpath_check_dir(const char *dir, const char *key, const Options *o);

/* Local (the rank that will write): a new temporary file beside path,
 * "PATH.partial-PID" (or "PATH.partial-PID-N" if that name is taken),
 * created empty with O_EXCL | O_NOFOLLOW, so that nothing already there (a
 * file left by another run, a symbolic link) is truncated or followed; the
 * name in tmp, registered with aptq_register_tmpfile. fd: the open
 * descriptor (write only), or NULL to have it closed. 0 or one message. */
int outpath_temp(const char *path, const char *key, char *tmp, size_t size, int *fd);

/* Local (the rank that wrote tmp): rename tmp onto path as described above.
 * On failure tmp is removed and one message recorded. */
int outpath_commit(const char *tmp, const char *path, const char *key, int overwrite);

/* Forget the paths remembered by output_check (unit tests, one process
 * running several commands). */
void outpath_forget(void);

#endif
