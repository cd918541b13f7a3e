/* Bit-allocation unit tests (src/allocate.c): R parsing; the fill rules
 * (trace, random, blockwise) never exceed the budget and follow their order;
 * the knapsack's dynamic program equals brute force over all 4^n choices on
 * random small instances, and stays within budget; the same for the
 * widths of grid = ggml (knap_ggml: 6^n choices, costs in llama.cpp's bits
 * per weight). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "allocate.h"
#include "error.h"
#include "rng.h"

#include "expect.h"

static double budget_bits(double R, int n, const long long *p) {
  long double t = 0;
  for (int i = 0; i < n; i++) t += p[i];
  return (double)((4 * R + 2 * (1 - R)) * t);
}

static double used_bits(int n, const long long *p, const int *b) {
  long double t = 0;
  for (int i = 0; i < n; i++) t += (long double)b[i] * p[i];
  return (double)t;
}

/* n layers of random sizes, sensitivities and errors at each knapsack width
 * (an error falling about 4x per bit) */
static void random_layers(Rng *rng, int n, long long *pk, double *sk, double *ek) {
  for (int i = 0; i < n; i++) {
    pk[i] = 1024 * (1 + (long long)(rng_uniform(rng) * 8));
    sk[i] = rng_uniform(rng);
    double base = 1 + rng_uniform(rng);
    for (int c = 0; c < KNAP_CHOICES; c++) ek[i * KNAP_CHOICES + c] = base * pow(4.0, -knapsack_bits[c]) * (1 + 0.3 * rng_uniform(rng));
  }
}

/* The least sum of sensitivity x error over every choice of widths for the
 * n (<= 6) layers whose bits fit cap: 4^n cases. */
static double brute_force(int n, const long long *pk, const double *sk, const double *ek, double cap) {
  double best = INFINITY;
  int cases = 1;
  for (int i = 0; i < n; i++) cases *= 4;
  for (int code = 0; code < cases; code++) {
    int bb[6];
    double v = 0;
    for (int i = 0, x = code; i < n; i++, x /= 4) {
      bb[i] = knapsack_bits[x % 4];
      v += sk[i] * ek[i * KNAP_CHOICES + x % 4];
    }
    if (used_bits(n, pk, bb) <= cap * (1 + 1e-12) && v < best) best = v;
  }
  return best;
}

/* The same over the widths w (n <= 6 layers, w->n^n cases) whose average
 * cost per weight (w's bits per weight) is at most avg. */
static double brute_force_widths(const KnapWidths *w, int n, const long long *pk, const double *sk, const double *ek, double avg) {
  double best = INFINITY;
  int cases = 1;
  for (int i = 0; i < n; i++) cases *= w->n;
  for (int code = 0; code < cases; code++) {
    int bb[6];
    double v = 0;
    for (int i = 0, x = code; i < n; i++, x /= w->n) {
      bb[i] = w->bits[x % w->n];
      v += sk[i] * ek[i * w->n + x % w->n];
    }
    if (allocation_average_cost(w, n, pk, bb) <= avg * (1 + 1e-12) && v < best) best = v;
  }
  return best;
}

