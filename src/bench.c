/* aptq bench: the quantize data path on LLaMA-7B, 13B or 70B shaped decoder
 * blocks with seeded weights and synthetic tokens, so that time and memory
 * at real sizes are measured without real weights (docs/scaling.md).
 *
 * Every rank builds the same synthetic checkpoint in memory (BF16, as real
 * checkpoints are stored); the embedding is cut to 512 rows because only the
 * blocks are measured. The report adds what a scaling study needs: each
 * phase (max over ranks), busy and waiting time per rank, the SGEMM rate
 * measured in the same run and the Hessian accumulation rate against it,
 * and the predicted and measured peak memory per rank. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "heap.h"
#include "memory.h"
#include "model.h"
#include "outpath.h"
#include "phases.h"
#include "plan.h"
#include "quantize.h"
#include "report.h"
#include "rng.h"
#include "safetensors.h"
#include "synth.h"
#include "tokens.h"

enum { BENCH_VOCAB = 512 };

/* shape: the index of the option's value (synth.h's SHAPE_*): its widths
 * and heads, with blocks blocks, the vocabulary cut to BENCH_VOCAB and
 * plain RoPE (only the blocks are measured) */
static ModelConfig bench_config(int shape, int blocks, int seqlen) {
  ModelConfig c;
  synth_shape(shape, &c);
  c.n_layers = blocks;
  c.vocab_size = BENCH_VOCAB;
  c.max_seq_len = seqlen;
  c.rope_theta = 10000.0;
  return c;
}

/* The synthetic checkpoint: a Model whose tensors are BF16 arrays held in
 * memory (store), built alike on every rank. */
typedef struct {
  Model m;
  uint16_t **store; /* every tensor's data, nstore of them */
  int nstore;
} SynthModel;

static void synth_model_free(SynthModel *sm) {
  for (int i = 0; i < sm->nstore; i++) aptq_free(sm->store[i]);
  aptq_free(sm->store);
  model_close(&sm->m);
  memset(sm, 0, sizeof *sm);
}

/* One BF16 tensor of rows × cols, mean + std·(uniform with unit variance):
 * seeded per tensor, so every rank builds the same bytes. */
static int tensor(SynthModel *sm, TensorRef *t, const char *name, int64_t rows, int64_t cols, uint64_t seed, double mean, double std) {
  uint16_t *d = aptq_malloc(sizeof(uint16_t) * (size_t)(rows * cols), name);
  if (!d) return APTQ_ERR;
  sm->store[sm->nstore++] = d;
  Rng r = {seed};
  double a = std * sqrt(3.0);
  for (int64_t i = 0; i < rows * cols; i++) d[i] = f32_to_bf16((float)(mean + a * (2.0 * rng_uniform(&r) - 1.0)));
  snprintf(t->name, sizeof t->name, "%s", name);
  t->dtype = DT_BF16;
  t->rows = rows;
  t->cols = cols;
  t->data = (const uint8_t *)d;
  return 0;
}

/* The scales are `aptq synth`'s (synth.h). Release with synth_model_free,
 * also after a failure. */
static int synth_model_build(SynthModel *sm, const ModelConfig *c, uint64_t seed) {
  memset(sm, 0, sizeof *sm);
  Model *m = &sm->m;
  m->cfg = *c;
  m->format = MODEL_HF;
  sm->store = aptq_calloc(3 + (size_t)c->n_layers * (2 + LIN_COUNT), sizeof *sm->store, "synthetic tensors");
  if (!sm->store) return APTQ_ERR;
  CHECK(model_alloc_layers(m));
  int64_t D = c->dim, F = c->hidden_dim, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
  uint64_t s = seed * 1000003u;
  CHECK(tensor(sm, &m->embed, "model.embed_tokens.weight", c->vocab_size, D, s++, 0.0, 1.0));
  CHECK(tensor(sm, &m->final_norm, "model.norm.weight", 1, D, s++, 1.0, 0.1));
  CHECK(tensor(sm, &m->lm_head, "lm_head.weight", c->vocab_size, D, s++, 0.0, 3.0 / sqrt((double)D)));
  for (int l = 0; l < c->n_layers; l++) {
    const int64_t shape[LIN_COUNT][2] = {{q, D}, {kv, D}, {kv, D}, {D, q}, {F, D}, {F, D}, {D, F}}; /* LinearKind order */
    char name[ST_NAME_MAX];
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    CHECK(tensor(sm, &m->attn_norm[l], name, 1, D, s++, 1.0, 0.1));
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    CHECK(tensor(sm, &m->ffn_norm[l], name, 1, D, s++, 1.0, 0.1));
    for (int k = 0; k < LIN_COUNT; k++) {
      snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, linear_names[k]);
      CHECK(tensor(sm, &m->linear[l][k], name, shape[k][0], shape[k][1], s++, 0.0, synth_linear_std(c, (LinearKind)k)));
    }
  }
  return 0;
}

