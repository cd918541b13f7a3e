/* aptq eval: perplexity of the full-precision or quantized model; with a
 * quantized model also the KL divergence of its next-token distributions
 * from the full-precision model's (kld.h), the full-precision model run in
 * the same pass, and with `compare` a second quantized file on the same
 * sequences and the paired differences of the two.
 * Sequences are sharded over ranks; each rank runs its shard block by block
 * (one block's weights in float32 at a time, each model's in turn); the
 * per-sequence NLLs and per-prediction figures are gathered in sequence
 * order and summed in that order, so the figures are identical for any
 * rank count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "error.h"
#include "forward.h"
#include "heap.h"
#include "kld.h"
#include "memory.h"
#include "model.h"
#include "outpath.h"
#include "qfile.h"
#include "report.h"
#include "tokens.h"

/* logits = FILE: [nseq][seqlen][vocab] float32, written a chunk of the
 * head at a time as it is made (no rank holds more than one chunk), under
 * a temporary name (rank 0's pid) renamed when complete. */
typedef struct {
  MPI_File fh;
  int open, ok;
  char tmp[OPT_PATH_MAX + 64];
} LogitsFile;

/* Collective: rank 0 creates the temporary file new and empty
 * (outpath_temp: nothing there is truncated or followed); every rank opens it. */
static int logits_open(const char *path, LogitsFile *lf, MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  lf->ok = 1;
  CHECK(aptq_agree(comm, rank == 0 ? outpath_temp(path, "logits", lf->tmp, sizeof lf->tmp, NULL) : 0));
  MPI_Bcast(lf->tmp, sizeof lf->tmp, MPI_CHAR, 0, comm);
  lf->open = MPI_File_open(comm, lf->tmp, MPI_MODE_WRONLY, MPI_INFO_NULL, &lf->fh) == MPI_SUCCESS;
  if (rank != 0) aptq_register_tmpfile(lf->tmp);
  if (aptq_all_ok(comm, lf->open)) return 0;
  if (lf->open) MPI_File_close(&lf->fh);
  lf->open = 0;
  if (rank == 0) unlink(lf->tmp);
  aptq_unregister_tmpfile(lf->tmp);
  return aptq_agree(comm, aptq_error("cannot open the temporary logits file '%s' on every rank; check the file system", lf->tmp));
}

/* Local: rows [row, row + n) of the whole [nseq × seqlen] set (independent
 * I/O: ranks hold different numbers of sequences); a failure shows at close. */
static void logits_write(LogitsFile *lf, const float *rows, size_t row, int n, int V) {
  MPI_Offset at = (MPI_Offset)row * V * (MPI_Offset)sizeof(float);
  lf->ok &= MPI_File_write_at(lf->fh, at, rows, n * V, MPI_FLOAT, MPI_STATUS_IGNORE) == MPI_SUCCESS;
}

/* Collective: closed, and renamed onto path when every rank wrote all it
 * had and commit is set; otherwise removed. */
static int logits_close(const char *path, int overwrite, LogitsFile *lf, int commit, MPI_Comm comm) {
  if (!lf->open) return 0;
  int rank;
  MPI_Comm_rank(comm, &rank);
  lf->ok &= MPI_File_close(&lf->fh) == MPI_SUCCESS;
  lf->open = 0;
  int ok = aptq_all_ok(comm, lf->ok);
  int rc = !ok         ? aptq_error("error writing logits file '%s'", lf->tmp)
           : !commit   ? 0
           : rank == 0 ? outpath_commit(lf->tmp, path, "logits", overwrite)
                       : 0;
  if (rank == 0 && (rc || !commit)) unlink(lf->tmp);
  aptq_unregister_tmpfile(lf->tmp);
  return aptq_agree(comm, rc);
}

/* The models an evaluation runs: the evaluated one (the quantized file, or
 * the full-precision model without `quantized`), the `compare` file, and
 * the full-precision reference of the KL divergence (with `quantized`). */
enum { EV_MAIN, EV_COMPARE, EV_REF, EV_MODELS };

