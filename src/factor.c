#include "factor.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective.h"
#include "error.h"
#include "grid.h"
#include "heap.h"
#include "node.h"

/* LAPACK (column-major Fortran interface). H is symmetric, so a row-major
 * array is the same matrix; the computed column-major upper factor U(i,j),
 * i ≤ j, sits at a[i + j·d]. */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);

/* ScaLAPACK */
void pdpotrf_(const char *uplo, const int *n, double *a, const int *ia, const int *ja, const int *desca, int *info);
void pdpotri_(const char *uplo, const int *n, double *a, const int *ia, const int *ja, const int *desca, int *info);

static inline double view_at(const HessianView *h, int a, int b) {
  int i = h->perm ? h->perm[a] : a, j = h->perm ? h->perm[b] : b;
  if (h->dead && (h->dead[i] || h->dead[j])) return i == j ? 1.0 : 0.0;
  return h->H[(size_t)i * h->d + j];
}

static double mean_diag(const HessianView *h) {
  double s = 0.0;
  for (int a = 0; a < h->d; a++) {
    int i = h->perm ? h->perm[a] : a;
    s += !h->partial ? view_at(h, a, a) : h->dead && h->dead[i] ? 1.0 : h->diag[i];
  }
  return s / h->d;
}

/* A (d × d, row-major) = the view plus λI, index-reversed if asked. Row by
 * row through a column map, so each source row is read once, in cache. */
static int fill(const HessianView *h, double lambda, int reversed, double *A) {
  int d = h->d;
  int *colmap = aptq_malloc(sizeof(int) * (size_t)d, "column map");
  if (!colmap) return APTQ_ERR;
  for (int b = 0; b < d; b++) {
    int vb = reversed ? d - 1 - b : b;
    colmap[b] = h->perm ? h->perm[vb] : vb;
  }
  int any_dead = 0;
  for (int j = 0; h->dead && j < d; j++) any_dead |= h->dead[j];
#pragma omp parallel for schedule(static)
  for (int a = 0; a < d; a++) {
    int i = colmap[a];
    const double *src = h->H + (size_t)i * d;
    double *row = A + (size_t)a * d;
    for (int b = 0; b < d; b++) row[b] = src[colmap[b]];
    if (any_dead)
      for (int b = 0; b < d; b++)
        if (h->dead[i] || h->dead[colmap[b]]) row[b] = i == colmap[b] ? 1.0 : 0.0;
    row[a] += lambda;
  }
  aptq_free(colmap);
  return 0;
}

/* Two ways to the same factor U (UᵀU = A⁻¹, A = H + λI):
 *  - POTRI: potrf(A) = RᵀR, potri → A⁻¹, potrf(A⁻¹) → U (4d³/3 flops);
 *  - TRTRI (default): with J the index reversal, potrf(JAJ) = RᵀR, then
 *    U = J R⁻¹ J... read in the transposed orientation: A = (J Rᵀ J)(J R J),
 *    so A⁻¹ = (J R⁻¹ J)(J R⁻ᵀ J) and U = (J R⁻ᵀ J) is upper triangular with
 *    positive diagonal: the Cholesky factor (2d³/3 flops: one potrf, one trtri).
 * Reversing both indices of a d × d array is reversing it flat, and a
 * column-major lower triangle read row-major is an upper one, so the TRTRI
 * path needs no transposes. */
void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info);
void pdtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *ia, const int *ja, const int *desca, int *info);

/* 0 on success, >0: not positive definite (retry), <0: argument error.
 * work: LAPACK's result as it leaves it (lapack_result reads U from it). */
static int lapack_path(const HessianView *h, double lambda, FactorAlgorithm alg, double *work, FactorInfo *fi) {
  int d = h->d, info = 0, trtri = alg == FACTOR_TRTRI;
  if (!work) return -1;
  if (fill(h, lambda, trtri, work)) return -1;
  double t = MPI_Wtime();
  dpotrf_("U", &d, work, &d, &info);
  fi->potrf_seconds = MPI_Wtime() - t;
  if (trtri) {
    if (!info) dtrtri_("U", "N", &d, work, &d, &info);
  } else {
    if (!info) dpotri_("U", &d, work, &d, &info);
    if (!info) dpotrf_("U", &d, work, &d, &info);
  }
  fi->inverse_seconds = MPI_Wtime() - t - fi->potrf_seconds;
  return info;
}

