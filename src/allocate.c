#include "allocate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "rng.h"

const int knapsack_bits[KNAP_CHOICES] = {2, 3, 4, 8};
const KnapWidths knap_code_bits = {KNAP_CHOICES, 1, {2, 3, 4, 8}, {2, 3, 4, 8}};
/* ggml-common.h: block_q2_K 84 bytes, block_q3_K 110, block_q4_K 144,
 * block_q5_K 176, block_q6_K 210 per QK_K = 256 weights; block_q8_0 34
 * per QK8_0 = 32. Bits per weight · 32 = bytes · 8 · 32 / weights. */
const KnapWidths knap_ggml = {KNAP_MAX, 32, {2, 3, 4, 5, 6, 8}, {84, 110, 144, 176, 210, 272}};

double knap_width_cost(const KnapWidths *w, int bits) {
  for (int c = 0; c < w->n; c++)
    if (w->bits[c] == bits) return (double)w->cost[c] / w->per;
  return 0.0;
}

int ratio_parse(const char *text, double *R, int *n) {
  *n = 0;
  const char *p = text;
  while (*p) {
    char *end;
    double v = strtod(p, &end);
    if (end == p || (*end && *end != ','))
      return aptq_error("R: '%s' is not a comma-separated list of numbers; give fractions at 4 bits, e.g. R = 0.5,0.75,1", text);
    if (!(v >= 0.0 && v <= 1.0))
      return aptq_error("R: value %g is outside [0, 1]; R is the fraction of the quantized parameters at 4 bits", v);
    for (int i = 0; i < *n; i++)
      if (R[i] == v) return aptq_error("R: value %g is given twice; list each fraction once", v);
    if (*n == RATIO_MAX) return aptq_error("R: more than %d values; split the sweep into several runs", RATIO_MAX);
    R[(*n)++] = v;
    p = *end ? end + 1 : end;
    if (*end && !*p) return aptq_error("R: '%s' ends with a comma; remove it", text);
  }
  if (*n == 0) return aptq_error("R: empty list; give fractions at 4 bits, e.g. R = 0.5");
  return 0;
}

int avg_bits_parse(const char *text, double *X, int *n) {
  *n = 0;
  const char *p = text;
  while (*p) {
    char *end;
    double v = strtod(p, &end);
    if (end == p || (*end && *end != ','))
      return aptq_error("avg_bits: '%s' is not a comma-separated list of numbers; give average bits per weight, e.g. avg_bits = 3,3.5",
                        text);
    if (!(v >= 2.0 && v <= 8.0))
      return aptq_error("avg_bits: value %g is outside [2, 8]; the widths are 2, 3, 4 and 8 bits, so give an average between 2 and 8", v);
    for (int i = 0; i < *n; i++)
      if (X[i] == v) return aptq_error("avg_bits: value %g is given twice; list each budget once", v);
    if (*n == RATIO_MAX) return aptq_error("avg_bits: more than %d values; split the sweep into several runs", RATIO_MAX);
    X[(*n)++] = v;
    p = *end ? end + 1 : end;
    if (*end && !*p) return aptq_error("avg_bits: '%s' ends with a comma; remove it", text);
  }
  if (*n == 0) return aptq_error("avg_bits: empty list; give average bits per weight, e.g. avg_bits = 3.5");
  return 0;
}

