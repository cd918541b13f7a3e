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

/* recon's buffers on this rank. */
typedef struct {
  float *x;                  /* its residual streams, T × D each */
  float *xa, *xb, *ofp, *oq; /* T × D: block input copies, attention outputs */
  double *sums, *all;        /* per sequence and block the four sums: its sequences', every sequence's */
  double *blk;               /* per block, summed over the sequences */
  BlockWeights w, wq;        /* one block's weights, full precision and quantized */
  BlockScratch s;
} ReconBuffers;

static void recon_buffers_free(ReconBuffers *b) {
  float *f[] = {b->x, b->xa, b->xb, b->ofp, b->oq};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) aptq_free(f[i]);
  aptq_free(b->sums);
  aptq_free(b->all);
  aptq_free(b->blk);
  block_weights_free(&b->w);
  block_weights_free(&b->wq);
  scratch_free(&b->s);
  memset(b, 0, sizeof *b);
}

/* Local: 0, or APTQ_ERR (free anyway). */
static int recon_buffers_alloc(ReconBuffers *b, const ModelConfig *c, const TokenShard *tok) {
  int T = tok->seqlen, L = c->n_layers;
  size_t TD = (size_t)T * c->dim;
  memset(b, 0, sizeof *b);
  b->x = aptq_malloc(sizeof(float) * ((size_t)tok->count * TD + 1), "residual stream");
  b->xa = aptq_malloc(sizeof(float) * TD, "block input copy");
  b->xb = aptq_malloc(sizeof(float) * TD, "block input copy");
  b->ofp = aptq_malloc(sizeof(float) * TD, "attention output");
  b->oq = aptq_malloc(sizeof(float) * TD, "attention output");
  b->sums = aptq_calloc((size_t)(tok->count + 1) * L * NSUM, sizeof(double), "error sums");
  b->all = aptq_calloc((size_t)tok->nseq * L * NSUM, sizeof(double), "error sums");
  b->blk = aptq_calloc((size_t)L * NSUM, sizeof(double), "block sums");
  if (!b->x || !b->xa || !b->xb || !b->ofp || !b->oq || !b->sums || !b->all || !b->blk) return APTQ_ERR;
  CHECK(block_weights_alloc(c, &b->w));
  CHECK(block_weights_alloc(c, &b->wq));
  return scratch_alloc(c, T, &b->s);
}

/* One sequence xi (T × D, block l's input) through block l from the same
 * input with the full-precision weights (b->w) and the quantized ones
 * (b->wq): sum += the attention output's error and norm, the block
 * output's error and the block's update; xi advances to the
 * full-precision output. */
static void recon_sequence(const ModelConfig *c, ReconBuffers *b, int T, float *xi, double *sum) {
  int D = c->dim, qd = c->n_heads * c->head_dim;
  size_t TD = (size_t)T * D;
  memcpy(b->xa, xi, sizeof(float) * TD);
  block_forward_until(c, &b->w, &b->s, b->xa, STOP_O_INPUT);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, D, qd, 1.0f, b->s.z, qd, b->w.w[LIN_O], qd, 0.0f, b->ofp, D);
  memcpy(b->xa, xi, sizeof(float) * TD);
  block_forward_until(c, &b->wq, &b->s, b->xa, STOP_O_INPUT);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, D, qd, 1.0f, b->s.z, qd, b->wq.w[LIN_O], qd, 0.0f, b->oq, D);
  quant_error_norm(b->ofp, b->oq, TD, &sum[ATT_ERR], &sum[ATT_NORM]);
  /* whole block: quantized from the same input, then the FP stream advances */
  memcpy(b->xa, xi, sizeof(float) * TD);
  memcpy(b->xb, xi, sizeof(float) * TD);
  block_forward(c, &b->wq, &b->s, b->xa);
  block_forward(c, &b->w, &b->s, xi);
  quant_error_norm(xi, b->xa, TD, &sum[BLK_ERR], NULL);
  quant_error_norm(xi, b->xb, TD, &sum[BLK_NORM], NULL); /* the block's update */
}

/* Collective: this rank's sequences block by block, then every sequence's
 * sums gathered and summed per block in sequence order (b->blk). */
