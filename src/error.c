#include "error.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "heap.h"

static char error_message[2048];
static int error_set;
static int error_reported;
static int printed_here; /* this rank printed the agreed error line */
/* the traceback: the origin (aptq_error), then each CHECK it passed */
enum { MAX_FRAMES = 24 };
static struct {
  const char *file, *func;
  int line;
} frames[MAX_FRAMES];
static int nframes;
/* temporary outputs alive now (output, checkpoint block, checkpoint state) */
enum { MAX_TMPFILES = 8 };
static char tmpfile_path[MAX_TMPFILES][4096];
static volatile sig_atomic_t stop_requested;

static void push_frame(const char *file, int line, const char *func) {
  if (nframes < MAX_FRAMES) {
    const char *src = strstr(file, "src/"); /* the path from the project root */
    frames[nframes].file = src ? src : file;
    frames[nframes].line = line;
    frames[nframes++].func = func;
  }
}

int aptq_error_at(const char *file, int line, const char *func, const char *fmt, ...) {
  if (error_set) return APTQ_ERR;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(error_message, sizeof error_message, fmt, ap);
  va_end(ap);
  error_set = 1;
  nframes = 0;
  push_frame(file, line, func);
  return APTQ_ERR;
}

void aptq_trace(const char *file, int line, const char *func) {
  if (error_set) push_frame(file, line, func);
}

void aptq_traceback(char *buf, size_t size) {
  size_t n = 0;
  buf[0] = 0;
  for (int i = 0; i < nframes && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, "%s%s:%d (%s)", i ? " <- " : "", frames[i].file, frames[i].line, frames[i].func);
}

static void print_traceback(int always) {
  const char *env = getenv("APTQ_TRACEBACK");
  if (!nframes || (!always && (!env || !env[0] || !strcmp(env, "0")))) return;
  char buf[4096];
  aptq_traceback(buf, sizeof buf);
  fprintf(stderr, "aptq: traceback: %s\n", buf);
}

int aptq_all_ok(MPI_Comm comm, int ok) {
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_LAND, comm);
  return ok;
}

const char *aptq_error_message(void) { return error_set ? error_message : "unknown error (no message recorded)"; }

void aptq_clear_error(void) {
  error_set = 0;
  error_message[0] = 0;
  nframes = 0;
}

int aptq_agree(MPI_Comm comm, int local_status) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int mine = local_status ? rank : size, first = size;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
  if (first == size) return APTQ_OK;
  if (rank == first) {
    fprintf(stderr, "aptq: error: %s\n", aptq_error_message());
    fflush(stderr);
    printed_here = 1;
  }
  error_reported = 1;
  return APTQ_ERR;
}

int aptq_error_reported(void) { return error_reported; }

void aptq_print_traceback(void) {
  if (printed_here) print_traceback(0);
  fflush(stderr);
}

void aptq_register_tmpfile(const char *path) {
  for (int i = 0; i < MAX_TMPFILES; i++)
    if (!tmpfile_path[i][0]) {
      snprintf(tmpfile_path[i], sizeof tmpfile_path[i], "%s", path);
      return;
    }
}

void aptq_unregister_tmpfile(const char *path) {
  for (int i = 0; i < MAX_TMPFILES; i++)
    if (!strcmp(tmpfile_path[i], path)) tmpfile_path[i][0] = 0;
}

static void remove_tmpfiles(void) {
  for (int i = 0; i < MAX_TMPFILES; i++)
    if (tmpfile_path[i][0]) unlink(tmpfile_path[i]);
}

/* SIGTERM (mpirun and srun follow it with SIGKILL within seconds): abandon
 * the block in progress; the last checkpoint stays valid. Only
 * async-signal-safe calls here. */
static void on_sigterm(int sig) {
  (void)sig;
  static const char msg[] =
      "aptq: terminated (SIGTERM): the block in progress is abandoned; the last checkpoint (if any) is valid: "
      "rerun with resume = yes\n";
  for (int i = 0; i < MAX_TMPFILES; i++)
    if (tmpfile_path[i][0]) unlink(tmpfile_path[i]);
  ssize_t rc = write(2, msg, sizeof msg - 1);
  (void)rc;
  _exit(143);
}

static void on_sigusr1(int sig) {
  (void)sig;
  stop_requested = 1;
}

void aptq_install_signal_handlers(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_sigterm;
  sigaction(SIGTERM, &sa, NULL);
  sa.sa_handler = on_sigusr1;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
}

void aptq_restore_signal_handlers(void) {
  signal(SIGTERM, SIG_DFL);
  signal(SIGUSR1, SIG_IGN); /* the work is done: nothing left to stop */
}

int aptq_stop_requested(MPI_Comm comm) {
  int any = stop_requested;
  MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, comm);
  return any;
}

void aptq_fatal(MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  fprintf(stderr, "aptq: error (rank %d): %s\n", rank, aptq_error_message());
  print_traceback(1);
  fflush(stderr);
  remove_tmpfiles();
  MPI_Abort(comm, 1);
  exit(1);
}

/* Large buffers (Hessians, factors, activations) on transparent huge pages:
 * first-touch page faults otherwise dominate the factorization of a 4096²
 * Hessian. Memory from here is released with aptq_free(). */
enum { HUGE_THRESHOLD = 4 << 20, HUGE_PAGE = 2 << 20 };

void *aptq_malloc_at(size_t bytes, const char *what, const char *file, int line, const char *func) {
  void *p = NULL;
  if (bytes >= HUGE_THRESHOLD) {
    if (posix_memalign(&p, HUGE_PAGE, bytes) != 0) p = NULL;
    else madvise(p, bytes, MADV_HUGEPAGE);
  } else p = malloc(bytes ? bytes : 1);
  heap_audit_add(p, bytes, what);
  if (!p)
    aptq_error_at(file, line, func, "out of memory allocating %zu bytes for %s; use more ranks or fewer sequences (nseq)", bytes, what);
  return p;
}

void aptq_free(void *p) {
  heap_audit_remove(p);
  free(p);
}

void *aptq_calloc_at(size_t n, size_t size, const char *what, const char *file, int line, const char *func) {
  if (size && n > SIZE_MAX / size) {
    aptq_error_at(file, line, func, "allocation of %zu x %zu bytes for %s overflows", n, size, what);
    return NULL;
  }
  void *p = aptq_malloc_at(n * size, what, file, line, func);
  if (p) memset(p, 0, n * size);
  return p;
}