/* One model's forward state and figures on this rank. The per-prediction
 * arrays (t < seqlen − 1 of every sequence, in sequence order) exist only
 * with the KL divergence; kld and top not for EV_REF. */
typedef struct {
  QFileReader *qf;                 /* its projections; closed (file < 0): the checkpoint's */
  float *x;                        /* residual streams of this rank's sequences, count × T × dim */
  float *logits;                   /* HEAD_CHUNK × vocab, one chunk of its head (EV_MAIN: the head's buffer) */
  double *nll_local, *nll;         /* per sequence: this rank's, every sequence */
  double *tok_nll_local, *tok_nll; /* per prediction: this rank's, every one */
  double *kld_local, *kld;         /* per prediction: KL(reference || this model) */
  unsigned char *top_local, *top;  /* per prediction: 1 where its top token is the reference's */
} EvalModel;

/* The forward's buffers on this rank: the models' streams, one block's
 * weights (of one model at a time), the block scratch, the head and, when
 * they are written, EV_MAIN's logits of its sequences. */
typedef struct {
  EvalModel mod[EV_MODELS];
  int active[EV_MODELS];
  int kl; /* KL divergence against EV_REF */
  BlockWeights w;
  BlockScratch s;
  Head head;
  double *e;        /* [vocab]: exp(z − max z) of the reference row */
  LogitsFile *lf;   /* NULL unless logits = FILE */
  size_t first_row; /* this rank's first sequence × seqlen (the logits file's rows) */
} EvalBuffers;

static void eval_model_free(EvalModel *d, int own_logits) {
  if (own_logits) aptq_free(d->logits);
  void *p[] = {d->x, d->nll_local, d->nll, d->tok_nll_local, d->tok_nll, d->kld_local, d->kld, d->top_local, d->top};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) aptq_free(p[i]);
  memset(d, 0, sizeof *d);
}

static void eval_buffers_free(EvalBuffers *b) {
  for (int k = 0; k < EV_MODELS; k++) eval_model_free(&b->mod[k], k != EV_MAIN);
  block_weights_free(&b->w);
  scratch_free(&b->s);
  head_free(&b->head);
  aptq_free(b->e);
  memset(b, 0, sizeof *b);
}

/* Local: 0, or APTQ_ERR (free anyway). */
static int eval_model_alloc(EvalModel *d, const ModelConfig *c, const TokenShard *tok, int kl, int vs_ref, int own_logits) {
  size_t T = (size_t)tok->seqlen, mine = (size_t)tok->count * (T - 1) + 1, all = (size_t)tok->nseq * (T - 1);
  d->x = aptq_malloc(sizeof(float) * (size_t)tok->count * T * c->dim, "residual stream");
  if (own_logits && !(d->logits = aptq_malloc(sizeof(float) * HEAD_CHUNK * (size_t)c->vocab_size, "logits"))) return APTQ_ERR;
  d->nll_local = aptq_calloc((size_t)tok->count + 1, sizeof(double), "NLL");
  d->nll = aptq_calloc((size_t)tok->nseq, sizeof(double), "NLL");
  if (!d->x || !d->nll_local || !d->nll) return APTQ_ERR;
  if (!kl) return 0;
  d->tok_nll_local = aptq_calloc(mine, sizeof(double), "NLL per prediction");
  d->tok_nll = aptq_calloc(all, sizeof(double), "NLL per prediction");
  if (!d->tok_nll_local || !d->tok_nll) return APTQ_ERR;
  if (!vs_ref) return 0;
  d->kld_local = aptq_calloc(mine, sizeof(double), "KL divergence per prediction");
  d->kld = aptq_calloc(all, sizeof(double), "KL divergence per prediction");
  d->top_local = aptq_calloc(mine, 1, "top token agreement");
  d->top = aptq_calloc(all, 1, "top token agreement");
  return d->kld_local && d->kld && d->top_local && d->top ? 0 : APTQ_ERR;
}

