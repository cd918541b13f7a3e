#include "shrink.h"

#include <stddef.h>

#include "layer_error.h"

static double mean_diag(const double *H, int n) { return matrix_trace(H, n) / n; }

void shrink_toward(double *H, const double *X, int n, double lambda) {
  if (lambda == 0) return;
  double mh = mean_diag(H, n), mx = mean_diag(X, n);
  double m = (1 - lambda) * mh + lambda * mx;
  double a = mh > 0 ? (1 - lambda) * (m / mh) : 0, b = mx > 0 ? lambda * (m / mx) : 0;
  for (size_t i = 0; i < (size_t)n * n; i++) H[i] = a * H[i] + b * X[i];
}

void shrink_to_identity(double *H, int n, double lambda) {
  if (lambda == 0) return;
  double m = mean_diag(H, n);
  for (size_t i = 0; i < (size_t)n * n; i++) H[i] *= 1 - lambda;
  for (int i = 0; i < n; i++) H[(size_t)i * n + i] += lambda * m;
}
