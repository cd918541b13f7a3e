#include "layer_error.h"

#include <math.h>

#include "quant.h"

void layer_error_pack(const LayerError *e, double *s) {
  s[0] = e->err2;
  s[1] = e->norm2;
  s[2] = e->loss;
  s[3] = e->damp_used;
  s[4] = e->retries;
  s[5] = e->bits;
  s[6] = e->sensitivity;
}

void layer_error_unpack(const double *s, LayerError *e) {
  e->err2 = s[0];
  e->norm2 = s[1];
  e->loss = s[2];
  e->damp_used = s[3];
  e->retries = (int)s[4];
  e->bits = (int)s[5];
  e->sensitivity = s[6];
}

void layer_error_add(LayerError *e, const float *w, const float *q, size_t n) { quant_error_norm(w, q, n, &e->err2, &e->norm2); }

double layer_error_relative(double err2, double norm2) { return norm2 > 0 ? sqrt(err2 / norm2) : 0.0; }

double matrix_trace(const double *H, int n) {
  double t = 0;
  for (int i = 0; i < n; i++) t += H[(size_t)i * n + i];
  return t;
}
