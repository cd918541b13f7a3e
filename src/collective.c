#include "collective.h"

static void allreduce_sum(void *buf, size_t n, size_t size, MPI_Datatype type, MPI_Comm comm) {
  for (size_t s = 0; s < n; s += ALLREDUCE_PIECE) {
    size_t m = n - s < ALLREDUCE_PIECE ? n - s : ALLREDUCE_PIECE;
    MPI_Allreduce(MPI_IN_PLACE, (char *)buf + s * size, (int)m, type, MPI_SUM, comm);
  }
}

void allreduce_sum_f64(double *buf, size_t n, MPI_Comm comm) { allreduce_sum(buf, n, sizeof(double), MPI_DOUBLE, comm); }

void allreduce_sum_f32(float *buf, size_t n, MPI_Comm comm) { allreduce_sum(buf, n, sizeof(float), MPI_FLOAT, comm); }

void bcast_f32(float *buf, size_t n, int root, MPI_Comm comm) {
  for (size_t s = 0; s < n; s += BCAST_PIECE) MPI_Bcast(buf + s, (int)(n - s < BCAST_PIECE ? n - s : BCAST_PIECE), MPI_FLOAT, root, comm);
}
