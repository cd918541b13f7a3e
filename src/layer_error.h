/* The result of quantizing one linear layer, kept per layer by the pass, the
 * report, the mixed-precision sweep and the checkpoint: below all of them. */
#ifndef APTQ_LAYER_ERROR_H
#define APTQ_LAYER_ERROR_H

#include <stddef.h>

typedef struct {
  double err2, norm2; /* Σ (w − q)², Σ w² over the layer */
  double loss;        /* GPTQ: Σ (w − q)²/U_jj²/2 */
  double damp_used;
  int retries;
  int bits;
  double sensitivity; /* mean Hessian diagonal: tr(H)/(rows·cols) */
} LayerError;

/* LayerError <-> the LAYER_NSTATS doubles a checkpoint keeps per layer */
enum { LAYER_NSTATS = 7 };
void layer_error_pack(const LayerError *e, double *s);
void layer_error_unpack(const double *s, LayerError *e);

/* Add Σ (w − q)² and Σ w² over n weights (this rank's rows) to e. */
void layer_error_add(LayerError *e, const float *w, const float *q, size_t n);
/* ||W − Q|| / ||W|| from the sums (0 for a zero layer). */
double layer_error_relative(double err2, double norm2);

/* tr(H) of an n × n row-major matrix. */
double matrix_trace(const double *H, int n);

#endif
