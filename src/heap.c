#include "heap.h"

#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* live allocations: open addressing on the pointer, capacity a power of two */
typedef struct {
  void *p;
  size_t bytes;
  const char *what;
} Entry;
static Entry *table;
static size_t capacity, used;
static double live, peak, base;
static int state = -1; /* -1: not yet read from the environment; 2: keep the live set at the peak */
/* APTQ_HEAP_AUDIT=2: what was live at the peak, by label */
enum { PEAK_LABELS = 64 };
static struct {
  const char *what;
  double bytes;
  int count;
} at_peak[PEAK_LABELS];
static int n_at_peak;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
#define TOMBSTONE ((void *)1)

int heap_audit_on(void) {
  if (state < 0) {
    const char *env = getenv("APTQ_HEAP_AUDIT");
    state = env && env[0] && strcmp(env, "0") != 0 ? (strcmp(env, "2") == 0 ? 2 : 1) : 0;
  }
  return state;
}

static size_t slot_of(const void *p) { return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) & (capacity - 1); }

/* Double the table (called with the lock held). Returns 0 if out of memory:
 * the audit then stops recording. */
static int grow(void) {
  size_t old = capacity;
  Entry *prev = table;
  capacity = capacity ? 2 * capacity : 1024;
  table = calloc(capacity, sizeof *table);
  if (!table) {
    state = 0;
    table = prev;
    capacity = old;
    return 0;
  }
  used = 0;
  for (size_t i = 0; i < old; i++)
    if (prev[i].p && prev[i].p != TOMBSTONE) {
      size_t s = slot_of(prev[i].p);
      while (table[s].p) s = (s + 1) & (capacity - 1);
      table[s] = prev[i];
      used++;
    }
  free(prev);
  return 1;
}

/* The live set by label, the largest PEAK_LABELS (with the lock held). */
static void keep_peak_set(void) {
  n_at_peak = 0;
  for (size_t i = 0; i < capacity; i++) {
    const Entry *e = &table[i];
    if (!e->p || e->p == TOMBSTONE) continue;
    int j = 0;
    while (j < n_at_peak && at_peak[j].what != e->what) j++;
    if (j == n_at_peak) {
      if (n_at_peak == PEAK_LABELS) continue;
      at_peak[n_at_peak++].what = e->what, at_peak[j].bytes = 0, at_peak[j].count = 0;
    }
    at_peak[j].bytes += (double)e->bytes;
    at_peak[j].count++;
  }
}

void heap_audit_add(void *p, size_t bytes, const char *what) {
  if (!p || !heap_audit_on()) return;
  pthread_mutex_lock(&lock);
  if ((used + 1) * 2 > capacity && !grow()) {
    pthread_mutex_unlock(&lock);
    return;
  }
  size_t s = slot_of(p);
  while (table[s].p && table[s].p != TOMBSTONE) s = (s + 1) & (capacity - 1);
  if (!table[s].p) used++;
  table[s] = (Entry){p, bytes, what};
  live += (double)bytes;
  if (live > peak) {
    peak = live;
    if (state == 2) keep_peak_set();
  }
  pthread_mutex_unlock(&lock);
}

void heap_audit_remove(void *p) {
  if (p && heap_audit_on() && capacity) {
    pthread_mutex_lock(&lock);
    size_t s = slot_of(p);
    while (table[s].p && table[s].p != p) s = (s + 1) & (capacity - 1);
    if (table[s].p == p) {
      live -= (double)table[s].bytes;
      table[s].p = TOMBSTONE;
    }
    pthread_mutex_unlock(&lock);
  }
}

void heap_audit_mark(void) {
  pthread_mutex_lock(&lock);
  base = peak = live;
  pthread_mutex_unlock(&lock);
}

double heap_audit_peak(void) { return peak - base; }

double heap_audit_live(void) {
  pthread_mutex_lock(&lock);
  double v = live;
  pthread_mutex_unlock(&lock);
  return v;
}

void heap_audit_print_peak(FILE *out) {
  if (state != 2) return;
  for (int i = 0; i < n_at_peak; i++)
    fprintf(out, "heap at peak: %12.0f B in %4d  %s\n", at_peak[i].bytes, at_peak[i].count, at_peak[i].what ? at_peak[i].what : "?");
}
