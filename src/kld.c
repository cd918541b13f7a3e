#include "kld.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

void log_softmax_row(const float *z, int V, double *e, LogSoftmax *r) {
  int top = 0;
  for (int j = 1; j < V; j++)
    if (z[j] > z[top]) top = j;
  double mx = (double)z[top], sum = 0.0;
  for (int j = 0; j < V; j++) {
    double ej = exp((double)z[j] - mx);
    if (e) e[j] = ej;
    sum += ej;
  }
  r->z = z;
  r->sum = sum;
  r->lse = mx + log(sum);
  r->top = top;
}

double kld_row(const LogSoftmax *p, const double *e, const LogSoftmax *q, int V) {
  double kld = 0.0, inv = 1.0 / p->sum;
  for (int j = 0; j < V; j++) {
    double lp = (double)p->z[j] - p->lse, lq = (double)q->z[j] - q->lse;
    kld += e[j] * inv * (lp - lq);
  }
  return kld;
}

void mean_and_uncertainty(double sum, double sum2, long long n, double *mean, double *se) {
  *mean = *se = 0.0;
  if (n < 1) return;
  double f = sum / (double)n, df = sum2 / (double)n - f * f;
  *mean = f;
  *se = df > 0 && n > 10 ? sqrt(df / (double)(n - 1)) : 0.0;
}

double percentile_sorted(const double *v, long long n, double fraction) {
  if (fraction <= 0) return v[0];
  if (fraction >= 1) return v[n - 1];
  double p = fraction * (double)(n - 1);
  long long ip = (long long)p;
  p -= (double)ip;
  return (1 - p) * v[ip] + p * v[ip + 1 < n ? ip + 1 : n - 1];
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int kld_stats(const double *kld, const unsigned char *same, long long n, KldStats *s) {
  memset(s, 0, sizeof *s);
  if (n < 1) return 0;
  double sum = 0.0, sum2 = 0.0;
  long long nsame = 0;
  for (long long i = 0; i < n; i++) {
    sum += kld[i];
    sum2 += kld[i] * kld[i];
    nsame += same[i] != 0;
  }
  mean_and_uncertainty(sum, sum2, n, &s->kld, &s->kld_se);
  double *sorted = aptq_malloc(sizeof(double) * (size_t)n, "sorted KL divergences");
  if (!sorted) return APTQ_ERR;
  memcpy(sorted, kld, sizeof(double) * (size_t)n);
  qsort(sorted, (size_t)n, sizeof(double), cmp_double);
  s->kld_p99 = percentile_sorted(sorted, n, 0.99);
  aptq_free(sorted);
  s->top1 = (double)nsame / (double)n;
  s->top1_se = n > 1 ? sqrt(s->top1 * (1.0 - s->top1) / (double)(n - 1)) : 0.0;
  return 0;
}

/* llama.cpp's covariance(): of two means of n values (0 below 10 values). */
static double covariance(double suma, double sumb, double sumab, long long n) {
  if (n < 10) return 0.0;
  double nn = (double)n;
  return (sumab / nn - (suma / nn) * (sumb / nn)) / (nn - 1);
}

void paired_diff(const double *kld_a, const double *kld_b, const double *nll_a, const double *nll_b, long long n, double ppl_a,
                 double ppl_b, PairedDiff *d) {
  double sd = 0, sd2 = 0, sa = 0, sa2 = 0, sb = 0, sb2 = 0, sab = 0;
  for (long long i = 0; i < n; i++) {
    double x = kld_b[i] - kld_a[i];
    sd += x;
    sd2 += x * x;
    sa += nll_a[i];
    sa2 += nll_a[i] * nll_a[i];
    sb += nll_b[i];
    sb2 += nll_b[i] * nll_b[i];
    sab += nll_a[i] * nll_b[i];
  }
  mean_and_uncertainty(sd, sd2, n, &d->kld, &d->kld_se);
  double ma, sea, mb, seb;
  mean_and_uncertainty(sa, sa2, n, &ma, &sea);
  mean_and_uncertainty(sb, sb2, n, &mb, &seb);
  double ua = ppl_a * sea, ub = ppl_b * seb, cov = ppl_a * ppl_b * covariance(sa, sb, sab, n);
  double var = ua * ua + ub * ub - 2.0 * cov;
  d->ppl = ppl_b - ppl_a;
  d->ppl_se = var > 0 ? sqrt(var) : 0.0;
}
