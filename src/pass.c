#include "pass.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activations.h"
#include "attn_hessian.h"
#include "error.h"
#include "forward.h"
#include "gptq.h"
#include "hessian.h"
#include "hessian_stream.h"
#include "memory.h"
#include "phases.h"
#include "shrink.h"
#include "solve.h"

/* APTQ's statistics for the q/k/v forms of their own (docs/aptq.md),
 * gathered by the q/k/v group's forward: v_proj's Kronecker (or relaxed)
 * factors, q's and k's token-weighted input Hessians and output factors,
 * the relaxed forms' query and key covariances. */
typedef struct {
  int v, q, k, r; /* which are gathered */
  VHessian vh;
  QHessian qh;
  KHessian kh;
  RelaxedQK rq;
} AttnStats;

/* A group's layer-input Hessian: a whole or partial sum (Hessian), or
 * summed into the factor's grid as it accumulates (HessianStream); with a
 * partial or streamed sum, its reduced diagonal and scale. */
typedef struct {
  int d, partial, streamed;
  Hessian H;
  HessianStream S;
  double *diag, scale;
} GroupHessian;

/* The state of the pass. */
typedef struct {
  const Plan *p;
  const Model *m;
  const ModelConfig *c;
  const TokenShard *calib;
  MPI_Comm comm;
  int rank;
  QFileWriter *qw;
  Checkpoint *ck; /* NULL when off */
  const int *layer_bits;
  LayerError *err;
  int T, count, maxcount; /* tokens per sequence; this rank's sequences, the most of any rank */
  Activations X;          /* this rank's sequences entering the block */
  Activations Z;          /* keep_attention: their attention outputs */
  float *xtmp;            /* T × dim: one sequence being run */
  BlockWeights w;
  BlockScratch s;
  AttnStats a;
  GroupHessian gh[GROUP_COUNT];
  double *stats; /* n_layers·LIN_COUNT × LAYER_NSTATS, for the checkpoint */
  double t_start, t_blocks;
  PassTimes *times;
} Pass;

/* ---- set-up ------------------------------------------------------------- */

static int attn_stats_init(AttnStats *a, const Plan *p, const ModelConfig *c, int T) {
  a->v = p->form[LIN_V] == FORM_KRON || p->form[LIN_V] == FORM_RELAXED;
  a->q = p->form[LIN_Q] == FORM_ROWSHARED || p->form[LIN_Q] == FORM_KRON;
  a->k = p->form[LIN_K] == FORM_ROWSHARED || p->form[LIN_K] == FORM_KRON;
  a->r = p->form[LIN_Q] == FORM_RELAXED || p->form[LIN_K] == FORM_RELAXED;
  return (a->v && vhessian_init(&a->vh, c, T, p->form[LIN_V] == FORM_RELAXED)) || (a->q && qhessian_init(&a->qh, c, T)) ||
         (a->k && khessian_init(&a->kh, c, T, p->form[LIN_K] == FORM_KRON)) || (a->r && relaxed_init(&a->rq, c, T));
}

static void attn_stats_free(AttnStats *a) {
  if (a->v) vhessian_free(&a->vh);
  if (a->q) qhessian_free(&a->qh);
  if (a->k) khessian_free(&a->kh);
  if (a->r) relaxed_free(&a->rq);
}

/* Every rank creates the streamed sums' grids (collective); the status is
 * agreed by the caller. */
static int group_hessians_init(Pass *P) {
  const Plan *p = P->p;
  int rc = 0;
  for (int g = 0; g < GROUP_COUNT; g++) {
    GroupHessian *gh = &P->gh[g];
    gh->d = p->in_dim[g];
    gh->partial = p->scattered[g];
    gh->streamed = p->streamed[g];
    if (gh->partial && !(gh->diag = aptq_malloc(sizeof(double) * (size_t)gh->d, "Hessian diagonal"))) rc = APTQ_ERR;
    if (gh->streamed)
      rc = hstream_init(&gh->S, gh->d, p->gptq.nb, P->T, p->stream_tokens, p->gptq.factor_algorithm == FACTOR_TRTRI, P->comm) || rc;
  }
  for (int g = 0; !rc && g < GROUP_COUNT; g++) rc = !P->gh[g].streamed && hessian_init(&P->gh[g].H, P->gh[g].d);
  return rc;
}

