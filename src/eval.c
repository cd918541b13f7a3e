/* aptq eval: perplexity of the full-precision or quantized model.
 * Sequences are sharded over ranks; each rank runs its shard block by block
 * (one block's weights in float32 at a time); per-sequence NLLs are gathered
 * and summed in sequence order, so the figure is identical for any rank count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "error.h"
#include "forward.h"
#include "model.h"
#include "outpath.h"
#include "qfile.h"
#include "report.h"
#include "tokens.h"

static int write_logits(const char *path, int overwrite, const float *logits, int first, int count, int T, int V, MPI_Comm comm) {
  /* under a temporary name (rank 0's pid), renamed when complete */
  char tmp[OPT_PATH_MAX + 64];
  int rank;
  MPI_Comm_rank(comm, &rank);
  /* rank 0 creates it new and empty (outpath_temp: nothing there is truncated or followed) */
  CHECK(aptq_agree(comm, rank == 0 ? outpath_temp(path, "logits", tmp, sizeof tmp, NULL) : 0));
  MPI_Bcast(tmp, sizeof tmp, MPI_CHAR, 0, comm);
  MPI_File fh;
  int opened = MPI_File_open(comm, tmp, MPI_MODE_WRONLY, MPI_INFO_NULL, &fh) == MPI_SUCCESS;
  int ok = aptq_all_ok(comm, opened);
  if (!ok) {
    if (opened) MPI_File_close(&fh);
    if (rank == 0) unlink(tmp);
    aptq_unregister_tmpfile(tmp);
    return aptq_agree(comm, aptq_error("cannot open the temporary logits file '%s' on every rank; check the file system", tmp));
  }
  if (rank != 0) aptq_register_tmpfile(tmp);
  MPI_Offset per_seq = (MPI_Offset)T * V * (MPI_Offset)sizeof(float);
  /* one write per sequence keeps each count below 2^31 */
  int maxcount;
  MPI_Allreduce(&count, &maxcount, 1, MPI_INT, MPI_MAX, comm);
  ok = 1;
  for (int i = 0; i < maxcount; i++) {
    const float *buf = i < count ? logits + (size_t)i * T * V : logits;
    int n = i < count ? T * V : 0;
    ok &= MPI_File_write_at_all(fh, (MPI_Offset)(first + i) * per_seq, buf, n, MPI_FLOAT, MPI_STATUS_IGNORE) == MPI_SUCCESS;
  }
  ok &= MPI_File_close(&fh) == MPI_SUCCESS;
  ok = aptq_all_ok(comm, ok);
  int rc = !ok ? aptq_error("error writing logits file '%s'", tmp) : rank == 0 ? outpath_commit(tmp, path, "logits", overwrite) : 0;
  if (rank == 0 && rc) unlink(tmp);
  aptq_unregister_tmpfile(tmp);
  return aptq_agree(comm, rc);
}

/* The forward's buffers on this rank: its residual streams, one block's
 * weights, the block scratch, the head, the NLLs and, when they are
 * written, its sequences' logits. */
typedef struct {
  float *x;
  BlockWeights w;
  BlockScratch s;
  Head head;
  double *nll_local, *nll; /* this rank's sequences, every sequence */
  float *logits;           /* NULL unless logits = FILE */
} EvalBuffers;

static void eval_buffers_free(EvalBuffers *b) {
  aptq_free(b->x);
  block_weights_free(&b->w);
  scratch_free(&b->s);
  head_free(&b->head);
  aptq_free(b->nll_local);
  aptq_free(b->nll);
  aptq_free(b->logits);
  memset(b, 0, sizeof *b);
}

/* Local: 0, or APTQ_ERR (free anyway). */
static int eval_buffers_alloc(EvalBuffers *b, const Model *m, const TokenShard *tok, int with_logits) {
  const ModelConfig *c = &m->cfg;
  int T = tok->seqlen;
  memset(b, 0, sizeof *b);
  b->x = aptq_malloc(sizeof(float) * (size_t)tok->count * T * c->dim, "residual stream");
  b->nll_local = aptq_calloc((size_t)tok->count + 1, sizeof(double), "NLL");
  b->nll = aptq_calloc((size_t)tok->nseq, sizeof(double), "NLL");
  if (!b->x || !b->nll_local || !b->nll) return APTQ_ERR;
  CHECK(block_weights_alloc(c, &b->w));
  CHECK(scratch_alloc(c, T, &b->s));
  CHECK(head_load(m, &b->head));
  if (with_logits) {
    b->logits = aptq_malloc(sizeof(float) * (size_t)(tok->count ? tok->count : 1) * T * c->vocab_size, "logits");
    if (!b->logits) return APTQ_ERR;
  }
  return 0;
}

/* Collective: this rank's sequences through every block (quantized
 * projections from qf when it is open) and the head, block by block; then
 * every sequence's NLL (b->nll) on every rank. */