/* qf, qc: the quantized and compare files (closed when not given), ref a
 * closed reader (the checkpoint's projections). Local: 0, or APTQ_ERR. */
static int eval_buffers_alloc(EvalBuffers *b, const Model *m, const TokenShard *tok, QFileReader *qf, QFileReader *qc, QFileReader *ref,
                              LogitsFile *lf) {
  const ModelConfig *c = &m->cfg;
  int T = tok->seqlen;
  memset(b, 0, sizeof *b);
  b->kl = qf->file >= 0;
  QFileReader *readers[EV_MODELS] = {qf, qc, ref};
  int active[EV_MODELS] = {1, qc->file >= 0, b->kl};
  for (int k = 0; k < EV_MODELS; k++) {
    b->active[k] = active[k];
    b->mod[k].qf = readers[k];
    if (active[k]) CHECK(eval_model_alloc(&b->mod[k], c, tok, b->kl, k != EV_REF, k != EV_MAIN));
  }
  CHECK(block_weights_alloc(c, &b->w));
  CHECK(scratch_alloc(c, T, &b->s));
  CHECK(head_load(m, &b->head));
  b->mod[EV_MAIN].logits = b->head.buf; /* not freed with the model */
  if (b->kl && !(b->e = aptq_malloc(sizeof(double) * (size_t)c->vocab_size, "reference probabilities"))) return APTQ_ERR;
  b->lf = lf;
  b->first_row = (size_t)tok->first * T;
  return 0;
}

/* The head of this rank's sequence i under every model: its NLL and, with
 * the KL divergence, the per-prediction figures, one chunk of tokens at a
 * time (each model's logits of the chunk side by side). The NLLs are
 * head_forward's, summed in the same order. Local. */
static void eval_head_sequence(const ModelConfig *c, EvalBuffers *b, const uint32_t *ids, int T, int i) {
  int D = c->dim, V = c->vocab_size;
  double total[EV_MODELS] = {0};
  const float *rows[EV_MODELS] = {0};
  for (int t0 = 0; t0 < T; t0 += HEAD_CHUNK) {
    int n = T - t0 < HEAD_CHUNK ? T - t0 : HEAD_CHUNK;
    for (int k = 0; k < EV_MODELS; k++) {
      if (!b->active[k]) continue;
      head_logits(c, &b->head, b->mod[k].x + ((size_t)i * T + t0) * D, n, b->mod[k].logits);
      rows[k] = b->mod[k].logits;
    }
    if (b->lf) logits_write(b->lf, rows[EV_MAIN], b->first_row + (size_t)i * T + t0, n, V);
    for (int r = 0; r < n && t0 + r + 1 < T; r++) {
      size_t at = (size_t)i * (T - 1) + t0 + r;
      for (int k = 0; k < EV_MODELS; k++) {
        if (!b->active[k]) continue;
        double v = logits_nll(rows[k] + (size_t)r * V, V, ids[t0 + r + 1]);
        total[k] += v;
        if (b->kl) b->mod[k].tok_nll_local[at] = v;
      }
      if (!b->kl) continue;
      LogSoftmax p, q;
      log_softmax_row(rows[EV_REF] + (size_t)r * V, V, b->e, &p);
      for (int k = EV_MAIN; k <= EV_COMPARE; k++) {
        if (!b->active[k]) continue;
        log_softmax_row(rows[k] + (size_t)r * V, V, NULL, &q);
        b->mod[k].kld_local[at] = kld_row(&p, b->e, &q, V);
        b->mod[k].top_local[at] = q.top == p.top;
      }
    }
  }
  for (int k = 0; k < EV_MODELS; k++)
    if (b->active[k]) b->mod[k].nll_local[i] = total[k];
}

/* Collective: every rank gets every sequence's NLLs and every prediction's
 * figures, in sequence order. */
