/* The quantize plan: the options turned once into types (enums instead of
 * strings) and every policy of the pass decided in one place: which form
 * of Hessian each projection's solve uses, which layers share their group's
 * factor, how each group's Hessian is summed over the ranks (whole,
 * reduce-scattered into the factor's grid, or streamed there), where the
 * forward of a group may start. The pass (pass.c), the layer solves
 * (solve.c), the memory plan (memory.c) and `aptq layer` read it; nothing
 * outside options.c and plan.c compares option strings. */
#ifndef APTQ_PLAN_H
#define APTQ_PLAN_H

#include "allocate.h"
#include "forward.h"
#include "gptq.h"
#include "model.h"
#include "options.h"

/* The enums follow the order of the choices in options.c. */
typedef enum { METHOD_RTN, METHOD_GPTQ, METHOD_APTQ } Method;
/* The Hessian a projection's solve uses (docs/aptq.md): the group's
 * layer-input Hessian (GPTQ), APTQ's token-weighted input Hessian
 * (row-shared), a Kronecker product with an output factor per head, or
 * BoA/aespa's relaxed form (q, k: Kronecker with score-covariance output
 * factors; v: one attention-mixed input Hessian per kv group), solved
 * through the Kronecker path. */
typedef enum { FORM_GPTQ, FORM_ROWSHARED, FORM_KRON, FORM_RELAXED } HessianForm;
typedef enum { REDUCE_AUTO, REDUCE_ALLREDUCE, REDUCE_SCATTER, REDUCE_STREAM } HessianReduce;
typedef enum { SENSITIVITY_FISHER, SENSITIVITY_LAYER } SensitivityKind;
enum { GROUP_COUNT = 4 }; /* linear_groups: q/k/v, o, gate/up, down */

typedef struct {
  Method method;
  HessianForm form[LIN_COUNT]; /* per projection: FORM_GPTQ but for APTQ's q/k/v */
  double shrink;               /* aptq_shrink: λ toward GPTQ's factors (shrink.h); 0 unless APTQ */
  HessianReduce reduce;
  Allocation allocation;
  SensitivityKind sensitivity;
  int mixed;            /* R or avg_bits was given */
  int avg_budget;       /* avg_bits: the sweep's values are average bits, allocated by the knapsack */
  int bf16_activations; /* calibration activations kept in bf16 */
  int fp16_scales;      /* scales rounded to fp16 as they are made */
  int fp16_mins;        /* grid = q4_1: -scale*zero an fp16 value too */
  int kgrid_sc_max;     /* grid = q6_k (127) | q3_k (31): scales d * sc per super-block (quant_set_kgrid); 0 otherwise */
  int kgrid_search;     /* grid_search: KSEARCH_NONE | LLAMA | HESSIAN (ksearch_set) */
  int ksym_search;      /* the same for grid = q3_k | q6_k (ksearch_set_sym): kgrid_search */
  int kgrid_m_max;      /* grid = q4_k, q5_k (63) | q2_k (15): scales d * sc and mins dmin * m per super-block (quant_set_kgrid_mins) */
  int ggml;             /* grid = ggml: each layer on the llama.cpp type of its width (plan_layer_params, plan_use_grid) */
  int true_sequential;
  /* true-sequential with float32 activations: the gate/up group's forward
   * leaves the residual after attention in the activations, so the down
   * group and the block's output run only the MLP (the same bits) */
  int mlp_resume;
  /* keep_attention: the o group's forward keeps attention's output for the
   * gate/up group's, which then starts at o_proj */
  int keep_attention;
  int attention_stats; /* the q/k/v group's forward feeds APTQ's statistics */
  int stream_tokens, seqlen;
  int threads;     /* OpenMP threads per rank (the solve's work space is per thread) */
  GptqParams gptq; /* the solve's parameters at the run's bit width */
  int layer_kron;  /* aptq layer: hessian_form = kron */
  /* from plan_shape: per group of linear_groups */
  int size;                   /* ranks */
  int in_dim[GROUP_COUNT];    /* the group's input width */
  int scattered[GROUP_COUNT]; /* Hessian reduce-scattered into the factor's grid */
  int streamed[GROUP_COUNT];  /* ... while it accumulates (hessian_stream.h) */
} Plan;

/* The option-level decisions (no shapes needed). Options are already
 * validated by options_parse, so this cannot fail. */
void plan_init(Plan *p, const Options *o);
/* The decisions that depend on the block's shapes and the rank count:
 * in_dim, scattered, streamed. */
void plan_shape(Plan *p, const ModelConfig *c, int size);
/* "gptq", "rowshared", "kron", "relaxed": the form's name in files and reports. */
const char *plan_form_name(HessianForm f);
/* Both at once. */
Plan plan_make(const Options *o, const ModelConfig *c, int size);

/* Is layer k (LinearKind) solved with its group's layer-input factor,
 * together with the group's other such layers (solve_shared)? */
static inline int plan_shares_factor(const Plan *p, int k) { return p->form[k] == FORM_GPTQ; }
/* Is layer k (q or k) solved as a Kronecker product whose input factor is
 * the group's whole layer-input Hessian (kron and relaxed forms)? */
static inline int plan_kron_input(const Plan *p, int k) { return p->form[k] == FORM_KRON || p->form[k] == FORM_RELAXED; }
/* Are APTQ's factors shrunk toward GPTQ's (aptq_shrink > 0 with a form
 * of APTQ's own), so that group 0's layer-input Hessian is read whole? */
static inline int plan_shrinks(const Plan *p) { return p->shrink > 0 && p->attention_stats; }
/* The solve's parameters of a layer at `bits` (mixed precision); with
 * grid = ggml those of the llama.cpp type of that width (docs/mixed.md):
 * 2 q2_k, 3 q3_k, 6 q6_k in groups of 16, 4 q4_k, 5 q5_k, 8 q8_0 in
 * groups of 32, static groups. */
GptqParams plan_layer_params(const Plan *p, int bits);
/* Sets the process-wide grid of quant.h (fp16 scales and mins, the
 * K-quant scales d * sc, the mins dmin * m) for a layer at `bits`: the
 * run's one grid, or with grid = ggml that width's type. Local; every
 * rank calls it before the same solve. */
void plan_use_grid(const Plan *p, int bits);
/* Is a layer at `bits` on a grid with mins (q4_k, q5_k, q2_k)? */
int plan_layer_mins(const Plan *p, int bits);
/* Is a layer of this width on a searched K-quant grid (with mins, or Q3_K /
 * Q6_K: grid_search, ksearch.h)? */
int plan_layer_searched(const Plan *p, int bits);
/* Layers whose keys differ are on different grids and cannot share one
 * sweep (grid = ggml: each width its own; else all alike). */
static inline int plan_grid_key(const Plan *p, int bits) { return p->ggml ? bits : 0; }
/* The widths the knapsack chooses from and their costs: llama.cpp's bits
 * per weight with grid = ggml, else code bits {2, 3, 4, 8}. */
static inline const KnapWidths *plan_widths(const Plan *p) { return p->ggml ? &knap_ggml : &knap_code_bits; }
/* Do the allocation's layers need sensitivities (trace, knapsack)? */
int plan_ranks_by_sensitivity(const Plan *p);
/* The solve's parameters straight from options (aptq layer). */
GptqParams gptq_params_from_options(const Options *o);

#endif
