/* Token files: raw little-endian uint32 ids, cut into nseq non-overlapping
 * sequences of seqlen tokens from the start; sequences are sharded over
 * ranks in contiguous runs. */
#ifndef APTQ_TOKENS_H
#define APTQ_TOKENS_H

#include <mpi.h>
#include <stdint.h>

typedef struct {
  int seqlen, nseq; /* global */
  int first, count; /* this rank's sequences [first, first+count) */
  uint32_t *ids;    /* count × seqlen */
  char sha256[65];  /* hash of all nseq × seqlen tokens used */
} TokenShard;

/* what: key name for messages ("tokens" or "calib"). Collective (agrees). */
int tokens_load(const char *path, const char *what, int seqlen, int nseq, int vocab, MPI_Comm comm, TokenShard *t);
void tokens_free(TokenShard *t);
/* Contiguous block partition of n items over size ranks. */
void shard_range(int n, int size, int rank, int *first, int *count);
/* The whole partition, as MPI_Allgatherv and MPI_Gatherv take it: rank r
 * holds counts[r] elements from displs[r], its shard_range of n items of
 * `unit` elements each. Local; 0, or APTQ_ERR (out of memory, recorded). */
typedef struct {
  int *counts, *displs;
} ShardLayout;
int shard_layout_alloc(ShardLayout *l, int n, int size, int unit);
void shard_layout_free(ShardLayout *l);

#endif
