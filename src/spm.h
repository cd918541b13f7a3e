/* The vocabulary of a SentencePiece model file (tokenizer.model: the
 * ModelProto protobuf of sentencepiece_model.proto): for every piece its
 * bytes, score and type (NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4,
 * UNUSED 5, BYTE 6; the numbers gguf's SentencePieceTokenTypes uses too).
 * Local. */
#ifndef APTQ_SPM_H
#define APTQ_SPM_H

#include <stdint.h>

typedef struct {
  int n;
  char **piece; /* [n], not NUL-terminated: len[i] bytes */
  uint32_t *len;
  float *score;
  int32_t *type;
  uint8_t *file; /* the file's bytes (pieces point into it) */
} SpmVocab;

/* 0, or APTQ_ERR (unreadable, not a SentencePiece model: recorded). */
int spm_load(const char *path, SpmVocab *v);
void spm_free(SpmVocab *v);
/* id of the piece with these bytes, or -1 */
int spm_find(const SpmVocab *v, const char *piece);

#endif
