/* Fisher sensitivities by sampled-label backward passes (fisher_backward.h).
 *
 * Data path, on each rank's share of the selected sequences, a batch of
 * them at a time:
 *   1. full-precision forward: every block's input kept (and the last
 *      block's output), the weights loaded once per block;
 *   2. the head: per (sequence, label set) a label per position from the
 *      sequence's own softmax and ∂L/∂(last block output);
 *   3. blocks L−1 .. 0: the block's intermediates recomputed from its kept
 *      input once per sequence, then one backward per label set: the seven
 *      squared gradient norms, and the gradient passed to the block below.
 * Cost per sequence: 2·L block forwards (forward, recompute) and per label
 * set a block backward (about two forwards' products) and two head
 * products; weights loaded 2·L times per batch. */
#include "fisher_backward.h"

#include <string.h>

#include "backward.h"
#include "error.h"
#include "forward.h"
#include "rng.h"

/* The labels of (sequence, label set): a splitmix64 stream seeded from both,
 * so that they do not depend on which rank holds the sequence. */
static Rng label_rng(int seed, int seq, int probe) {
  Rng r = {(uint64_t)seed ^ 0x2545F4914F6CDD1Dull};
  r.state = rng_next(&r) ^ (uint64_t)seq;
  r.state = rng_next(&r) ^ (uint64_t)probe;
  return r;
}

/* Sequences per batch: as many as fit in the streams the probes estimator
 * would hold for the same settings ((2 + 7·probes) per sequence), at least
 * one. Each sequence holds L + 1 block states and a gradient per label set. */
static int batch_size(const Options *o, const ModelConfig *c, int local_selected) {
  double budget = (2.0 + LIN_COUNT * o->fisher_probes) * local_selected, per = c->n_layers + 1.0 + o->fisher_probes;
  int b = (int)(budget / per);
  b = b < 1 ? 1 : b;
  return b < local_selected ? b : local_selected > 0 ? local_selected : 1;
}

double fisher_backward_memory(const Options *o, const ModelConfig *c, int local_selected) {
  double TD = (double)o->seqlen * c->dim, f = sizeof(float);
  int b = batch_size(o, c, local_selected);
  /* the batch's streams, the backward buffers beyond the forward scratch, the
   * probabilities and the Head's logits and norm buffers */
  return (double)b * (c->n_layers + 1.0 + o->fisher_probes) * TD * f + block_grad_bytes(c, o->seqlen) +
         2.0 * HEAD_CHUNK * c->vocab_size * f + (double)HEAD_CHUNK * c->dim * f;
}

typedef struct {
  float *xs;   /* batch × (L + 1) × T × dim: block inputs, the last one the final state */
  float *dx;   /* batch × probes × T × dim: gradients of the current block's output */
  float *prob; /* HEAD_CHUNK × vocab */
  BlockWeights w;
  BlockGrad g;
  Head head;
} BackWork;

static void back_work_free(BackWork *b) {
  aptq_free(b->xs);
  aptq_free(b->dx);
  aptq_free(b->prob);
  block_weights_free(&b->w);
  block_grad_free(&b->g);
  head_free(&b->head);
  memset(b, 0, sizeof *b);
}

static int back_work_alloc(BackWork *b, const Options *o, const Model *m, int batch) {
  const ModelConfig *c = &m->cfg;
  size_t TD = (size_t)o->seqlen * c->dim;
  memset(b, 0, sizeof *b);
  b->xs = aptq_malloc(sizeof(float) * (size_t)batch * (c->n_layers + 1) * TD, "Fisher backward: block inputs");
  b->dx = aptq_malloc(sizeof(float) * (size_t)batch * o->fisher_probes * TD, "Fisher backward: gradients");
  b->prob = aptq_malloc(sizeof(float) * (size_t)HEAD_CHUNK * c->vocab_size, "Fisher backward: probabilities");
  if (!b->xs || !b->dx || !b->prob) return APTQ_ERR;
  CHECK(block_weights_alloc(c, &b->w));
  CHECK(block_grad_alloc(c, o->seqlen, &b->g));
  return head_load(m, &b->head);
}

/* One batch: sequences sel[i0 .. i0+n) (n may be 0: the loads and the
 * agreements still happen, so every rank runs the same collectives). */
static int back_batch(const Options *o, const Model *m, const TokenShard *calib, BackWork *b, const int *sel, const int *gsel, int n,
                      int nsel, double *value, MPI_Comm comm) {
  const ModelConfig *c = &m->cfg;
  int L = c->n_layers, T = calib->seqlen, P = o->fisher_probes, rc = 0;
  size_t TD = (size_t)T * c->dim;
#define XS(i, l) (b->xs + ((size_t)(i) * (L + 1) + (l)) * TD)
#define DX(i, p) (b->dx + ((size_t)(i)*P + (p)) * TD)
  for (int i = 0; !rc && i < n; i++) rc = embed_tokens(m, calib->ids + (size_t)sel[i] * T, T, XS(i, 0));
  rc = aptq_agree(comm, rc);
  for (int l = 0; !rc && l < L; l++) {
    rc = aptq_agree(comm, block_weights_load(m, l, &b->w));
    for (int i = 0; !rc && i < n; i++) {
      memcpy(XS(i, l + 1), XS(i, l), sizeof(float) * TD);
      block_forward(c, &b->w, &b->g.s, XS(i, l + 1));
    }
  }
  for (int i = 0; !rc && i < n; i++)
    for (int p = 0; p < P; p++) {
      Rng r = label_rng(o->seed, calib->first + sel[i], p);
      head_grad_sampled(c, &b->head, XS(i, L), T, &r, b->prob, DX(i, p));
    }
  for (int l = L - 1; !rc && l >= 0; l--) {
    rc = aptq_agree(comm, block_weights_load(m, l, &b->w));
    for (int i = 0; !rc && i < n; i++) {
      block_grad_recompute(c, &b->w, &b->g, XS(i, l));
      for (int p = 0; p < P; p++) {
        double sq[LIN_COUNT] = {0};
        block_grad_backward(c, &b->w, &b->g, XS(i, l), DX(i, p), sq);
        for (int k = 0; k < LIN_COUNT; k++) value[(size_t)(l * LIN_COUNT + k) * nsel + gsel[i]] += sq[k];
      }
    }
  }
#undef XS
#undef DX
  return rc;
}

int fisher_backward_values(const Options *o, const Model *m, const TokenShard *calib, const int *sel, const int *gsel, int ns, int nsel,
                           double *value, MPI_Comm comm) {
  int bs = batch_size(o, &m->cfg, ns), nbatch = (ns + bs - 1) / bs;
  MPI_Allreduce(MPI_IN_PLACE, &nbatch, 1, MPI_INT, MPI_MAX, comm);
  BackWork b;
  int rc = aptq_agree(comm, back_work_alloc(&b, o, m, bs));
  for (int j = 0; !rc && j < nbatch; j++) {
    int i0 = j * bs < ns ? j * bs : ns, n = ns - i0 < bs ? ns - i0 : bs;
    rc = back_batch(o, m, calib, &b, sel + i0, gsel + i0, n, nsel, value, comm);
  }
  back_work_free(&b);
  return rc;
}