static int pass_init(Pass *P, const Plan *p, const Model *m, const TokenShard *calib, MPI_Comm comm) {
  const ModelConfig *c = &m->cfg;
  P->p = p;
  P->m = m;
  P->c = c;
  P->calib = calib;
  P->comm = comm;
  MPI_Comm_rank(comm, &P->rank);
  P->T = calib->seqlen;
  P->count = calib->count;
  MPI_Allreduce(&P->count, &P->maxcount, 1, MPI_INT, MPI_MAX, comm);
  size_t seq = (size_t)P->T * c->dim;
  int rc = activations_alloc(&P->X, P->count, seq, p->bf16_activations);
  rc = (p->keep_attention && activations_alloc(&P->Z, P->count, (size_t)P->T * c->n_heads * c->head_dim, 0)) || rc;
  P->xtmp = aptq_malloc(sizeof(float) * seq, "block input copy");
  rc = rc || !P->xtmp || block_weights_alloc(c, &P->w) || scratch_alloc(c, P->T, &P->s) || attn_stats_init(&P->a, p, c, P->T);
  rc = group_hessians_init(P) || rc;
  for (int i = 0; !rc && i < P->count; i++) {
    rc = embed_tokens(m, calib->ids + (size_t)i * P->T, P->T, P->xtmp);
    if (!rc) activations_put(&P->X, i, P->xtmp);
  }
  CHECK(aptq_agree(comm, rc));
  P->stats = aptq_malloc(sizeof(double) * (size_t)c->n_layers * LIN_COUNT * LAYER_NSTATS, "layer statistics");
  return aptq_agree(comm, !P->stats);
}

static void pass_free(Pass *P) {
  for (int g = 0; g < GROUP_COUNT; g++) {
    hessian_free(&P->gh[g].H);
    if (P->gh[g].streamed) hstream_free(&P->gh[g].S);
    aptq_free(P->gh[g].diag);
  }
  attn_stats_free(&P->a);
  block_weights_free(&P->w);
  scratch_free(&P->s);
  activations_free(&P->X);
  activations_free(&P->Z);
  aptq_free(P->xtmp);
  aptq_free(P->stats);
}

/* Resume: the activations, statistics and finished blocks from the
 * checkpoint; the first block still to do into *l0. */
static int pass_resume(Pass *P, int *l0) {
  Checkpoint *ck = P->ck;
  *l0 = 0;
  if (!ck || ck->next_block == 0) return 0;
  CHECK(checkpoint_restore(ck, P->m, P->calib, P->X.f32, P->qw, P->comm));
  for (int i = 0; i < ck->next_block * LIN_COUNT; i++) layer_error_unpack(ck->stats + (size_t)i * LAYER_NSTATS, &P->err[i]);
  *l0 = ck->next_block;
  return 0;
}

/* ---- the steps of a block ----------------------------------------------- */

/* Block l's full-precision weights; its checkpoint file; APTQ's statistics
 * reset (q's and k's output factors come from W_O). */
static int block_begin(Pass *P, int l) {
  if (P->ck) {
    CHECK(checkpoint_block_begin(P->ck, l, P->comm));
    P->qw->tee = &P->ck->block; /* this block's layers also into its checkpoint file */
  }
  CHECK(aptq_agree(P->comm, block_weights_load(P->m, l, &P->w)));
  AttnStats *a = &P->a;
  if (a->v) vhessian_reset(&a->vh);
  if (a->q) {
    qhessian_reset(&a->qh);
    qhessian_set_output(&a->qh, P->w.w[LIN_O], P->w.q_norm);
  }
  if (a->k) {
    khessian_reset(&a->kh);
    khessian_set_output(&a->kh, P->w.w[LIN_O], P->w.k_norm);
  }
  if (a->r) relaxed_reset(&a->rq);
  return 0;
}

