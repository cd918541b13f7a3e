#include "output.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "memory.h"
#include "phases.h"
#include "qfile.h"
#include "report.h"
#include "rtn.h"

/* Σ err2 and Σ norm2 over every layer, and the number of weights. */
static void totals(const Model *m, const LayerError *err, double *err2, double *norm2, long long *params) {
  const ModelConfig *c = &m->cfg;
  *err2 = *norm2 = 0;
  *params = 0;
  for (int i = 0; i < c->n_layers * LIN_COUNT; i++) {
    *err2 += err[i].err2;
    *norm2 += err[i].norm2;
  }
  for (int l = 0; l < c->n_layers; l++)
    for (int k = 0; k < LIN_COUNT; k++) *params += m->linear[l][k].rows * m->linear[l][k].cols;
}

/* Rank 0: the summary on stdout. */
static void print_summary(const Options *o, const Plan *p, const Model *m, const LayerError *err, const OutputInfo *info, const double *rss,
                          int size) {
  double err2, norm2, peak = 0;
  long long params;
  totals(m, err, &err2, &norm2, &params);
  char groups[64]; /* grid = ggml: each layer's type sets its groups */
  if (p->ggml) snprintf(groups, sizeof groups, "grid ggml (each layer on the llama.cpp type of its width)");
  else snprintf(groups, sizeof groups, "group_size %d%s", o->group_size, o->sym ? ", symmetric" : "");
  if (p->avg_budget && p->ggml)
    printf(
        "aptq quantize: method %s, avg_bits %g (achieved %.6f bits per weight as llama.cpp counts them, %.6f code bits), knapsack "
        "allocation, %s, %d ranks\n",
        o->method, info->R, info->ggml_bits, info->average_bits, groups, size);
  else if (p->avg_budget)
    printf("aptq quantize: method %s, avg_bits %g (achieved %.6f average code bits per weight), knapsack allocation, %s, %d ranks\n",
           o->method, info->R, info->average_bits, groups, size);
  else if (p->mixed)
    printf("aptq quantize: method %s, R %g (achieved %.6f), %s allocation, average %.6f bits, %s, %d ranks\n", o->method, info->R,
           info->R_achieved, o->allocation, info->average_bits, groups, size);
  else
    printf("aptq quantize: method %s, %d bits, group_size %d%s, %d ranks\n", o->method, o->bits, o->group_size, o->sym ? ", symmetric" : "",
           size);
  printf("  layers           : %d linear layers, %lld parameters\n", m->cfg.n_layers * LIN_COUNT, params);
  printf("  relative error   : ||W-Q||/||W|| = %.6f over all layers\n", layer_error_relative(err2, norm2));
  for (int l = 0; p->avg_budget && l < m->cfg.n_layers; l++) {
    printf("  bits, block %-5d:", l);
    for (int k = 0; k < LIN_COUNT; k++) printf(" %s %d", strrchr(linear_names[k], '.') + 1, err[l * LIN_COUNT + k].bits);
    printf("\n");
  }
  if (p->mixed)
    printf("  time             : load %.2f s, sensitivities %.2f s + measuring pass %.2f s (shared), this pass + write %.2f s\n",
           info->t_load, info->t_sensitivity, info->t_measure, info->t_pass + info->t_write);
  else
    printf("  time             : load %.2f s, quantize+write %.2f s, total %.2f s\n", info->t_load, info->t_pass + info->t_write,
           info->t_load + info->t_sensitivity + info->t_measure + info->t_pass + info->t_write);
  char b1[32], b2[32];
  for (int r = 0; r < size; r++) peak = rss[r] > peak ? rss[r] : peak;
  memory_format(peak, b1, sizeof b1);
  memory_format(info->predicted_peak, b2, sizeof b2);
  printf("  memory           : peak RSS %s per rank (predicted %s)\n", b1, b2);
  printf("  output           : %s\n", info->output);
  fflush(stdout);
}

