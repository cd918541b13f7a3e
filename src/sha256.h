/* SHA-256 (FIPS 180-4) for the run metadata: model and calibration hashes. */
#ifndef APTQ_SHA256_H
#define APTQ_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t state[8];
  uint64_t bytes;
  uint8_t block[64];
  size_t fill;
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t n);
void sha256_final(Sha256 *s, uint8_t digest[32]);
/* hex[65]: lowercase hex digest of data */
void sha256_hex(const void *data, size_t n, char hex[65]);
void sha256_digest_to_hex(const uint8_t digest[32], char hex[65]);
/* For messages that compare two hex digests: how many leading characters
 * of each to show so that the first difference is in them (a multiple of
 * 12 past it, at most the whole string): "%.*s..." then tells them apart. */
int sha256_hex_shown(const char *a, const char *b);

#endif
