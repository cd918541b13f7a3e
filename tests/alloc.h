/* The tests' allocations: aptq_malloc and aptq_calloc, and a test that
 * cannot allocate stops there (all its ranks) with the recorded message. */
#ifndef APTQ_TESTS_ALLOC_H
#define APTQ_TESTS_ALLOC_H

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "error.h"

static inline void *test_alloc_check(void *p) {
  if (!p) {
    int init = 0;
    fprintf(stderr, "FAIL: %s\n", aptq_error_message());
    MPI_Initialized(&init);
    if (init) MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
  }
  return p;
}
#define TEST_MALLOC(bytes) test_alloc_check(aptq_malloc(bytes, "test data"))
#define TEST_CALLOC(n, size) test_alloc_check(aptq_calloc(n, size, "test data"))

#endif