/* The run's settings in the JSON report. */
static void report_settings(Report *rep, const Options *o, const Plan *p, const OutputInfo *info) {
  int gptq = p->method != METHOD_RTN;
  report_str(rep, "command", "quantize");
  report_str(rep, "method", o->method);
  report_int(rep, "bits", o->bits);
  report_int(rep, "group_size", o->group_size);
  report_int(rep, "sym", o->sym);
  if (gptq) {
    report_int(rep, "act_order", o->act_order);
    report_int(rep, "static_groups", o->static_groups);
    report_int(rep, "true_sequential", o->true_sequential);
    report_num(rep, "damp", o->damp);
    report_int(rep, "block_size", o->block_size);
    report_int(rep, "calib_nseq", o->nseq);
    report_int(rep, "calib_seqlen", o->seqlen);
  }
  if (p->method == METHOD_APTQ) {
    report_begin(rep, "hessian_forms", '{');
    for (int k = 0; k < LIN_COUNT; k++) report_str(rep, linear_names[k], plan_form_name(p->form[k]));
    report_end(rep, '}');
    report_num(rep, "aptq_shrink", p->shrink);
  }
  if (p->avg_budget) {
    report_str(rep, "allocation", "knapsack");
    report_str(rep, "sensitivity", o->sensitivity);
    report_num(rep, "avg_bits", info->R);
    report_str(rep, "avg_bits_sweep", o->avg_bits);
  } else if (p->mixed) {
    report_str(rep, "allocation", o->allocation);
    if (plan_ranks_by_sensitivity(p)) report_str(rep, "sensitivity", o->sensitivity);
    report_num(rep, "R", info->R);
    report_num(rep, "R_achieved", info->R_achieved);
    report_str(rep, "R_sweep", o->R);
  }
}

/* Each layer's line of the JSON report. */
static void report_layers(Report *rep, const Plan *p, const Model *m, const LayerError *err, const OutputInfo *info) {
  report_begin(rep, "layers", '[');
  for (int l = 0; l < m->cfg.n_layers; l++)
    for (int k = 0; k < LIN_COUNT; k++) {
      char name[256];
      linear_layer_name(l, k, name, sizeof name);
      int i = l * LIN_COUNT + k;
      const LayerError *e = &err[i];
      report_begin(rep, NULL, '{');
      report_str(rep, "name", name);
      report_int(rep, "params", m->linear[l][k].rows * m->linear[l][k].cols);
      report_int(rep, "bits", e->bits);
      report_num(rep, "relative_error", layer_error_relative(e->err2, e->norm2));
      if (p->method != METHOD_RTN) {
        report_num(rep, "sensitivity", e->sensitivity);
        if (info->alloc_sens) report_num(rep, "allocation_sensitivity", info->alloc_sens[i]);
        if (info->alloc_sens_err) report_num(rep, "allocation_sensitivity_stderr", info->alloc_sens_err[i]);
        report_num(rep, "gptq_loss", e->loss);
        report_num(rep, "damp", e->damp_used);
        report_int(rep, "damp_retries", e->retries);
      }
      report_end(rep, '}');
    }
  report_end(rep, ']');
}

/* Collective: the summary (rank 0) and the JSON report. */
static int write_report(const Options *o, const Plan *p, const Model *m, const TokenShard *calib, const LayerError *err,
                        const OutputInfo *info, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double seconds = info->t_load + info->t_sensitivity + info->t_measure + info->t_pass + info->t_write, err2, norm2;
  long long params;
  totals(m, err, &err2, &norm2, &params);
  double *phase_all = aptq_malloc(sizeof(double) * (size_t)size * PH_COUNT, "phases"),
         *rss = aptq_malloc(sizeof(double) * (size_t)size, "rss");
  if (!phase_all || !rss) aptq_fatal(comm);
  phases_gather(comm, phase_all);
  double my_rss = memory_peak_rss(), heap_peak = memory_heap_peak_max(comm);
  MPI_Allgather(&my_rss, 1, MPI_DOUBLE, rss, 1, MPI_DOUBLE, comm);
  if (rank == 0) print_summary(o, p, m, err, info, rss, size);
  Report rep;
  int rc = report_open(&rep, info->report, o->overwrite, rank);
  report_settings(&rep, o, p, info);
  report_str(&rep, "model", o->model);
  report_str(&rep, "model_fingerprint", m->fingerprint);
  report_str(&rep, "calib_sha256", o->calib[0] ? calib->sha256 : "");
  report_str(&rep, "output", info->output);
  report_int(&rep, "ranks", size);
  report_int(&rep, "parameters", params);
  report_num(&rep, "average_bits", info->average_bits);
  if (p->ggml) report_num(&rep, "ggml_bits_per_weight", info->ggml_bits);
  report_num(&rep, "relative_error", layer_error_relative(err2, norm2));
  report_num(&rep, "seconds", seconds);
  report_begin(&rep, "phase_seconds", '{');
  report_num(&rep, "load", info->t_load);
  if (p->mixed) report_num(&rep, "measuring_pass", info->t_measure);
  if (p->mixed) report_num(&rep, "fisher_sensitivity", info->t_sensitivity);
  report_num(&rep, "quantize_write", info->t_pass + info->t_write);
  if (p->method != METHOD_RTN) {
    report_num(&rep, "hessian", info->pass.hessian);
    report_num(&rep, "factor_solve_write", info->pass.solve);
  }
  report_end(&rep, '}');
  phases_report(&rep, phase_all, rss, size, info->predicted_peak);
  memory_report_heap(&rep, heap_peak, info->predicted_heap);
  aptq_free(phase_all);
  aptq_free(rss);
  report_layers(&rep, p, m, err, info);
  if (!rc) rc = report_close(&rep);
  return aptq_agree(comm, rc);
}

