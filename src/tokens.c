#include "tokens.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "sha256.h"

void shard_range(int n, int size, int rank, int *first, int *count) {
  int64_t a = (int64_t)n * rank / size, b = (int64_t)n * (rank + 1) / size;
  *first = (int)a;
  *count = (int)(b - a);
}

int shard_layout_alloc(ShardLayout *l, int n, int size, int unit) {
  l->counts = aptq_malloc(sizeof(int) * (size_t)size, "gather counts");
  l->displs = aptq_malloc(sizeof(int) * (size_t)size, "gather offsets");
  if (!l->counts || !l->displs) {
    shard_layout_free(l);
    return APTQ_ERR;
  }
  for (int r = 0; r < size; r++) {
    shard_range(n, size, r, &l->displs[r], &l->counts[r]);
    l->counts[r] *= unit;
    l->displs[r] *= unit;
  }
  return 0;
}

void shard_layout_free(ShardLayout *l) {
  aptq_free(l->counts);
  aptq_free(l->displs);
  l->counts = l->displs = NULL;
}

static int load(const char *path, const char *what, int seqlen, int nseq, int vocab, int rank, int size, TokenShard *t) {
  struct stat st;
  if (stat(path, &st) != 0)
    return aptq_error("%s file '%s' cannot be read: %s; set %s = a uint32 token file", what, path, strerror(errno), what);
  if (!S_ISREG(st.st_mode)) return aptq_error("%s file '%s' is not a regular file", what, path);
  if (st.st_size == 0) return aptq_error("%s file '%s' is empty", what, path);
  if (st.st_size % 4)
    return aptq_error("%s file '%s' is %lld bytes, not a multiple of 4; expected raw little-endian uint32 token ids", what, path,
                      (long long)st.st_size);
  int64_t have = st.st_size / 4, need = (int64_t)seqlen * nseq;
  if (have < need)
    return aptq_error("%s file '%s' has %lld tokens but nseq x seqlen = %d x %d = %lld are needed; lower nseq or seqlen", what, path,
                      (long long)have, nseq, seqlen, (long long)need);
  if (nseq < size) return aptq_error("%d ranks but only %d %s sequences; run with at most %d ranks or raise nseq", size, nseq, what, nseq);
  shard_range(nseq, size, rank, &t->first, &t->count);
  FILE *f = fopen(path, "rb");
  if (!f) return aptq_error("cannot open %s file '%s': %s", what, path, strerror(errno));
  /* every rank reads and hashes all used tokens: they are small next to the model, and the checks agree everywhere */
  uint8_t *all = aptq_malloc((size_t)need * 4, "token file");
  if (!all) {
    fclose(f);
    return APTQ_ERR;
  }
  size_t got = fread(all, 4, (size_t)need, f);
  fclose(f);
  if (got != (size_t)need) {
    aptq_free(all);
    return aptq_error("short read from %s file '%s'", what, path);
  }
  sha256_hex(all, (size_t)need * 4, t->sha256);
  for (int64_t i = 0; i < need; i++) {
    uint32_t id = (uint32_t)all[4 * i] | (uint32_t)all[4 * i + 1] << 8 | (uint32_t)all[4 * i + 2] << 16 | (uint32_t)all[4 * i + 3] << 24;
    if (id >= (uint32_t)vocab) {
      aptq_free(all);
      return aptq_error(
          "%s file '%s': token %lld has id %u, but the model's vocabulary has %d ids; the tokens were made for another tokenizer", what,
          path, (long long)i, id, vocab);
    }
  }
  t->ids = aptq_malloc((size_t)t->count * (size_t)seqlen * sizeof *t->ids + 1, "token sequences");
  if (!t->ids) {
    aptq_free(all);
    return APTQ_ERR;
  }
  for (int64_t i = 0; i < (int64_t)t->count * seqlen; i++) {
    const uint8_t *b = all + 4 * ((int64_t)t->first * seqlen + i);
    t->ids[i] = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
  }
  aptq_free(all);
  return 0;
}

int tokens_load(const char *path, const char *what, int seqlen, int nseq, int vocab, MPI_Comm comm, TokenShard *t) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  memset(t, 0, sizeof *t);
  t->seqlen = seqlen;
  t->nseq = nseq;
  int rc = load(path, what, seqlen, nseq, vocab, rank, size, t);
  if (aptq_agree(comm, rc)) {
    tokens_free(t);
    return APTQ_ERR;
  }
  return 0;
}

void tokens_free(TokenShard *t) {
  aptq_free(t->ids);
  t->ids = NULL;
}
