#include "plan.h"

#include "factor.h"
#include "hessian.h"
#include "hessian_stream.h"
#include "quant.h"

/* grid = ggml: the llama.cpp type of each width (the settings of grid =
 * q2_k .. q8_0, options.c apply_grid; docs/gguf.md). */
typedef struct {
  int bits, group_size, sym, fp16_scales, sc_max, m_max;
} GgmlWidth;
static const GgmlWidth ggml_widths[] = {{2, 16, 0, 0, 0, 15}, {3, 16, 1, 0, 31, 0},  {4, 32, 0, 0, 0, 63},
                                        {5, 32, 0, 0, 0, 63}, {6, 16, 1, 0, 127, 0}, {8, 32, 1, 1, 0, 0}};

static const GgmlWidth *ggml_width(int bits) {
  for (size_t i = 0; i < sizeof ggml_widths / sizeof *ggml_widths; i++)
    if (ggml_widths[i].bits == bits) return &ggml_widths[i];
  return &ggml_widths[2]; /* not reached: the widths come from knap_ggml, R's 2 and 4, or the measuring pass's 4 */
}

GptqParams gptq_params_from_options(const Options *o) {
  /* the enums of factor.h follow the choices: auto|lapack|scalapack, trtri|potri */
  GptqParams p = {o->bits,
                  o->group_size,
                  o->sym,
                  o->act_order,
                  o->static_groups,
                  o->mse,
                  o->block_size,
                  o->damp,
                  (FactorPath)options_choice(o, "factor"),
                  (FactorAlgorithm)options_choice(o, "factor_algorithm"),
                  o->nb};
  return p;
}

/* APTQ's form of q, k or v from its option */
static HessianForm form_of(const Options *o, const char *key) {
  /* q_form, k_form: rowshared|kron|gptq|relaxed; v_form: kron|gptq|relaxed */
  static const HessianForm qk[] = {FORM_ROWSHARED, FORM_KRON, FORM_GPTQ, FORM_RELAXED}, v[] = {FORM_KRON, FORM_GPTQ, FORM_RELAXED};
  int i = options_choice(o, key);
  return key[0] == 'v' ? v[i] : qk[i];
}

void plan_init(Plan *p, const Options *o) {
  *p = (Plan){0};
  p->method = (Method)options_choice(o, "method");
  for (int k = 0; k < LIN_COUNT; k++) p->form[k] = FORM_GPTQ;
  if (p->method == METHOD_APTQ) {
    p->form[LIN_Q] = form_of(o, "q_form");
    p->form[LIN_K] = form_of(o, "k_form");
    p->form[LIN_V] = form_of(o, "v_form");
    p->shrink = o->aptq_shrink;
  }
  p->reduce = (HessianReduce)options_choice(o, "hessian_reduce");
  p->allocation = (Allocation)options_choice(o, "allocation");
  p->sensitivity = (SensitivityKind)options_choice(o, "sensitivity");
  p->avg_budget = o->avg_bits[0] != 0;
  p->mixed = o->R[0] != 0 || p->avg_budget;
  if (p->avg_budget) p->allocation = ALLOC_KNAPSACK;
  p->bf16_activations = options_choice(o, "activations") == 1;
  p->fp16_scales = options_choice(o, "scale_dtype") == 1;
  int grid = options_choice(o, "grid"); /* minmax|q4_0|q4_1|q8_0|q6_k|q3_k|q4_k|q5_k|q2_k */
  p->fp16_mins = grid == 2;
  p->kgrid_sc_max = grid == 4 ? 127 : grid == 5 ? 31 : 0;
  p->kgrid_m_max = grid == 6 || grid == 7 ? 63 : grid == 8 ? 15 : 0;
  p->kgrid_search = options_choice(o, "grid_search"); /* none|llama|hessian: KSEARCH_NONE, _LLAMA, _HESSIAN */
  /* q3_k, q6_k (and those layers of grid = ggml): the same choice, default
   * hessian as for the grids with mins (chosen on WikiText-2 valid, docs/gguf.md) */
  p->ksym_search = p->kgrid_search;
  p->ggml = grid == 9;
  p->true_sequential = o->true_sequential;
  p->mlp_resume = o->true_sequential && !p->bf16_activations;
  p->keep_attention = o->true_sequential && o->keep_attention;
  p->attention_stats = p->form[LIN_Q] != FORM_GPTQ || p->form[LIN_K] != FORM_GPTQ || p->form[LIN_V] != FORM_GPTQ;
  p->stream_tokens = o->stream_tokens;
  p->seqlen = o->seqlen;
  p->threads = o->threads;
  p->gptq = gptq_params_from_options(o);
  if (p->ggml) p->gptq.group_size = 16;                   /* the smallest of the widths' groups: the memory plan's most scales */
  p->layer_kron = options_choice(o, "hessian_form") == 1; /* gptq|kron */
}