/* U (row-major float32, upper triangle, 0 below) from the LAPACK path's
 * work, in one pass. TRTRI: work is the column-major upper R⁻¹ of the
 * index-reversed matrix, and reversed flat it is the row-major upper
 * J R⁻ᵀ J: U(i,j) = work[d² − 1 − (i·d + j)]. POTRI: work is the
 * column-major upper U: U(i,j) = work[i + j·d]. */
static void lapack_result(const double *work, int d, int trtri, float *U) {
  size_t n2 = (size_t)d * d;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < d; i++) {
    float *row = U + (size_t)i * d;
    memset(row, 0, sizeof(float) * (size_t)i);
    if (trtri) {
      const double *src = work + (n2 - 1 - (size_t)i * d);
      for (int j = i; j < d; j++) row[j] = (float)src[-j];
    } else {
      for (int j = i; j < d; j++) row[j] = (float)work[i + (size_t)j * d];
    }
  }
}

/* reduce_partial's maps and send buffer */
typedef struct {
  int *src;           /* factor order → column of H */
  int *mlocs, *nlocs; /* every rank's local rows and columns */
  int *counts;        /* a round's reduce-scatter counts */
  double *send;       /* a round's block columns of every rank's pieces */
} ReduceWork;

static void reduce_work_free(ReduceWork *w) {
  aptq_free(w->src);
  aptq_free(w->mlocs);
  aptq_free(w->nlocs);
  aptq_free(w->counts);
  aptq_free(w->send);
  memset(w, 0, sizeof *w);
}

static int reduce_work_alloc(ReduceWork *w, int d, int size, size_t send) {
  w->src = aptq_malloc(sizeof(int) * (size_t)d, "factor order");
  w->mlocs = aptq_malloc(sizeof(int) * (size_t)size, "local rows");
  w->nlocs = aptq_malloc(sizeof(int) * (size_t)size, "local columns");
  w->counts = aptq_malloc(sizeof(int) * (size_t)size, "reduce counts");
  w->send = aptq_malloc(sizeof(double) * (send + 1), "Hessian reduction round");
  return w->src && w->mlocs && w->nlocs && w->counts && w->send ? 0 : APTQ_ERR;
}

/* src[x]: the column of H at position x of the factor's order (permuted,
 * index-reversed if asked). */
static void factor_order(const HessianView *h, int reversed, int *src) {
  int d = h->d;
  for (int x = 0; x < d; x++) {
    int a = reversed ? d - 1 - x : x;
    src[x] = h->perm ? h->perm[a] : a;
  }
}

/* The reduced, scaled view of a partial Hessian in this rank's block-cyclic
 * pieces (index-reversed for TRTRI), without λ: Hloc (lld × nloc, column
 * major). Each round reduces one block column of every rank's local matrix
 * (d × nb·npcol doubles in flight), so no rank holds the whole reduced
 * matrix. The sums are of the same per-rank partials as an allreduce, so
 * the result is the one hessian_finish gives. Collective. */