static int eval_gather(const TokenShard *tok, EvalBuffers *b, MPI_Comm comm) {
  int size, T = tok->seqlen, n = tok->count * (T - 1);
  MPI_Comm_size(comm, &size);
  ShardLayout seq, pred;
  int rc = shard_layout_alloc(&seq, tok->nseq, size, 1);
  if (!rc) rc = shard_layout_alloc(&pred, tok->nseq, size, T - 1);
  CHECK(aptq_agree(comm, rc));
  for (int k = 0; k < EV_MODELS; k++) {
    EvalModel *d = &b->mod[k];
    if (!b->active[k]) continue;
    MPI_Allgatherv(d->nll_local, tok->count, MPI_DOUBLE, d->nll, seq.counts, seq.displs, MPI_DOUBLE, comm);
    if (d->tok_nll) MPI_Allgatherv(d->tok_nll_local, n, MPI_DOUBLE, d->tok_nll, pred.counts, pred.displs, MPI_DOUBLE, comm);
    if (d->kld) MPI_Allgatherv(d->kld_local, n, MPI_DOUBLE, d->kld, pred.counts, pred.displs, MPI_DOUBLE, comm);
    if (d->top) MPI_Allgatherv(d->top_local, n, MPI_UNSIGNED_CHAR, d->top, pred.counts, pred.displs, MPI_UNSIGNED_CHAR, comm);
  }
  shard_layout_free(&seq);
  shard_layout_free(&pred);
  return 0;
}

/* Collective: this rank's sequences through every block under every model
 * (each model's block weights in turn: its quantized projections, or the
 * checkpoint's) and the head; then every sequence's and prediction's
 * figures on every rank (eval_gather). */
static int eval_forward(const Model *m, const TokenShard *tok, EvalBuffers *b, MPI_Comm comm) {
  const ModelConfig *c = &m->cfg;
  int T = tok->seqlen, D = c->dim, rc = 0;
  size_t stream = (size_t)tok->count * T * D;
  for (int i = 0; !rc && i < tok->count; i++) rc = embed_tokens(m, tok->ids + (size_t)i * T, T, b->mod[EV_MAIN].x + (size_t)i * T * D);
  CHECK(aptq_agree(comm, rc));
  for (int k = EV_MAIN + 1; k < EV_MODELS; k++)
    if (b->active[k] && stream) memcpy(b->mod[k].x, b->mod[EV_MAIN].x, sizeof(float) * stream);
  int rank;
  MPI_Comm_rank(comm, &rank);
  for (int l = 0; l < c->n_layers; l++) {
    for (int k = 0; k < EV_MODELS; k++) {
      if (!b->active[k]) continue;
      CHECK(aptq_agree(comm, qfile_block_weights(b->mod[k].qf, m, l, &b->w)));
      for (int i = 0; i < tok->count; i++) block_forward(c, &b->w, &b->s, b->mod[k].x + (size_t)i * T * D);
    }
    memory_release_free();
    if (rank == 0) memory_trace("eval block %d", l + 1);
  }
  for (int i = 0; i < tok->count; i++) eval_head_sequence(c, b, tok->ids + (size_t)i * T, T, i);
  return eval_gather(tok, b, comm);
}

/* The figures of an evaluation, the same on every rank. */
typedef struct {
  double total[EV_MODELS], ppl[EV_MODELS]; /* Σ NLL in sequence order, perplexity, of each model */
  KldStats kld[EV_REF];                    /* EV_MAIN and EV_COMPARE against EV_REF */
  PairedDiff diff;                         /* EV_COMPARE − EV_MAIN */
  long long predicted;
  double t_start, t_loaded, t_forward, t_end;
} EvalResult;

