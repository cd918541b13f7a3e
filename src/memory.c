#include "memory.h"

#include <ctype.h>
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
#include "quant.h"

void memplan_add(MemPlan *p, const char *what, double bytes, int transient) {
  if (p->n < (int)(sizeof p->item / sizeof p->item[0])) p->item[p->n++] = (MemItem){what, bytes, transient};
}

double memplan_peak(const MemPlan *p) {
  double fixed = 0, transient = 0;
  for (int i = 0; i < p->n; i++)
    if (p->item[i].transient) transient = p->item[i].bytes > transient ? p->item[i].bytes : transient;
    else fixed += p->item[i].bytes;
  return fixed + transient;
}

static double lin_rows(const ModelConfig *c, int k) {
  return k == LIN_Q                     ? (double)c->n_heads * c->head_dim
         : k == LIN_K || k == LIN_V     ? (double)c->n_kv_heads * c->head_dim
         : k == LIN_GATE || k == LIN_UP ? c->hidden_dim
                                        : c->dim;
}
static double lin_cols(const ModelConfig *c, int k) {
  return k == LIN_O ? (double)c->n_heads * c->head_dim : k == LIN_DOWN ? c->hidden_dim : c->dim;
}

/* The sets of layers solved at once (quantize.c): per group, the layers
 * that share its factor together (gptq_linears), each other layer alone.
 * set_rows: a rank's rows of the set (whole chunks, rounded up), set_cols
 * the input width, set_group its group. Returns the number of sets. */
