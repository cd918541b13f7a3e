#include "memory.h"

#include <ctype.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "activations.h"
#include "error.h"
#include "factor.h"
#include "forward.h"
#include "gptq.h"
#include "hessian.h"
#include "hessian_stream.h"
#include "plan.h"
#include "quant.h"
#include "report.h"
#include "heap.h"

static void add(MemPlan *p, MemItem it) {
  if (p->n < (int)(sizeof p->item / sizeof p->item[0])) p->item[p->n++] = it;
}
void memplan_add(MemPlan *p, const char *what, double bytes, int transient) { add(p, (MemItem){what, bytes, transient, 0, 0}); }
void memplan_add_mapped(MemPlan *p, const char *what, double bytes) { add(p, (MemItem){what, bytes, 0, 1, 0}); }
void memplan_add_before(MemPlan *p, const char *what, double bytes) { add(p, (MemItem){what, bytes, 0, 0, 1}); }

static double peak_of(const MemPlan *p, int with_mapped) {
  double fixed = 0, transient = 0, before = 0, mapped = 0;
  for (int i = 0; i < p->n; i++) {
    const MemItem *it = &p->item[i];
    if (it->mapped) mapped += with_mapped ? it->bytes : 0;
    else if (it->before) before = it->bytes > before ? it->bytes : before;
    else if (it->transient) transient = it->bytes > transient ? it->bytes : transient;
    else fixed += it->bytes;
  }
  return mapped + (fixed + transient > before ? fixed + transient : before);
}

double memplan_peak(const MemPlan *p) { return peak_of(p, 1); }
double memplan_heap_peak(const MemPlan *p) { return peak_of(p, 0); }

static double lin_rows(const ModelConfig *c, int k) {
  return k == LIN_Q                     ? (double)c->n_heads * c->head_dim
         : k == LIN_K || k == LIN_V     ? (double)c->n_kv_heads * c->head_dim
         : k == LIN_GATE || k == LIN_UP ? c->hidden_dim
                                        : c->dim;
}
static double lin_cols(const ModelConfig *c, int k) {
  return k == LIN_O ? (double)c->n_heads * c->head_dim : k == LIN_DOWN ? c->hidden_dim : c->dim;
}

/* The sets of layers solved at once (pass.c): per group, the layers
 * that share its factor together (solve_shared), each other layer alone.
 * set_rows: a rank's rows of the set (whole chunks, rounded up), set_cols
 * the input width, set_group its group. Returns the number of sets. */
static int solve_sets(const Plan *pl, const ModelConfig *c, int size, double *set_rows, double *set_cols, int *set_group) {
  int n = 0;
  for (int g = 0; g < 4; g++) {
    double shared = 0;
    int first = linear_groups[g].first;
    for (int k = first; k < first + linear_groups[g].count; k++) {
      double chunks = (double)(((long long)lin_rows(c, k) + GPTQ_ROW_CHUNK - 1) / GPTQ_ROW_CHUNK);
      if (plan_shares_factor(pl, k)) shared += chunks;
      else {
        set_rows[n] = (double)(((long long)chunks + size - 1) / size * GPTQ_ROW_CHUNK);
        set_group[n] = g;
        set_cols[n++] = lin_cols(c, k);
      }
    }
    if (shared > 0) {
      set_rows[n] = (double)(((long long)shared + size - 1) / size * GPTQ_ROW_CHUNK);
      set_group[n] = g;
      set_cols[n++] = lin_cols(c, first);
    }
  }
  return n;
}

/* RTN: rtn_layer's weight slab, codes, scales, zeros (group_size 0: one
 * group per row) and packed codes of the largest layer. */
static void plan_rtn(MemPlan *p, const Plan *pl, const ModelConfig *c) {
  double slab = 0, f = sizeof(float);
  for (int k = 0; k < LIN_COUNT; k++) {
    double rows = lin_rows(c, k) / pl->size + 1, cols = lin_cols(c, k), ng = pl->gptq.group_size ? cols / pl->gptq.group_size + 1 : 1;
    double b = rows * cols * (f + 1) + rows * ng * 8 + rows * quant_words_per_row((int)cols, pl->gptq.bits) * 4;
    slab = b > slab ? b : slab;
  }
  memplan_add(p, "RTN slab of the largest layer", slab, 1);
}