static const float *group_input(const BlockScratch *s, BlockStop stop) {
  switch (stop) {
    case STOP_QKV_INPUT: return s->xn;
    case STOP_O_INPUT: return s->z;
    case STOP_MLP_INPUT: return s->xn2;
    default: return s->act;
  }
}

/* Sequence i through the block as far as group g needs it: the whole
 * full-precision block for g < 0 (every group at once); else from where
 * the earlier groups' forwards left it (plan: mlp_resume, keep_attention).
 * APTQ's v_proj statistics need the attention of the q/k/v group's. */
static void forward_for(Pass *P, int g, int i) {
  const ModelConfig *c = P->c;
  BlockScratch *s = &P->s;
  float *x = P->xtmp;
  activations_get(&P->X, i, x);
  if (g < 0) {
    block_forward(c, &P->w, s, x);
    return;
  }
  BlockStop stop = g == 0 && P->p->attention_stats ? STOP_O_INPUT : linear_groups[g].stop;
  if (g == 3 && P->p->mlp_resume) block_mlp_forward(c, &P->w, s, x, stop);
  else if (g == 2 && P->p->keep_attention) {
    activations_get(&P->Z, i, s->z);
    block_forward_from_o(c, &P->w, s, x, stop);
  } else block_forward_until(c, &P->w, s, x, stop);
  if (g == 1 && P->p->keep_attention) activations_put(&P->Z, i, s->z);
  /* the residual after attention is all the rest of the block needs */
  if (g == 2 && P->p->mlp_resume) activations_put(&P->X, i, x);
}

/* The inputs of the sequence just run added to group g's Hessian (g < 0:
 * every group's), and to APTQ's statistics with the q/k/v group. */
static void accumulate(Pass *P, int g) {
  for (int j = g < 0 ? 0 : g; j <= (g < 0 ? GROUP_COUNT - 1 : g); j++) {
    GroupHessian *gh = &P->gh[j];
    const float *x = group_input(&P->s, linear_groups[j].stop);
    if (gh->streamed) hstream_add(&gh->S, x);
    else hessian_add(&gh->H, x, P->T);
  }
  if (g > 0) return;
  AttnStats *a = &P->a;
  if (a->v) vhessian_add(&a->vh, P->c, &P->s, P->s.xn);
  if (a->q) qhessian_add(&a->qh, P->c, &P->s, P->s.xn, NULL);
  if (a->k) khessian_add(&a->kh, P->c, &P->s, P->s.xn, NULL);
  if (a->r) relaxed_add(&a->rq, P->c, &P->s);
}

/* Collect group g's statistics (g < 0: every group's, from one forward of
 * the full-precision block): this rank's sequences through the block,
 * their inputs into the Hessians. Streamed sums flush at the same sequence
 * index on every rank (the loop runs to the largest shard; a rank past its
 * own adds nothing). */
static int collect(Pass *P, int g) {
  int g0 = g < 0 ? 0 : g, g1 = g < 0 ? GROUP_COUNT - 1 : g;
  for (int j = g0; j <= g1; j++) P->gh[j].streamed ? hstream_reset(&P->gh[j].S) : hessian_reset(&P->gh[j].H);
  double t = MPI_Wtime();
  for (int i = 0; i < P->maxcount; i++) {
    if (i < P->count) {
      forward_for(P, g, i);
      t = phase_add(PH_FORWARD, t);
      accumulate(P, g);
      t = phase_add(PH_HESSIAN, t);
    }
    for (int j = g0; j <= g1; j++) {
      HessianStream *S = &P->gh[j].S;
      if (P->gh[j].streamed && ((i + 1) % S->per_flush == 0 || i + 1 == P->maxcount)) CHECK(hstream_flush(S, P->comm));
    }
    t = MPI_Wtime();
  }
  return 0;
}

