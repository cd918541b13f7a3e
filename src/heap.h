/* The heap audit: with APTQ_HEAP_AUDIT set (not empty, not 0), every
 * allocation of aptq_malloc/aptq_calloc is recorded with its size until
 * aptq_free releases it, and the most bytes live at once is kept. The
 * memory plan (memory.h) is checked against it in the tests, so a buffer
 * the plan does not count shows. Without the variable nothing is recorded
 * and aptq_free is free(). Thread-safe. APTQ_HEAP_AUDIT=2 also keeps the
 * live set at the peak, by label, for heap_audit_print_peak. */
#ifndef APTQ_HEAP_H
#define APTQ_HEAP_H

#include <stddef.h>

int heap_audit_on(void);
/* Called by aptq_malloc for every allocation (what: its label), and by
 * aptq_free. */
void heap_audit_add(void *p, size_t bytes, const char *what);
void heap_audit_remove(void *p);
/* Start measuring: what is live now is the base (the model's metadata,
 * the token shard), the peak is reset. */
void heap_audit_mark(void);
/* The most bytes of aptq allocations live at once since the mark, beyond
 * the base (0 when the audit is off). */
double heap_audit_peak(void);
/* The bytes of aptq allocations live now (0 when the audit is off). */
double heap_audit_live(void);
/* APTQ_HEAP_AUDIT=2: what was live at the peak, by label (a diagnosis of a
 * plan that does not match). */
#include <stdio.h>
void heap_audit_print_peak(FILE *out);

#endif
