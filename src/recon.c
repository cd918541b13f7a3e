/* aptq recon: layer-wise reconstruction error of a quantized model.
 * The token sequences run through the full-precision model; at every block
 * the same full-precision block input goes through the block once with the
 * original weights and once with the quantized ones, and we measure
 *  - the attention output o = z W_Oᵀ (what APTQ's Hessians model: the
 *    error of quantizing q/k/v/o together, issue 4), and
 *  - the block's update x_out − x_in (attention + MLP).
 * Errors are gathered per sequence and summed in sequence order, so the
 * figures are identical for any rank count. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "forward.h"
#include "model.h"
#include "outpath.h"
#include "qfile.h"
#include "quant.h"
#include "report.h"
#include "tokens.h"

enum { ATT_ERR, ATT_NORM, BLK_ERR, BLK_NORM, NSUM };

int cmd_recon(const Options *o, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double t_start = MPI_Wtime();
  int rc = options_require(o, "model") || options_require(o, "tokens") || options_require(o, "nseq") || options_require(o, "quantized");
  CHECK(aptq_agree(comm, rc));
  if (o->report[0]) CHECK(output_check(o->report, "report", 1, comm));

  Model m;
  CHECK(aptq_agree(comm, model_open(o->model, &m)));
  const ModelConfig *c = &m.cfg;
  int T = o->seqlen, D = c->dim, L = c->n_layers, qd = c->n_heads * c->head_dim;
  CHECK(model_fingerprint(&m, comm));
  TokenShard tok;
  CHECK(tokens_load(o->tokens, "tokens", T, o->nseq, c->vocab_size, comm, &tok));
  QFileReader qf = {.file = -1};
  rc = qfile_open(&qf, o->quantized, comm);
  if (!rc && strcmp(qf.model_fingerprint, m.fingerprint))
    rc =
        aptq_error("'%s' was made from a different model (fingerprint %.12s..., this model %.12s...); give the model it was quantized from",
                   o->quantized, qf.model_fingerprint, m.fingerprint);
  CHECK(aptq_agree(comm, rc));

  size_t TD = (size_t)T * D;
  float *x = aptq_malloc(sizeof(float) * ((size_t)tok.count * TD + 1), "residual stream");
  float *xa = aptq_malloc(sizeof(float) * TD, "block input copy"), *xb = aptq_malloc(sizeof(float) * TD, "block input copy");
  float *ofp = aptq_malloc(sizeof(float) * TD, "attention output"), *oq = aptq_malloc(sizeof(float) * TD, "attention output");
  /* per local sequence, per block: the four sums */
  double *sums = aptq_calloc((size_t)(tok.count + 1) * L * NSUM, sizeof(double), "error sums");
  double *all = aptq_calloc((size_t)o->nseq * L * NSUM, sizeof(double), "error sums");
  BlockWeights w, wq;
  BlockScratch s;
  rc = !x || !xa || !xb || !ofp || !oq || !sums || !all || block_weights_alloc(c, &w) || block_weights_alloc(c, &wq) ||
       scratch_alloc(c, T, &s);
  for (int i = 0; !rc && i < tok.count; i++) rc = embed_tokens(&m, tok.ids + (size_t)i * T, T, x + (size_t)i * TD);
  CHECK(aptq_agree(comm, rc));

  for (int l = 0; l < L; l++) {
    rc = block_weights_load(&m, l, &w) || block_weights_load(&m, l, &wq);
    for (int k = 0; !rc && k < LIN_COUNT; k++) {
      char name[256];
      linear_layer_name(l, k, name, sizeof name);
      rc = qfile_read_linear(&qf, name, (int)m.linear[l][k].rows, (int)m.linear[l][k].cols, wq.w[k]);
    }
    CHECK(aptq_agree(comm, rc));
    for (int i = 0; i < tok.count; i++) {
      float *xi = x + (size_t)i * TD;
      double *sum = sums + ((size_t)i * L + l) * NSUM;
      memcpy(xa, xi, sizeof(float) * TD);
      block_forward_until(c, &w, &s, xa, STOP_O_INPUT);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, D, qd, 1.0f, s.z, qd, w.w[LIN_O], qd, 0.0f, ofp, D);
      memcpy(xa, xi, sizeof(float) * TD);
      block_forward_until(c, &wq, &s, xa, STOP_O_INPUT);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, D, qd, 1.0f, s.z, qd, wq.w[LIN_O], qd, 0.0f, oq, D);
      quant_error_norm(ofp, oq, TD, &sum[ATT_ERR], &sum[ATT_NORM]);
      /* whole block: quantized from the same input, then the FP stream advances */
      memcpy(xa, xi, sizeof(float) * TD);
      memcpy(xb, xi, sizeof(float) * TD);
      block_forward(c, &wq, &s, xa);
      block_forward(c, &w, &s, xi);
      quant_error_norm(xi, xa, TD, &sum[BLK_ERR], NULL);
      quant_error_norm(xi, xb, TD, &sum[BLK_NORM], NULL); /* the block's update */
    }
  }
  ShardLayout lay;
  CHECK(aptq_agree(comm, shard_layout_alloc(&lay, o->nseq, size, L * NSUM)));
  MPI_Allgatherv(sums, tok.count * L * NSUM, MPI_DOUBLE, all, lay.counts, lay.displs, MPI_DOUBLE, comm);
  double *blk = aptq_calloc((size_t)L * NSUM, sizeof(double), "block sums"), tot[NSUM] = {0};
  CHECK(aptq_agree(comm, !blk));
  for (int i = 0; i < o->nseq; i++)
    for (int l = 0; l < L; l++)
      for (int k = 0; k < NSUM; k++) blk[l * NSUM + k] += all[((size_t)i * L + l) * NSUM + k];
  for (int l = 0; l < L; l++)
    for (int k = 0; k < NSUM; k++) tot[k] += blk[l * NSUM + k];
  double ntok = (double)o->nseq * T, t_end = MPI_Wtime();

  if (rank == 0) {
    printf("aptq recon: %s against %s\n", o->quantized, o->model);
    printf("  tokens : %s, %d sequences x %d tokens, sha256 %.16s...\n", o->tokens, o->nseq, T, tok.sha256);
    printf("  ranks  : %d, %.2f s\n", size, t_end - t_start);
    printf("  block  attention E/token   attention rel   block rel\n");
    for (int l = 0; l < L; l++) {
      const double *b = blk + l * NSUM;
      printf("  %5d  %16.6e  %14.6e  %10.6e\n", l, b[ATT_ERR] / ntok, b[ATT_ERR] / b[ATT_NORM], b[BLK_ERR] / b[BLK_NORM]);
    }
    printf("attention error per token: %.9e\n", tot[ATT_ERR] / ntok);
    printf("attention relative error: %.9e\n", tot[ATT_ERR] / tot[ATT_NORM]);
    printf("block relative error: %.9e\n", tot[BLK_ERR] / tot[BLK_NORM]);
    fflush(stdout);
  }
  Report rep;
  int rrc = report_open(&rep, o->report, rank);
  report_str(&rep, "command", "recon");
  report_str(&rep, "model", o->model);
  report_str(&rep, "quantized", o->quantized);
  report_str(&rep, "tokens_file", o->tokens);
  report_str(&rep, "tokens_sha256", tok.sha256);
  report_int(&rep, "nseq", o->nseq);
  report_int(&rep, "seqlen", T);
  report_int(&rep, "ranks", size);
  report_num(&rep, "attention_error_per_token", tot[ATT_ERR] / ntok);
  report_num(&rep, "attention_relative_error", tot[ATT_ERR] / tot[ATT_NORM]);
  report_num(&rep, "block_relative_error", tot[BLK_ERR] / tot[BLK_NORM]);
  const char *keys[3] = {"attention_error_per_token_by_block", "attention_relative_error_by_block", "block_relative_error_by_block"};
  for (int k = 0; k < 3; k++) {
    report_begin(&rep, keys[k], '[');
    for (int l = 0; l < L; l++) {
      const double *b = blk + l * NSUM;
      report_num(&rep, NULL, k == 0 ? b[ATT_ERR] / ntok : k == 1 ? b[ATT_ERR] / b[ATT_NORM] : b[BLK_ERR] / b[BLK_NORM]);
    }
    report_end(&rep, ']');
  }
  report_num(&rep, "seconds", t_end - t_start);
  if (!rrc) rrc = report_close(&rep);
  rc = aptq_agree(comm, rrc);

  shard_layout_free(&lay);
  free(blk);
  free(all);
  free(sums);
  free(x);
  free(xa);
  free(xb);
  free(ofp);
  free(oq);
  scratch_free(&s);
  block_weights_free(&w);
  block_weights_free(&wq);
  qfile_close(&qf);
  tokens_free(&tok);
  model_close(&m);
  return rc;
}