/* This rank's sequences of seeded random tokens; sequence i is the same
 * whichever rank holds it. */
static int build_tokens(const Options *o, int vocab, MPI_Comm comm, TokenShard *t) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  memset(t, 0, sizeof *t);
  t->seqlen = o->seqlen;
  t->nseq = o->nseq;
  shard_range(o->nseq, size, rank, &t->first, &t->count);
  t->ids = aptq_malloc(sizeof(uint32_t) * ((size_t)t->count * o->seqlen + 1), "synthetic tokens");
  if (!t->ids) return APTQ_ERR;
  for (int i = 0; i < t->count; i++) {
    Rng r = {(uint64_t)o->seed * 7919u + (uint64_t)(t->first + i)};
    for (int j = 0; j < o->seqlen; j++) t->ids[(size_t)i * o->seqlen + j] = (uint32_t)(rng_next(&r) % (uint64_t)vocab);
  }
  snprintf(t->sha256, sizeof t->sha256, "synthetic");
  return 0;
}

/* SGEMM at the shape of one sequence's Hessian product (d × T by T × d),
 * on every rank at once, as the pass runs it: *rate, GFLOP/s of this rank. */
static int sgemm_rate(int d, int T, double *rate) {
  float *A = aptq_malloc(sizeof(float) * (size_t)d * T, "SGEMM reference"),
        *C = aptq_malloc(sizeof(float) * (size_t)d * d, "SGEMM reference");
  int rc = A && C ? 0 : APTQ_ERR;
  double best = 0;
  for (size_t i = 0; !rc && i < (size_t)d * T; i++) A[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  for (int rep = 0; !rc && rep < 3; rep++) {
    double t = MPI_Wtime();
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, T, 1.0f, A, d, A, d, 0.0f, C, d);
    double s = MPI_Wtime() - t, r = 2.0 * d * d * T / s * 1e-9;
    best = r > best ? r : best;
  }
  aptq_free(A);
  aptq_free(C);
  *rate = best;
  return rc;
}

/* The memory plan of the pass and the synthetic checkpoint, checked
 * against max_memory before anything large is allocated (predicted_heap:
 * its heap part, for the heap audit). Collective. */
static int bench_predict(const Options *o, const ModelConfig *c, double baseline, int size, int rank, MPI_Comm comm, double *predicted,
                         double *predicted_heap) {
  MemPlan plan;
  Plan qplan = plan_make(o, c, size);
  memplan_quantize(&plan, &qplan, c, o->seqlen, (o->nseq + size - 1) / size);
  double model_bytes = 2.0 * (2.0 * c->vocab_size * c->dim + c->dim);
  for (int l = 0; l < c->n_layers; l++) {
    model_bytes += 2.0 * 2 * c->dim;
    model_bytes += 2.0 * ((double)c->dim * c->n_heads * c->head_dim * 2 + (double)c->dim * c->n_kv_heads * c->head_dim * 2 +
                          3.0 * c->dim * c->hidden_dim);
  }
  memplan_add(&plan, "synthetic checkpoint (BF16, in memory)", model_bytes, 0);
  *predicted_heap = memplan_heap_peak(&plan);
  if (rank == 0) {
    printf(
        "aptq bench: %s-shaped blocks (hidden %d, intermediate %d, %d heads, %d kv heads), %d block%s, %d x %d calibration tokens, "
        "%s, %d bits, %d ranks\n",
        o->shape, c->dim, c->hidden_dim, c->n_heads, c->n_kv_heads, c->n_layers, c->n_layers > 1 ? "s" : "", o->nseq, o->seqlen, o->method,
        o->bits, size);
    fflush(stdout);
  }
  return memory_check(&plan, baseline, o, comm, predicted);
}

