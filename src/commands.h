/* The subcommands; each is collective over comm and returns 0 or an error
 * (already reported when aptq_error_reported()). */
#ifndef APTQ_COMMANDS_H
#define APTQ_COMMANDS_H

#include <mpi.h>

#include "options.h"

int cmd_eval(const Options *o, MPI_Comm comm);
int cmd_recon(const Options *o, MPI_Comm comm);
int cmd_quantize(const Options *o, MPI_Comm comm);
int cmd_synth(const Options *o, MPI_Comm comm);
int cmd_generate(const Options *o, MPI_Comm comm);
int cmd_layer(const Options *o, MPI_Comm comm);
int cmd_bench(const Options *o, MPI_Comm comm);
int cmd_export(const Options *o, MPI_Comm comm);

#endif
