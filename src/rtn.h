/* Round-to-nearest: every linear layer split into row slabs over the ranks,
 * each rank converting, quantizing and packing its slab, all ranks writing
 * their slabs collectively into one file. No rank holds a whole layer. */
#ifndef APTQ_RTN_H
#define APTQ_RTN_H

#include <mpi.h>

#include "layer_error.h"
#include "model.h"
#include "plan.h"
#include "qfile.h"

/* Collective: every layer at p->gptq's width and grid into qw; err[l·LIN_COUNT + k]
 * gets each layer's squared error and norm. */
int rtn_pass(QFileWriter *qw, const Plan *p, const Model *m, LayerError *err, double t_start, MPI_Comm comm);
/* Collective: the squared RTN error of every layer at each knapsack width
 * (rows sharded, summed over the ranks): err[i·KNAP_CHOICES + c]. */
int rtn_errors(const Plan *p, const Model *m, double *err, MPI_Comm comm);

#endif