/* Every rank's figures after the pass: phases (size × PH_COUNT), peak RSS,
 * and per rank the Hessian kernel rate, the SGEMM rate and the kernel's
 * flops (size × 3); then their mean, sum and maximum over the ranks. */
typedef struct {
  int size;
  double *phases, *rss, *rates;
  double hrate, grate, flops, peak;
  double heap_peak; /* the heap audit's, max over ranks (heap.h) */
} BenchStats;

static void bench_stats_free(BenchStats *st) {
  aptq_free(st->phases);
  aptq_free(st->rss);
  aptq_free(st->rates);
  memset(st, 0, sizeof *st);
}

/* Collective; gemm: this rank's SGEMM rate. */
static int bench_stats_gather(BenchStats *st, double gemm, MPI_Comm comm) {
  memset(st, 0, sizeof *st);
  MPI_Comm_size(comm, &st->size);
  int size = st->size;
  st->phases = aptq_malloc(sizeof(double) * (size_t)size * PH_COUNT, "phases");
  st->rss = aptq_malloc(sizeof(double) * (size_t)size, "rss");
  st->rates = aptq_malloc(sizeof(double) * (size_t)size * 3, "rates");
  CHECK(aptq_agree(comm, !st->phases || !st->rss || !st->rates));
  phases_gather(comm, st->phases);
  st->heap_peak = memory_heap_peak_max(comm);
  double my_rss = memory_peak_rss(), ks, kf, kernel[3];
  MPI_Allgather(&my_rss, 1, MPI_DOUBLE, st->rss, 1, MPI_DOUBLE, comm);
  phases_hessian_kernel_get(&ks, &kf);
  /* this rank's kernel rate and SGEMM rate; their ratio averaged over ranks */
  kernel[0] = ks > 0 ? kf / ks * 1e-9 : 0;
  kernel[1] = gemm;
  kernel[2] = kf;
  MPI_Allgather(kernel, 3, MPI_DOUBLE, st->rates, 3, MPI_DOUBLE, comm);
  for (int r = 0; r < size; r++) {
    st->hrate += st->rates[3 * r] / size;
    st->grate += st->rates[3 * r + 1] / size;
    st->flops += st->rates[3 * r + 2];
    st->peak = st->rss[r] > st->peak ? st->rss[r] : st->peak;
  }
  return 0;
}

static void bench_print(const Options *o, const ModelConfig *c, const BenchStats *st, double t_pass, double predicted) {
  char b1[32], b2[32];
  printf("\naptq bench: phases (seconds, max over ranks; busy = all but wait)\n");
  printf("  %-8s", "rank");
  for (int p = 0; p < PH_COUNT; p++) printf(" %9s", phase_names[p]);
  printf(" %9s %10s\n", "busy", "peak RSS");
  for (int r = 0; r < st->size; r++) {
    double busy = 0;
    printf("  %-8d", r);
    for (int p = 0; p < PH_COUNT; p++) {
      printf(" %9.3f", st->phases[r * PH_COUNT + p]);
      busy += p == PH_WAIT ? 0 : st->phases[r * PH_COUNT + p];
    }
    memory_format(st->rss[r], b1, sizeof b1);
    printf(" %9.3f %10s\n", busy, b1);
  }
  printf("  pass           : %.3f s\n", t_pass);
  printf("  SGEMM          : %.2f GFLOP/s per rank (d = %d, k = %d, measured in this run)\n", st->grate, c->dim, o->seqlen);
  printf("  Hessian kernel : %.2f GFLOP/s per rank, %.1f%% of SGEMM (%.3g GFLOP in all)\n", st->hrate,
         st->grate > 0 ? 100.0 * st->hrate / st->grate : 0.0, st->flops * 1e-9);
  memory_format(st->peak, b1, sizeof b1);
  memory_format(predicted, b2, sizeof b2);
  printf("  memory         : peak RSS %s per rank (max), predicted %s (%+.1f%%)\n", b1, b2,
         st->peak > 0 ? 100.0 * (predicted - st->peak) / st->peak : 0.0);
  fflush(stdout);
}

