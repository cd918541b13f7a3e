/* The unit tests' check: count it, and on failure print where and why and
 * count the failure; main returns failures != 0. One per test program. */
#ifndef APTQ_TESTS_EXPECT_H
#define APTQ_TESTS_EXPECT_H

#include <stdio.h>

static int failures, checks;

#define EXPECT(cond, ...)                         \
  do {                                            \
    checks++;                                     \
    if (!(cond)) {                                \
      failures++;                                 \
      printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      printf(__VA_ARGS__);                        \
      printf("\n");                               \
    }                                             \
  } while (0)

#endif
