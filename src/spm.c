#include "spm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

/* ---- protobuf wire format: varints, and fields (tag = number << 3 | wire type) ---- */

typedef struct {
  const uint8_t *p, *end;
  int bad;
} Pb;

static uint64_t varint(Pb *b) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (b->p >= b->end) break;
    uint8_t c = *b->p++;
    v |= (uint64_t)(c & 0x7F) << shift;
    if (!(c & 0x80)) return v;
  }
  b->bad = 1;
  return 0;
}

/* Skip a field's value of this wire type (0 varint, 1 fixed64, 2 bytes, 5 fixed32). */
static void skip(Pb *b, int wire) {
  uint64_t n = wire == 0 ? (varint(b), 0) : wire == 1 ? 8 : wire == 5 ? 4 : wire == 2 ? varint(b) : (b->bad = 1, 0);
  if (n > (uint64_t)(b->end - b->p)) b->bad = 1;
  else b->p += n;
}

/* One SentencePiece message: piece = 1 (string), score = 2 (float), type = 3 (enum, default NORMAL). */
static void piece(Pb msg, SpmVocab *v, int i) {
  v->piece[i] = NULL;
  v->len[i] = 0;
  v->score[i] = 0.0f;
  v->type[i] = 1;
  while (!msg.bad && msg.p < msg.end) {
    uint64_t tag = varint(&msg);
    int field = (int)(tag >> 3), wire = (int)(tag & 7);
    if (field == 1 && wire == 2) {
      uint64_t n = varint(&msg);
      if (n > (uint64_t)(msg.end - msg.p)) msg.bad = 1;
      else {
        v->piece[i] = (char *)msg.p;
        v->len[i] = (uint32_t)n;
        msg.p += n;
      }
    } else if (field == 2 && wire == 5 && msg.end - msg.p >= 4) {
      memcpy(&v->score[i], msg.p, 4);
      msg.p += 4;
    } else if (field == 3 && wire == 0) {
      v->type[i] = (int32_t)varint(&msg);
    } else skip(&msg, wire);
  }
  if (msg.bad || !v->piece[i]) v->piece[i] = NULL;
}

/* Walk the ModelProto's pieces (field 1); with v->piece set, fill them. */
static int walk(const uint8_t *data, size_t size, SpmVocab *v) {
  Pb b = {data, data + size, 0};
  int n = 0;
  while (!b.bad && b.p < b.end) {
    uint64_t tag = varint(&b);
    int field = (int)(tag >> 3), wire = (int)(tag & 7);
    if (field == 1 && wire == 2) {
      uint64_t len = varint(&b);
      if (len > (uint64_t)(b.end - b.p)) return -1;
      if (v->piece) {
        piece((Pb){b.p, b.p + len, 0}, v, n);
        if (!v->piece[n]) return -1;
      }
      b.p += len;
      n++;
    } else skip(&b, wire);
  }
  return b.bad ? -1 : n;
}

int spm_load(const char *path, SpmVocab *v) {
  memset(v, 0, sizeof *v);
  FILE *f = fopen(path, "rb");
  if (!f) return aptq_error("tokenizer '%s' cannot be read: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  v->file = size > 0 ? aptq_malloc((size_t)size, "tokenizer file") : NULL;
  int ok = v->file && fread(v->file, 1, (size_t)size, f) == (size_t)size;
  fclose(f);
  if (!ok) {
    spm_free(v);
    return aptq_error("tokenizer '%s' cannot be read (empty or I/O error)", path);
  }
  int n = walk(v->file, (size_t)size, v);
  if (n > 0) {
    v->n = n;
    v->piece = aptq_calloc((size_t)n, sizeof *v->piece, "tokenizer pieces");
    v->len = aptq_calloc((size_t)n, sizeof *v->len, "tokenizer pieces");
    v->score = aptq_calloc((size_t)n, sizeof *v->score, "tokenizer scores");
    v->type = aptq_calloc((size_t)n, sizeof *v->type, "tokenizer types");
    if (!v->piece || !v->len || !v->score || !v->type) {
      spm_free(v);
      return APTQ_ERR;
    }
    n = walk(v->file, (size_t)size, v);
  }
  if (n <= 0) {
    spm_free(v);
    return aptq_error("'%s' is not a SentencePiece model (tokenizer.model); give the checkpoint's tokenizer.model as tokenizer", path);
  }
  return 0;
}

void spm_free(SpmVocab *v) {
  aptq_free(v->piece);
  aptq_free(v->len);
  aptq_free(v->score);
  aptq_free(v->type);
  aptq_free(v->file);
  memset(v, 0, sizeof *v);
}

int spm_find(const SpmVocab *v, const char *s) {
  size_t n = strlen(s);
  for (int i = 0; i < v->n; i++)
    if (v->len[i] == n && !memcmp(v->piece[i], s, n)) return i;
  return -1;
}
