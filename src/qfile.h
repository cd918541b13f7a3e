/* The quantized-model HDF5 file (schema in docs/hdf5-schema.md), written
 * collectively by all ranks with MPI-IO under a temporary name and renamed
 * into place on success; read back for evaluation. */
#ifndef APTQ_QFILE_H
#define APTQ_QFILE_H

#include <hdf5.h>
#include <mpi.h>
#include <stdint.h>

#include "forward.h"
#include "h5read.h"
#include "model.h"
#include "options.h"

enum { QFILE_FORMAT_VERSION = 1 };

typedef struct QFileWriter {
  hid_t file, dxpl;
  MPI_Comm comm;
  char path[OPT_PATH_MAX], tmp[OPT_PATH_MAX + 64];
  struct QFileWriter *tee; /* layers and attributes also go here (checkpoint block files) */
  const char *key;         /* the option that named path, for messages */
  int overwrite;           /* may the commit replace a regular file (outpath_commit) */
} QFileWriter;

/* One linear layer's row slab [r0, r1) on this rank. */
typedef struct {
  const char *name; /* e.g. model.layers.0.self_attn.q_proj */
  int rows, cols, bits, group_size, sym;
  int r0, r1;
  const uint32_t *qweight; /* (r1-r0) × words_per_row */
  const float *scales;     /* (r1-r0) × ngroups */
  const int32_t *zeros;    /* (r1-r0) × ngroups */
  const int32_t *g_idx;    /* cols; only rank 0's copy is written */
  const float *mins;       /* (r1-r0) × ngroups, or NULL: no mins dataset (grid = q4_k | q5_k | q2_k) */
} QLayerSlab;

/* A row slab's stored form, for n rows of cols columns at `bits` bits in
 * groups of group_size: qweight n × words per row, scales and zeros
 * n × groups, g_idx cols (a QLayerSlab's arrays). */
typedef struct {
  uint32_t *qweight;
  float *scales;
  int32_t *zeros, *g_idx;
  float *mins; /* n × groups, or NULL: the layer has no mins (allocated by the reader when it has) */
} QLayerBuffers;
/* 0, or APTQ_ERR (out of memory, recorded; free anyway); mins NULL. Local. */
int qlayer_buffers_alloc(QLayerBuffers *b, int n, int cols, int bits, int group_size);
/* Bytes qlayer_buffers_alloc allocates for these arguments, and the
 * reader's mins where the layer has them. Local. */
double qlayer_buffers_bytes(int n, int cols, int bits, int group_size, int mins);
void qlayer_buffers_free(QLayerBuffers *b);

/* Collective. Checks nothing about the final path: callers check first
 * (output_check). key names the path in messages; overwrite: may the
 * commit replace a regular file there (without it, a file that appeared
 * meanwhile fails the commit and is kept). */
int qfile_create(QFileWriter *w, const char *path, const char *key, int overwrite, MPI_Comm comm);
int qfile_write_layer(QFileWriter *w, const QLayerSlab *s);
/* Rows [r0, r1) of a rows × cols dataset GROUP/NAME, written collectively. */
int qfile_write_matrix(QFileWriter *w, const char *group, const char *name, hid_t type, int rows, int cols, int r0, int r1,
                       const void *data);
/* A 1-D dataset whose data only the rank with mine != 0 supplies. */
int qfile_write_vector(QFileWriter *w, const char *group, const char *name, hid_t type, int n, int mine, const void *data);
int qfile_attr_int(QFileWriter *w, const char *group, const char *name, int value);
int qfile_write_metadata(QFileWriter *w, const Options *o, const Model *m, const char *calib_sha256, const char *method);
int qfile_attr_double(QFileWriter *w, const char *group, const char *name, double value);
int qfile_attr_string(QFileWriter *w, const char *group, const char *name, const char *value);
/* Collective: copy layer group /layers/NAME (datasets and attributes) of a
 * checkpoint block file into w, each rank its row slab; the layer must be
 * rows × cols (the model's) and pass qlayer_check, every attribute one
 * value (h5read.h), checked on every rank before anything is written. */
