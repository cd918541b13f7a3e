/* aptq generate: sample token sequences from a model (BOS, then nseq × seqlen
 * tokens drawn at the given temperature). Gives calibration and test tokens
 * for models whose tokenizer is not at hand (stories260K, the synthetic
 * default). Sequence i uses the random stream seed+i, so the file does not
 * depend on the number of ranks. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "error.h"
#include "forward.h"
#include "outpath.h"
#include "rng.h"
#include "tokens.h"

static uint32_t sample(const float *logits, int V, double temperature, Rng *rng) {
  int best = 0;
  for (int j = 1; j < V; j++) best = logits[j] > logits[best] ? j : best;
  if (temperature <= 0.0) return (uint32_t)best;
  double sum = 0.0, u;
  for (int j = 0; j < V; j++) sum += exp((logits[j] - logits[best]) / temperature);
  u = rng_uniform(rng) * sum;
  for (int j = 0; j < V; j++) {
    u -= exp((logits[j] - logits[best]) / temperature);
    if (u <= 0.0) return (uint32_t)j;
  }
  return (uint32_t)best;
}

/* One sequence: the full prefix is re-run for every new token (no KV cache;
 * sequences here are short). */
static int generate_one(const Model *m, BlockWeights *w, BlockScratch *s, Head *h, float *x, float *logits, int T, double temp, Rng *rng,
                        uint32_t *ids) {
  const ModelConfig *c = &m->cfg;
  ids[0] = 1; /* BOS */
  for (int t = 1; t < T; t++) {
    CHECK(embed_tokens(m, ids, t, x));
    s->T = t;
    for (int l = 0; l < c->n_layers; l++) block_forward(c, &w[l], s, x);
    head_forward(c, h, x + (size_t)(t - 1) * c->dim, ids + t - 1, 1, NULL, logits);
    ids[t] = sample(logits, c->vocab_size, temp, rng);
  }
  s->T = T;
  return 0;
}

int cmd_generate(const Options *o, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int rc = options_require(o, "model") || options_require(o, "output") || options_require(o, "nseq");
  CHECK(aptq_agree(comm, rc));
  if (o->nseq < size) CHECK(aptq_agree(comm, aptq_error("%d ranks but only %d sequences to generate; use fewer ranks", size, o->nseq)));
  CHECK(output_check(o->output, "output", o->overwrite, o, comm));
  Model m;
  CHECK(aptq_agree(comm, model_open(o->model, &m)));
  const ModelConfig *c = &m.cfg;
  int T = o->seqlen, first, count;
  shard_range(o->nseq, size, rank, &first, &count);
  BlockWeights *w = aptq_calloc((size_t)c->n_layers, sizeof *w, "weights");
  BlockScratch s;
  Head h;
  float *x = aptq_malloc(sizeof(float) * (size_t)T * c->dim, "activations");
  float *logits = aptq_malloc(sizeof(float) * (size_t)c->vocab_size, "logits");
  uint32_t *ids = aptq_malloc(sizeof(uint32_t) * (size_t)count * T + 1, "tokens");
  rc = !w || !x || !logits || !ids || scratch_alloc(c, T, &s) || head_load(&m, &h);
  for (int l = 0; !rc && l < c->n_layers; l++) rc = block_weights_alloc(c, &w[l]) || block_weights_load(&m, l, &w[l]);
  CHECK(aptq_agree(comm, rc));
  for (int i = 0; !rc && i < count; i++) {
    Rng rng = {(uint64_t)o->seed * 1000003u + (uint64_t)(first + i)};
    rc = generate_one(&m, w, &s, &h, x, logits, T, o->temperature, &rng, ids + (size_t)i * T);
  }
  CHECK(aptq_agree(comm, rc));
  uint32_t *all = rank == 0 ? aptq_malloc(sizeof(uint32_t) * (size_t)o->nseq * T, "tokens") : NULL;
  ShardLayout lay;
  CHECK(aptq_agree(comm, (rank == 0 && !all) || shard_layout_alloc(&lay, o->nseq, size, T)));
  MPI_Gatherv(ids, count * T, MPI_UINT32_T, all, lay.counts, lay.displs, MPI_UINT32_T, 0, comm);
  if (rank == 0) {
    char tmp[OPT_PATH_MAX + 64] = "";
    int fd = -1;
    rc = outpath_temp(o->output, "output", tmp, sizeof tmp, &fd);
    FILE *f = rc ? NULL : fdopen(fd, "wb");
    if (!rc && !f) close(fd);
    /* little-endian on disk, as the token files are */
    for (size_t i = 0; f && i < (size_t)o->nseq * T; i++) {
      uint8_t b[4] = {(uint8_t)all[i], (uint8_t)(all[i] >> 8), (uint8_t)(all[i] >> 16), (uint8_t)(all[i] >> 24)};
      if (fwrite(b, 1, 4, f) != 4) break;
    }
    if (!rc && (!f || ferror(f) || fclose(f) != 0)) {
      unlink(tmp);
      rc = aptq_error("cannot write token file '%s': %s", o->output, strerror(errno));
    } else if (!rc) rc = outpath_commit(tmp, o->output, "output", o->overwrite);
    if (tmp[0]) aptq_unregister_tmpfile(tmp);
    if (!rc)
      printf("aptq generate: %d sequences x %d tokens (temperature %g, seed %d) -> %s\n", o->nseq, T, o->temperature, o->seed, o->output);
  }
  rc = aptq_agree(comm, rc);
  aptq_free(all);
  shard_layout_free(&lay);
  aptq_free(ids);
  aptq_free(logits);
  aptq_free(x);
  for (int l = 0; l < c->n_layers; l++) block_weights_free(&w[l]);
  aptq_free(w);
  head_free(&h);
  scratch_free(&s);
  model_close(&m);
  return rc;
}