/* This rank's part of the report (rank 0 writes it): 0 or an error. */
static int bench_report(const Options *o, const ModelConfig *c, const BenchStats *st, double t_pass, double predicted,
                        double predicted_heap, int rank) {
  Report rep;
  int rr = report_open(&rep, o->report, o->overwrite, rank);
  report_str(&rep, "command", "bench");
  report_str(&rep, "shape", o->shape);
  report_int(&rep, "blocks", c->n_layers);
  report_int(&rep, "hidden_size", c->dim);
  report_int(&rep, "intermediate_size", c->hidden_dim);
  report_int(&rep, "heads", c->n_heads);
  report_int(&rep, "kv_heads", c->n_kv_heads);
  report_int(&rep, "calib_nseq", o->nseq);
  report_int(&rep, "calib_seqlen", o->seqlen);
  report_str(&rep, "method", o->method);
  report_int(&rep, "bits", o->bits);
  report_int(&rep, "ranks", st->size);
  report_int(&rep, "threads", o->threads);
  report_num(&rep, "seconds", t_pass);
  report_num(&rep, "sgemm_gflops_per_rank", st->grate);
  report_num(&rep, "hessian_gflops_per_rank", st->hrate);
  report_num(&rep, "hessian_fraction_of_sgemm", st->grate > 0 ? st->hrate / st->grate : 0.0);
  phases_report(&rep, st->phases, st->rss, st->size, predicted);
  memory_report_heap(&rep, st->heap_peak, predicted_heap);
  if (!rr) rr = report_close(&rep);
  return rr;
}

int cmd_bench(const Options *o_in, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double t_start = MPI_Wtime(), baseline = memory_peak_rss(), limit;
  Options o = *o_in;
  if (!options_given("method")) snprintf(o.method, sizeof o.method, "gptq");
  int rc = options_require(&o, "output") || options_require(&o, "nseq") || (o.max_memory[0] && memory_parse(o.max_memory, &limit));
  if (!rc && options_choice(&o, "method") == METHOD_RTN)
    rc = aptq_error("bench measures the calibrated pass: method = gptq or aptq (rtn has no forward, Hessian or factor phase)");
  if (!rc && (o.R[0] || o.avg_bits[0]))
    rc = aptq_error("bench measures one pass at one bit width (bits); %s (mixed precision) needs quantize on a model, so drop it here",
                    o.R[0] ? "R" : "avg_bits");
  CHECK(aptq_agree(comm, rc));
  CHECK(output_check(o.output, "output", o.overwrite, &o, comm));
  if (o.report[0]) CHECK(output_check(o.report, "report", o.overwrite, &o, comm));
  ModelConfig c = bench_config(options_choice(&o, "shape"), o.blocks, o.seqlen);
  double predicted, predicted_heap, gemm;
  CHECK(bench_predict(&o, &c, baseline, size, rank, comm, &predicted, &predicted_heap));

  double t_gemm = MPI_Wtime();
  CHECK(aptq_agree(comm, sgemm_rate(c.dim, o.seqlen, &gemm)));
  t_gemm = MPI_Wtime() - t_gemm;
  SynthModel sm;
  TokenShard calib = {0};
  heap_audit_mark(); /* the synthetic checkpoint is in the plan */
  rc = aptq_agree(comm, synth_model_build(&sm, &c, (uint64_t)o.seed) || build_tokens(&o, c.vocab_size, comm, &calib));
  if (!rc) {
    Model *m = &sm.m;
    snprintf(m->fingerprint, sizeof m->fingerprint, "synthetic-%s-seed-%d", o.shape, o.seed);
    snprintf(m->source, sizeof m->source, "aptq bench shape=%s blocks=%d seed=%d", o.shape, o.blocks, o.seed);
    /* the pass itself, with quantize's own report switched off */
    Options oq = o;
    oq.report[0] = 0;
    if (rank == 0) printf("aptq bench: setup %.2f s (SGEMM reference %.2f s); the pass:\n", MPI_Wtime() - t_start, t_gemm);
    double t_pass = MPI_Wtime();
    rc = quantize_fixed(&oq, m, &calib, predicted, predicted_heap, MPI_Wtime(), comm);
    t_pass = MPI_Wtime() - t_pass;
    BenchStats st = {0};
    if (!rc) rc = bench_stats_gather(&st, gemm, comm);
    if (!rc) {
      if (rank == 0) bench_print(&o, &c, &st, t_pass, predicted);
      rc = aptq_agree(comm, bench_report(&o, &c, &st, t_pass, predicted, predicted_heap, rank));
    }
    bench_stats_free(&st);
  }
  synth_model_free(&sm);
  tokens_free(&calib);
  return rc;
}
