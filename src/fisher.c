/* Hutchinson estimate of the Fisher trace of every linear layer (fisher.h).
 *
 * Data path, on each rank's share of the selected calibration sequences:
 *   1. full-precision forward of every sequence: the final residual stream
 *      (the reference logits are recomputed from it a chunk at a time);
 *   2. for each block l: one copy of the block-l input per (sequence, layer
 *      of the block, probe), run through block l with that layer perturbed,
 *      then through the full-precision blocks l+1.., then the head: the
 *      variance of the logit change under the reference distribution, per
 *      token, summed;
 *   3. per (layer, sequence) values summed over the ranks (each is made by
 *      one rank) and then over sequences in order: independent of the rank
 *      count.
 * Cost: Σ_l (L − l) block forwards of 7·probes streams per sequence plus as
 * many head products; block weights are loaded L(L+1)/2 times. */
#include "fisher.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "forward.h"
#include "rng.h"

int fisher_selected(int nseq, int fisher_nseq, int j) {
  long long n = nseq, f = fisher_nseq < nseq ? fisher_nseq : nseq;
  return (j + 1) * f / n > j * f / n;
}

/* The probe of (layer, sequence, probe): a splitmix64 stream seeded from all
 * three, so that it does not depend on which rank holds the sequence. */
static Rng probe_rng(int seed, int layer, int seq, int probe) {
  Rng r = {(uint64_t)seed ^ 0x5851F42D4C957F2Dull};
  r.state = rng_next(&r) ^ (uint64_t)layer;
  r.state = rng_next(&r) ^ (uint64_t)seq;
  r.state = rng_next(&r) ^ (uint64_t)probe;
  return r;
}

static double layer_rms(const float *w, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)w[i] * w[i];
  return sqrt(s / (double)n);
}

double fisher_memory(const Options *o, const ModelConfig *c, int local_selected) {
  double TD = (double)o->seqlen * c->dim, f = sizeof(float);
  double streams = (double)local_selected * LIN_COUNT * o->fisher_probes;
  /* residual streams: block inputs and final outputs of the selected
   * sequences, the perturbed streams; head: reference logits, probabilities,
   * probe logits and the Head's own logits and norm buffers; a saved copy of
   * the largest layer */
  double largest = (double)c->hidden_dim * c->dim;
  return (2.0 * local_selected + streams) * TD * f + 4.0 * HEAD_CHUNK * c->vocab_size * f + HEAD_CHUNK * c->dim * f + largest * f;
}

/* Σ over the tokens of x (T × D) of Var_p(δ), δ = logits(x) − ref, where
 * ref and p are the reference logits and probabilities of the same chunk. */
static double logit_variance(const ModelConfig *c, Head *h, const float *x, int t0, int n, const float *ref, const float *p,
                             float *logits) {
  int V = c->vocab_size;
  head_logits(c, h, x + (size_t)t0 * c->dim, n, logits);
  double total = 0;
  for (int i = 0; i < n; i++) {
    const float *a = ref + (size_t)i * V, *pi = p + (size_t)i * V;
    float *b = logits + (size_t)i * V;
    /* two passes: a common shift of all logits (no change of p) cancels exactly */
    double m1 = 0;
    for (int j = 0; j < V; j++) {
      b[j] -= a[j];
      m1 += (double)pi[j] * b[j];
    }
    double var = 0;
    for (int j = 0; j < V; j++) {
      double d = b[j] - m1;
      var += pi[j] * d * d;
    }
    total += var;
  }
  return total;
}