int qfile_copy_layer(QFileWriter *w, const char *src_path, const char *name, int rows, int cols);
/* Close and rename into place (collective; outpath_commit). */
int qfile_commit(QFileWriter *w);
void qfile_discard(QFileWriter *w);

/* Reading (h5read.h: hard links only, data inside the file, attributes
 * and datasets of the expected class and shape; docs/hdf5-schema.md). */
typedef struct {
  hid_t file;
  char path[OPT_PATH_MAX];
  char model_fingerprint[65];
} QFileReader;

/* Collective (MPI-IO open on comm): open a quantized file and check its
 * format attributes; the fingerprint into r->model_fingerprint. */
int qfile_open(QFileReader *r, const char *path, MPI_Comm comm);
/* The same checks on a file already open (the fuzz targets open one from
 * memory); r owns file afterwards (qfile_close). Local. */
int qfile_attach(QFileReader *r, const char *path, hid_t file);
/* Dequantized weights of one linear layer into W (rows × cols); checks the
 * stored shapes against the expected ones and every value (qlayer_check). */
int qfile_read_linear(QFileReader *r, const char *name, int rows, int cols, float *W);
/* The stored form of one linear layer (rows × cols, the model's shape) into
 * b (allocated here: qlayer_buffers_free whatever the result), with the
 * same checks as qfile_read_linear; *bits and *group_size (a group_size
 * past cols given as cols). Local. */
int qfile_read_stored(QFileReader *r, const char *name, int rows, int cols, QLayerBuffers *b, int *bits, int *group_size);
/* The weights (rows × cols) of a stored layer b of ng groups, as
 * qfile_read_linear gives them; codes: cols bytes of scratch. Local. */
void qlayer_dequantize(const QLayerBuffers *b, int rows, int cols, int bits, int ng, uint8_t *codes, float *W);
void qfile_close(QFileReader *r);
/* Collective: qfile_open of a file that must have been made from model m
 * (the same fingerprint); agreed, 0 or APTQ_ERR on every rank. */
int qfile_open_model(QFileReader *r, const char *path, const Model *m, MPI_Comm comm);
/* Block l's weights into w (block_weights_alloc'd): the model's
 * (block_weights_load), its seven projections dequantized from r instead
 * when r is open (r->file >= 0). Local. */
int qfile_block_weights(QFileReader *r, const Model *m, int l, BlockWeights *w);
/* The most bytes qfile_block_weights holds at once besides the block's
 * weights: the stored form of r's largest layer of m while it is
 * dequantized (0 when r is not open; a layer whose attributes cannot be
 * read is left out: reading it reports why). Local. */
double qfile_stored_bytes_max(const QFileReader *r, const Model *m);

/* The values of n stored rows of layer NAME (cols columns, bits, ng
 * groups) a reader may use: g_idx in [0, ng), every scale finite and
 * positive, every zero point in [0, 2^bits), every min (if any) finite,
 * the padding bits of each
 * row's last qweight word (past cols·bits) zero. 0, or one error naming
 * the first bad value (s: the file, for the message). Local. */
int qlayer_check(const H5Src *s, const char *name, int n, int cols, int bits, int ng, const QLayerBuffers *b);

/* Rows [r0, r0 + n) of layer /layers/NAME of an open file f (a checkpoint
 * block file), which must be rows × cols, into b (allocated here: free with
 * qlayer_buffers_free whatever the result), checked (qlayer_check); *slab
 * describes them. Local. */
int qlayer_read_rows(const H5Src *s, hid_t f, const char *name, int rows, int cols, int r0, int n, QLayerBuffers *b, QLayerSlab *slab);

/* "model.layers.<l>.<linear_names[k]>" */
void linear_layer_name(int layer, int kind, char *buf, int size);

#endif
