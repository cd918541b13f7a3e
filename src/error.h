/* Error propagation, PETSc style: every call that can fail returns an int
 * (0 = success). The first failure records one message; callers add nothing
 * and return the code upward with CHECK(). main() is the single place that
 * turns an error into a message and an exit status for all ranks. */
#ifndef APTQ_ERROR_H
#define APTQ_ERROR_H

#include <mpi.h>
#include <stddef.h>

enum { APTQ_OK = 0, APTQ_ERR = 1 };

/* Record an error message (printf-style) and return APTQ_ERR. Only the first
 * message since the last aptq_clear_error() is kept: it is the root cause.
 * The call site (file:line, function) is recorded with it as the origin of
 * the traceback. */
#define aptq_error(...) aptq_error_at(__FILE__, __LINE__, __func__, __VA_ARGS__)
int aptq_error_at(const char *file, int line, const char *func, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
const char *aptq_error_message(void);
void aptq_clear_error(void);

/* CHECK(call): return the call's non-zero status upward, adding this
 * file:line and function to the traceback (PETSc's PetscCall). The
 * traceback is printed under the error line when APTQ_TRACEBACK is set
 * (not empty, not 0) once the command has returned (aptq_print_traceback),
 * and always by aptq_fatal. */
void aptq_trace(const char *file, int line, const char *func);
#define CHECK(call)                             \
  do {                                          \
    int check_rc_ = (call);                     \
    if (check_rc_) {                            \
      aptq_trace(__FILE__, __LINE__, __func__); \
      return check_rc_;                         \
    }                                           \
  } while (0)
/* "origin file:line (function) <- caller file:line (function) <- ..." */
void aptq_traceback(char *buf, size_t size);

/* Collective: is `ok` true on every rank? (one MPI_LAND reduction; for a
 * step that every rank must pass before a collective, when the message is
 * already recorded or the caller makes one) */
int aptq_all_ok(MPI_Comm comm, int ok);

/* Collective: every rank passes its local status. Returns APTQ_ERR on every
 * rank if any rank failed; the lowest failing rank prints its message (one
 * line, on stderr) unless quiet is set. Used at phase boundaries so that a
 * failure on one rank never leaves the others waiting in a collective. */
int aptq_agree(MPI_Comm comm, int local_status);
/* Has an agreed error already been printed (so main only exits)? */
int aptq_error_reported(void);
/* main, once the failed command has returned through every CHECK: the
 * rank that printed the agreed error prints its traceback, if
 * APTQ_TRACEBACK is set. */
void aptq_print_traceback(void);

/* A failure in the middle of a collective phase (I/O error, out of memory):
 * print the message, remove registered temporary files, abort all ranks. */
void aptq_fatal(MPI_Comm comm) __attribute__((noreturn));

/* Temporary output that must not survive a failed run (a few at once). */
void aptq_register_tmpfile(const char *path);
void aptq_unregister_tmpfile(const char *path);

/* SIGTERM: remove the temporary files and exit 143 at once (the block in
 * progress is abandoned). SIGUSR1 (Slurm's warning before the time limit,
 * forwarded by mpirun): a request to stop after the current block. */
void aptq_install_signal_handlers(void);
/* Back to the default actions once the command has returned: a rank still in
 * MPI_Finalize when mpirun terminates the job (another rank exited 1 on an
 * agreed error) ends silently instead of reporting an abandoned block. */
void aptq_restore_signal_handlers(void);
/* Collective: has any rank received SIGUSR1? */
int aptq_stop_requested(MPI_Comm comm);

/* Checked allocation: returns NULL and records an error (at the caller's
 * file:line) on failure. Release with aptq_free(). */
#define aptq_malloc(bytes, what) aptq_malloc_at(bytes, what, __FILE__, __LINE__, __func__)
#define aptq_calloc(n, size, what) aptq_calloc_at(n, size, what, __FILE__, __LINE__, __func__)
void *aptq_malloc_at(size_t bytes, const char *what, const char *file, int line, const char *func);
void *aptq_calloc_at(size_t n, size_t size, const char *what, const char *file, int line, const char *func);
/* Release what aptq_malloc/aptq_calloc returned (free() with the heap
 * audit's bookkeeping, heap.h); NULL is a no-op. */
void aptq_free(void *p);

#endif