/* block_weights_alloc: norms and the seven projections; scratch_alloc: xn,
 * xn2, tmp, q, z, k, v, att, gate, act, cos, sin (and qpre, kpre with q/k norms) */
static double block_weights_bytes(const ModelConfig *c) {
  double block = 2.0 * c->dim;
  for (int k = 0; k < LIN_COUNT; k++) block += lin_rows(c, k) * lin_cols(c, k);
  return block * sizeof(float);
}
static double scratch_bytes(const ModelConfig *c, double t) {
  double D = c->dim, F = c->hidden_dim, qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
  double pre = c->qk_norm ? t * (qd + kvd) : 0; /* qpre, kpre */
  return (3 * t * D + 2 * t * qd + 2 * t * kvd + t * t + 2 * t * F + t * c->head_dim + pre) * sizeof(float);
}
double memplan_block_bytes(const ModelConfig *c, int T) { return block_weights_bytes(c) + scratch_bytes(c, T); }

/* The pass's activations, block weights and forward scratch (pass.c's
 * pass_init, forward.h's scratch_alloc). */
static void plan_forward(MemPlan *p, const Plan *pl, const ModelConfig *c, double t, int local_seqs) {
  double D = c->dim, qd = (double)c->n_heads * c->head_dim, f = sizeof(float);
  memplan_add(p, "calibration activations (this rank's sequences)",
              (double)local_seqs * t * D * activations_elem_size(pl->bf16_activations), 0);
  memplan_add(p, "block input copy", t * D * f, 0);
  if (pl->keep_attention) memplan_add(p, "attention outputs kept (keep_attention)", (double)local_seqs * t * qd * f, 0);
  memplan_add(p, "block weights (float32)", block_weights_bytes(c), 0);
  memplan_add(p, "forward scratch", scratch_bytes(c, t), 0);
}

/* hessian_init: float64 sum + float32 ssyrk chunk per group input; a
 * streamed group (hessian_stream.h): its pieces on the grid, the buffered
 * inputs, the float32 and float64 panels. APTQ's statistics (pass.c's
 * AttnStats: attn_hessian.h's *_init). */
static void plan_hessians(MemPlan *p, const Plan *pl, const ModelConfig *c, int T) {
  double hess = 0, t = T, D = c->dim, dh = c->head_dim, dh2 = dh * dh, f = sizeof(float), dbl = sizeof(double);
  int nstream = 0;
  for (int g = 0; g < GROUP_COUNT; g++) {
    double x = pl->in_dim[g];
    if (pl->streamed[g]) {
      hess += hstream_bytes((int)x, pl->gptq.nb, T, pl->stream_tokens, pl->size);
      nstream++;
    } else {
      hess += x * x * dbl + x * hessian_panel_width((int)x) * f;
    }
  }
  memplan_add(p, nstream ? "layer-input Hessians (4 groups; streamed ones as pieces + buffers)" : "layer-input Hessians (4 groups)", hess,
              0);
  double Dh = D * D * (dbl + f);
  int v_own = pl->form[LIN_V] == FORM_KRON || pl->form[LIN_V] == FORM_RELAXED;
  if (v_own) /* vhessian_init: one input factor per kv group (one float32 scratch for all), output factors, Y */
    memplan_add(p, "APTQ v_proj factors",
                c->n_kv_heads * D * D * dbl + (double)hessian_chunk_floats(c->dim) * f + c->n_kv_heads * dh2 * dbl + t * D * f, 0);
  if (pl->form[LIN_Q] == FORM_ROWSHARED || pl->form[LIN_Q] == FORM_KRON) /* qhessian_init */
    memplan_add(p, "APTQ q_proj statistics",
                Dh + 2 * c->n_heads * dh2 * dbl + c->n_heads * dh2 * f + 3 * t * dh2 * f + t * dh * f + t * D * f + t * f + dh2 * (f + dbl),
                0);
  if (pl->form[LIN_Q] == FORM_RELAXED || pl->form[LIN_K] == FORM_RELAXED) /* relaxed_init: kk, qq (float64 + float32 chunk), buf, outs, M */
    memplan_add(p, "APTQ relaxed q/k covariances",
                (c->n_kv_heads + c->n_heads) * dh2 * (dbl + f) + t * dh * f + (c->n_heads + c->n_kv_heads + 2) * dh2 * dbl, 0);
  if (pl->form[LIN_K] == FORM_ROWSHARED ||
      pl->form[LIN_K] == FORM_KRON) { /* khessian_init: P, VP, C, Xw, w, ws, avec, M; kron: out, seq; kron or q/k norms: QQ, CS */
    double kb = Dh + c->n_heads * dh2 * f + t * dh * f + t * t * f + t * D * f + t * f + 2 * t * dbl + dh2 * dbl;
    if (pl->form[LIN_K] == FORM_KRON) kb += 2 * c->n_kv_heads * dh2 * dbl;
    if (pl->form[LIN_K] == FORM_KRON || c->qk_norm) kb += 2 * t * dh2 * f; /* QQ, CS: Kronecker, or k_norm's row-shared weights */
    memplan_add(p, "APTQ k_proj statistics", kb, 0);
  }
}