int main(void) {
  double R[RATIO_MAX];
  int n;
  EXPECT(!ratio_parse("0.5,0.75,0.9,1.0", R, &n) && n == 4 && R[0] == 0.5 && R[3] == 1.0, "parse list");
  EXPECT(!ratio_parse("0", R, &n) && n == 1 && R[0] == 0.0, "parse 0");
  const char *bad[] = {"1.5", "-0.1", "0.5,", "a", "0.5,0.5", "", "nan", "0.5;0.7"};
  for (int i = 0; i < 8; i++) EXPECT(ratio_parse(bad[i], R, &n) != 0, "'%s' must be refused", bad[i]);

  /* 7 layers per block, 4 blocks, shaped like wt2-llama-s */
  enum { NL = 28 };
  long long p[NL];
  double sens[NL], err[NL * KNAP_CHOICES];
  int bits[NL];
  const long long shape[7] = {65536, 32768, 32768, 65536, 176128, 176128, 176128};
  Rng rng = {7};
  for (int i = 0; i < NL; i++) {
    p[i] = shape[i % 7];
    sens[i] = rng_uniform(&rng);
  }
  const double ratios[6] = {0, 0.25, 0.5, 0.75, 0.9, 1};
  for (int r = 0; r < 6; r++) {
    const char *kinds[3] = {"trace", "random", "blockwise"};
    const Allocation kind[3] = {ALLOC_TRACE, ALLOC_RANDOM, ALLOC_BLOCKWISE};
    for (int k = 0; k < 3; k++) {
      EXPECT(!allocate_bits(kind[k], ratios[r], NL, p, sens, NULL, 7, 42, bits), "%s", kinds[k]);
      double frac = allocation_fraction_high(NL, p, bits);
      EXPECT(frac <= ratios[r] + 1e-12, "%s R %g: fraction %g over budget", kinds[k], ratios[r], frac);
      if (ratios[r] == 1.0) EXPECT(frac == 1.0, "%s R 1: all layers at 4 bits", kinds[k]);
      if (ratios[r] == 0.0) EXPECT(frac == 0.0, "%s R 0: all layers at 2 bits", kinds[k]);
      for (int i = 0; i < NL; i++) EXPECT(bits[i] == 2 || bits[i] == 4, "%s: bits %d", kinds[k], bits[i]);
    }
    /* trace: a 4-bit layer is never less sensitive than a 2-bit layer of the same size */
    allocate_bits(ALLOC_TRACE, ratios[r], NL, p, sens, NULL, 7, 0, bits);
    for (int i = 0; i < NL; i++)
      for (int j = 0; j < NL; j++)
        if (p[i] == p[j] && bits[i] == 4 && bits[j] == 2 && sens[i] < sens[j])
          EXPECT(0, "trace order: layer %d (%g) over %d (%g)", i, sens[i], j, sens[j]);
    /* blockwise: whole blocks, first first */
    allocate_bits(ALLOC_BLOCKWISE, ratios[r], NL, p, sens, NULL, 7, 0, bits);
    for (int i = 1; i < NL; i++)
      EXPECT(bits[i] <= bits[i - 1] || i % 7 != 0 ? 1 : 0, "blockwise: block %d at 4 bits after a 2-bit block", i / 7);
    for (int i = 0; i < NL; i++) EXPECT(bits[i] == bits[i - i % 7], "blockwise: block %d split", i / 7);
  }
  /* seeded: the same seed, the same allocation; another seed, another order */
  int b1[NL], b2[NL], b3[NL];
  allocate_bits(ALLOC_RANDOM, 0.5, NL, p, sens, NULL, 7, 1, b1);
  allocate_bits(ALLOC_RANDOM, 0.5, NL, p, sens, NULL, 7, 1, b2);
  allocate_bits(ALLOC_RANDOM, 0.5, NL, p, sens, NULL, 7, 2, b3);
  EXPECT(!memcmp(b1, b2, sizeof b1), "random: same seed, same bits");
  EXPECT(memcmp(b1, b3, sizeof b1), "random: different seeds, different bits");

  /* knapsack against brute force: n = 6 layers, random sizes and errors */
  for (int trial = 0; trial < 40; trial++) {
    enum { NK = 6 };
    long long pk[NK];
    double sk[NK], ek[NK * KNAP_CHOICES];
    int bk[NK];
    random_layers(&rng, NK, pk, sk, ek);
    double Rk = rng_uniform(&rng);
    EXPECT(!allocate_bits(ALLOC_KNAPSACK, Rk, NK, pk, sk, ek, 7, 0, bk), "knapsack");
    double cap = budget_bits(Rk, NK, pk), got = 0, best;
    for (int i = 0; i < NK; i++) {
      int c = bk[i] == 2 ? 0 : bk[i] == 3 ? 1 : bk[i] == 4 ? 2 : 3;
      got += sk[i] * ek[i * KNAP_CHOICES + c];
    }
    EXPECT(used_bits(NK, pk, bk) <= cap * (1 + 1e-12), "knapsack over budget: %g > %g", used_bits(NK, pk, bk), cap);
    best = brute_force(NK, pk, sk, ek, cap);
    EXPECT(fabs(got - best) <= 1e-12 * best, "trial %d: knapsack %.12g, brute force %.12g", trial, got, best);
  }
  /* the avg_bits knapsack: budgets of X average bits in [2, 8] (8-bit
   * layers enter above 4), against brute force; nothing fits below 2 */
  for (int trial = 0; trial < 40; trial++) {
    enum { NK = 6 };
    long long pk[NK];
    double sk[NK], ek[NK * KNAP_CHOICES];
    int bk[NK];
    random_layers(&rng, NK, pk, sk, ek);
    double X = 2 + 6 * rng_uniform(&rng), total = 0, got = 0, best;
    for (int i = 0; i < NK; i++) total += (double)pk[i];
    EXPECT(!allocate_knapsack(NK, pk, sk, ek, X, bk), "avg_bits knapsack");
    for (int i = 0; i < NK; i++) got += sk[i] * ek[i * KNAP_CHOICES + (bk[i] == 2 ? 0 : bk[i] == 3 ? 1 : bk[i] == 4 ? 2 : 3)];
    EXPECT(allocation_average_bits(NK, pk, bk) <= X * (1 + 1e-12), "avg_bits over budget: %g > %g", allocation_average_bits(NK, pk, bk), X);
    best = brute_force(NK, pk, sk, ek, X * total);
    EXPECT(fabs(got - best) <= 1e-12 * best, "avg_bits trial %d: knapsack %.12g, brute force %.12g", trial, got, best);
    if (trial == 0) EXPECT(allocate_knapsack(NK, pk, sk, ek, 1.9, bk), "avg_bits 1.9: nothing fits, refused");
  }
  /* grid = ggml's widths 2, 3, 4, 5, 6, 8 at 2.625 .. 8.5 bits per weight:
   * against brute force over 6^6 choices; nothing fits below 2.625 */
  for (int trial = 0; trial < 20; trial++) {
    enum { NK = 6 };
    const KnapWidths *w = &knap_ggml;
    long long pk[NK];
    double sk[NK], ek[NK * KNAP_MAX], got = 0;
    int bk[NK];
    for (int i = 0; i < NK; i++) {
      pk[i] = 256 * (1 + (long long)(rng_uniform(&rng) * 8));
      sk[i] = rng_uniform(&rng);
      for (int c = 0; c < w->n; c++) ek[i * w->n + c] = pow(4.0, -w->bits[c]) * (1 + 0.3 * rng_uniform(&rng));
    }
    double X = 2.625 + 5.875 * rng_uniform(&rng);
    EXPECT(!allocate_knapsack_widths(w, NK, pk, sk, ek, X, bk), "ggml knapsack");
    for (int i = 0; i < NK; i++)
      for (int c = 0; c < w->n; c++) got += bk[i] == w->bits[c] ? sk[i] * ek[i * w->n + c] : 0;
    double avg = allocation_average_cost(w, NK, pk, bk), best = brute_force_widths(w, NK, pk, sk, ek, X);
    EXPECT(avg <= X * (1 + 1e-12), "ggml knapsack over budget: %g > %g", avg, X);
    EXPECT(fabs(got - best) <= 1e-12 * best, "ggml trial %d: knapsack %.12g, brute force %.12g", trial, got, best);
    if (trial == 0) EXPECT(allocate_knapsack_widths(w, NK, pk, sk, ek, 2.6, bk), "ggml 2.6: nothing fits, refused");
  }
  EXPECT(knap_width_cost(&knap_ggml, 3) == 3.4375 && knap_width_cost(&knap_ggml, 8) == 8.5 && knap_width_cost(&knap_code_bits, 8) == 8,
         "ggml costs");
  double X[RATIO_MAX];
  int nX;
  EXPECT(!avg_bits_parse("3,3.5,8", X, &nX) && nX == 3 && X[1] == 3.5, "avg_bits_parse list");
  EXPECT(avg_bits_parse("1.5", X, &nX) && avg_bits_parse("3,3", X, &nX) && avg_bits_parse("3,", X, &nX) && avg_bits_parse("x", X, &nX),
         "avg_bits_parse refusals");
  printf("allocate: %d checks, %d failures\n", checks, failures);
  return failures != 0;
}