static int reduce_partial(const HessianView *h, int reversed, const Grid *g, MPI_Comm comm, double *Hloc) {
  int d = h->d, size, nb = g->nb;
  MPI_Comm_size(comm, &size);
  ReduceWork w;
  int ok = reduce_work_alloc(&w, d, size, (size_t)d * nb * g->npcol) == 0;
  if (!aptq_all_ok(comm, ok)) {
    reduce_work_free(&w);
    return -1;
  }
  int *src = w.src, *mlocs = w.mlocs, *nlocs = w.nlocs, *counts = w.counts;
  double *send = w.send;
  factor_order(h, reversed, src);
  for (int r = 0; r < size; r++) {
    mlocs[r] = global_count(d, nb, g->rowof[r], g->nprow);
    nlocs[r] = global_count(d, nb, g->colof[r], g->npcol);
  }
  int nblocks = (d + nb - 1) / nb, rounds = (nblocks + g->npcol - 1) / g->npcol;
  for (int k = 0; k < rounds; k++) {
    size_t pos = 0;
    for (int r = 0; r < size; r++) {
      int ncols = nlocs[r] - k * nb < nb ? nlocs[r] - k * nb : nb;
      if (ncols < 0) ncols = 0;
      counts[r] = mlocs[r] * ncols;
      for (int c = 0; c < ncols; c++) {
        int sj = src[local_to_global(k * nb + c, nb, g->colof[r], g->npcol)];
        for (int li = 0; li < mlocs[r]; li++) {
          int si = src[local_to_global(li, nb, g->rowof[r], g->nprow)];
          send[pos++] = h->H[(size_t)sj * d + si]; /* symmetric: row sj is read along */
        }
      }
    }
    int mine = g->nloc - k * nb < nb ? g->nloc - k * nb : nb;
    double *recv = Hloc + (size_t)(mine > 0 ? k * nb : 0) * g->lld;
    MPI_Reduce_scatter(send, recv, counts, MPI_DOUBLE, MPI_SUM, comm);
  }
  /* scale after the sum, as hessian_finish; dead columns become the identity */
  for (int lj = 0; lj < g->nloc; lj++) {
    int sj = src[local_to_global(lj, nb, g->mycol, g->npcol)];
    for (int li = 0; li < g->mloc; li++) {
      int si = src[local_to_global(li, nb, g->myrow, g->nprow)];
      double *v = &Hloc[(size_t)lj * g->lld + li];
      *v *= h->scale;
      if (h->dead && (h->dead[si] || h->dead[sj])) *v = si == sj ? 1.0 : 0.0;
    }
  }
  reduce_work_free(&w);
  return 0;
}

/* a piece of the streamed sum on its way to its owner */
typedef struct {
  double value;
  int64_t index;
} Placed;

/* redistribute_sum's maps and all-to-all: counts, offsets and pieces. */
typedef struct {
  int *pos, *src;                              /* natural index → position in the factor's order, and back */
  int *lld;                                    /* each process row's local leading dimension */
  int *scount, *rcount, *sdisp, *rdisp, *fill; /* [size] */
  Placed *send, *recv;
} Redistribution;

static void redist_free(Redistribution *r) {
  aptq_free(r->pos);
  aptq_free(r->src);
  aptq_free(r->lld);
  aptq_free(r->scount);
  aptq_free(r->rcount);
  aptq_free(r->sdisp);
  aptq_free(r->rdisp);
  aptq_free(r->fill);
  aptq_free(r->send);
  aptq_free(r->recv);
  memset(r, 0, sizeof *r);
}

/* All but the pieces (send, recv: NULL until their counts are known). */
static int redist_alloc(Redistribution *r, int d, int nprow, int size) {
  memset(r, 0, sizeof *r);
  r->pos = aptq_malloc(sizeof(int) * (size_t)d, "factor positions");
  r->src = aptq_malloc(sizeof(int) * (size_t)d, "factor order");
  r->lld = aptq_malloc(sizeof(int) * (size_t)nprow, "local leading dimensions");
  r->scount = aptq_calloc((size_t)size, sizeof(int), "all-to-all counts");
  r->rcount = aptq_malloc(sizeof(int) * (size_t)size, "all-to-all counts");
  r->sdisp = aptq_malloc(sizeof(int) * (size_t)size, "all-to-all offsets");
  r->rdisp = aptq_malloc(sizeof(int) * (size_t)size, "all-to-all offsets");
  r->fill = aptq_malloc(sizeof(int) * (size_t)size, "all-to-all fill");
  return r->pos && r->src && r->lld && r->scount && r->rcount && r->sdisp && r->rdisp && r->fill ? 0 : APTQ_ERR;
}

/* Where this rank's piece (li, lj) of the streamed sum goes: with its
 * layout position (ls, ms) and natural position (i, j), its position
 * x ≤ y in the factor's order and the rank that owns that; -1 below the
 * stored upper triangle (and so for the rest of the local column). */
