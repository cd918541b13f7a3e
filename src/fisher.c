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
 * many head products; block weights are loaded L(L+1)/2 times.
 *
 * fisher_method = backward replaces 1 and 2 by fisher_backward_values
 * (fisher_backward.c); 3 is shared. */
#include "fisher.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fisher_backward.h"
#include "forward.h"
#include "rng.h"

static int use_backward(const Options *o) { return strcmp(o->fisher_method, "backward") == 0; }

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
  if (use_backward(o)) return fisher_backward_memory(o, c, local_selected);
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

/* The estimate's buffers on this rank. */
typedef struct {
  int *sel, ns;               /* its selected sequences (local indices), ns of them */
  int *sel_rank;              /* global sequence → its place among all selected ones, or -1 */
  float *x, *xfinal;          /* per selected sequence: the current block's input, the final state */
  float *stream;              /* the perturbed streams of one block (sequence, layer, probe), T × D each */
  float *ref, *prob, *logits; /* HEAD_CHUNK × V: reference logits and probabilities, a probe's logits */
  float *saved;               /* a layer's weights while it is perturbed */
  double *value;              /* per (layer, selected sequence) */
  BlockWeights w;
  BlockScratch s;
  Head head;
} FisherWork;

static void fisher_work_free(FisherWork *f) {
  float *bufs[] = {f->x, f->xfinal, f->stream, f->ref, f->prob, f->logits, f->saved};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) aptq_free(bufs[i]);
  aptq_free(f->sel);
  aptq_free(f->sel_rank);
  aptq_free(f->value);
  block_weights_free(&f->w);
  scratch_free(&f->s);
  head_free(&f->head);
  memset(f, 0, sizeof *f);
}

/* Local: 0, or APTQ_ERR (free anyway). */
static int fisher_work_alloc(FisherWork *f, const Options *o, const Model *m, const TokenShard *calib, int nsel) {
  const ModelConfig *c = &m->cfg;
  size_t TD = (size_t)calib->seqlen * c->dim, V = (size_t)c->vocab_size;
  memset(f, 0, sizeof *f);
  f->sel = aptq_malloc(sizeof(int) * (size_t)(calib->count + 1), "selected sequences");
  f->sel_rank = aptq_malloc(sizeof(int) * (size_t)(calib->nseq + 1), "selected sequences");
  if (!f->sel || !f->sel_rank) return APTQ_ERR;
  for (int i = 0; i < calib->count; i++)
    if (fisher_selected(calib->nseq, nsel, calib->first + i)) f->sel[f->ns++] = i;
  for (int j = 0, r = 0; j < calib->nseq; j++) f->sel_rank[j] = fisher_selected(calib->nseq, nsel, j) ? r++ : -1;
  f->value = aptq_calloc((size_t)c->n_layers * LIN_COUNT * nsel, sizeof(double), "sensitivity values");
  if (!f->value) return APTQ_ERR;
  if (use_backward(o)) return 0; /* fisher_backward.c holds its own buffers */
  int ns = f->ns, S = ns * LIN_COUNT * o->fisher_probes;
  f->x = aptq_malloc(sizeof(float) * (ns ? ns : 1) * TD, "sensitivity block inputs");
  f->xfinal = aptq_malloc(sizeof(float) * (ns ? ns : 1) * TD, "sensitivity final states");
  f->stream = aptq_malloc(sizeof(float) * (S ? S : 1) * TD, "sensitivity probe streams");
  f->ref = aptq_malloc(sizeof(float) * HEAD_CHUNK * V, "reference logits");
  f->prob = aptq_malloc(sizeof(float) * HEAD_CHUNK * V, "reference probabilities");
  f->logits = aptq_malloc(sizeof(float) * HEAD_CHUNK * V, "probe logits");
  f->saved = aptq_malloc(sizeof(float) * (size_t)c->hidden_dim * c->dim, "saved layer");
  if (!f->x || !f->xfinal || !f->stream || !f->ref || !f->prob || !f->logits || !f->saved) return APTQ_ERR;
  CHECK(block_weights_alloc(c, &f->w));
  CHECK(scratch_alloc(c, calib->seqlen, &f->s));
  return head_load(m, &f->head);
}