static int eval_forward(const Model *m, QFileReader *qf, const TokenShard *tok, EvalBuffers *b, MPI_Comm comm) {
  const ModelConfig *c = &m->cfg;
  int T = tok->seqlen, D = c->dim, V = c->vocab_size, size, rc = 0;
  MPI_Comm_size(comm, &size);
  for (int i = 0; !rc && i < tok->count; i++) rc = embed_tokens(m, tok->ids + (size_t)i * T, T, b->x + (size_t)i * T * D);
  CHECK(aptq_agree(comm, rc));
  for (int l = 0; l < c->n_layers; l++) {
    CHECK(aptq_agree(comm, qfile_block_weights(qf, m, l, &b->w)));
    for (int i = 0; i < tok->count; i++) block_forward(c, &b->w, &b->s, b->x + (size_t)i * T * D);
  }
  for (int i = 0; i < tok->count; i++)
    head_forward(c, &b->head, b->x + (size_t)i * T * D, tok->ids + (size_t)i * T, T, &b->nll_local[i],
                 b->logits ? b->logits + (size_t)i * T * V : NULL);
  ShardLayout lay;
  CHECK(aptq_agree(comm, shard_layout_alloc(&lay, tok->nseq, size, 1)));
  MPI_Allgatherv(b->nll_local, tok->count, MPI_DOUBLE, b->nll, lay.counts, lay.displs, MPI_DOUBLE, comm);
  shard_layout_free(&lay);
  return 0;
}

/* The figures of an evaluation, the same on every rank. */
typedef struct {
  double total, ppl; /* Σ NLL in sequence order, perplexity */
  long long predicted;
  double t_start, t_loaded, t_forward, t_end;
} EvalResult;

static void eval_print(const Options *o, const TokenShard *tok, const EvalResult *e, int size) {
  printf("aptq eval: %s%s\n", o->model, o->quantized[0] ? " (quantized)" : "");
  if (o->quantized[0]) printf("  quantized file : %s\n", o->quantized);
  printf("  tokens         : %s, %d sequences x %d tokens (%lld predictions), sha256 %.16s...\n", o->tokens, o->nseq, tok->seqlen,
         e->predicted, tok->sha256);
  printf("  ranks          : %d\n", size);
  printf("  time           : load %.2f s, forward %.2f s, total %.2f s\n", e->t_loaded - e->t_start, e->t_forward - e->t_loaded,
         e->t_end - e->t_start);
  printf("perplexity: %.6f\n", e->ppl);
  fflush(stdout);
}

/* This rank's part of the report (rank 0 writes it): 0 or an error. */
static int eval_report(const Options *o, const Model *m, const TokenShard *tok, const EvalResult *e, const double *nll, int rank,
                       int size) {
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
  report_num(&rep, "perplexity", e->ppl);
  report_num(&rep, "nll_sum", e->total);
  report_int(&rep, "predictions", e->predicted);
  report_int(&rep, "seqlen", T);
  report_int(&rep, "nseq", o->nseq);
  report_int(&rep, "ranks", size);
  report_num(&rep, "seconds", e->t_end - e->t_start);
  report_begin(&rep, "phase_seconds", '{');
  report_num(&rep, "load", e->t_loaded - e->t_start);
  report_num(&rep, "forward", e->t_forward - e->t_loaded);
  report_end(&rep, '}');
  /* per sequence, for paired comparisons of two models (tools/mixed-table.sh) */
  report_begin(&rep, "nll_per_sequence", '[');
  for (int i = 0; i < o->nseq; i++) report_num(&rep, NULL, nll[i]);
  report_end(&rep, ']');
  if (!rrc) rrc = report_close(&rep);
  return rrc;
}

int cmd_eval(const Options *o, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  EvalResult e = {.t_start = MPI_Wtime()};
  int rc = options_require(o, "model") || options_require(o, "tokens") || options_require(o, "nseq");
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
  QFileReader qf = {.file = -1};
  if (o->quantized[0]) CHECK(qfile_open_model(&qf, o->quantized, &m, comm));
  e.t_loaded = MPI_Wtime();

  EvalBuffers b;
  rc = aptq_agree(comm, eval_buffers_alloc(&b, &m, &tok, o->logits[0] != 0));
  if (!rc) rc = eval_forward(&m, &qf, &tok, &b, comm);
  if (!rc) {
    e.t_forward = MPI_Wtime();
    for (int i = 0; i < o->nseq; i++) e.total += b.nll[i];
    e.predicted = (long long)o->nseq * (T - 1);
    e.ppl = exp(e.total / (double)e.predicted);
    if (b.logits) rc = write_logits(o->logits, o->overwrite, b.logits, tok.first, tok.count, T, c->vocab_size, comm);
    e.t_end = MPI_Wtime();
    if (!rc && rank == 0) eval_print(o, &tok, &e, size);
    int rrc = eval_report(o, &m, &tok, &e, b.nll, rank, size);
    rc = aptq_agree(comm, rc || rrc);
  }
  eval_buffers_free(&b);
  if (qf.file >= 0) qfile_close(&qf);
  tokens_free(&tok);
  model_close(&m);
  return rc;
}
