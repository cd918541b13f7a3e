/* Where the time of a run goes, per rank: the phases of the sequential pass
 * (docs/scaling.md). A rank's busy time is the sum of its compute phases;
 * "wait" is time spent at a synchronisation point waiting for slower ranks
 * (a timed barrier before each reduction and each collective write), so
 * per-rank idle time and load imbalance can be read from the report. */
#ifndef APTQ_PHASES_H
#define APTQ_PHASES_H

#include <mpi.h>

typedef enum { PH_FORWARD, PH_HESSIAN, PH_REDUCE, PH_FACTOR, PH_SOLVE, PH_WRITE, PH_WAIT, PH_COUNT } Phase;
extern const char *const phase_names[PH_COUNT];

void phases_reset(void);
/* Add MPI_Wtime() − since to phase p; returns the new time, so that
 * consecutive phases chain: t = phase_add(PH_FORWARD, t). */
double phase_add(Phase p, double since);
double phase_seconds(Phase p);
/* Move seconds already counted in one phase to another (a reduction done
 * inside the factorization call is reported as reduce). */
void phase_shift(Phase from, Phase to, double s);
/* Wait for every rank, the time counted as PH_WAIT. Collective. */
void phase_sync(MPI_Comm comm);
/* Collective: every rank's phase seconds, all[rank·PH_COUNT + p], on every rank. */
void phases_gather(MPI_Comm comm, double *all);

/* The Hessian accumulation kernel on its own (hessian_add): seconds and
 * floating-point operations, for the rate against SGEMM in `aptq bench`. */
void phases_hessian_kernel(double seconds, double flops);
void phases_hessian_kernel_get(double *seconds, double *flops);

#include "report.h"
/* Report members from gathered figures (all: phases_gather; rss: peak RSS
 * per rank, bytes; predicted: the predicted peak per rank, 0 if none):
 * "phases" {name: max over ranks}, "rank_busy_seconds", "rank_wait_seconds",
 * "memory" {predicted_peak_bytes, peak_rss_bytes (max), rank_peak_rss_bytes}. */
void phases_report(Report *rep, const double *all, const double *rss, int size, double predicted);
#endif
