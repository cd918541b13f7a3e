#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

enum { JSON_MAX_DEPTH = 64 };

typedef struct {
  const char *text;
  size_t len, pos;
  const char *what;
} Parser;

static int fail(Parser *p, const char *why) { return aptq_error("%s: invalid JSON at byte %zu: %s", p->what, p->pos, why); }

static void skip_ws(Parser *p) {
  while (p->pos < p->len) {
    char c = p->text[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static int parse_value(Parser *p, JsonValue *v, int depth);

static int hex4(Parser *p, unsigned *out) {
  if (p->pos + 4 > p->len) return fail(p, "truncated \\u escape");
  unsigned u = 0;
  for (int i = 0; i < 4; i++) {
    char c = p->text[p->pos++];
    u <<= 4;
    if (c >= '0' && c <= '9') u |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') u |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') u |= (unsigned)(c - 'A' + 10);
    else return fail(p, "bad hex digit in \\u escape");
  }
  *out = u;
  return 0;
}

static size_t put_utf8(char *dst, unsigned cp) {
  if (cp < 0x80) {
    dst[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    dst[0] = (char)(0xC0 | (cp >> 6));
    dst[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    dst[0] = (char)(0xE0 | (cp >> 12));
    dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  dst[0] = (char)(0xF0 | (cp >> 18));
  dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  dst[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* The code point of a \u escape (p at its hex digits; the string's
 * escapes end before `end`), a surrogate pair joined; NUL is refused. */
static int parse_u_escape(Parser *p, size_t end, unsigned *out) {
  unsigned cp;
  if (hex4(p, &cp)) return APTQ_ERR;
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    unsigned lo;
    if (p->pos + 2 > end || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u') return fail(p, "unpaired surrogate in \\u escape");
    p->pos += 2;
    if (hex4(p, &lo)) return APTQ_ERR;
    if (lo < 0xDC00 || lo > 0xDFFF) return fail(p, "bad low surrogate");
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
  } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
    return fail(p, "unpaired low surrogate");
  }
  if (cp == 0) return fail(p, "NUL character in string");
  *out = cp;
  return 0;
}

static int parse_string(Parser *p, char **out) {
  p->pos++; /* opening quote */
  size_t start = p->pos, n = 0;
  /* first pass: find the end and an upper bound of the decoded size */
  while (1) {
    if (p->pos >= p->len) return fail(p, "unterminated string");
    unsigned char c = (unsigned char)p->text[p->pos];
    if (c == '"') break;
    if (c < 0x20) return fail(p, "control character in string");
    if (c == '\\') {
      p->pos++;
      if (p->pos >= p->len) return fail(p, "unterminated escape");
    }
    p->pos++;
    n++;
  }
  size_t end = p->pos;
  char *s = aptq_malloc(n * 4 + 1, "JSON string");
  if (!s) return APTQ_ERR;
  size_t k = 0;
  p->pos = start;
  while (p->pos < end) {
    char c = p->text[p->pos++];
    if (c != '\\') {
      s[k++] = c;
      continue;
    }
    char e = p->text[p->pos++];
    switch (e) {
      case '"': s[k++] = '"'; break;
      case '\\': s[k++] = '\\'; break;
      case '/': s[k++] = '/'; break;
      case 'b': s[k++] = '\b'; break;
      case 'f': s[k++] = '\f'; break;
      case 'n': s[k++] = '\n'; break;
      case 'r': s[k++] = '\r'; break;
      case 't': s[k++] = '\t'; break;
      case 'u': {
        unsigned cp = 0;
        if (parse_u_escape(p, end, &cp)) {
          aptq_free(s);
          return APTQ_ERR;
        }
        k += put_utf8(s + k, cp);
        break;
      }
      default: aptq_free(s); return fail(p, "unknown escape in string");
    }
  }
  s[k] = 0;
  p->pos = end + 1;
  *out = s;
  return 0;
}

static int parse_number(Parser *p, JsonValue *v) {
  size_t start = p->pos;
  int integer = 1;
  if (p->text[p->pos] == '-') p->pos++;
  if (p->pos >= p->len || p->text[p->pos] < '0' || p->text[p->pos] > '9') return fail(p, "bad number");
  if (p->text[p->pos] == '0') p->pos++;
  else
    while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') p->pos++;
  if (p->pos < p->len && p->text[p->pos] == '.') {
    integer = 0;
    p->pos++;
    if (p->pos >= p->len || p->text[p->pos] < '0' || p->text[p->pos] > '9') return fail(p, "bad fraction");
    while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') p->pos++;
  }
  if (p->pos < p->len && (p->text[p->pos] == 'e' || p->text[p->pos] == 'E')) {
    integer = 0;
    p->pos++;
    if (p->pos < p->len && (p->text[p->pos] == '+' || p->text[p->pos] == '-')) p->pos++;
    if (p->pos >= p->len || p->text[p->pos] < '0' || p->text[p->pos] > '9') return fail(p, "bad exponent");
    while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') p->pos++;
  }
  size_t n = p->pos - start;
  char buf[64];
  if (n >= sizeof buf) return fail(p, "number too long");
  memcpy(buf, p->text + start, n);
  buf[n] = 0;
  v->type = JSON_NUMBER;
  v->number = strtod(buf, NULL);
  if (!isfinite(v->number)) return fail(p, "number out of range");
  if (integer && n <= 18) {
    v->is_integer = 1;
    v->integer = strtoll(buf, NULL, 10);
  }
  return 0;
}

static int literal(Parser *p, const char *word) {
  size_t n = strlen(word);
  if (p->pos + n > p->len || memcmp(p->text + p->pos, word, n) != 0) return fail(p, "unexpected token");
  p->pos += n;
  return 0;
}

/* A container's items (and an object's keys) moved to room for cap; left
 * as they were if out of memory. */
static int grow(JsonValue *v, int cap, int is_object) {
  JsonValue *items = aptq_malloc((size_t)cap * sizeof *items, "JSON values");
  char **keys = is_object ? aptq_malloc((size_t)cap * sizeof *keys, "JSON keys") : NULL;
  if (!items || (is_object && !keys)) {
    aptq_free(items);
    aptq_free(keys);
    return APTQ_ERR;
  }
  if (v->count) memcpy(items, v->items, (size_t)v->count * sizeof *items);
  if (v->count && is_object) memcpy(keys, v->keys, (size_t)v->count * sizeof *keys);
  aptq_free(v->items);
  v->items = items;
  if (is_object) {
    aptq_free(v->keys);
    v->keys = keys;
  }
  return 0;
}

static int parse_container(Parser *p, JsonValue *v, int depth, int is_object) {
  char close = is_object ? '}' : ']';
  int cap = 0;
  v->type = is_object ? JSON_OBJECT : JSON_ARRAY;
  p->pos++;
  skip_ws(p);
  if (p->pos < p->len && p->text[p->pos] == close) {
    p->pos++;
    return 0;
  }
  while (1) {
    if (v->count == cap) {
      cap = cap ? cap * 2 : 8;
      if (grow(v, cap, is_object)) return APTQ_ERR;
    }
    JsonValue *item = &v->items[v->count];
    memset(item, 0, sizeof *item);
    skip_ws(p);
    if (is_object) {
      if (p->pos >= p->len || p->text[p->pos] != '"') return fail(p, "expected a string key");
      if (parse_string(p, &v->keys[v->count])) return APTQ_ERR;
      for (int i = 0; i < v->count; i++)
        if (strcmp(v->keys[i], v->keys[v->count]) == 0) {
          v->count++; /* so that json_free releases the key */
          return fail(p, "duplicate key in object");
        }
      skip_ws(p);
      if (p->pos >= p->len || p->text[p->pos] != ':') {
        v->count++;
        return fail(p, "expected ':'");
      }
      p->pos++;
    }
    v->count++;
    if (parse_value(p, item, depth + 1)) return APTQ_ERR;
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, "unterminated container");
    char c = p->text[p->pos++];
    if (c == close) return 0;
    if (c != ',') return fail(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
  }
}

static int parse_value(Parser *p, JsonValue *v, int depth) {
  if (depth > JSON_MAX_DEPTH) return fail(p, "nesting too deep");
  skip_ws(p);
  if (p->pos >= p->len) return fail(p, "unexpected end of input");
  char c = p->text[p->pos];
  switch (c) {
    case '{': return parse_container(p, v, depth, 1);
    case '[': return parse_container(p, v, depth, 0);
    case '"': v->type = JSON_STRING; return parse_string(p, &v->string);
    case 't':
      v->type = JSON_BOOL;
      v->boolean = 1;
      return literal(p, "true");
    case 'f':
      v->type = JSON_BOOL;
      v->boolean = 0;
      return literal(p, "false");
    case 'n': v->type = JSON_NULL; return literal(p, "null");
    default: return parse_number(p, v);
  }
}

static void free_members(JsonValue *v) {
  if (!v) return;
  aptq_free(v->string);
  for (int i = 0; i < v->count; i++) {
    free_members(&v->items[i]);
    if (v->keys) aptq_free(v->keys[i]);
  }
  aptq_free(v->items);
  aptq_free(v->keys);
}

void json_free(JsonValue *v) {
  free_members(v);
  aptq_free(v);
}

int json_parse(const char *text, size_t len, const char *what, JsonValue **out) {
  Parser p = {text, len, 0, what};
  JsonValue *v = aptq_calloc(1, sizeof *v, "JSON value");
  if (!v) return APTQ_ERR;
  if (parse_value(&p, v, 0)) {
    json_free(v);
    return APTQ_ERR;
  }
  skip_ws(&p);
  /* safetensors headers may be padded with spaces; NULs are not JSON */
  if (p.pos != len) {
    json_free(v);
    return fail(&p, "trailing characters after the JSON value");
  }
  *out = v;
  return 0;
}

const JsonValue *json_get(const JsonValue *object, const char *key) {
  if (!object || object->type != JSON_OBJECT) return NULL;
  for (int i = 0; i < object->count; i++)
    if (strcmp(object->keys[i], key) == 0) return &object->items[i];
  return NULL;
}
