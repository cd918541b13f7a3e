/* The plan (plan.h) reads every choice option through options_choice, whose
 * enums follow the order of the choices in options.c: each value of each
 * choice key gives the plan field it names, and the policies that combine
 * them (forms only with aptq, shared factors, where a group's forward
 * starts, which Hessians are scattered or streamed) come out as documented. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "expect.h"
#include "options.h"
#include "plan.h"

static Plan plan_of(const char *a, const char *b, const char *c) {
  char *argv[3] = {(char *)a, (char *)b, (char *)c};
  int argc = c ? 3 : b ? 2 : a ? 1 : 0;
  Options o;
  aptq_clear_error();
  EXPECT(options_parse(&o, argc, argv) == 0, "options %s %s %s: %s", a, b ? b : "", c ? c : "", aptq_error_message());
  Plan p;
  plan_init(&p, &o);
  return p;
}

static void choices(void) {
  EXPECT(plan_of("--method=rtn", NULL, NULL).method == METHOD_RTN, "rtn");
  EXPECT(plan_of("--method=gptq", NULL, NULL).method == METHOD_GPTQ, "gptq");
  EXPECT(plan_of("--method=aptq", NULL, NULL).method == METHOD_APTQ, "aptq");
  const char *qk[] = {"rowshared", "kron", "gptq", "relaxed"};
  const HessianForm qkf[] = {FORM_ROWSHARED, FORM_KRON, FORM_GPTQ, FORM_RELAXED};
  for (int i = 0; i < 4; i++) {
    char q[64], k[64];
    snprintf(q, sizeof q, "--q_form=%s", qk[i]);
    snprintf(k, sizeof k, "--k_form=%s", qk[i]);
    Plan p = plan_of("--method=aptq", q, k);
    EXPECT(p.form[LIN_Q] == qkf[i] && p.form[LIN_K] == qkf[i], "q_form, k_form %s", qk[i]);
    EXPECT(plan_shares_factor(&p, LIN_Q) == (qkf[i] == FORM_GPTQ), "q shares the q/k/v factor only in the gptq form");
    p = plan_of("--method=gptq", q, k); /* forms are APTQ's only */
    EXPECT(p.form[LIN_Q] == FORM_GPTQ && p.form[LIN_K] == FORM_GPTQ && !p.attention_stats, "gptq ignores q_form %s", qk[i]);
  }
  EXPECT(plan_of("--method=aptq", "--v_form=kron", NULL).form[LIN_V] == FORM_KRON, "v_form kron");
  EXPECT(plan_of("--method=aptq", "--v_form=gptq", NULL).form[LIN_V] == FORM_GPTQ, "v_form gptq");
  EXPECT(plan_of("--method=aptq", "--v_form=relaxed", NULL).form[LIN_V] == FORM_RELAXED, "v_form relaxed");
  EXPECT(!strcmp(plan_form_name(FORM_RELAXED), "relaxed"), "relaxed form's name");
  Plan d = plan_of("--method=aptq", NULL, NULL); /* the defaults: rowshared q, k; kron v */
  EXPECT(d.form[LIN_Q] == FORM_ROWSHARED && d.form[LIN_K] == FORM_ROWSHARED && d.form[LIN_V] == FORM_KRON && d.attention_stats,
         "aptq defaults");
  for (int k = LIN_O; k < LIN_COUNT; k++) EXPECT(d.form[k] == FORM_GPTQ && plan_shares_factor(&d, k), "layer %d shares its factor", k);
  const char *red[] = {"--hessian_reduce=auto", "--hessian_reduce=allreduce", "--hessian_reduce=scatter", "--hessian_reduce=stream"};
  for (int i = 0; i < 4; i++) EXPECT(plan_of(red[i], NULL, NULL).reduce == (HessianReduce)i, "%s", red[i]);
  const char *al[] = {"--allocation=trace", "--allocation=knapsack", "--allocation=random", "--allocation=blockwise"};
  const Allocation alk[] = {ALLOC_TRACE, ALLOC_KNAPSACK, ALLOC_RANDOM, ALLOC_BLOCKWISE};
  for (int i = 0; i < 4; i++) {
    Plan p = plan_of(al[i], NULL, NULL);
    EXPECT(p.allocation == alk[i] && plan_ranks_by_sensitivity(&p) == (i < 2), "%s", al[i]);
  }
  EXPECT(plan_of("--sensitivity=fisher", NULL, NULL).sensitivity == SENSITIVITY_FISHER, "fisher");
  EXPECT(plan_of("--sensitivity=layer", NULL, NULL).sensitivity == SENSITIVITY_LAYER, "layer");
  EXPECT(plan_of("--factor=auto", NULL, NULL).gptq.factor_path == FACTOR_AUTO, "factor auto");
  EXPECT(plan_of("--factor=lapack", NULL, NULL).gptq.factor_path == FACTOR_LAPACK, "factor lapack");
  EXPECT(plan_of("--factor=scalapack", NULL, NULL).gptq.factor_path == FACTOR_SCALAPACK, "factor scalapack");
  EXPECT(plan_of("--factor_algorithm=trtri", NULL, NULL).gptq.factor_algorithm == FACTOR_TRTRI, "trtri");
  EXPECT(plan_of("--factor_algorithm=potri", NULL, NULL).gptq.factor_algorithm == FACTOR_POTRI, "potri");
  EXPECT(plan_of("--activations=bf16", NULL, NULL).bf16_activations && !plan_of(NULL, NULL, NULL).bf16_activations, "activations");
  EXPECT(plan_of("--scale_dtype=fp16", NULL, NULL).fp16_scales && !plan_of(NULL, NULL, NULL).fp16_scales, "scale_dtype");
  EXPECT(plan_of("--hessian_form=kron", NULL, NULL).layer_kron && !plan_of(NULL, NULL, NULL).layer_kron, "hessian_form");
  EXPECT(plan_of("--R=0.5", NULL, NULL).mixed && !plan_of(NULL, NULL, NULL).mixed, "R makes a mixed run");
}