static inline int piece_dest(const HessianView *h, const Grid *g, const int *pos, int li, int lj, int *x, int *y) {
  int d = h->d, nb = g->nb;
  int ms = local_to_global(lj, nb, g->mycol, g->npcol), ls = local_to_global(li, nb, g->myrow, g->nprow);
  if (ls > ms) return -1;
  int i = h->grid_sum_reversed ? d - 1 - ms : ls, j = h->grid_sum_reversed ? d - 1 - ls : ms;
  *x = pos[i] < pos[j] ? pos[i] : pos[j];
  *y = pos[i] < pos[j] ? pos[j] : pos[i];
  return g->rank_at[global_owner(*x, nb, g->nprow) * g->npcol + global_owner(*y, nb, g->npcol)];
}

/* scount[dest] = how many of this rank's pieces go to rank dest. */
static void count_pieces(const HessianView *h, const Grid *g, Redistribution *r) {
  for (int lj = 0; lj < g->nloc; lj++)
    for (int li = 0; li < g->mloc; li++) {
      int x, y, dest = piece_dest(h, g, r->pos, li, lj, &x, &y);
      if (dest < 0) break;
      r->scount[dest]++;
    }
}

/* Every piece as (value, index in the owner's local array), grouped by owner. */
static void pack_pieces(const HessianView *h, const Grid *g, int size, Redistribution *r) {
  int nb = g->nb;
  memcpy(r->fill, r->sdisp, sizeof(int) * (size_t)size);
  for (int lj = 0; lj < g->nloc; lj++)
    for (int li = 0; li < g->mloc; li++) {
      int x, y, dest = piece_dest(h, g, r->pos, li, lj, &x, &y);
      if (dest < 0) break;
      int lx = global_to_local(x, nb, g->nprow), ly = global_to_local(y, nb, g->npcol);
      r->send[r->fill[dest]++] = (Placed){h->grid_sum[(size_t)lj * g->lld + li], (int64_t)ly * r->lld[global_owner(x, nb, g->nprow)] + lx};
    }
}

/* Collective: the pieces to their owners, placed and scaled into Hloc. */
static void exchange_pieces(const HessianView *h, const Grid *g, Redistribution *r, long long nr, MPI_Comm comm, double *Hloc) {
  MPI_Datatype placed;
  MPI_Type_contiguous((int)sizeof(Placed), MPI_BYTE, &placed);
  MPI_Type_commit(&placed);
  MPI_Alltoallv(r->send, r->scount, r->sdisp, placed, r->recv, r->rcount, r->rdisp, placed, comm);
  MPI_Type_free(&placed);
  memset(Hloc, 0, sizeof(double) * (size_t)g->lld * g->nloc);
  for (long long k = 0; k < nr; k++) Hloc[r->recv[k].index] = r->recv[k].value * h->scale;
}

/* Dead columns of the upper triangle in the factor's order become the identity. */
static void dead_identity(const HessianView *h, const Grid *g, const int *src, double *Hloc) {
  int nb = g->nb;
  for (int lj = 0; h->dead && lj < g->nloc; lj++) {
    int y = local_to_global(lj, nb, g->mycol, g->npcol);
    for (int li = 0; li < g->mloc; li++) {
      int x = local_to_global(li, nb, g->myrow, g->nprow);
      if (x <= y && (h->dead[src[x]] || h->dead[src[y]])) Hloc[(size_t)lj * g->lld + li] = x == y ? 1.0 : 0.0;
    }
  }
}

/* A streamed sum (HessianView.grid_sum) in the factor's order: each entry,
 * at natural position (i, j), i ≤ j, goes to the owner of (min, max) of its
 * positions in the permuted (and, for TRTRI, index-reversed) order, as a
 * (value, local index) pair in one MPI_Alltoallv; then scaled, dead columns
 * the identity. Only the upper triangle is set (potrf and trtri read no
 * other). When the pieces are already in that order (no act-order) they
 * are only copied. Collective. */