/* The file's metadata beyond the layers (docs/hdf5-schema.md): the run,
 * the mixed-precision figures, the sensitivities that chose the widths. */
static void write_metadata(QFileWriter *qw, const Options *o, const Plan *p, const Model *m, const TokenShard *calib,
                           const OutputInfo *info, double seconds, MPI_Comm comm) {
  int n = m->cfg.n_layers * LIN_COUNT;
  if (qfile_write_metadata(qw, o, m, o->calib[0] ? calib->sha256 : NULL, o->method) ||
      qfile_attr_double(qw, "/meta", "seconds_quantize", seconds) || qfile_attr_double(qw, "/meta", "average_bits", info->average_bits) ||
      (p->ggml && qfile_attr_double(qw, "/meta", "ggml_bits_per_weight", info->ggml_bits)) ||
      (p->avg_budget &&
       (qfile_attr_double(qw, "/meta", "avg_bits", info->R) || qfile_attr_string(qw, "/meta", "allocation", "knapsack"))) ||
      (p->mixed && !p->avg_budget &&
       (qfile_attr_double(qw, "/meta", "R", info->R) || qfile_attr_double(qw, "/meta", "R_achieved", info->R_achieved) ||
        qfile_attr_string(qw, "/meta", "allocation", o->allocation))))
    aptq_fatal(comm);
  if (info->alloc_sens && qfile_attr_string(qw, "/meta", "sensitivity", o->sensitivity)) aptq_fatal(comm);
  for (int i = 0; info->alloc_sens && i < n; i++) {
    char name[256], group[300];
    linear_layer_name(i / LIN_COUNT, i % LIN_COUNT, name, sizeof name);
    snprintf(group, sizeof group, "/layers/%s", name);
    if (qfile_attr_double(qw, group, "allocation_sensitivity", info->alloc_sens[i]) ||
        (info->alloc_sens_err && qfile_attr_double(qw, group, "allocation_sensitivity_stderr", info->alloc_sens_err[i])))
      aptq_fatal(comm);
  }
}

int quantize_output(const Options *o, const Plan *p, const Model *m, const TokenShard *calib, const int *bits, OutputInfo *info,
                    LayerError *err, Checkpoint *ck, double t_start, MPI_Comm comm) {
  int n = m->cfg.n_layers * LIN_COUNT;
  double t0 = MPI_Wtime();
  QFileWriter qw;
  CHECK(qfile_create(&qw, info->output, "output", o->overwrite, comm));
  memset(err, 0, sizeof *err * (size_t)n);
  for (int i = 0; i < n; i++) err[i].bits = bits ? bits[i] : p->gptq.bits;
  phases_reset();
  info->pass = (PassTimes){0};
  int rc = p->method == METHOD_RTN ? rtn_pass(&qw, p, m, err, t_start, comm)
                                   : pass_run(&qw, p, m, calib, bits, err, ck, t_start, &info->pass, comm);
  if (rc) { /* agreed on every rank: nothing of this output survives */
    if (ck && ck->block.file >= 0) qfile_discard(&ck->block);
    qfile_discard(&qw);
    return rc;
  }
  double t1 = MPI_Wtime();
  write_metadata(&qw, o, p, m, calib, info, t1 - t0, comm);
  CHECK(qfile_commit(&qw));
  info->t_pass = t1 - t0;
  info->t_write = MPI_Wtime() - t1;
  return write_report(o, p, m, calib, err, info, comm);
}