/* aptq_shrink = λ > 0 (shrink.h, docs/aptq.md#shrinkage-toward-gptq): each
 * factor the q/k/v solves will use, reduced, moved toward GPTQ's: input
 * factors toward group 0's layer-input Hessian H_x (q and k row-shared, v
 * per kv group), output factors toward the identity (q and k Kronecker or
 * relaxed per head or kv group, v Kronecker). The Kronecker q/k forms'
 * input factor is H_x already; relaxed v's output factor is I already. */
static void shrink_factors(Pass *P) {
  const Plan *p = P->p;
  if (!plan_shrinks(p)) return;
  AttnStats *a = &P->a;
  const double *Hx = P->gh[0].H.sum;
  double lam = p->shrink;
  int d = P->c->dim, dh = P->c->head_dim, heads = P->c->n_heads, groups = P->c->n_kv_heads;
  size_t dh2 = (size_t)dh * dh;
  if (p->form[LIN_Q] == FORM_ROWSHARED) shrink_toward(a->qh.in.sum, Hx, d, lam);
  if (p->form[LIN_K] == FORM_ROWSHARED) shrink_toward(a->kh.in.sum, Hx, d, lam);
  for (int h = 0; h < heads; h++) {
    if (p->form[LIN_Q] == FORM_KRON) shrink_to_identity(a->qh.out + h * dh2, dh, lam);
    if (p->form[LIN_Q] == FORM_RELAXED) shrink_to_identity(a->rq.qout + h * dh2, dh, lam);
  }
  for (int g = 0; g < groups; g++) {
    if (p->form[LIN_K] == FORM_KRON) shrink_to_identity(a->kh.out + g * dh2, dh, lam);
    if (p->form[LIN_K] == FORM_RELAXED) shrink_to_identity(a->rq.kout + g * dh2, dh, lam);
  }
  for (int g = 0; a->v && g < a->vh.groups; g++) {
    shrink_toward(a->vh.in[g].sum, Hx, d, lam);
    if (!a->vh.relaxed) shrink_to_identity(a->vh.out + g * dh2, dh, lam);
  }
}

/* Group g's Hessian summed over the ranks (whole, or its diagonal where
 * the factor reduces the rest into its grid); APTQ's with the q/k/v group. */
static int reduce(Pass *P, int g) {
  GroupHessian *gh = &P->gh[g];
  AttnStats *a = &P->a;
  MPI_Comm comm = P->comm;
  phase_sync(comm); /* the reduction waits for the slowest shard */
  double t = MPI_Wtime();
  CHECK(aptq_agree(comm, gh->streamed  ? hstream_finish(&gh->S, comm, gh->diag, &gh->scale)
                         : gh->partial ? hessian_finish_diag(&gh->H, comm, gh->diag, &gh->scale)
                                       : hessian_finish(&gh->H, comm)));
  if (g == 0 && a->v) {
    vhessian_set_output(&a->vh, P->w.w[LIN_O]);
    CHECK(aptq_agree(comm, vhessian_finish(&a->vh, comm)));
  }
  if (g == 0 && a->q) CHECK(aptq_agree(comm, qhessian_finish(&a->qh, comm)));
  if (g == 0 && a->k) CHECK(aptq_agree(comm, khessian_finish(&a->kh, comm)));
  if (g == 0 && a->r) CHECK(aptq_agree(comm, relaxed_finish(&a->rq, P->c, &P->s, comm)));
  if (g == 0) shrink_factors(P);
  phase_add(PH_REDUCE, t);
  return 0;
}

/* A Kronecker solve whose heads all use the layer-input Hessian H0 as
 * their input factor (K-FAC: q's per head, k's per kv group; form
 * FORM_KRON or FORM_RELAXED). */
static int solve_kron_layer_input(Pass *P, const GptqParams *p, const double *out, int heads, HessianForm form, const char *name, float *W,
                                  LayerError *e) {
  const double **in = aptq_malloc(sizeof(double *) * (size_t)heads, "input factors");
  CHECK(aptq_agree(P->comm, !in));
  for (int h = 0; h < heads; h++) in[h] = P->gh[0].H.sum;
  KronHessian kh = {in, NULL, out, heads, P->c->head_dim, P->c->dim, form};
  int rc = solve_kron(P->qw, p, &kh, name, W, e, P->comm);
  aptq_free(in);
  return rc;
}