/* The factors (the plan's choice per group): a scattered Hessian's factor
 * stays on the grid (float64 pieces while factoring, float32 after, one
 * B-row block of U in the solve); a replicated one is made whole on every
 * rank (float32 U kept between layers, float64 LAPACK work space kept).
 * APTQ's own factors are d = dim, replicated. The largest scattered input
 * width and the largest send buffer moving a sum into the grid (a
 * reduction round, or the streamed sum's all-to-all) are returned. */
static void plan_factors(MemPlan *p, const Plan *pl, double *scattered, double *gather) {
  double rep_lapack = pl->method == METHOD_APTQ ? pl->in_dim[0] : 0, rep_scalapack = 0, f = sizeof(float), dbl = sizeof(double);
  int size = pl->size, nprow, npcol;
  blacs_grid_shape(size, &nprow, &npcol);
  *scattered = *gather = 0;
  for (int g = 0; g < GROUP_COUNT; g++) {
    double x = pl->in_dim[g];
    int sc = factor_uses_scalapack(pl->gptq.factor_path, (int)x, size);
    double *slot = pl->scattered[g] ? scattered : sc ? &rep_scalapack : &rep_lapack;
    *slot = x > *slot ? x : *slot;
    if (!pl->scattered[g]) continue;
    /* the all-to-all: (value, index) pairs of the upper triangle, sent and received */
    double m = pl->streamed[g] ? (pl->gptq.act_order ? 2 * 16 * x * (x + 1) / 2 / size : 0) : x * pl->gptq.nb * npcol * dbl;
    *gather = m > *gather ? m : *gather;
  }
  double rep = rep_lapack > rep_scalapack ? rep_lapack : rep_scalapack;
  if (rep > 0) memplan_add(p, "inverse-Hessian factor U, replicated (float32, kept)", rep * rep * f, 0);
  if (rep_lapack > 0)
    memplan_add(p,
                pl->gptq.factor_path == FACTOR_NODE ? "LAPACK factor work space (float64, kept; --factor=node: each node's first rank)"
                                                    : "LAPACK factor work space (float64, kept)",
                rep_lapack * rep_lapack * dbl, 0);
  if (rep_scalapack > 0) memplan_add(p, "ScaLAPACK local matrix of a replicated factor", rep_scalapack * rep_scalapack * dbl / size, 1);
}

