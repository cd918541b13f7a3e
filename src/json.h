/* A small strict JSON reader for config.json, model.safetensors.index.json
 * and safetensors headers. Untrusted input: bounded depth, every byte checked. */
#ifndef APTQ_JSON_H
#define APTQ_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct JsonValue {
  JsonType type;
  int boolean;
  double number;
  int is_integer;  /* number written without fraction or exponent */
  int64_t integer; /* exact value when is_integer */
  char *string;    /* JSON_STRING, NUL-terminated (embedded NUL rejected) */
  int count;       /* JSON_ARRAY / JSON_OBJECT members */
  char **keys;     /* JSON_OBJECT */
  struct JsonValue *items;
} JsonValue;

/* Parse text[0..len). On failure records "<what>: invalid JSON at byte N: ..." */
int json_parse(const char *text, size_t len, const char *what, JsonValue **out);
void json_free(JsonValue *v);
const JsonValue *json_get(const JsonValue *object, const char *key);

#endif