/* v_proj's Kronecker form: an input factor per kv group, one column order
 * for the layer from Σ_g H_in^g. */
static int solve_v_kron(Pass *P, const GptqParams *p, const char *name, float *W, LayerError *e) {
  const VHessian *vh = &P->a.vh;
  size_t D = (size_t)P->c->dim;
  double *order = aptq_calloc(D * D, sizeof(double), "column order");
  const double **in = aptq_malloc(sizeof(double *) * (size_t)vh->groups, "input factors");
  CHECK(aptq_agree(P->comm, !order || !in));
  for (int gr = 0; gr < vh->groups; gr++) {
    in[gr] = vh->in[gr].sum;
    for (size_t i = 0; i < D * D; i++) order[i] += vh->in[gr].sum[i];
  }
  KronHessian kh = {in, order, vh->out, vh->groups, vh->dh, (int)D, vh->relaxed ? FORM_RELAXED : FORM_KRON};
  int rc = solve_kron(P->qw, p, &kh, name, W, e, P->comm);
  aptq_free(order);
  aptq_free(in);
  return rc;
}

/* q or k with its token-weighted input Hessian (APTQ's row-shared form). */
static int solve_rowshared(Pass *P, int l, int k, const GptqParams *p, const char *name, LayerError *e) {
  const double *H = k == LIN_K ? P->a.kh.in.sum : P->a.qh.in.sum;
  int D = P->c->dim;
  e->sensitivity = matrix_trace(H, D) / D;
  GptqLayer L;
  double t = MPI_Wtime();
  CHECK(gptq_prepare(H, D, p, P->comm, &L));
  phase_add(PH_FACTOR, t);
  SolveLayer one = {.W = P->w.w[k], .rows = (int)P->m->linear[l][k].rows, .p = *p, .e = e};
  snprintf(one.name, sizeof one.name, "%s", name);
  int rc = solve_shared(P->qw, &L, FORM_ROWSHARED, &one, 1, P->comm);
  gptq_layer_free(&L);
  return rc;
}

/* A layer with a Hessian of its own (APTQ's forms), solved alone. */
static int solve_own_form(Pass *P, int l, int k, const GptqParams *p, const char *name, LayerError *e) {
  HessianForm form = P->p->form[k];
  float *W = P->w.w[k];
  if (k == LIN_V) return solve_v_kron(P, p, name, W, e);
  if (form == FORM_ROWSHARED) return solve_rowshared(P, l, k, p, name, e);
  if (form == FORM_RELAXED)
    return k == LIN_K ? solve_kron_layer_input(P, p, P->a.rq.kout, P->c->n_kv_heads, form, name, W, e)
                      : solve_kron_layer_input(P, p, P->a.rq.qout, P->c->n_heads, form, name, W, e);
  if (k == LIN_K) return solve_kron_layer_input(P, p, P->a.kh.out, P->c->n_kv_heads, form, name, W, e);
  return solve_kron_layer_input(P, p, P->a.qh.out, P->c->n_heads, form, name, W, e);
}

/* The group's layer-input factor, and the layers that share it solved
 * together: all in one sweep when they are on one grid; with grid = ggml
 * one sweep per grid (the same factor, g_idx made again for its group
 * size), each layer's result the same as solved alone. The factor is
 * prepared under the grid of a K-quant layer (with mins, or Q3_K / Q6_K)
 * if there is one, so that it keeps the Hessian's diagonal for their
 * sub-block search. */
