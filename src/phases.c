#include "phases.h"

#include <string.h>

const char *const phase_names[PH_COUNT] = {"forward", "hessian", "reduce", "factor", "solve", "write", "wait"};

static double seconds[PH_COUNT];
static double kernel_seconds, kernel_flops;

void phases_reset(void) {
  memset(seconds, 0, sizeof seconds);
  kernel_seconds = kernel_flops = 0;
}

double phase_add(Phase p, double since) {
  double now = MPI_Wtime();
  seconds[p] += now - since;
  return now;
}

double phase_seconds(Phase p) { return seconds[p]; }

void phase_shift(Phase from, Phase to, double s) {
  seconds[from] -= s;
  seconds[to] += s;
}

void phase_sync(MPI_Comm comm) {
  double t = MPI_Wtime();
  MPI_Barrier(comm);
  phase_add(PH_WAIT, t);
}

void phases_gather(MPI_Comm comm, double *all) { MPI_Allgather(seconds, PH_COUNT, MPI_DOUBLE, all, PH_COUNT, MPI_DOUBLE, comm); }

void phases_hessian_kernel(double s, double flops) {
  kernel_seconds += s;
  kernel_flops += flops;
}

void phases_hessian_kernel_get(double *s, double *flops) {
  *s = kernel_seconds;
  *flops = kernel_flops;
}

void phases_report(Report *rep, const double *all, const double *rss, int size, double predicted) {
  report_begin(rep, "phases", '{');
  for (int p = 0; p < PH_COUNT; p++) {
    double m = 0;
    for (int r = 0; r < size; r++) m = all[r * PH_COUNT + p] > m ? all[r * PH_COUNT + p] : m;
    report_num(rep, phase_names[p], m);
  }
  report_end(rep, '}');
  report_begin(rep, "rank_busy_seconds", '[');
  for (int r = 0; r < size; r++) {
    double busy = 0;
    for (int p = 0; p < PH_COUNT; p++) busy += p == PH_WAIT ? 0 : all[r * PH_COUNT + p];
    report_num(rep, NULL, busy);
  }
  report_end(rep, ']');
  report_begin(rep, "rank_wait_seconds", '[');
  for (int r = 0; r < size; r++) report_num(rep, NULL, all[r * PH_COUNT + PH_WAIT]);
  report_end(rep, ']');
  report_begin(rep, "memory", '{');
  double peak = 0;
  for (int r = 0; r < size; r++) peak = rss[r] > peak ? rss[r] : peak;
  if (predicted > 0) report_num(rep, "predicted_peak_bytes", predicted);
  report_num(rep, "peak_rss_bytes", peak);
  report_begin(rep, "rank_peak_rss_bytes", '[');
  for (int r = 0; r < size; r++) report_num(rep, NULL, rss[r]);
  report_end(rep, ']');
  report_end(rep, '}');
}