/* The solves (solve.c): factoring on the grid, the local pieces (float64)
 * and one reduction round's send buffer; solving the largest of the sets
 * whose factor is on the grid, the pieces in float32, the slabs (W, Q,
 * codes, packed), the streamed sweep's work arrays (Wp, Qp, Cp, Err) and
 * one block of U; solve_shared's slabs of this rank's rows of the layers
 * solved together, or solve_kron's of v_proj. */
static void plan_solves(MemPlan *p, const Plan *pl, const ModelConfig *c, double scattered, double gather) {
  double set_rows[LIN_COUNT], set_cols[LIN_COUNT], f = sizeof(float), dbl = sizeof(double);
  double D = c->dim, dh = c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
  int size = pl->size, B = pl->gptq.block_size, th = pl->threads;
  int set_group[LIN_COUNT], nsets = solve_sets(pl, c, size, set_rows, set_cols, set_group);
  double slab = 0, grid = 0;
  for (int i = 0; i < nsets; i++) {
    double rows = set_rows[i], cols = set_cols[i];
    int on_grid = pl->scattered[set_group[i]];
    /* solve_shared's slabs: W, Q, codes, scales, zeros, packed codes */
    double ng = pl->gptq.group_size ? cols / pl->gptq.group_size + 1 : 1;
    double b = rows * cols * (2 * f + 1) + rows * ng * 8 + rows * (cols * 8 / 32 + 1) * 4;
    b += gptq_solve_work_bytes((int)rows, (int)cols, B, th, on_grid);
    if (on_grid) b += cols * cols * f / size; /* the factor's pieces in float32 */
    double *slot = on_grid ? &grid : &slab;
    *slot = b > *slot ? b : *slot;
  }
  if (scattered > 0) {
    memplan_add(p, "factor on the grid: pieces + moving the sum in", scattered * scattered * dbl / size + gather, 1);
    memplan_add(p, "factor on the grid: streamed solve, largest set of layers", grid, 1);
  }
  if (pl->form[LIN_V] == FORM_KRON ||
      pl->form[LIN_V] == FORM_RELAXED) { /* solve_kron of v_proj: the column-order matrix and its head slabs */
    double v = D * D * dbl + (kvd / size + dh) * D * (2 * f + 1);
    slab = v > slab ? v : slab;
  }
  memplan_add(p, "solve buffers of the largest set of layers", slab, 1);
}

void memplan_quantize(MemPlan *p, const Plan *pl, const ModelConfig *c, int T, int local_seqs) {
  memset(p, 0, sizeof *p);
  if (pl->method == METHOD_RTN) {
    plan_rtn(p, pl, c);
    return;
  }
  double scattered, gather;
  plan_forward(p, pl, c, T, local_seqs);
  plan_hessians(p, pl, c, T);
  plan_factors(p, pl, &scattered, &gather);
  plan_solves(p, pl, c, scattered, gather);
}

/* The kernel maps a file page fault's neighbours that are in the page
 * cache too, up to this aligned window (mm/memory.c fault_around_bytes,
 * 64 KiB unless changed in debugfs): the resident pages of a row read
 * through the mapping are at most its windows. */
#define FAULT_AROUND_BYTES ((uintptr_t)65536)

static int cmp_uintptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return (x > y) - (x < y);
}

/* Bytes of the embedding's fault-around windows that embedding the ids
 * touches (all of the embedding if that is less, or on allocation failure). */
static double embed_touched(const TensorRef *e, const uint32_t *ids, size_t n) {
  double all = (double)(e->rows * e->cols) * dtype_size(e->dtype);
  uintptr_t row = (uintptr_t)e->cols * dtype_size(e->dtype), per = row / FAULT_AROUND_BYTES + 2;
  if (n == 0 || !e->data) return 0;
  uintptr_t *w = aptq_malloc(sizeof *w * n * per, "embedding windows");
  if (!w) {
    aptq_clear_error(); /* the worst case will do */
    return all;
  }
  size_t k = 0;
  for (size_t t = 0; t < n; t++) {
    uintptr_t a = (uintptr_t)e->data + ids[t] * row;
    for (uintptr_t x = a / FAULT_AROUND_BYTES; x <= (a + row - 1) / FAULT_AROUND_BYTES; x++) w[k++] = x;
  }
  qsort(w, k, sizeof *w, cmp_uintptr);
  size_t distinct = 0;
  for (size_t i = 0; i < k; i++) distinct += i == 0 || w[i] != w[i - 1];
  aptq_free(w);
  double b = (double)distinct * FAULT_AROUND_BYTES;
  return b < all ? b : all;
}