static int solve_with_group_factor(Pass *P, int g, SolveLayer *shared, int nshared) {
  GroupHessian *gh = &P->gh[g];
  const GptqParams *p = &shared[0].p;
  for (int k = 0; k < nshared; k++)
    if (plan_layer_searched(P->p, shared[k].p.bits)) {
      p = &shared[k].p;
      break;
    }
  plan_use_grid(P->p, p->bits);
  GptqLayer L;
  double t = MPI_Wtime();
  CHECK(gh->streamed  ? gptq_prepare_stream(gh->S.acc, gh->S.reversed, gh->diag, gh->scale, gh->d, p, P->comm, &L)
        : gh->partial ? gptq_prepare_partial(gh->H.sum, gh->diag, gh->scale, gh->d, p, P->comm, &L)
                      : gptq_prepare(gh->H.sum, gh->d, p, P->comm, &L));
  phase_add(PH_FACTOR, t);
  phase_shift(PH_FACTOR, PH_REDUCE, L.factor.reduce_seconds);
  int rc = 0, done[LIN_COUNT] = {0};
  for (int k = 0; !rc && k < nshared; k++) {
    if (done[k]) continue;
    SolveLayer same[LIN_COUNT];
    int n = 0, key = plan_grid_key(P->p, shared[k].p.bits);
    for (int j = k; j < nshared; j++)
      if (!done[j] && plan_grid_key(P->p, shared[j].p.bits) == key) {
        same[n++] = shared[j];
        done[j] = 1;
      }
    plan_use_grid(P->p, same[0].p.bits);
    gptq_layer_regroup(&L, &same[0].p);
    rc = solve_shared(P->qw, &L, FORM_GPTQ, same, n, P->comm);
  }
  gptq_layer_free(&L);
  return rc;
}

/* Factor, solve, write and exchange the layers of group g of block l: those
 * with a Hessian of their own one at a time, then those that share the
 * group's layer-input factor together. */
static int solve_group(Pass *P, int l, int g) {
  GroupHessian *gh = &P->gh[g];
  double sensitivity = 0; /* tr(H)/d of the group's layer-input Hessian */
  if (gh->partial)
    for (int j = 0; j < gh->d; j++) sensitivity += gh->diag[j];
  else sensitivity = matrix_trace(gh->H.sum, gh->d);
  sensitivity /= gh->d;
  SolveLayer shared[LIN_COUNT];
  int nshared = 0;
  for (int k = linear_groups[g].first; k < linear_groups[g].first + linear_groups[g].count; k++) {
    char name[256];
    linear_layer_name(l, k, name, sizeof name);
    LayerError *e = &P->err[l * LIN_COUNT + k];
    e->bits = P->layer_bits ? P->layer_bits[l * LIN_COUNT + k] : P->p->gptq.bits;
    GptqParams lp = plan_layer_params(P->p, e->bits);
    if (!plan_shares_factor(P->p, k)) {
      plan_use_grid(P->p, e->bits);
      CHECK(solve_own_form(P, l, k, &lp, name, e));
      continue;
    }
    e->sensitivity = sensitivity;
    SolveLayer *sl = &shared[nshared++];
    *sl = (SolveLayer){.W = P->w.w[k], .rows = (int)P->m->linear[l][k].rows, .p = lp, .e = e};
    snprintf(sl->name, sizeof sl->name, "%s", name);
  }
  return nshared ? solve_with_group_factor(P, g, shared, nshared) : 0;
}

/* Rank 0: a line per layer of the group, with the time left. */
static void progress(const Pass *P, int l, int g) {
  const ModelConfig *c = P->c;
  for (int k = linear_groups[g].first; P->rank == 0 && k < linear_groups[g].first + linear_groups[g].count; k++) {
    const LayerError *e = &P->err[l * LIN_COUNT + k];
    double now = MPI_Wtime(), done = (double)(l * LIN_COUNT + k + 1) / (c->n_layers * LIN_COUNT);
    printf("aptq quantize: block %d of %d  %-18s error %-12.6g rel %.5f%s  %.1f s elapsed, ETA %.1f s\n", l + 1, c->n_layers,
           linear_names[k], e->loss, layer_error_relative(e->err2, e->norm2), e->retries ? " (damping raised)" : "", now - P->t_start,
           (now - P->t_blocks) * (1.0 - done) / done);
    memory_trace("block %d %s", l + 1, linear_names[k]);
    if (e->retries) {
      char name[256];
      linear_layer_name(l, k, name, sizeof name);
      printf("aptq quantize: warning: %s: factorization failed at damp %g; used damp %g\n", name, P->p->gptq.damp, e->damp_used);
    }
    fflush(stdout);
  }
}