static int redistribute_sum(const HessianView *h, int reversed, const Grid *g, MPI_Comm comm, double *Hloc) {
  int d = h->d, nb = g->nb, size;
  MPI_Comm_size(comm, &size);
  Redistribution r;
  int ok = redist_alloc(&r, d, g->nprow, size) == 0;
  if (!aptq_all_ok(comm, ok)) {
    redist_free(&r);
    return -1;
  }
  factor_order(h, reversed, r.src);
  for (int x = 0; x < d; x++) r.pos[r.src[x]] = x;
  for (int p = 0; p < g->nprow; p++) {
    int m = global_count(d, nb, p, g->nprow);
    r.lld[p] = m > 1 ? m : 1;
  }
  int in_place = 1; /* the pieces are in the factor's order already */
  for (int x = 0; x < d; x++) in_place &= r.src[x] == (h->grid_sum_reversed ? d - 1 - x : x);
  if (in_place) {
    for (int lj = 0; lj < g->nloc; lj++)
      for (int li = 0; li < g->mloc; li++) Hloc[(size_t)lj * g->lld + li] = h->grid_sum[(size_t)lj * g->lld + li] * h->scale;
  } else {
    count_pieces(h, g, &r);
  }
  MPI_Alltoall(r.scount, 1, MPI_INT, r.rcount, 1, MPI_INT, comm);
  long long ns = 0, nr = 0;
  for (int p = 0; p < size; p++) {
    r.sdisp[p] = (int)ns;
    r.rdisp[p] = (int)nr;
    ns += r.scount[p];
    nr += r.rcount[p];
  }
  r.send = aptq_malloc(sizeof(Placed) * (size_t)(ns + 1), "Hessian pieces to send");
  r.recv = aptq_malloc(sizeof(Placed) * (size_t)(nr + 1), "Hessian pieces received");
  ok = r.send && r.recv && ns < INT32_MAX && nr < INT32_MAX;
  ok = aptq_all_ok(comm, ok);
  if (ok && !in_place) {
    pack_pieces(h, g, size, &r);
    exchange_pieces(h, g, &r, nr, comm, Hloc);
  }
  if (ok) dead_identity(h, g, r.src, Hloc);
  redist_free(&r);
  return ok ? 0 : -1;
}

/* The factor kept on the grid (factor_inverse_cholesky_dist): this rank's
 * block-cyclic pieces of R⁻¹ (TRTRI) or U (POTRI), in float32. */
struct DistFactor {
  Grid grid;
  float *A;
  int d, trtri;
  MPI_Comm comm;
};

/* Rows [r0, r0 + n) of U (n × d, row-major) from this rank's pieces A of
 * the factor, every other entry 0. POTRI: U(i,j) = A(i,j); TRTRI: A = R⁻¹
 * and U(r,c) = R⁻¹(d-1-c, d-1-r). */
static void local_rows(const Grid *g, const float *A, int d, int trtri, int r0, int n, float *dst) {
  memset(dst, 0, sizeof(float) * (size_t)n * d);
  for (int lj = 0; lj < g->nloc; lj++) {
    int j = local_to_global(lj, g->nb, g->mycol, g->npcol);
    const float *col = A + (size_t)lj * g->lld;
    if (trtri) {
      int r = d - 1 - j;
      if (r < r0 || r >= r0 + n) continue;
      float *row = dst + (size_t)(r - r0) * d;
      for (int li = 0; li < g->mloc; li++) {
        int i = local_to_global(li, g->nb, g->myrow, g->nprow);
        if (i <= j) row[d - 1 - i] = col[li];
      }
    } else {
      for (int li = 0; li < g->mloc; li++) {
        int i = local_to_global(li, g->nb, g->myrow, g->nprow);
        if (i <= j && i >= r0 && i < r0 + n) dst[(size_t)(i - r0) * d + j] = col[li];
      }
    }
  }
}

/* float64 → float32 in place (element k moves from byte 8k to 4k, so an
 * ascending pass never overwrites what it has yet to read), then shrunk.
 * The one raw realloc: it only gives memory back, and if it cannot, the
 * buffer stays as it is (a fresh float32 copy would need half as much
 * again at the peak). */