/* 1. full-precision forward: block-0 inputs kept in x, final states in
 * xfinal. Collective. */
static int fisher_reference(const Model *m, const TokenShard *calib, FisherWork *f, MPI_Comm comm) {
  const ModelConfig *c = &m->cfg;
  int T = calib->seqlen, rc = 0;
  size_t TD = (size_t)T * c->dim;
  for (int i = 0; !rc && i < f->ns; i++) rc = embed_tokens(m, calib->ids + (size_t)f->sel[i] * T, T, f->x + i * TD);
  memcpy(f->xfinal, f->x, sizeof(float) * f->ns * TD);
  for (int l = 0; !rc && l < c->n_layers; l++) {
    rc = block_weights_load(m, l, &f->w);
    for (int i = 0; !rc && i < f->ns; i++) block_forward(c, &f->w, &f->s, f->xfinal + i * TD);
  }
  return aptq_agree(comm, rc);
}

/* 2a. block l (its weights in f->w) with one layer perturbed, per
 * (sequence, layer, probe), into the streams; sig2[k]: layer k's σ². Then
 * x advances through the full-precision block l. */
static void fisher_perturb_block(const Options *o, const Model *m, const TokenShard *calib, FisherWork *f, int l, double *sig2) {
  const ModelConfig *c = &m->cfg;
  int P = o->fisher_probes;
  size_t TD = (size_t)calib->seqlen * c->dim;
  for (int k = 0; k < LIN_COUNT; k++) {
    size_t n = (size_t)m->linear[l][k].rows * m->linear[l][k].cols;
    float *wk = f->w.w[k];
    double sigma = FISHER_ALPHA * layer_rms(wk, n);
    sig2[k] = sigma * sigma;
    memcpy(f->saved, wk, sizeof(float) * n);
    for (int i = 0; i < f->ns; i++)
      for (int p = 0; p < P; p++) {
        Rng r = probe_rng(o->seed, l * LIN_COUNT + k, calib->first + f->sel[i], p);
        for (size_t j = 0; j < n; j++) wk[j] = f->saved[j] + (float)(sigma * rng_normal(&r));
        float *y = f->stream + ((size_t)(i * LIN_COUNT + k) * P + p) * TD;
        memcpy(y, f->x + i * TD, sizeof(float) * TD);
        block_forward(c, &f->w, &f->s, y);
      }
    memcpy(wk, f->saved, sizeof(float) * n);
  }
  /* the full-precision block-l output is block l+1's input */
  for (int i = 0; i < f->ns; i++) block_forward(c, &f->w, &f->s, f->x + i * TD);
}

/* The reference probabilities of n tokens from their logits (ref → prob). */
static void reference_probs(const ModelConfig *c, const float *ref, float *prob, int n) {
  int V = c->vocab_size;
  for (int q = 0; q < n; q++) {
    const float *a = ref + (size_t)q * V;
    float *pq = prob + (size_t)q * V, mx = a[0];
    for (int j = 1; j < V; j++) mx = a[j] > mx ? a[j] : mx;
    double sum = 0;
    for (int j = 0; j < V; j++) sum += pq[j] = expf(a[j] - mx);
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < V; j++) pq[j] *= inv;
  }
}

/* 2c. the streams of block l through the head: each one's logit variance
 * against the reference, per chunk of tokens, into value. */
static void fisher_head_block(const Options *o, const Model *m, const TokenShard *calib, FisherWork *f, int l, const double *sig2,
                              int nsel) {
  const ModelConfig *c = &m->cfg;
  int T = calib->seqlen, D = c->dim, P = o->fisher_probes;
  size_t TD = (size_t)T * D;
  for (int i = 0; i < f->ns; i++) {
    int g = f->sel_rank[calib->first + f->sel[i]];
    for (int t0 = 0; t0 < T; t0 += HEAD_CHUNK) {
      int n = T - t0 < HEAD_CHUNK ? T - t0 : HEAD_CHUNK;
      head_logits(c, &f->head, f->xfinal + i * TD + (size_t)t0 * D, n, f->ref);
      reference_probs(c, f->ref, f->prob, n);
      for (int k = 0; k < LIN_COUNT; k++)
        for (int p = 0; p < P; p++) {
          const float *y = f->stream + ((size_t)(i * LIN_COUNT + k) * P + p) * TD;
          f->value[(size_t)(l * LIN_COUNT + k) * nsel + g] += logit_variance(c, &f->head, y, t0, n, f->ref, f->prob, f->logits) / sig2[k];
        }
    }
  }
}

