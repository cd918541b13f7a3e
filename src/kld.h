/* KL divergence of a model's next-token distribution from the
 * full-precision model's, with the statistics llama.cpp's perplexity tool
 * reports for it (tools/perplexity/perplexity.cpp, kl_divergence() and
 * its helpers; docs/options.md#kl-divergence):
 *   per prediction KL(P || Q) = Σ_j P_j (log P_j − log Q_j), P the
 *   full-precision softmax, Q the quantized one, from the log-softmax of
 *   both logit rows in double (llama.cpp keeps the base log-probabilities
 *   in 16 bits and drops those below −16; here nothing is dropped);
 *   mean ± sqrt(var/(n−1)) (its mean_and_uncertainty), percentiles of
 *   the sorted values with its linear interpolation, "Same top p" (the
 *   first largest logit of both rows agrees) ± sqrt(p(1−p)/(n−1)), and
 *   the perplexity difference of two models with its covariance term.
 * Everything here is local arithmetic: no MPI. */
#ifndef APTQ_KLD_H
#define APTQ_KLD_H

/* One logit row's log-softmax: log P_j = z_j − lse. */
typedef struct {
  const float *z; /* the logits [V] */
  double lse;     /* log Σ_j exp(z_j), in double */
  double sum;     /* Σ_j exp(z_j − max z) */
  int top;        /* the first index of the largest logit */
} LogSoftmax;

/* The log-softmax of z [V]; e (V doubles, or NULL) receives
 * exp(z_j − max z), which kld_row needs of the reference row. */
void log_softmax_row(const float *z, int V, double *e, LogSoftmax *r);
/* KL(P || Q) of one prediction: p the reference row (its e from
 * log_softmax_row), q the other. Exactly 0 when the rows are equal. */
double kld_row(const LogSoftmax *p, const double *e, const LogSoftmax *q, int V);

/* llama.cpp's mean_and_uncertainty: the mean of n values from their sum
 * and sum of squares, and its standard error sqrt((Σv²/n − mean²)/(n−1))
 * (0 unless that variance is positive and n > 10). */
void mean_and_uncertainty(double sum, double sum2, long long n, double *mean, double *se);
/* llama.cpp's percentile of n ≥ 1 sorted values: p = fraction·(n−1),
 * linear between the values at floor(p) and the next. */
double percentile_sorted(const double *sorted, long long n, double fraction);

/* The statistics of one model against the reference over n predictions. */
typedef struct {
  double kld, kld_se, kld_p99; /* mean KL divergence, its standard error, 99th percentile */
  double top1, top1_se;        /* fraction of predictions whose top token agrees, its standard error */
} KldStats;
/* kld [n] per prediction, same [n] 1 where the top tokens agree; sums in
 * index order. Local; 0, or APTQ_ERR (out of memory for the sorted copy). */
int kld_stats(const double *kld, const unsigned char *same, long long n, KldStats *s);

/* The paired difference b − a of two models on the same n predictions. */
typedef struct {
  double kld, kld_se; /* mean of kld_b − kld_a per prediction, its standard error */
  double ppl, ppl_se; /* ppl_b − ppl_a, and llama.cpp's "Mean PPL(Q)-PPL(base)" uncertainty */
} PairedDiff;
/* kld_a, kld_b, nll_a, nll_b [n] per prediction; ppl_a, ppl_b the two
 * perplexities. The perplexity uncertainty is llama.cpp's: each
 * perplexity's ppl·se(nll) and the covariance of the per-prediction NLLs,
 * sqrt(ua² + ub² − 2·ppl_a·ppl_b·cov). */
void paired_diff(const double *kld_a, const double *kld_b, const double *nll_a, const double *nll_b, long long n, double ppl_a,
                 double ppl_b, PairedDiff *d);

#endif
