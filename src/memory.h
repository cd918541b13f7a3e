/* Peak memory per rank: predicted from the shapes before a run starts
 * (every large allocation of the sequential pass, itemised), checked
 * against max_memory, and measured (getrusage) for the report. */
#ifndef APTQ_MEMORY_H
#define APTQ_MEMORY_H

#include <mpi.h>

#include "model.h"
#include "options.h"
#include "plan.h"
#include "tokens.h"

typedef struct {
  const char *what;
  double bytes;
  int transient; /* held during one layer only: the peak takes the largest */
  int mapped;    /* pages of a mapped file, not heap (memplan_heap_peak leaves them out) */
  int before;    /* held only before the pass (a phase of its own): the peak is the larger phase */
} MemItem;

typedef struct {
  MemItem item[32];
  int n;
} MemPlan;

void memplan_add(MemPlan *p, const char *what, double bytes, int transient);
/* A file's pages mapped at once (persistent, not heap). */
void memplan_add_mapped(MemPlan *p, const char *what, double bytes);
/* A phase before the pass, its buffers freed before the pass starts (the
 * Fisher estimate): the peak is the larger of it and the pass. */
void memplan_add_before(MemPlan *p, const char *what, double bytes);
/* Persistent items plus the largest transient one, or the largest
 * phase before the pass if that is more (mapped pages in both). */
double memplan_peak(const MemPlan *p);
/* The same without the mapped items: what the heap audit (heap.h) of the
 * run may reach, beyond small bookkeeping. */
double memplan_heap_peak(const MemPlan *p);
/* The sequential pass (gptq, aptq) or RTN of one rank holding `local_seqs`
 * calibration sequences of T tokens, on pl->size ranks. */
void memplan_quantize(MemPlan *p, const Plan *pl, const ModelConfig *c, int T, int local_seqs);

/* The checkpoint's pages resident at once, the most of any rank: the
 * embedding's rows that this rank's tokens touch (tok; NULL: none), counted
 * in the kernel's fault-around windows, plus the largest piece read at once
 * (one linear layer being converted, or one MODEL_CHUNK_BYTES chunk of the
 * lm_head or of a hashed tensor: model.h releases each once read).
 * Collective. */
double memplan_mapped_bytes(const Model *m, const TokenShard *tok, MPI_Comm comm);
/* The head (forward.h's head_load): lm_head in float32, the final norm,
 * and one chunk of HEAD_CHUNK tokens' logits, never seqlen × vocab. */
void memplan_head(MemPlan *p, const ModelConfig *c);
/* aptq eval on one rank holding local_seqs of nseq sequences of T tokens:
 * `models` models run side by side (1; 2 with quantized, the full-precision
 * reference; 3 with compare), kl: the per-prediction figures (eval.c). */
void memplan_eval(MemPlan *p, const ModelConfig *c, int T, int local_seqs, int nseq, int models, int kl);

/* One block's float32 weights and forward scratch for sequences of T
 * tokens (forward.h's block_weights_alloc and scratch_alloc). */
double memplan_block_bytes(const ModelConfig *c, int T);

/* "8G", "512M", "1.5GB", "64GiB", plain bytes; K/M/G/T are powers of 1024. */
int memory_parse(const char *text, double *bytes);
/* This process's peak resident set so far, bytes (getrusage). */
double memory_peak_rss(void);
/* Give the pages of the heap's free chunks back to the system (glibc's
 * malloc_trim): called between layer groups of the pass and between blocks
 * of eval, so that per-layer buffers of changing sizes leave no resident
 * holes behind (the heap grew by about 44 MB per block at the 8b shape
 * without it). Local. */
void memory_release_free(void);
/* With APTQ_MEMORY_TRACE set (not empty, not 0): one line on stdout,
 * "aptq memory: WHERE: ..." (WHERE: fmt and its arguments, as printf) with this rank's resident memory (anonymous,
 * file pages), the allocator's heap (in use, held) and mapped buffers, and
 * aptq's own tracked allocations (with APTQ_HEAP_AUDIT). Local. */
void memory_trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Collective: print the plan (rank 0) and refuse, with one agreed error,
 * when baseline (the largest over ranks) + plan exceeds max_memory.
 * *predicted: that sum. */
int memory_check(const MemPlan *p, double baseline, const Options *o, MPI_Comm comm, double *predicted);
/* Collective: the heap audit's peak (heap.h), the most over the ranks. */
double memory_heap_peak_max(MPI_Comm comm);
/* With the heap audit on, the report member heap_audit {peak_bytes,
 * planned_bytes (memplan_heap_peak)}; nothing otherwise. */
struct Report;
void memory_report_heap(struct Report *rep, double peak, double planned);
/* "1.23 GB" */
void memory_format(double bytes, char *buf, int size);

#endif
