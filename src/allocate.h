/* Mixed-precision bit allocation over the linear layers (docs/mixed.md).
 * Pure numerics: every rank calls it with the same inputs and gets the same
 * answer. The budget is that of a fraction R of the parameters at 4 bits and
 * the rest at 2: average bits 4R + 2(1 − R); no allocation exceeds it. */
#ifndef APTQ_ALLOCATE_H
#define APTQ_ALLOCATE_H

#include <stdint.h>

enum { RATIO_MAX = 32, KNAP_CHOICES = 4, KNAP_MAX = 6 };
/* the allocation option's choices, in its order (options.c) */
typedef enum { ALLOC_TRACE, ALLOC_KNAPSACK, ALLOC_RANDOM, ALLOC_BLOCKWISE } Allocation;
/* the bit widths the knapsack chooses from; err columns follow this order */
extern const int knapsack_bits[KNAP_CHOICES];

/* The widths a knapsack chooses from and what each costs per weight:
 * cost[c] / per bits. knap_code_bits: {2, 3, 4, 8} at their code bits
 * (knapsack_bits, scales not counted); knap_ggml (grid = ggml): {2, 3, 4,
 * 5, 6, 8} at the bits per weight llama.cpp counts for Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K, Q8_0 (block bytes · 8 / block weights, fp16 scales and
 * mins included: 84, 110, 144, 176, 210 bytes per 256, 34 per 32, i.e.
 * 2.625, 3.4375, 4.5, 5.5, 6.5625, 8.5 = 84 .. 272 / 32). err arrays have
 * n columns per layer, in this order. */
typedef struct {
  int n, per;
  int bits[KNAP_MAX], cost[KNAP_MAX];
} KnapWidths;
extern const KnapWidths knap_code_bits, knap_ggml;
/* cost per weight of width `bits` in w (bits per weight), or 0 if none */
double knap_width_cost(const KnapWidths *w, int bits);

/* "0.5,0.75,1" → R[0..n): each in [0, 1], at most RATIO_MAX, no repeats. */
int ratio_parse(const char *text, double *R, int *n);

/* "3,3.5" → X[0..n): average bits per weight, each in [2, 8], at most
 * RATIO_MAX, no repeats (avg_bits). */
int avg_bits_parse(const char *text, double *X, int *n);

/* bits[i] for layer i (n layers, params[i] weights each, per_block layers per
 * decoder block in order):
 *   trace:     layers by descending sens, 4 bits while the budget allows
 *              (a layer that does not fit is skipped, smaller ones may follow);
 *   random:    the same fill in a seeded random order;
 *   blockwise: whole blocks at 4 bits, first blocks first, while they fit;
 *   knapsack:  b_i ∈ {2,3,4,8} minimising Σ sens_i·err[i][b] (err: n × 4,
 *              squared weight error at each width) under the bit budget,
 *              exact dynamic programming over the layers.
 * Returns 0, or an error if the allocation is unknown. */
int allocate_bits(Allocation allocation, double R, int n, const long long *params, const double *sens, const double *err, int per_block,
                  uint64_t seed, int *bits);

/* The knapsack under a budget of avg bits per weight on average (code bits:
 * Σ b_i·params_i ≤ avg·Σ params_i): b_i ∈ {2,3,4,8} minimising
 * Σ sens_i·err[i][b]. allocate_bits's knapsack is this with
 * avg = 4R + 2(1 − R). Returns 0, or an error if nothing fits (avg < 2). */
int allocate_knapsack(int n, const long long *params, const double *sens, const double *err, double avg, int *bits);
/* The same over the widths w (err: n × w->n), the budget avg in w's
 * cost per weight: Σ cost(b_i)·params_i ≤ avg·Σ params_i. */
int allocate_knapsack_widths(const KnapWidths *w, int n, const long long *params, const double *sens, const double *err, double avg,
                             int *bits);
/* allocate_bits over the widths w: the knapsack's budget is that of R at
 * 4 bits and 1 − R at 2 in w's costs (R·cost(4) + (1 − R)·cost(2)). */
int allocate_bits_widths(const KnapWidths *w, Allocation allocation, double R, int n, const long long *params, const double *sens,
                         const double *err, int per_block, uint64_t seed, int *bits);

/* Σ bits·params / Σ params, and the fraction of parameters above 2 bits. */
double allocation_average_bits(int n, const long long *params, const int *bits);
/* Σ cost(bits_i)·params / Σ params in w's cost per weight (knap_ggml:
 * llama.cpp's bits per weight of the linear layers, unpadded). */
double allocation_average_cost(const KnapWidths *w, int n, const long long *params, const int *bits);
double allocation_fraction_high(int n, const long long *params, const int *bits);

#endif