int fisher_sensitivities(const Options *o, const Model *m, const TokenShard *calib, double *sens, double *stderr_out, MPI_Comm comm) {
  const ModelConfig *c = &m->cfg;
  int L = c->n_layers, T = calib->seqlen, D = c->dim, V = c->vocab_size, P = o->fisher_probes;
  int nsel = o->fisher_nseq < calib->nseq ? o->fisher_nseq : calib->nseq;
  int nlin = L * LIN_COUNT;
  size_t TD = (size_t)T * D;

  /* this rank's selected sequences (global indices, in order) */
  int *sel = aptq_malloc(sizeof(int) * (size_t)(calib->count + 1), "selected sequences"), ns = 0;
  int *sel_rank = aptq_malloc(sizeof(int) * (size_t)(calib->nseq + 1), "selected sequences");
  if (!sel || !sel_rank) aptq_fatal(comm);
  for (int i = 0; i < calib->count; i++)
    if (fisher_selected(calib->nseq, nsel, calib->first + i)) sel[ns++] = i;
  /* position of each global selected sequence among the selected ones */
  for (int j = 0, r = 0; j < calib->nseq; j++) sel_rank[j] = fisher_selected(calib->nseq, nsel, j) ? r++ : -1;

  int S = ns * LIN_COUNT * P; /* perturbed streams of one block */
  float *x = aptq_malloc(sizeof(float) * (ns ? ns : 1) * TD, "sensitivity block inputs");
  float *xfinal = aptq_malloc(sizeof(float) * (ns ? ns : 1) * TD, "sensitivity final states");
  float *stream = aptq_malloc(sizeof(float) * (S ? S : 1) * TD, "sensitivity probe streams");
  float *ref = aptq_malloc(sizeof(float) * HEAD_CHUNK * (size_t)V, "reference logits");
  float *prob = aptq_malloc(sizeof(float) * HEAD_CHUNK * (size_t)V, "reference probabilities");
  float *logits = aptq_malloc(sizeof(float) * HEAD_CHUNK * (size_t)V, "probe logits");
  float *saved = aptq_malloc(sizeof(float) * (size_t)c->hidden_dim * D, "saved layer");
  double *value = aptq_calloc((size_t)nlin * nsel, sizeof(double), "sensitivity values");
  BlockWeights w;
  BlockScratch s;
  Head head;
  int rc = !x || !xfinal || !stream || !ref || !prob || !logits || !saved || !value;
  rc = rc || block_weights_alloc(c, &w) || scratch_alloc(c, T, &s) || head_load(m, &head);
  CHECK(aptq_agree(comm, rc));

  /* 1. full-precision forward: block-0 inputs kept in x, final states */
  for (int i = 0; !rc && i < ns; i++) rc = embed_tokens(m, calib->ids + (size_t)sel[i] * T, T, x + i * TD);
  memcpy(xfinal, x, sizeof(float) * ns * TD);
  for (int l = 0; !rc && l < L; l++) {
    rc = block_weights_load(m, l, &w);
    for (int i = 0; !rc && i < ns; i++) block_forward(c, &w, &s, xfinal + i * TD);
  }
  CHECK(aptq_agree(comm, rc));

  for (int l = 0; l < L; l++) {
    /* 2a. block l with one layer perturbed, per (sequence, layer, probe) */
    CHECK(aptq_agree(comm, block_weights_load(m, l, &w)));
    double sig2[LIN_COUNT];
    for (int k = 0; k < LIN_COUNT; k++) {
      size_t n = (size_t)m->linear[l][k].rows * m->linear[l][k].cols;
      double sigma = FISHER_ALPHA * layer_rms(w.w[k], n);
      sig2[k] = sigma * sigma;
      memcpy(saved, w.w[k], sizeof(float) * n);
      for (int i = 0; i < ns; i++)
        for (int p = 0; p < P; p++) {
          Rng r = probe_rng(o->seed, l * LIN_COUNT + k, calib->first + sel[i], p);
          for (size_t j = 0; j < n; j++) w.w[k][j] = saved[j] + (float)(sigma * rng_normal(&r));
          float *y = stream + ((size_t)(i * LIN_COUNT + k) * P + p) * TD;
          memcpy(y, x + i * TD, sizeof(float) * TD);
          block_forward(c, &w, &s, y);
        }
      memcpy(w.w[k], saved, sizeof(float) * n);
    }
    /* the full-precision block-l output is block l+1's input */
    for (int i = 0; i < ns; i++) block_forward(c, &w, &s, x + i * TD);
    /* 2b. the later blocks, full precision */
    for (int b = l + 1; b < L; b++) {
      CHECK(aptq_agree(comm, block_weights_load(m, b, &w)));
      for (int j = 0; j < S; j++) block_forward(c, &w, &s, stream + j * TD);
    }
    /* 2c. head: logit variance per stream, against the reference chunk */
    for (int i = 0; i < ns; i++) {
      int g = sel_rank[calib->first + sel[i]];
      for (int t0 = 0; t0 < T; t0 += HEAD_CHUNK) {
        int n = T - t0 < HEAD_CHUNK ? T - t0 : HEAD_CHUNK;
        head_logits(c, &head, xfinal + i * TD + (size_t)t0 * D, n, ref);
        for (int q = 0; q < n; q++) {
          const float *a = ref + (size_t)q * V;
          float *pq = prob + (size_t)q * V, mx = a[0];
          for (int j = 1; j < V; j++) mx = a[j] > mx ? a[j] : mx;
          double sum = 0;
          for (int j = 0; j < V; j++) sum += pq[j] = expf(a[j] - mx);
          float inv = (float)(1.0 / sum);
          for (int j = 0; j < V; j++) pq[j] *= inv;
        }
        for (int k = 0; k < LIN_COUNT; k++)
          for (int p = 0; p < P; p++) {
            const float *y = stream + ((size_t)(i * LIN_COUNT + k) * P + p) * TD;
            value[(size_t)(l * LIN_COUNT + k) * nsel + g] += logit_variance(c, &head, y, t0, n, ref, prob, logits) / sig2[k];
          }
      }
    }
  }

  /* 3. every value was made by one rank: the sum over ranks is exact */
  MPI_Allreduce(MPI_IN_PLACE, value, nlin * nsel, MPI_DOUBLE, MPI_SUM, comm);
  for (int l = 0; l < nlin; l++) {
    double nparam = (double)m->linear[l / LIN_COUNT][l % LIN_COUNT].rows * m->linear[l / LIN_COUNT][l % LIN_COUNT].cols;
    double scale = 1.0 / ((double)P * T * nparam), sum = 0, sq = 0;
    for (int j = 0; j < nsel; j++) sum += value[(size_t)l * nsel + j] * scale;
    double mean = sum / nsel;
    for (int j = 0; j < nsel; j++) {
      double d = value[(size_t)l * nsel + j] * scale - mean;
      sq += d * d;
    }
    sens[l] = mean;
    if (stderr_out) stderr_out[l] = nsel > 1 ? sqrt(sq / (nsel - 1) / nsel) : 0.0;
  }
  free(sel);
  free(sel_rank);
  free(x);
  free(xfinal);
  free(stream);
  free(ref);
  free(prob);
  free(logits);
  free(saved);
  free(value);
  head_free(&head);
  scratch_free(&s);
  block_weights_free(&w);
  return 0;
}