static float *to_float_in_place(double *A, size_t n) {
  char *b = (char *)A;
  for (size_t k = 0; k < n; k++) {
    double v;
    memcpy(&v, b + 8 * k, sizeof v);
    float f = (float)v;
    memcpy(b + 4 * k, &f, sizeof f);
  }
  size_t bytes = sizeof(float) * (n ? n : 1);
  heap_audit_remove(A); /* the heap audit follows the buffer to its new size */
  float *F = realloc(A, bytes);
  if (!F) {
    F = (float *)(void *)A;
    bytes = sizeof(double) * (n + 1);
  }
  heap_audit_add(F, bytes, "factor, float32");
  return F;
}

/* A partial view is reduced into A on every attempt (a retry after a
 * failed factorization repeats the reduction rather than keeping a copy).
 * keep: hand this rank's pieces of the factor over instead of replicating
 * U. */
static int scalapack_path(const HessianView *h, double lambda, FactorAlgorithm alg, const Grid *g, MPI_Comm comm, float *U, float **keep,
                          FactorInfo *fi) {
  int d = h->d, nb = g->nb;
  int nprow = g->nprow, npcol = g->npcol, myrow = g->myrow, mycol = g->mycol;
  fi->nprow = nprow;
  fi->npcol = npcol;
  int info = 0, mloc = g->mloc, nloc = g->nloc, lld = g->lld, desc[9];
  memcpy(desc, g->desc, sizeof desc);
  double *A = aptq_malloc(sizeof(double) * ((size_t)lld * nloc + 1), "ScaLAPACK local Hessian block");
  int ok = A != NULL;
  ok = aptq_all_ok(comm, ok); /* nobody enters pdpotrf alone */
  int rc = ok ? 0 : -1;
  int trtri = alg == FACTOR_TRTRI;
  if (!rc && h->partial) {
    double t = MPI_Wtime();
    rc = h->grid_sum ? redistribute_sum(h, trtri, g, comm, A) : reduce_partial(h, trtri, g, comm, A);
    fi->reduce_seconds += MPI_Wtime() - t;
    for (int lj = 0; !rc && lj < nloc; lj++) {
      int j = local_to_global(lj, nb, mycol, npcol);
      for (int li = 0; li < mloc; li++)
        if (local_to_global(li, nb, myrow, nprow) == j) A[(size_t)lj * lld + li] += lambda;
    }
  } else if (!rc) {
    /* each rank copies its block-cyclic pieces of the replicated H (index-reversed for TRTRI) */
    /* row-wise over H: one row of the permuted view stays in cache */
    for (int li = 0; li < mloc; li++) {
      int i = local_to_global(li, nb, myrow, nprow);
      for (int lj = 0; lj < nloc; lj++) {
        int j = local_to_global(lj, nb, mycol, npcol);
        double v = trtri ? view_at(h, d - 1 - i, d - 1 - j) : view_at(h, i, j);
        A[(size_t)lj * lld + li] = v + (i == j ? lambda : 0.0);
      }
    }
  }
  if (!rc) {
    int one = 1;
    double t = MPI_Wtime();
    pdpotrf_("U", &d, A, &one, &one, desc, &info);
    fi->potrf_seconds = MPI_Wtime() - t;
    if (trtri) {
      if (!info) pdtrtri_("U", "N", &d, A, &one, &one, desc, &info);
    } else {
      if (!info) pdpotri_("U", &d, A, &one, &one, desc, &info);
      if (!info) pdpotrf_("U", &d, A, &one, &one, desc, &info);
    }
    fi->inverse_seconds = MPI_Wtime() - t - fi->potrf_seconds;
    rc = info;
  }
  int flags[2] = {rc<0, rc> 0 ? rc : 0}; /* any argument error, worst pivot failure */
  MPI_Allreduce(MPI_IN_PLACE, flags, 2, MPI_INT, MPI_MAX, comm);
  rc = flags[0] ? -1 : flags[1];
  if (!rc) {
    float *F = to_float_in_place(A, (size_t)lld * nloc);
    A = NULL;
    if (keep) {
      *keep = F;
    } else {
      /* replicate U: every rank contributes its pieces; every entry comes
       * from exactly one rank, so the sum is exact */
      local_rows(g, F, d, trtri, 0, d, U);
      allreduce_sum_f32(U, (size_t)d * d, comm);
      aptq_free(F);
    }
  }
  aptq_free(A);
  return rc;
}