/* Local: the figures from the gathered NLLs and per-prediction values. */
static int eval_figures(const EvalBuffers *b, int nseq, long long predicted, EvalResult *e) {
  e->predicted = predicted;
  for (int k = 0; k < EV_MODELS; k++) {
    if (!b->active[k]) continue;
    for (int i = 0; i < nseq; i++) e->total[k] += b->mod[k].nll[i];
    e->ppl[k] = exp(e->total[k] / (double)predicted);
  }
  if (!b->kl) return 0;
  for (int k = EV_MAIN; k <= EV_COMPARE; k++)
    if (b->active[k]) CHECK(kld_stats(b->mod[k].kld, b->mod[k].top, predicted, &e->kld[k]));
  const EvalModel *a = &b->mod[EV_MAIN], *c = &b->mod[EV_COMPARE];
  if (b->active[EV_COMPARE]) paired_diff(a->kld, c->kld, a->tok_nll, c->tok_nll, predicted, e->ppl[EV_MAIN], e->ppl[EV_COMPARE], &e->diff);
  return 0;
}

static void print_kld(const char *label, const KldStats *s) {
  printf("%sKL divergence: mean %.6f ± %.6f, p99 %.6f, top-1 agreement %.3f ± %.3f %%\n", label, s->kld, s->kld_se, s->kld_p99,
         100.0 * s->top1, 100.0 * s->top1_se);
}

static void eval_print(const Options *o, const TokenShard *tok, const EvalBuffers *b, const EvalResult *e, int size) {
  printf("aptq eval: %s%s\n", o->model, o->quantized[0] ? " (quantized)" : "");
  if (o->quantized[0]) printf("  quantized file : %s\n", o->quantized);
  if (o->compare[0]) printf("  compare file   : %s\n", o->compare);
  printf("  tokens         : %s, %d sequences x %d tokens (%lld predictions), sha256 %.16s...\n", o->tokens, o->nseq, tok->seqlen,
         e->predicted, tok->sha256);
  printf("  ranks          : %d\n", size);
  printf("  time           : load %.2f s, forward %.2f s, total %.2f s\n", e->t_loaded - e->t_start, e->t_forward - e->t_loaded,
         e->t_end - e->t_start);
  printf("perplexity: %.6f\n", e->ppl[EV_MAIN]);
  if (b->kl) {
    printf("full-precision perplexity: %.6f\n", e->ppl[EV_REF]);
    print_kld("", &e->kld[EV_MAIN]);
  }
  if (b->active[EV_COMPARE]) {
    printf("compare perplexity: %.6f\n", e->ppl[EV_COMPARE]);
    print_kld("compare ", &e->kld[EV_COMPARE]);
    printf("compare - quantized, paired: KL divergence %.6f ± %.6f, perplexity %.6f ± %.6f\n", e->diff.kld, e->diff.kld_se, e->diff.ppl,
           e->diff.ppl_se);
  }
  fflush(stdout);
}

/* The KL divergence figures of one model, and its mean KL divergence per
 * sequence (for paired comparisons by sequence, as of the NLLs). */
static void report_kld(Report *rep, const KldStats *s, const double *kld, int nseq, int T) {
  report_num(rep, "kl_divergence", s->kld);
  report_num(rep, "kl_divergence_stderr", s->kld_se);
  report_num(rep, "kl_divergence_p99", s->kld_p99);
  report_num(rep, "top1_agreement", s->top1);
  report_num(rep, "top1_agreement_stderr", s->top1_se);
  report_begin(rep, "kl_divergence_per_sequence", '[');
  for (int i = 0; i < nseq; i++) {
    double sum = 0.0;
    for (int t = 0; t < T - 1; t++) sum += kld[(size_t)i * (T - 1) + t];
    report_num(rep, NULL, sum / (T - 1));
  }
  report_end(rep, ']');
}

static void report_nll_per_sequence(Report *rep, const double *nll, int nseq) {
  report_begin(rep, "nll_per_sequence", '[');
  for (int i = 0; i < nseq; i++) report_num(rep, NULL, nll[i]);
  report_end(rep, ']');
}