static int recon_run(const Model *m, QFileReader *qf, const TokenShard *tok, ReconBuffers *b, MPI_Comm comm) {
  const ModelConfig *c = &m->cfg;
  int T = tok->seqlen, L = c->n_layers, size, rc = 0;
  size_t TD = (size_t)T * c->dim;
  MPI_Comm_size(comm, &size);
  for (int i = 0; !rc && i < tok->count; i++) rc = embed_tokens(m, tok->ids + (size_t)i * T, T, b->x + (size_t)i * TD);
  CHECK(aptq_agree(comm, rc));
  for (int l = 0; l < L; l++) {
    CHECK(aptq_agree(comm, block_weights_load(m, l, &b->w) || qfile_block_weights(qf, m, l, &b->wq)));
    for (int i = 0; i < tok->count; i++) recon_sequence(c, b, T, b->x + (size_t)i * TD, b->sums + ((size_t)i * L + l) * NSUM);
  }
  ShardLayout lay;
  CHECK(aptq_agree(comm, shard_layout_alloc(&lay, tok->nseq, size, L * NSUM)));
  MPI_Allgatherv(b->sums, tok->count * L * NSUM, MPI_DOUBLE, b->all, lay.counts, lay.displs, MPI_DOUBLE, comm);
  shard_layout_free(&lay);
  for (int i = 0; i < tok->nseq; i++)
    for (int l = 0; l < L; l++)
      for (int k = 0; k < NSUM; k++) b->blk[l * NSUM + k] += b->all[((size_t)i * L + l) * NSUM + k];
  return 0;
}

static void recon_print(const Options *o, const TokenShard *tok, const double *blk, const double *tot, int L, int size, double seconds) {
  double ntok = (double)o->nseq * tok->seqlen;
  printf("aptq recon: %s against %s\n", o->quantized, o->model);
  printf("  tokens : %s, %d sequences x %d tokens, sha256 %.16s...\n", o->tokens, o->nseq, tok->seqlen, tok->sha256);
  printf("  ranks  : %d, %.2f s\n", size, seconds);
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

/* This rank's part of the report (rank 0 writes it): 0 or an error. */
static int recon_report(const Options *o, const TokenShard *tok, const double *blk, const double *tot, int L, int rank, int size,
                        double seconds) {
  double ntok = (double)o->nseq * tok->seqlen;
  Report rep;
  int rrc = report_open(&rep, o->report, o->overwrite, rank);
  report_str(&rep, "command", "recon");
  report_str(&rep, "model", o->model);
  report_str(&rep, "quantized", o->quantized);
  report_str(&rep, "tokens_file", o->tokens);
  report_str(&rep, "tokens_sha256", tok->sha256);
  report_int(&rep, "nseq", o->nseq);
  report_int(&rep, "seqlen", tok->seqlen);
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
  report_num(&rep, "seconds", seconds);
  if (!rrc) rrc = report_close(&rep);
  return rrc;
}

int cmd_recon(const Options *o, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double t_start = MPI_Wtime();
  int rc = options_require(o, "model") || options_require(o, "tokens") || options_require(o, "nseq") || options_require(o, "quantized");
  CHECK(aptq_agree(comm, rc));
  if (o->report[0]) CHECK(output_check(o->report, "report", o->overwrite, o, comm));

  Model m;
  CHECK(aptq_agree(comm, model_open(o->model, &m)));
  int L = m.cfg.n_layers;
  CHECK(model_fingerprint(&m, comm));
  TokenShard tok;
  CHECK(tokens_load(o->tokens, "tokens", o->seqlen, o->nseq, m.cfg.vocab_size, comm, &tok));
  QFileReader qf = {.file = -1};
  CHECK(qfile_open_model(&qf, o->quantized, &m, comm));

  ReconBuffers b;
  rc = aptq_agree(comm, recon_buffers_alloc(&b, &m.cfg, &tok));
  if (!rc) rc = recon_run(&m, &qf, &tok, &b, comm);
  if (!rc) {
    double tot[NSUM] = {0};
    for (int l = 0; l < L; l++)
      for (int k = 0; k < NSUM; k++) tot[k] += b.blk[l * NSUM + k];
    double seconds = MPI_Wtime() - t_start;
    if (rank == 0) recon_print(o, &tok, b.blk, tot, L, size, seconds);
    rc = aptq_agree(comm, recon_report(o, &tok, b.blk, tot, L, rank, size, seconds));
  }
  recon_buffers_free(&b);
  qfile_close(&qf);
  tokens_free(&tok);
  model_close(&m);
  return rc;
}