/* The float64 work space of the LAPACK path, kept between factorizations:
 * a fresh d² buffer per layer costs more in page faults than potrf itself
 * at d = 4096. Grows to the largest d seen; released at exit. */
static double *workspace;
static size_t workspace_size;

static void release_workspace(void) { aptq_free(workspace); }

static double *factor_workspace(size_t n) {
  if (n <= workspace_size) return workspace;
  if (!workspace) atexit(release_workspace);
  aptq_free(workspace);
  workspace = aptq_malloc(sizeof(double) * n, "factor work space");
  workspace_size = workspace ? n : 0;
  return workspace;
}

static int factor_run(const HessianView *h, double damp, FactorPath path, FactorAlgorithm alg, int nb, MPI_Comm comm, float *U,
                      DistFactor **keep, FactorInfo *info);

/* The node path on a team that has more threads than one rank: the leader
 * runs the LAPACK path (its retries included) on the node's cores while the
 * others sleep; then the outcome and U go to the node's ranks. */
static int node_path(const HessianView *h, double damp, FactorAlgorithm alg, int nb, const NodeTeam *t, float *U, FactorInfo *info) {
  struct {
    FactorInfo info;
    int rc;
  } out;
  memset(&out, 0, sizeof out);
  if (t->leader) {
    NodeLease lease;
    node_team_lease(t, &lease);
    out.rc = factor_run(h, damp, FACTOR_LAPACK, alg, nb, MPI_COMM_SELF, U, NULL, &out.info);
    node_team_return(&lease);
  }
  double t0 = MPI_Wtime();
  node_team_sync(t);
  MPI_Bcast(&out, (int)sizeof out, MPI_BYTE, 0, t->comm);
  if (!out.rc) bcast_f32(U, (size_t)h->d * h->d, 0, t->comm);
  *info = out.info;
  info->node_threads = t->threads;
  info->seconds += MPI_Wtime() - t0; /* the leader's factor time, then the wait and the broadcast */
  return out.rc;
}

/* FACTOR_NODE: the node path where some node has ranks to lend, else the
 * LAPACK path on every rank. Collective. */
static int node_or_lapack(const HessianView *h, double damp, FactorAlgorithm alg, int nb, MPI_Comm comm, float *U, FactorInfo *info) {
  NodeTeam t;
  if (node_team_open(comm, &t)) return APTQ_ERR;
  int rc = t.threads > t.own ? node_path(h, damp, alg, nb, &t, U, info) : factor_run(h, damp, FACTOR_LAPACK, alg, nb, comm, U, NULL, info);
  node_team_close(&t);
  return rc;
}