static long long gcd(long long a, long long b) {
  while (b) {
    long long t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* 4 bits for the layers in the given order while they fit in the budget of
 * R·P parameters at 4 bits (the others stay at 2). */
static void fill_in_order(int n, const int *order, const long long *params, double R, int *bits) {
  long long total = 0, used = 0;
  for (int i = 0; i < n; i++) total += params[i];
  long double room = (long double)R * total;
  for (int i = 0; i < n; i++) bits[i] = 2;
  for (int i = 0; i < n; i++) {
    int l = order[i];
    if ((long double)(used + params[l]) <= room * (1 + 1e-12L)) {
      bits[l] = 4;
      used += params[l];
    }
  }
}

static const double *sort_key;
static int by_key_desc(const void *a, const void *b) {
  int i = *(const int *)a, j = *(const int *)b;
  if (sort_key[i] != sort_key[j]) return sort_key[i] < sort_key[j] ? 1 : -1;
  return i - j; /* ties: earlier layer first, deterministic */
}

/* Exact 0/1-choice knapsack: minimise Σ cost over layers with Σ b·P ≤ B,
 * B = avg·Σ P. */
int allocate_knapsack(int n, const long long *params, const double *sens, const double *err, double avg, int *bits) {
  return allocate_knapsack_widths(&knap_code_bits, n, params, sens, err, avg, bits);
}

int allocate_knapsack_widths(const KnapWidths *kw, int n, const long long *params, const double *sens, const double *err, double avg,
                             int *bits) {
  long long total = 0, unit = 0;
  for (int i = 0; i < n; i++) {
    total += params[i];
    unit = gcd(unit, params[i]);
  }
  /* budget in parameter-bits, expressed in units of gcd(P_i); the bit widths
   * are integers, so every layer's cost is an integer number of units */
  long double budget_bits = (long double)avg * kw->per * total;
  long long cap = (long long)floorl(budget_bits / unit * (1 + 1e-12L));
  /* keep the table bounded: coarser units round costs up and the budget down
   * (still never over budget, no longer exactly optimal) */
  long long scale = 1;
  while ((cap / scale + 1) * (long long)n > 100000000LL) scale *= 2;
  cap /= scale;
  size_t W = (size_t)cap + 1;
  double *best = aptq_malloc(sizeof(double) * W, "knapsack costs"), *next = aptq_malloc(sizeof(double) * W, "knapsack costs");
  uint8_t *choice = aptq_malloc((size_t)n * W, "knapsack table");
  if (!best || !next || !choice) {
    aptq_free(best);
    aptq_free(next);
    aptq_free(choice);
    return APTQ_ERR;
  }
  for (size_t w = 0; w < W; w++) best[w] = 0.0; /* no layers: cost 0 at any capacity */
  for (int i = 0; i < n; i++) {
    for (size_t w = 0; w < W; w++) {
      next[w] = INFINITY;
      choice[(size_t)i * W + w] = 0xff;
      for (int c = 0; c < kw->n; c++) {
        long long units = ((long long)kw->cost[c] * (params[i] / unit) + scale - 1) / scale;
        if (units > (long long)w || best[w - units] == INFINITY) continue;
        double v = best[w - units] + sens[i] * err[(size_t)i * kw->n + c];
        if (v < next[w]) {
          next[w] = v;
          choice[(size_t)i * W + w] = (uint8_t)c;
        }
      }
    }
    double *t = best;
    best = next;
    next = t;
  }
  int rc = 0;
  if (best[W - 1] == INFINITY) {
    rc = aptq_error("knapsack: no allocation fits the budget of %g average bits; give at least %g", avg, (double)kw->cost[0] / kw->per);
  } else {
    size_t w = W - 1;
    for (int i = n - 1; i >= 0; i--) {
      int c = choice[(size_t)i * W + w];
      bits[i] = kw->bits[c];
      w -= (size_t)(((long long)kw->cost[c] * (params[i] / unit) + scale - 1) / scale);
    }
  }
  aptq_free(best);
  aptq_free(next);
  aptq_free(choice);
  return rc;
}

int allocate_bits(Allocation allocation, double R, int n, const long long *params, const double *sens, const double *err, int per_block,
                  uint64_t seed, int *bits) {
  return allocate_bits_widths(&knap_code_bits, allocation, R, n, params, sens, err, per_block, seed, bits);
}

int allocate_bits_widths(const KnapWidths *kw, Allocation allocation, double R, int n, const long long *params, const double *sens,
                         const double *err, int per_block, uint64_t seed, int *bits) {
  if (allocation == ALLOC_KNAPSACK)
    return allocate_knapsack_widths(kw, n, params, sens, err, knap_width_cost(kw, 4) * R + knap_width_cost(kw, 2) * (1 - R), bits);
  int *order = aptq_malloc(sizeof(int) * (size_t)n + 1, "allocation order");
  if (!order) return APTQ_ERR;
  for (int i = 0; i < n; i++) order[i] = i;
  int rc = 0;
  if (allocation == ALLOC_TRACE) {
    sort_key = sens;
    qsort(order, (size_t)n, sizeof(int), by_key_desc);
    fill_in_order(n, order, params, R, bits);
  } else if (allocation == ALLOC_RANDOM) {
    Rng rng = {seed};
    for (int i = n - 1; i > 0; i--) { /* Fisher–Yates */
      int j = (int)(rng_uniform(&rng) * (i + 1));
      int t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    fill_in_order(n, order, params, R, bits);
  } else if (allocation == ALLOC_BLOCKWISE) {
    long long total = 0, used = 0;
    for (int i = 0; i < n; i++) total += params[i];
    for (int i = 0; i < n; i++) bits[i] = 2;
    for (int b = 0; b * per_block < n; b++) {
      long long p = 0;
      for (int i = b * per_block; i < (b + 1) * per_block && i < n; i++) p += params[i];
      if ((long double)(used + p) > (long double)R * total * (1 + 1e-12L)) break;
      for (int i = b * per_block; i < (b + 1) * per_block && i < n; i++) bits[i] = 4;
      used += p;
    }
  } else {
    rc = aptq_error("allocation: unknown kind %d; expected trace, knapsack, random or blockwise", (int)allocation);
  }
  aptq_free(order);
  return rc;
}

double allocation_average_bits(int n, const long long *params, const int *bits) {
  long double num = 0, den = 0;
  for (int i = 0; i < n; i++) {
    num += (long double)bits[i] * params[i];
    den += params[i];
  }
  return den > 0 ? (double)(num / den) : 0.0;
}

double allocation_average_cost(const KnapWidths *w, int n, const long long *params, const int *bits) {
  long double num = 0, den = 0;
  for (int i = 0; i < n; i++) {
    num += (long double)knap_width_cost(w, bits[i]) * params[i];
    den += params[i];
  }
  return den > 0 ? (double)(num / den) : 0.0;
}

double allocation_fraction_high(int n, const long long *params, const int *bits) {
  long double num = 0, den = 0;
  for (int i = 0; i < n; i++) {
    num += bits[i] > 2 ? params[i] : 0;
    den += params[i];
  }
  return den > 0 ? (double)(num / den) : 0.0;
}