/* The compare file's figures and the paired differences, as objects. */
static void report_compare(Report *rep, const Options *o, const EvalBuffers *b, const EvalResult *e) {
  report_begin(rep, "compare", '{');
  report_str(rep, "quantized", o->compare);
  report_num(rep, "perplexity", e->ppl[EV_COMPARE]);
  report_num(rep, "nll_sum", e->total[EV_COMPARE]);
  report_kld(rep, &e->kld[EV_COMPARE], b->mod[EV_COMPARE].kld, o->nseq, o->seqlen);
  report_nll_per_sequence(rep, b->mod[EV_COMPARE].nll, o->nseq);
  report_end(rep, '}');
  report_begin(rep, "difference", '{');
  report_num(rep, "kl_divergence", e->diff.kld);
  report_num(rep, "kl_divergence_stderr", e->diff.kld_se);
  report_num(rep, "perplexity", e->diff.ppl);
  report_num(rep, "perplexity_stderr", e->diff.ppl_se);
  report_end(rep, '}');
}

/* This rank's part of the report (rank 0 writes it): 0 or an error. */
static int eval_report(const Options *o, const Model *m, const TokenShard *tok, const EvalBuffers *b, const EvalResult *e, int rank,
                       int size, const double mem[4]) {
  int T = tok->seqlen;
  Report rep;
  int rrc = report_open(&rep, o->report, o->overwrite, rank);
  report_str(&rep, "command", "eval");
  report_str(&rep, "model", o->model);
  report_str(&rep, "model_fingerprint", m->fingerprint);
  report_str(&rep, "quantized", o->quantized);
  report_str(&rep, "tokens_file", o->tokens);
  report_int(&rep, "tokens", (long long)o->nseq * T);
  report_str(&rep, "tokens_sha256", tok->sha256);
  report_num(&rep, "perplexity", e->ppl[EV_MAIN]);
  report_num(&rep, "nll_sum", e->total[EV_MAIN]);
  if (b->kl) {
    report_num(&rep, "full_precision_perplexity", e->ppl[EV_REF]);
    report_kld(&rep, &e->kld[EV_MAIN], b->mod[EV_MAIN].kld, o->nseq, T);
  }
  if (b->active[EV_COMPARE]) report_compare(&rep, o, b, e);
  report_int(&rep, "predictions", e->predicted);
  report_int(&rep, "seqlen", T);
  report_int(&rep, "nseq", o->nseq);
  report_int(&rep, "ranks", size);
  report_num(&rep, "seconds", e->t_end - e->t_start);
  report_begin(&rep, "phase_seconds", '{');
  report_num(&rep, "load", e->t_loaded - e->t_start);
  report_num(&rep, "forward", e->t_forward - e->t_loaded);
  report_end(&rep, '}');
  report_begin(&rep, "memory", '{');
  report_num(&rep, "predicted_peak_bytes", mem[0]);
  report_num(&rep, "peak_rss_bytes", mem[1]);
  report_end(&rep, '}');
  memory_report_heap(&rep, mem[2], mem[3]);
  /* per sequence, for paired comparisons of two models (tools/mixed-table.sh) */
  report_nll_per_sequence(&rep, b->mod[EV_MAIN].nll, o->nseq);
  if (!rrc) rrc = report_close(&rep);
  return rrc;
}

/* Collective: the peak memory per rank predicted from the shapes (printed,
 * refused above max_memory) before the buffers are allocated; *heap: its
 * heap part (the heap audit's bound). */
static int eval_predict(const Options *o, const Model *m, const TokenShard *tok, const QFileReader *qf, const QFileReader *qc,
                        double baseline, double *predicted, double *heap, MPI_Comm comm) {
  int size, models = 1 + (qf->file >= 0) + (qc->file >= 0);
  MPI_Comm_size(comm, &size);
  MemPlan plan;
  memplan_eval(&plan, &m->cfg, tok->seqlen, (tok->nseq + size - 1) / size, tok->nseq, models, qf->file >= 0);
  memplan_add_mapped(&plan, "checkpoint pages mapped at once (embedding rows, a layer)", memplan_mapped_bytes(m, tok, comm));
  double qf_bytes = qfile_stored_bytes_max(qf, m), qc_bytes = qfile_stored_bytes_max(qc, m);
  if (qf_bytes > 0 || qc_bytes > 0)
    memplan_add(&plan, "stored form of a quantized layer while it is dequantized (the largest)", qf_bytes > qc_bytes ? qf_bytes : qc_bytes,
                0);
  *heap = memplan_heap_peak(&plan);
  return memory_check(&plan, baseline, o, comm, predicted);
}