double memplan_mapped_bytes(const Model *m, const TokenShard *tok, MPI_Comm comm) {
  double embed = tok ? embed_touched(&m->embed, tok->ids, (size_t)tok->count * tok->seqlen) : 0;
  double one = 0; /* the largest piece read at once: a linear layer, a chunk of a converted or hashed tensor */
  for (int l = 0; l < m->cfg.n_layers; l++)
    for (int k = 0; k < LIN_COUNT; k++) {
      double x = (double)(m->linear[l][k].rows * m->linear[l][k].cols) * dtype_size(m->linear[l][k].dtype);
      one = x > one ? x : one;
    }
  double head = (double)(m->lm_head.rows * m->lm_head.cols) * dtype_size(m->lm_head.dtype);
  double chunk = head < (double)MODEL_CHUNK_BYTES ? head : (double)MODEL_CHUNK_BYTES;
  double b = embed + (one > chunk ? one : chunk);
  MPI_Allreduce(MPI_IN_PLACE, &b, 1, MPI_DOUBLE, MPI_MAX, comm);
  return b;
}

void memplan_head(MemPlan *p, const ModelConfig *c) {
  double D = c->dim, V = c->vocab_size, f = sizeof(float);
  memplan_add(p, "lm_head in float32 (vocab x hidden), final norm", V * D * f + D * f + (double)HEAD_CHUNK * D * f, 0);
  memplan_add(p, "logits of one chunk of tokens (HEAD_CHUNK x vocab)", (double)HEAD_CHUNK * V * f, 0);
}

void memplan_eval(MemPlan *p, const ModelConfig *c, int T, int local_seqs, int nseq, int models, int kl) {
  double t = T, D = c->dim, V = c->vocab_size, f = sizeof(float), dbl = sizeof(double);
  double mine = (double)local_seqs * (t - 1) + 1, all = (double)nseq * (t - 1);
  memset(p, 0, sizeof *p);
  memplan_add(p, "residual streams (each model's, this rank's sequences)", models * (double)local_seqs * t * D * f, 0);
  memplan_add(p, "block weights (float32) and forward scratch", memplan_block_bytes(c, T), 0);
  memplan_head(p, c);
  if (models > 1) memplan_add(p, "logits of one chunk, each further model", (models - 1) * (double)HEAD_CHUNK * V * f, 0);
  double figs = models * ((double)local_seqs + 1 + nseq) * dbl;
  if (kl) figs += models * (mine + all) * dbl + (models - 1) * (mine + all) * (dbl + 1) + V * dbl;
  memplan_add(p, kl ? "NLL, KL divergence per prediction; reference probabilities" : "NLL per sequence", figs, 0);
}

int memory_parse(const char *text, double *bytes) {
  char *end;
  double v = strtod(text, &end);
  if (end == text || v < 0) return aptq_error("max_memory '%s' is not a size; give e.g. 8G, 512M or 1.5T", text);
  while (isspace((unsigned char)*end)) end++;
  double unit = 1;
  switch (toupper((unsigned char)*end)) {
    case 'K':
      unit = 1024.0;
      end++;
      break;
    case 'M':
      unit = 1024.0 * 1024;
      end++;
      break;
    case 'G':
      unit = 1024.0 * 1024 * 1024;
      end++;
      break;
    case 'T':
      unit = 1024.0 * 1024 * 1024 * 1024;
      end++;
      break;
    default: break;
  }
  if (unit > 1 && (*end == 'i' || *end == 'I')) end++;
  if (*end == 'B' || *end == 'b') end++;
  if (*end) return aptq_error("max_memory '%s' is not a size; give e.g. 8G, 512M or 1.5T", text);
  *bytes = v * unit;
  return 0;
}