static int solve_sets(const Options *o, const ModelConfig *c, int size, double *set_rows, double *set_cols, int *set_group) {
  int n = 0;
  for (int g = 0; g < 4; g++) {
    double shared = 0;
    int first = linear_groups[g].first;
    for (int k = first; k < first + linear_groups[g].count; k++) {
      double chunks = (double)(((long long)lin_rows(c, k) + GPTQ_ROW_CHUNK - 1) / GPTQ_ROW_CHUNK);
      if (gptq_layer_shares_factor(o, k)) shared += chunks;
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

/* Each term mirrors an allocation; the comments name it. */
void memplan_quantize(MemPlan *p, const Options *o, const ModelConfig *c, int T, int local_seqs, int size) {
  memset(p, 0, sizeof *p);
  double D = c->dim, F = c->hidden_dim, qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
  double t = T, dh = c->head_dim, dh2 = dh * dh, f = sizeof(float), dbl = sizeof(double);
  int gptq = strcmp(o->method, "rtn") != 0, aptq = !strcmp(o->method, "aptq");
  double block = 2 * D; /* BlockWeights: norms and the seven projections */
  for (int k = 0; k < LIN_COUNT; k++) block += lin_rows(c, k) * lin_cols(c, k);
  if (!gptq) {
    /* rtn_layer: weight slab, codes, scales, zeros (group_size 0: one group per row) of the largest layer */
    double slab = 0;
    for (int k = 0; k < LIN_COUNT; k++) {
      double rows = lin_rows(c, k) / size + 1, cols = lin_cols(c, k), ng = o->group_size ? cols / o->group_size + 1 : 1;
      double b = rows * cols * (f + 1) + rows * ng * 8 + rows * quant_words_per_row((int)cols, o->bits) * 4;
      slab = b > slab ? b : slab;
    }
    memplan_add(p, "RTN slab of the largest layer", slab, 1);
    return;
  }
  memplan_add(p, "calibration activations (this rank's sequences)",
              (double)local_seqs * t * D * activations_elem_size(!strcmp(o->activations, "bf16")), 0);
  memplan_add(p, "block input copy", t * D * f, 0);
  if (o->keep_attention && o->true_sequential)
    memplan_add(p, "attention outputs kept (keep_attention)", (double)local_seqs * t * qd * f, 0);
  memplan_add(p, "block weights (float32)", block * f, 0);
  /* scratch_alloc: xn, xn2, tmp, q, z, k, v, att, gate, act, cos, sin */
  memplan_add(p, "forward scratch", (3 * t * D + 2 * t * qd + 2 * t * kvd + t * t + 2 * t * F + t * dh) * f, 0);
  /* hessian_init: float64 sum + float32 ssyrk chunk per group input; a
   * streamed group (hessian_stream.h): its pieces on the grid, the buffered
   * inputs, the float32 and float64 panels */
  double hess = 0, in_dims[4] = {D, qd, D, F};
  int nstream = 0;
  for (int g = 0; g < 4; g++)
    if (gptq_hessian_streamed(o, g, (int)in_dims[g], size)) {
      hess += hstream_bytes((int)in_dims[g], o->nb, T, o->stream_tokens, size);
      nstream++;
    } else {
      hess += in_dims[g] * in_dims[g] * dbl + in_dims[g] * hessian_panel_width((int)in_dims[g]) * f;
    }
  memplan_add(p, nstream ? "layer-input Hessians (4 groups; streamed ones as pieces + buffers)" : "layer-input Hessians (4 groups)", hess,
              0);
  if (aptq) {
    double Dh = D * D * (dbl + f);
    if (!strcmp(o->v_form, "kron")) /* vhessian_init: one input factor per kv group, output factors, Y */
      memplan_add(p, "APTQ v_proj factors", c->n_kv_heads * Dh + c->n_kv_heads * dh2 * dbl + t * D * f, 0);
    if (strcmp(o->q_form, "gptq")) /* qhessian_init */
      memplan_add(p, "APTQ q_proj statistics",
                  Dh + 2 * c->n_heads * dh2 * dbl + c->n_heads * dh2 * f + 2 * t * dh2 * f + t * dh * f + t * D * f + t * f, 0);
    if (strcmp(o->k_form, "gptq")) { /* khessian_init */
      double kb = Dh + c->n_heads * dh2 * f + t * dh * f + t * t * f + t * D * f + t * f;
      if (!strcmp(o->k_form, "kron")) kb += 2 * c->n_kv_heads * dh2 * dbl + 2 * t * dh2 * f;
      memplan_add(p, "APTQ k_proj statistics", kb, 0);
    }
  }
  /* factor (quantize.c's choice per group): a scattered Hessian's factor
   * stays on the grid (float64 pieces while factoring, float32 after, one
   * B-row block of U in the solve); a replicated one is made whole on every
   * rank (float32 U kept between layers, float64 LAPACK work space kept) */
  FactorPath fpath = gptq_params_from_options(o).factor_path;
  double rep_lapack = aptq ? D : 0, rep_scalapack = 0, scattered = 0, B = o->block_size; /* APTQ's own factors are d = dim, replicated */
  double gather = 0; /* moving the sum into the factor's layout: a reduction round, or the streamed sum's all-to-all */
  for (int g = 0; g < 4; g++) {
    double x = in_dims[g];
    int sc = factor_uses_scalapack(fpath, (int)x, size);
    int scatter = gptq_hessian_scattered(o, g, (int)x, size);
    double *slot = scatter ? &scattered : sc ? &rep_scalapack : &rep_lapack;
    *slot = x > *slot ? x : *slot;
    if (scatter) {
      int nprow, npcol;
      blacs_grid_shape(size, &nprow, &npcol);
      /* the all-to-all: (value, index) pairs of the upper triangle, sent and received */
      double m = gptq_hessian_streamed(o, g, (int)x, size) ? (o->act_order ? 2 * 16 * x * (x + 1) / 2 / size : 0) : x * o->nb * npcol * dbl;
      gather = m > gather ? m : gather;
    }
  }
  double rep = rep_lapack > rep_scalapack ? rep_lapack : rep_scalapack;
  if (rep > 0) memplan_add(p, "inverse-Hessian factor U, replicated (float32, kept)", rep * rep * f, 0);
  if (rep_lapack > 0) memplan_add(p, "LAPACK factor work space (float64, kept)", rep_lapack * rep_lapack * dbl, 0);
  if (rep_scalapack > 0) memplan_add(p, "ScaLAPACK local matrix of a replicated factor", rep_scalapack * rep_scalapack * dbl / size, 1);
  double set_rows[LIN_COUNT], set_cols[LIN_COUNT];
  int set_group[LIN_COUNT], nsets = solve_sets(o, c, size, set_rows, set_cols, set_group);
  if (scattered > 0) {
    /* factoring: the local pieces (float64) and one reduction round's send
     * buffer; solving (the largest of the sets whose factor is on the
     * grid): the pieces in float32, gptq_linears' slabs (W, Q, codes,
     * packed), the streamed sweep's work arrays (Wp, Qp, Cp, Err) and one
     * block of U */
    double x = scattered, solve = 0;
    for (int i = 0; i < nsets; i++) {
      double rows = set_rows[i], xi = set_cols[i];
      if (!gptq_hessian_scattered(o, set_group[i], (int)xi, size)) continue;
      double b = xi * xi * f / size + 2 * rows * xi * (2 * f + 1) + rows * (xi * 8 / 32 + 1) * 4 + rows * B * f + B * xi * f;
      solve = b > solve ? b : solve;
    }
    memplan_add(p, "factor on the grid: pieces + moving the sum in", x * x * dbl / size + gather, 1);
    memplan_add(p, "factor on the grid: streamed solve, largest set of layers", solve, 1);
  }
  /* gptq_linears: slabs, Q, codes, scales, zeros, packed codes of this rank's rows of the layers solved together */
  double slab = 0;
  for (int i = 0; i < nsets; i++) {
    double rows = set_rows[i], cols = set_cols[i];
    double ng = o->group_size ? cols / o->group_size + 1 : 1;
    double b = rows * cols * (2 * f + 1) + rows * ng * 8 + rows * (cols * 8 / 32 + 1) * 4;
    slab = b > slab ? b : slab;
  }
  if (aptq && !strcmp(o->v_form, "kron")) { /* kron_linear of v_proj: the column-order matrix and its head slabs */
    double v = D * D * dbl + (kvd / size + dh) * D * (2 * f + 1);
    slab = v > slab ? v : slab;
  }
  memplan_add(p, "solve buffers of the largest set of layers", slab, 1);
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

double memory_peak_rss(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return (double)ru.ru_maxrss * 1024.0; /* Linux: kilobytes */
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
      printf("  %-52s %12s%s\n", p->item[i].what, b, p->item[i].transient ? "  (one layer at a time)" : "");
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