/* The quantized block makes the next block's inputs. */
static void advance(Pass *P) {
  double t = MPI_Wtime();
  for (int i = 0; i < P->count; i++) {
    activations_get(&P->X, i, P->xtmp);
    if (P->p->mlp_resume) block_mlp_forward(P->c, &P->w, &P->s, P->xtmp, STOP_FULL);
    else block_forward(P->c, &P->w, &P->s, P->xtmp);
    activations_put(&P->X, i, P->xtmp);
  }
  phase_add(PH_FORWARD, t);
}

/* The state after block l into the checkpoint; a stop asked by SIGUSR1. */
static int block_end(Pass *P, int l) {
  int n_layers = P->c->n_layers;
  if (P->ck) {
    P->qw->tee = NULL;
    for (int i = 0; i < n_layers * LIN_COUNT; i++) layer_error_pack(&P->err[i], P->stats + (size_t)i * LAYER_NSTATS);
    CHECK(checkpoint_save(P->ck, P->m, P->calib, l, P->X.f32, P->stats, P->comm));
  }
  /* all blocks done: a stop asked during the last one lets the run finish
   * and write its output (every rank has the same l, so all skip the check) */
  if (l == n_layers - 1 || !aptq_stop_requested(P->comm)) return 0;
  int rc = P->ck ? aptq_error(
                       "stopped by SIGUSR1 after block %d of %d; the checkpoint in '%s' holds it: rerun with the same options and "
                       "resume = yes",
                       l + 1, n_layers, P->ck->dir)
                 : aptq_error("stopped by SIGUSR1 after block %d of %d; nothing was kept (give checkpoint = DIR to be able to resume)",
                              l + 1, n_layers);
  return aptq_agree(P->comm, rc);
}

/* ---- the pass ----------------------------------------------------------- */

/* One block: each group's statistics collected (all at once from the
 * full-precision block unless true-sequential), reduced, factored and
 * solved; then the next block's inputs, and the checkpoint. */
static int pass_block(Pass *P, int l) {
  CHECK(block_begin(P, l));
  double th = MPI_Wtime();
  if (!P->p->true_sequential) CHECK(collect(P, -1));
  P->times->hessian += MPI_Wtime() - th;
  for (int g = 0; g < GROUP_COUNT; g++) {
    th = MPI_Wtime();
    if (P->p->true_sequential) CHECK(collect(P, g));
    CHECK(reduce(P, g));
    double ts = MPI_Wtime();
    P->times->hessian += ts - th;
    CHECK(solve_group(P, l, g));
    memory_release_free();
    progress(P, l, g);
    P->times->solve += MPI_Wtime() - ts;
  }
  advance(P);
  return block_end(P, l);
}

int pass_run(QFileWriter *qw, const Plan *p, const Model *m, const TokenShard *calib, const int *layer_bits, LayerError *err,
             Checkpoint *ck, double t_start, PassTimes *times, MPI_Comm comm) {
  Pass P;
  memset(&P, 0, sizeof P);
  P.qw = qw;
  P.ck = ck && ck->on ? ck : NULL;
  P.layer_bits = layer_bits;
  P.err = err;
  P.t_start = t_start;
  P.times = times;
  *times = (PassTimes){0};
  int rc = pass_init(&P, p, m, calib, comm), l0 = 0;
  if (!rc) rc = pass_resume(&P, &l0);
  P.t_blocks = MPI_Wtime();
  for (int l = l0; !rc && l < m->cfg.n_layers; l++) rc = pass_block(&P, l);
  pass_free(&P);
  return rc;
}