void memory_release_free(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

/* RssAnon and RssFile of /proc/self/status, kB (0 where absent) */
static void rss_kb(double *anon, double *file) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  *anon = *file = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (!strncmp(line, "RssAnon:", 8)) *anon = atof(line + 8);
    if (!strncmp(line, "RssFile:", 8)) *file = atof(line + 8);
  }
  if (f) fclose(f);
}

void memory_trace(const char *fmt, ...) {
  const char *env = getenv("APTQ_MEMORY_TRACE");
  if (!env || !*env || !strcmp(env, "0")) return;
  double anon, file, heap_used = 0, heap_held = 0, mapped = 0;
  rss_kb(&anon, &file);
#ifdef __GLIBC__
  struct mallinfo2 mi = mallinfo2();
  heap_used = (double)mi.uordblks, heap_held = (double)mi.arena, mapped = (double)mi.hblkhd;
#endif
  va_list ap;
  va_start(ap, fmt);
  printf("aptq memory: ");
  vprintf(fmt, ap);
  va_end(ap);
  printf(": RSS anonymous %.1f MB, file %.1f MB; heap in use %.1f MB, held %.1f MB; mapped buffers %.1f MB; tracked %.1f MB\n", anon / 1e3,
         file / 1e3, heap_used / 1e6, heap_held / 1e6, mapped / 1e6, heap_audit_live() / 1e6);
  fflush(stdout);
}

double memory_peak_rss(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return (double)ru.ru_maxrss * 1024.0; /* Linux: kilobytes */
}

double memory_heap_peak_max(MPI_Comm comm) {
  double peak = heap_audit_peak();
  MPI_Allreduce(MPI_IN_PLACE, &peak, 1, MPI_DOUBLE, MPI_MAX, comm);
  return peak;
}

void memory_report_heap(Report *rep, double peak, double planned) {
  if (!heap_audit_on()) return;
  report_begin(rep, "heap_audit", '{');
  report_num(rep, "peak_bytes", peak);
  report_num(rep, "planned_bytes", planned);
  report_end(rep, '}');
}

void memory_format(double bytes, char *buf, int size) {
  const char *unit[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    u++;
  }
  snprintf(buf, (size_t)size, u ? "%.2f %s" : "%.0f %s", bytes, unit[u]);
}

int memory_check(const MemPlan *p, double baseline, const Options *o, MPI_Comm comm, double *predicted) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  MPI_Allreduce(MPI_IN_PLACE, &baseline, 1, MPI_DOUBLE, MPI_MAX, comm);
  double peak = *predicted = baseline + memplan_peak(p);
  char b[32];
  if (rank == 0) {
    memory_format(peak, b, sizeof b);
    printf("aptq: predicted peak memory per rank %s:\n", b);
    memory_format(baseline, b, sizeof b);
    printf("  %-52s %12s\n", "process at start (MPI, libraries; measured)", b);
    for (int i = 0; i < p->n; i++) {
      memory_format(p->item[i].bytes, b, sizeof b);
      printf("  %-52s %12s%s\n", p->item[i].what, b,
             p->item[i].transient ? "  (one layer at a time)"
             : p->item[i].before  ? "  (before the pass, then freed)"
                                  : "");
    }
    fflush(stdout);
  }
  if (!o->max_memory[0]) return 0;
  double limit;
  CHECK(aptq_agree(comm, memory_parse(o->max_memory, &limit)));
  if (peak > limit) {
    char lim[32];
    memory_format(peak, b, sizeof b);
    memory_format(limit, lim, sizeof lim);
    return aptq_agree(comm,
                      aptq_error("predicted peak memory per rank %s exceeds max_memory = %s (%s); use more ranks (each holds only its "
                                 "share of the calibration activations), fewer or shorter calibration sequences, or raise max_memory",
                                 b, o->max_memory, lim));
  }
  return 0;
}