static void eval_print_memory(double predicted, double rss) {
  char a[32], b[32];
  memory_format(predicted, a, sizeof a);
  memory_format(rss, b, sizeof b);
  printf("  memory         : peak per rank %s (predicted %s)\n", b, a);
  fflush(stdout);
}

int cmd_eval(const Options *o, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  EvalResult e = {.t_start = MPI_Wtime()};
  double baseline = memory_peak_rss();
  int rc = options_require(o, "model") || options_require(o, "tokens") || options_require(o, "nseq");
  if (!rc && o->compare[0] && !o->quantized[0])
    rc = aptq_error("compare needs quantized: give the first file as quantized = FILE and the one to compare with it as compare = FILE");
  CHECK(aptq_agree(comm, rc));
  if (o->report[0]) CHECK(output_check(o->report, "report", o->overwrite, o, comm));
  if (o->logits[0]) CHECK(output_check(o->logits, "logits", o->overwrite, o, comm));

  Model m;
  CHECK(aptq_agree(comm, model_open(o->model, &m)));
  const ModelConfig *c = &m.cfg;
  int T = o->seqlen;
  if (T > c->max_seq_len && rank == 0)
    fprintf(stderr, "aptq: warning: seqlen %d exceeds the model's max_position_embeddings %d\n", T, c->max_seq_len);
  CHECK(model_fingerprint(&m, comm));
  TokenShard tok;
  CHECK(tokens_load(o->tokens, "tokens", T, o->nseq, c->vocab_size, comm, &tok));
  QFileReader qf = {.file = -1}, qc = {.file = -1}, ref = {.file = -1};
  if (o->quantized[0]) CHECK(qfile_open_model(&qf, o->quantized, &m, comm));
  if (o->compare[0]) CHECK(qfile_open_model(&qc, o->compare, &m, comm));
  e.t_loaded = MPI_Wtime();

  double predicted, predicted_heap;
  CHECK(eval_predict(o, &m, &tok, &qf, &qc, baseline, &predicted, &predicted_heap, comm));
  heap_audit_mark(); /* the model's metadata and the token shard are the base */
  EvalBuffers b;
  LogitsFile lf = {0};
  rc = aptq_agree(comm, eval_buffers_alloc(&b, &m, &tok, &qf, &qc, &ref, o->logits[0] ? &lf : NULL));
  if (!rc && o->logits[0]) rc = logits_open(o->logits, &lf, comm);
  if (!rc) rc = eval_forward(&m, &tok, &b, comm);
  if (!rc) {
    e.t_forward = MPI_Wtime();
    rc = aptq_agree(comm, eval_figures(&b, o->nseq, (long long)o->nseq * (T - 1), &e));
  }
  if (!rc) {
    if (lf.open) rc = logits_close(o->logits, o->overwrite, &lf, 1, comm);
    e.t_end = MPI_Wtime();
    if (!rc && rank == 0) eval_print(o, &tok, &b, &e, size);
    double rss = memory_peak_rss(), heap_peak = memory_heap_peak_max(comm);
    MPI_Allreduce(MPI_IN_PLACE, &rss, 1, MPI_DOUBLE, MPI_MAX, comm);
    if (rank == 0) eval_print_memory(predicted, rss);
    int rrc = eval_report(o, &m, &tok, &b, &e, rank, size, (double[]){predicted, rss, heap_peak, predicted_heap});
    rc = aptq_agree(comm, rc || rrc);
  }
  if (lf.open) logits_close(o->logits, o->overwrite, &lf, 0, comm);
  eval_buffers_free(&b);
  if (qc.file >= 0) qfile_close(&qc);
  if (qf.file >= 0) qfile_close(&qf);
  tokens_free(&tok);
  model_close(&m);
  return rc;
}