/* 1 and 2: the reference forward, then the probes of every block (2a-2c)
 * into f->value. Collective. */
static int fisher_probes(const Options *o, const Model *m, const TokenShard *calib, FisherWork *f, int nsel, MPI_Comm comm) {
  const ModelConfig *c = &m->cfg;
  int L = c->n_layers;
  size_t TD = (size_t)calib->seqlen * c->dim;
  int S = f->ns * LIN_COUNT * o->fisher_probes; /* perturbed streams of one block */
  int rc = fisher_reference(m, calib, f, comm);
  for (int l = 0; !rc && l < L; l++) {
    double sig2[LIN_COUNT];
    rc = aptq_agree(comm, block_weights_load(m, l, &f->w));
    if (!rc) fisher_perturb_block(o, m, calib, f, l, sig2);
    /* 2b. the later blocks, full precision */
    for (int b = l + 1; !rc && b < L; b++) {
      rc = aptq_agree(comm, block_weights_load(m, b, &f->w));
      for (int j = 0; !rc && j < S; j++) block_forward(c, &f->w, &f->s, f->stream + j * TD);
    }
    if (!rc) fisher_head_block(o, m, calib, f, l, sig2, nsel);
  }
  return rc;
}

int fisher_sensitivities(const Options *o, const Model *m, const TokenShard *calib, double *sens, double *stderr_out, MPI_Comm comm) {
  const ModelConfig *c = &m->cfg;
  int L = c->n_layers, T = calib->seqlen, P = o->fisher_probes;
  int nsel = o->fisher_nseq < calib->nseq ? o->fisher_nseq : calib->nseq;
  int nlin = L * LIN_COUNT;
  FisherWork f;
  int rc = aptq_agree(comm, fisher_work_alloc(&f, o, m, calib, nsel));
  if (!rc && use_backward(o)) {
    /* the sequences' places among all selected ones */
    int *gsel = aptq_malloc(sizeof(int) * (size_t)(f.ns + 1), "selected sequences");
    rc = aptq_agree(comm, !gsel);
    for (int i = 0; !rc && i < f.ns; i++) gsel[i] = f.sel_rank[calib->first + f.sel[i]];
    if (!rc) rc = fisher_backward_values(o, m, calib, f.sel, gsel, f.ns, nsel, f.value, comm);
    aptq_free(gsel);
  } else if (!rc) {
    rc = fisher_probes(o, m, calib, &f, nsel, comm);
  }
  if (!rc) {
    /* 3. every value was made by one rank: the sum over ranks is exact */
    MPI_Allreduce(MPI_IN_PLACE, f.value, nlin * nsel, MPI_DOUBLE, MPI_SUM, comm);
    for (int l = 0; l < nlin; l++) {
      double nparam = (double)m->linear[l / LIN_COUNT][l % LIN_COUNT].rows * m->linear[l / LIN_COUNT][l % LIN_COUNT].cols;
      double scale = 1.0 / ((double)P * T * nparam), sum = 0, sq = 0;
      for (int j = 0; j < nsel; j++) sum += f.value[(size_t)l * nsel + j] * scale;
      double mean = sum / nsel;
      for (int j = 0; j < nsel; j++) {
        double d = f.value[(size_t)l * nsel + j] * scale - mean;
        sq += d * d;
      }
      sens[l] = mean;
      if (stderr_out) stderr_out[l] = nsel > 1 ? sqrt(sq / (nsel - 1) / nsel) : 0.0;
    }
  }
  fisher_work_free(&f);
  return rc;
}