/* Is group g's Hessian (input width d) reduced straight into the
 * ScaLAPACK grid (gptq_prepare_partial)? Not where the factor runs on
 * LAPACK, nor group 0 when a Kronecker q or k form reads it whole. */
static int scattered(const Plan *p, int g, int d, int size) {
  /* ... nor when the shrinkage (aptq_shrink) reads it as its target */
  int kron_reads_whole = plan_kron_input(p, LIN_Q) || plan_kron_input(p, LIN_K) || plan_shrinks(p);
  return p->reduce != REDUCE_ALLREDUCE && factor_uses_scalapack(p->gptq.factor_path, d, size) && !(g == 0 && kron_reads_whole);
}

/* Of those, is it summed into the grid while it accumulates
 * (hessian_stream.h), so that no rank holds even its own d × d partial
 * sum? hessian_reduce = stream, or auto above HESS_PANEL_MIN columns where
 * the stream's pieces (d²/P), buffers and all-to-all take less memory than
 * the partial sum (7B/13B down_proj from about 8 ranks, 70B's from 2). */
static int streamed(const Plan *p, int g, int d, int size) {
  if (!scattered(p, g, d, size)) return 0;
  if (p->reduce == REDUCE_STREAM) return 1;
  if (p->reduce != REDUCE_AUTO || d <= HESS_PANEL_MIN) return 0;
  /* auto: counting (with act-order) the all-to-all into the factor's
   * order: pairs of 16 bytes for the upper triangle, sent and received */
  double dd = d, partial = dd * dd * sizeof(double) + dd * hessian_panel_width(d) * sizeof(float);
  double stream =
      hstream_bytes(d, p->gptq.nb, p->seqlen, p->stream_tokens, size) + (p->gptq.act_order ? 2 * 16 * dd * (dd + 1) / 2 / size : 0);
  return stream < partial;
}

void plan_shape(Plan *p, const ModelConfig *c, int size) {
  int in_dim[GROUP_COUNT] = {c->dim, c->n_heads * c->head_dim, c->dim, c->hidden_dim};
  p->size = size;
  for (int g = 0; g < GROUP_COUNT; g++) {
    p->in_dim[g] = in_dim[g];
    p->scattered[g] = scattered(p, g, in_dim[g], size);
    p->streamed[g] = streamed(p, g, in_dim[g], size);
  }
}

const char *plan_form_name(HessianForm f) {
  static const char *const names[] = {"gptq", "rowshared", "kron", "relaxed"};
  return names[f];
}

Plan plan_make(const Options *o, const ModelConfig *c, int size) {
  Plan p;
  plan_init(&p, o);
  plan_shape(&p, c, size);
  return p;
}

GptqParams plan_layer_params(const Plan *p, int bits) {
  GptqParams g = p->gptq;
  g.bits = bits;
  if (p->ggml) {
    const GgmlWidth *w = ggml_width(bits);
    g.group_size = w->group_size;
    g.sym = w->sym;
    g.static_groups = 1;
  }
  return g;
}

int plan_layer_mins(const Plan *p, int bits) { return p->ggml ? ggml_width(bits)->m_max != 0 : p->kgrid_m_max != 0; }

int plan_layer_searched(const Plan *p, int bits) {
  return p->ggml ? ggml_width(bits)->m_max != 0 || ggml_width(bits)->sc_max != 0 : p->kgrid_m_max != 0 || p->kgrid_sc_max != 0;
}

void plan_use_grid(const Plan *p, int bits) {
  if (!p->ggml) {
    quant_set_fp16_scales(p->fp16_scales);
    quant_set_fp16_mins(p->fp16_mins);
    quant_set_kgrid(p->kgrid_sc_max);
    quant_set_kgrid_mins(p->kgrid_m_max);
    return;
  }
  const GgmlWidth *w = ggml_width(bits);
  quant_set_fp16_scales(w->fp16_scales);
  quant_set_fp16_mins(0);
  quant_set_kgrid(w->sc_max);
  quant_set_kgrid_mins(w->m_max);
}

int plan_ranks_by_sensitivity(const Plan *p) { return p->allocation == ALLOC_TRACE || p->allocation == ALLOC_KNAPSACK; }