static void policies(void) {
  /* where a group's forward may start */
  Plan p = plan_of(NULL, NULL, NULL);
  EXPECT(p.true_sequential && p.mlp_resume && !p.keep_attention, "defaults: true-sequential, MLP resumed");
  p = plan_of("--activations=bf16", NULL, NULL);
  EXPECT(!p.mlp_resume, "bf16 activations: no MLP resume (it would round the residual)");
  p = plan_of("--keep_attention=yes", "--true_sequential=no", NULL);
  EXPECT(!p.keep_attention && !p.mlp_resume, "keep_attention only when true-sequential");
  EXPECT(plan_of("--keep_attention=yes", NULL, NULL).keep_attention, "keep_attention");
  /* which Hessians are scattered or streamed, on a 7B block's widths */
  ModelConfig c = {.dim = 4096, .hidden_dim = 11008, .n_heads = 32, .n_kv_heads = 32, .head_dim = 128};
  p = plan_of("--method=gptq", "--nseq=4", NULL);
  plan_shape(&p, &c, 1);
  EXPECT(p.in_dim[0] == 4096 && p.in_dim[1] == 4096 && p.in_dim[2] == 4096 && p.in_dim[3] == 11008, "group widths");
  for (int g = 0; g < GROUP_COUNT; g++) EXPECT(!p.scattered[g] && !p.streamed[g], "1 rank: nothing scattered (group %d)", g);
  plan_shape(&p, &c, 4);
  for (int g = 0; g < GROUP_COUNT; g++) EXPECT(p.scattered[g], "4 ranks, d >= 2048: scattered into the grid (group %d)", g);
  EXPECT(p.streamed[3] && !p.streamed[0], "auto streams only above 8192 columns where it saves memory");
  p = plan_of("--method=gptq", "--hessian_reduce=allreduce", NULL);
  plan_shape(&p, &c, 4);
  for (int g = 0; g < GROUP_COUNT; g++) EXPECT(!p.scattered[g], "allreduce: nothing scattered (group %d)", g);
  p = plan_of("--method=aptq", "--q_form=kron", NULL);
  plan_shape(&p, &c, 4);
  EXPECT(!p.scattered[0] && p.scattered[1], "a Kronecker q form reads the q/k/v Hessian whole");
  p = plan_of("--method=aptq", "--q_form=gptq", "--k_form=relaxed");
  plan_shape(&p, &c, 4);
  EXPECT(!p.scattered[0] && p.scattered[1] && p.attention_stats, "a relaxed k form reads the q/k/v Hessian whole");
  p = plan_of("--method=aptq", NULL, NULL);
  plan_shape(&p, &c, 4);
  EXPECT(p.scattered[0] && p.shrink == 0 && !plan_shrinks(&p), "the row-shared forms leave the q/k/v Hessian scattered");
  p = plan_of("--method=aptq", "--aptq_shrink=0.5", NULL);
  plan_shape(&p, &c, 4);
  EXPECT(!p.scattered[0] && p.scattered[1] && p.shrink == 0.5, "aptq_shrink reads the q/k/v Hessian whole (its target)");
  p = plan_of("--method=gptq", "--aptq_shrink=0.5", NULL);
  plan_shape(&p, &c, 4);
  EXPECT(p.scattered[0] && p.shrink == 0, "gptq ignores aptq_shrink");
  p = plan_of("--method=aptq", "--aptq_shrink=1", "--q_form=gptq");
  EXPECT(plan_shrinks(&p), "aptq_shrink with k and v in forms of their own");
  p = plan_of("--method=gptq", "--hessian_reduce=stream", NULL);
  plan_shape(&p, &c, 4);
  for (int g = 0; g < GROUP_COUNT; g++) EXPECT(p.streamed[g], "stream: every scattered group streamed (group %d)", g);
  EXPECT(plan_layer_params(&p, 3).bits == 3 && plan_layer_params(&p, 3).damp == p.gptq.damp, "a layer's parameters at its width");
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  choices();
  policies();
  printf("test_plan: %d checks, %d failures\n", checks, failures);
  MPI_Finalize();
  return failures != 0;
}
