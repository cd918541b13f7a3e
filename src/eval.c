/* aptq eval: perplexity of the full-precision or quantized model.
 * Sequences are sharded over ranks; each rank runs its shard block by block
 * (one block's weights in float32 at a time); per-sequence NLLs are gathered
 * and summed in sequence order, so the figure is identical for any rank count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "forward.h"
#include "model.h"
#include "outpath.h"
#include "qfile.h"
#include "report.h"
#include "tokens.h"

static int write_logits(const char *path, const float *logits, int first, int count, int T, int V, MPI_Comm comm) {
  MPI_File fh;
  int rc = MPI_File_open(comm, path, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL, &fh);
  if (rc != MPI_SUCCESS) return aptq_agree(comm, aptq_error("cannot create logits file '%s'", path));
  MPI_File_set_size(fh, 0);
  MPI_Offset per_seq = (MPI_Offset)T * V * (MPI_Offset)sizeof(float);
  /* one write per sequence keeps each count below 2^31 */
  int maxcount;
  MPI_Allreduce(&count, &maxcount, 1, MPI_INT, MPI_MAX, comm);
  int ok = 1;
  for (int i = 0; i < maxcount; i++) {
    const float *buf = i < count ? logits + (size_t)i * T * V : logits;
    int n = i < count ? T * V : 0;
    ok &= MPI_File_write_at_all(fh, (MPI_Offset)(first + i) * per_seq, buf, n, MPI_FLOAT, MPI_STATUS_IGNORE) == MPI_SUCCESS;
  }
  ok &= MPI_File_close(&fh) == MPI_SUCCESS;
  return aptq_agree(comm, ok ? 0 : aptq_error("error writing logits file '%s'", path));
}

int cmd_eval(const Options *o, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double t_start = MPI_Wtime();
  int rc = options_require(o, "model") || options_require(o, "tokens") || options_require(o, "nseq");
  CHECK(aptq_agree(comm, rc));
  if (o->report[0]) CHECK(output_check(o->report, "report", 1, comm));
  if (o->logits[0]) CHECK(output_check(o->logits, "logits", 1, comm));

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
  if (o->quantized[0]) {
    rc = qfile_open(&qf, o->quantized, comm);
    if (!rc && strcmp(qf.model_fingerprint, m.fingerprint))
      rc = aptq_error(
          "'%s' was made from a different model (fingerprint %.12s..., this model %.12s...); give the model it was quantized from",
          o->quantized, qf.model_fingerprint, m.fingerprint);
    CHECK(aptq_agree(comm, rc));
  }
  double t_loaded = MPI_Wtime();

  int D = c->dim, V = c->vocab_size;
  float *x = aptq_malloc(sizeof(float) * (size_t)tok.count * T * D, "residual stream");
  BlockWeights w;
  BlockScratch s;
  Head head;
  double *nll_local = aptq_calloc((size_t)tok.count + 1, sizeof(double), "NLL");
  double *nll = aptq_calloc((size_t)o->nseq, sizeof(double), "NLL");
  float *logits = NULL;
  rc = !x || !nll_local || !nll || block_weights_alloc(c, &w) || scratch_alloc(c, T, &s) || head_load(&m, &head);
  if (!rc && o->logits[0]) {
    logits = aptq_malloc(sizeof(float) * (size_t)(tok.count ? tok.count : 1) * T * V, "logits");
    rc = !logits;
  }
  for (int i = 0; !rc && i < tok.count; i++) rc = embed_tokens(&m, tok.ids + (size_t)i * T, T, x + (size_t)i * T * D);
  CHECK(aptq_agree(comm, rc));

  for (int l = 0; l < c->n_layers; l++) {
    rc = block_weights_load(&m, l, &w);
    for (int k = 0; !rc && qf.file >= 0 && k < LIN_COUNT; k++) {
      char name[256];
      linear_layer_name(l, k, name, sizeof name);
      rc = qfile_read_linear(&qf, name, (int)m.linear[l][k].rows, (int)m.linear[l][k].cols, w.w[k]);
    }
    CHECK(aptq_agree(comm, rc));
    for (int i = 0; i < tok.count; i++) block_forward(c, &w, &s, x + (size_t)i * T * D);
  }
  for (int i = 0; i < tok.count; i++)
    head_forward(c, &head, x + (size_t)i * T * D, tok.ids + (size_t)i * T, T, &nll_local[i], logits ? logits + (size_t)i * T * V : NULL);
  double t_forward = MPI_Wtime();

  ShardLayout lay;
  CHECK(aptq_agree(comm, shard_layout_alloc(&lay, o->nseq, size, 1)));
  MPI_Allgatherv(nll_local, tok.count, MPI_DOUBLE, nll, lay.counts, lay.displs, MPI_DOUBLE, comm);
  double total = 0.0;
  for (int i = 0; i < o->nseq; i++) total += nll[i];
  long long predicted = (long long)o->nseq * (T - 1);
  double ppl = exp(total / (double)predicted);
  if (logits) rc = write_logits(o->logits, logits, tok.first, tok.count, T, V, comm);
  double t_end = MPI_Wtime();

  if (!rc && rank == 0) {
    printf("aptq eval: %s%s\n", o->model, o->quantized[0] ? " (quantized)" : "");
    if (o->quantized[0]) printf("  quantized file : %s\n", o->quantized);
    printf("  tokens         : %s, %d sequences x %d tokens (%lld predictions), sha256 %.16s...\n", o->tokens, o->nseq, T, predicted,
           tok.sha256);
    printf("  ranks          : %d\n", size);
    printf("  time           : load %.2f s, forward %.2f s, total %.2f s\n", t_loaded - t_start, t_forward - t_loaded, t_end - t_start);
    printf("perplexity: %.6f\n", ppl);
    fflush(stdout);
  }
  Report rep;
  int rrc = report_open(&rep, o->report, rank);
  report_str(&rep, "command", "eval");
  report_str(&rep, "model", o->model);
  report_str(&rep, "model_fingerprint", m.fingerprint);
  report_str(&rep, "quantized", o->quantized);
  report_str(&rep, "tokens_file", o->tokens);
  report_int(&rep, "tokens", (long long)o->nseq * T);
  report_str(&rep, "tokens_sha256", tok.sha256);
  report_num(&rep, "perplexity", ppl);
  report_num(&rep, "nll_sum", total);
  report_int(&rep, "predictions", predicted);
  report_int(&rep, "seqlen", T);
  report_int(&rep, "nseq", o->nseq);
  report_int(&rep, "ranks", size);
  report_num(&rep, "seconds", t_end - t_start);
  report_begin(&rep, "phase_seconds", '{');
  report_num(&rep, "load", t_loaded - t_start);
  report_num(&rep, "forward", t_forward - t_loaded);
  report_end(&rep, '}');
  /* per sequence, for paired comparisons of two models (tools/mixed-table.sh) */
  report_begin(&rep, "nll_per_sequence", '[');
  for (int i = 0; i < o->nseq; i++) report_num(&rep, NULL, nll[i]);
  report_end(&rep, ']');
  if (!rrc) rrc = report_close(&rep);
  rc = aptq_agree(comm, rc || rrc);

  shard_layout_free(&lay);
  free(logits);
  free(nll);
  free(nll_local);
  free(x);
  head_free(&head);
  scratch_free(&s);
  block_weights_free(&w);
  if (qf.file >= 0) qfile_close(&qf);
  tokens_free(&tok);
  model_close(&m);
  return rc;
}