/* keep NULL: U replicated; otherwise the factor stays on the grid (*keep). */
static int factor_run(const HessianView *h, double damp, FactorPath path, FactorAlgorithm alg, int nb, MPI_Comm comm, float *U,
                      DistFactor **keep, FactorInfo *info) {
  int size, d = h->d;
  MPI_Comm_size(comm, &size);
  if (path == FACTOR_NODE && !keep && !h->partial) return node_or_lapack(h, damp, alg, nb, comm, U, info);
  double t0 = MPI_Wtime(), mean = mean_diag(h);
  memset(info, 0, sizeof *info);
  info->damp_requested = damp;
  int scalapack = keep || factor_uses_scalapack(path, d, size);
  float *kept = NULL;
  info->used_scalapack = scalapack;
  info->nprow = info->npcol = 1;
  if (h->partial && !scalapack) return aptq_error("internal: a partial Hessian (d = %d) needs the ScaLAPACK path", d);
  double *work = scalapack ? NULL : factor_workspace((size_t)d * d);
  Grid grid;
  if (scalapack) {
    int ok = grid_open(&grid, d, nb, comm) == 0;
    ok = aptq_all_ok(comm, ok);
    if (!ok) {
      grid_close(&grid);
      return aptq_error("ScaLAPACK failed to start (d = %d, nb = %d): out of memory or bad arguments", d, nb);
    }
  }
  int status = APTQ_ERR, failed_start = 0;
  for (int attempt = 0; attempt <= 6; attempt++) {
    double lambda = damp * mean;
    int rc =
        scalapack ? scalapack_path(h, lambda, alg, &grid, comm, U, keep ? &kept : NULL, info) : lapack_path(h, lambda, alg, work, info);
    if (rc == 0 && work) lapack_result(work, d, alg == FACTOR_TRTRI, U);
    if (rc < 0) {
      status =
          aptq_error("%s failed to start (d = %d, nb = %d): out of memory or bad arguments", scalapack ? "ScaLAPACK" : "LAPACK", d, nb);
      failed_start = 1;
      break;
    }
    if (rc == 0) {
      info->damp_used = damp;
      info->lambda = lambda;
      info->retries = attempt;
      info->seconds = MPI_Wtime() - t0;
      status = 0;
      break;
    }
    info->retries = attempt + 1;
    damp = damp > 0 ? damp * 10.0 : 1e-6;
  }
  if (!status && keep) {
    *keep = aptq_malloc(sizeof **keep, "the factor on the grid");
    if (!*keep) {
      aptq_free(kept);
      grid_close(&grid);
      return APTQ_ERR;
    }
    **keep = (DistFactor){grid, kept, d, alg == FACTOR_TRTRI, comm};
  } else if (scalapack) {
    grid_close(&grid);
  }
  if (status && !failed_start)
    status =
        aptq_error("the Hessian (d = %d) is not positive definite even with damp = %g; the calibration data may be degenerate", d, damp);
  return status;
}

int factor_inverse_cholesky(const HessianView *h, double damp, FactorPath path, FactorAlgorithm alg, int nb, MPI_Comm comm, float *U,
                            FactorInfo *info) {
  return factor_run(h, damp, path, alg, nb, comm, U, NULL, info);
}

int factor_inverse_cholesky_dist(const HessianView *h, double damp, FactorAlgorithm alg, int nb, MPI_Comm comm, DistFactor **f,
                                 FactorInfo *info) {
  *f = NULL;
  return factor_run(h, damp, FACTOR_SCALAPACK, alg, nb, comm, NULL, f, info);
}

void dist_factor_rows(const DistFactor *f, int r0, int n, float *dst) {
  int d = f->d, w = d - r0;
  local_rows(&f->grid, f->A, d, f->trtri, r0, n, dst);
  /* U is upper triangular: rows r0.. are zero left of column r0, so only
   * columns [r0, d) travel (half the traffic over a sweep). Packed in
   * place in ascending rows, unpacked in descending rows: no row is
   * overwritten before it is moved. */
  for (int k = 0; k < n; k++) memmove(dst + (size_t)k * w, dst + (size_t)k * d + r0, sizeof(float) * (size_t)w);
  MPI_Allreduce(MPI_IN_PLACE, dst, n * w, MPI_FLOAT, MPI_SUM, f->comm);
  for (int k = n - 1; k >= 0; k--) {
    memmove(dst + (size_t)k * d + r0, dst + (size_t)k * w, sizeof(float) * (size_t)w);
    memset(dst + (size_t)k * d, 0, sizeof(float) * (size_t)r0);
  }
}

MPI_Comm dist_factor_comm(const DistFactor *f) { return f->comm; }

void dist_factor_free(DistFactor *f) {
  if (!f) return;
  aptq_free(f->A);
  grid_close(&f->grid);
  aptq_free(f);
}

int factor_uses_scalapack(FactorPath path, int d, int size) {
  /* auto: ScaLAPACK once the grid has a chance to beat one LAPACK per rank
   * (measured on 2 ranks at d = 4096: LAPACK 1.4 s, ScaLAPACK 1×2 2.0 s),
   * or when a d² float64 copy per rank grows large */
  return path == FACTOR_SCALAPACK || (path == FACTOR_AUTO && size > 1 && (d >= 8192 || (size >= 4 && d >= 2048)));
}
