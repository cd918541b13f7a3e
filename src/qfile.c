#include "qfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "forward.h"
#include "outpath.h"
#include "quant.h"
#include "tokens.h"

void linear_layer_name(int layer, int kind, char *buf, int size) {
  snprintf(buf, (size_t)size, "model.layers.%d.%s", layer, linear_names[kind]);
}

static int h5fail(const char *what, const char *path) { return aptq_error("HDF5 failed to %s in '%s'", what, path); }

static hid_t open_group(hid_t file, const char *name) {
  if (H5Lexists(file, name, H5P_DEFAULT) > 0) return H5Gopen2(file, name, H5P_DEFAULT);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t g = H5Gcreate2(file, name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Pclose(lcpl);
  return g;
}

static int put_attr(hid_t loc, const char *name, hid_t type, const void *value) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  herr_t st = a < 0 ? -1 : H5Awrite(a, type, value);
  if (a >= 0) H5Aclose(a);
  H5Sclose(space);
  return st < 0 ? -1 : 0;
}

static int put_string(hid_t loc, const char *name, const char *value) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(value) + 1);
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  int rc = put_attr(loc, name, t, value);
  H5Tclose(t);
  return rc;
}

static int put_int(hid_t loc, const char *name, int v) { return put_attr(loc, name, H5T_NATIVE_INT, &v); }
static int put_double(hid_t loc, const char *name, double v) { return put_attr(loc, name, H5T_NATIVE_DOUBLE, &v); }

int qfile_create(QFileWriter *w, const char *path, const char *key, int overwrite, MPI_Comm comm) {
  memset(w, 0, sizeof *w);
  w->comm = comm;
  w->key = key;
  w->overwrite = overwrite;
  snprintf(w->path, sizeof w->path, "%s", path);
  /* one temporary name for all ranks: rank 0's pid */
  int pid = (int)getpid();
  MPI_Bcast(&pid, 1, MPI_INT, 0, comm);
  snprintf(w->tmp, sizeof w->tmp, "%s.partial-%d", path, pid);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  H5Pset_all_coll_metadata_ops(fapl, 1);
  H5Pset_coll_metadata_write(fapl, 1);
  w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  int ok = w->file >= 0;
  ok = aptq_all_ok(comm, ok);
  if (!ok) {
    if (w->file >= 0) H5Fclose(w->file);
    w->file = -1;
    return aptq_agree(
        comm,
        aptq_error("cannot create the output file '%s' (temporary '%s'); check that its directory exists and is writable", path, w->tmp));
  }
  aptq_register_tmpfile(w->tmp);
  w->dxpl = H5Pcreate(H5P_DATASET_XFER);
  H5Pset_dxpl_mpio(w->dxpl, H5FD_MPIO_COLLECTIVE);
  return 0;
}

/* Write rows [r0, r1) of a 2-D dataset collectively (r1 == r0 selects none). */
static int write_rows(QFileWriter *w, hid_t group, const char *name, hid_t type, int rows, int cols, int r0, int r1, const void *data) {
  hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
  hid_t fspace = H5Screate_simple(2, dims, NULL);
  hid_t d = H5Dcreate2(group, name, type, fspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t start[2] = {(hsize_t)r0, 0}, count[2] = {(hsize_t)(r1 - r0), (hsize_t)cols};
  hid_t mspace = H5Screate_simple(2, count, NULL);
  if (r1 > r0) H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
  else {
    H5Sselect_none(fspace);
    H5Sselect_none(mspace);
  }
  herr_t st = d < 0 ? -1 : H5Dwrite(d, type, mspace, fspace, w->dxpl, data);
  H5Sclose(mspace);
  H5Sclose(fspace);
  if (d >= 0) H5Dclose(d);
  return st < 0 ? h5fail(name, w->tmp) : 0;
}

/* A 1-D dataset written by rank 0 only (the others select nothing). */
static int write_vector(QFileWriter *w, hid_t group, const char *name, hid_t type, int n, int mine, const void *data) {
  hsize_t dims[1] = {(hsize_t)n};
  hid_t fspace = H5Screate_simple(1, dims, NULL), mspace = H5Screate_simple(1, dims, NULL);
  if (!mine) {
    H5Sselect_none(fspace);
    H5Sselect_none(mspace);
  }
  hid_t d = H5Dcreate2(group, name, type, fspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  herr_t st = d < 0 ? -1 : H5Dwrite(d, type, mspace, fspace, w->dxpl, data);
  H5Sclose(mspace);
  H5Sclose(fspace);
  if (d >= 0) H5Dclose(d);
  return st < 0 ? h5fail(name, w->tmp) : 0;
}

int qfile_write_matrix(QFileWriter *w, const char *group, const char *name, hid_t type, int rows, int cols, int r0, int r1,
                       const void *data) {
  hid_t g = open_group(w->file, group);
  if (g < 0) return h5fail("create a group", w->tmp);
  int rc = write_rows(w, g, name, type, rows, cols, r0, r1, data);
  H5Gclose(g);
  return rc;
}

int qfile_write_vector(QFileWriter *w, const char *group, const char *name, hid_t type, int n, int mine, const void *data) {
  hid_t g = open_group(w->file, group);
  if (g < 0) return h5fail("create a group", w->tmp);
  int rc = write_vector(w, g, name, type, n, mine, data);
  H5Gclose(g);
  return rc;
}

int qfile_write_layer(QFileWriter *w, const QLayerSlab *s) {
  char gname[512];
  snprintf(gname, sizeof gname, "/layers/%s", s->name);
  hid_t g = open_group(w->file, gname);
  if (g < 0) return h5fail("create a layer group", w->tmp);
  int ng = quant_ngroups(s->cols, s->group_size), rank;
  MPI_Comm_rank(w->comm, &rank);
  int rc = put_int(g, "bits", s->bits) || put_int(g, "rows", s->rows) || put_int(g, "cols", s->cols) ||
           put_int(g, "group_size", s->group_size) || put_int(g, "sym", s->sym);
  if (rc) rc = h5fail("write layer attributes", w->tmp);
  if (!rc) rc = write_rows(w, g, "qweight", H5T_NATIVE_UINT32, s->rows, quant_words_per_row(s->cols, s->bits), s->r0, s->r1, s->qweight);
  if (!rc) rc = write_rows(w, g, "scales", H5T_NATIVE_FLOAT, s->rows, ng, s->r0, s->r1, s->scales);
  if (!rc) rc = write_rows(w, g, "zeros", H5T_NATIVE_INT32, s->rows, ng, s->r0, s->r1, s->zeros);
  if (!rc) rc = write_vector(w, g, "g_idx", H5T_NATIVE_INT32, s->cols, rank == 0, s->g_idx);
  H5Gclose(g);
  if (!rc && w->tee) rc = qfile_write_layer(w->tee, s);
  return rc;
}

static int in_group(QFileWriter *w, const char *group, hid_t *g) {
  *g = open_group(w->file, group);
  return *g < 0 ? h5fail("open a group", w->tmp) : 0;
}

/* An attribute value for put_int, put_double or put_string. */
typedef struct {
  char type; /* 'i', 'd' or 's' */
  int i;
  double d;
  const char *s;
} AttrValue;

/* Attribute NAME of GROUP (created if need be), in w and in its tee. */
static int write_attr(QFileWriter *w, const char *group, const char *name, const AttrValue *v) {
  hid_t g;
  CHECK(in_group(w, group, &g));
  int rc = v->type == 'i' ? put_int(g, name, v->i) : v->type == 'd' ? put_double(g, name, v->d) : put_string(g, name, v->s);
  H5Gclose(g);
  if (rc) return h5fail("write an attribute", w->tmp);
  return w->tee ? write_attr(w->tee, group, name, v) : 0;
}

int qfile_attr_double(QFileWriter *w, const char *group, const char *name, double value) {
  return write_attr(w, group, name, &(AttrValue){.type = 'd', .d = value});
}

int qfile_attr_int(QFileWriter *w, const char *group, const char *name, int value) {
  return write_attr(w, group, name, &(AttrValue){.type = 'i', .i = value});
}

int qfile_attr_string(QFileWriter *w, const char *group, const char *name, const char *value) {
  return write_attr(w, group, name, &(AttrValue){.type = 's', .s = value});
}

/* What /model/full_precision_tensors says: the tensors eval and recon take
 * from the model directory (the same for a LLaMA as before Qwen). */
static const char *full_precision_note(const ModelConfig *c) {
  if (c->qkv_bias)
    return "not stored: embed_tokens, norms, lm_head and the q/k/v_proj biases are read from model_source (checked by model_fingerprint)";
  if (c->qk_norm)
    return "not stored: embed_tokens, norms (q_norm and k_norm included) and lm_head are read from model_source (checked by "
           "model_fingerprint)";
  return "not stored: embed_tokens, norms and lm_head are read from model_source (checked by model_fingerprint)";
}

int qfile_write_metadata(QFileWriter *w, const Options *o, const Model *m, const char *calib_sha256, const char *method) {
  int size;
  MPI_Comm_size(w->comm, &size);
  /* identical on every rank: rank 0's clock */
  long long now = (long long)time(NULL);
  MPI_Bcast(&now, 1, MPI_LONG_LONG, 0, w->comm);
  char stamp[64];
  time_t t = (time_t)now;
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
  hid_t root = w->file, meta, model;
  int rc = put_string(root, "format", "aptq-quantized-model") || put_int(root, "format_version", QFILE_FORMAT_VERSION) ||
           put_string(root, "aptq_version", APTQ_VERSION) || put_string(root, "created", stamp);
  if (rc) return h5fail("write file attributes", w->tmp);
  CHECK(in_group(w, "/meta", &meta));
  rc = put_string(meta, "method", method) || put_int(meta, "ranks", size) || put_string(meta, "model_fingerprint", m->fingerprint) ||
       put_string(meta, "model_source", m->source) || put_string(meta, "calib_sha256", calib_sha256 ? calib_sha256 : "");
  const char *key;
  char value[OPT_PATH_MAX], aname[128];
  for (int i = 0; !rc && options_item(o, i, &key, value, sizeof value); i++) {
    snprintf(aname, sizeof aname, "option.%s", key);
    rc = put_string(meta, aname, value);
  }
  H5Gclose(meta);
  if (rc) return h5fail("write run metadata", w->tmp);
  CHECK(in_group(w, "/model", &model));
  const ModelConfig *c = &m->cfg;
  char cfg[1024];
  model_config_json(c, cfg, sizeof cfg);
  rc = put_string(model, "config_json", cfg) || put_int(model, "hidden_size", c->dim) ||
       put_int(model, "intermediate_size", c->hidden_dim) || put_int(model, "num_hidden_layers", c->n_layers) ||
       put_int(model, "num_attention_heads", c->n_heads) || put_int(model, "num_key_value_heads", c->n_kv_heads) ||
       put_int(model, "head_dim", c->head_dim) || put_int(model, "vocab_size", c->vocab_size) ||
       put_string(model, "full_precision_tensors", full_precision_note(c));
  H5Gclose(model);
  return rc ? h5fail("write the model config", w->tmp) : 0;
}

int qfile_commit(QFileWriter *w) {
  H5Pclose(w->dxpl);
  int ok = H5Fclose(w->file) >= 0;
  w->file = -1;
  ok = aptq_all_ok(w->comm, ok);
  int rank;
  MPI_Comm_rank(w->comm, &rank);
  int rc = 0;
  if (!ok) rc = aptq_error("HDF5 failed to close '%s'", w->tmp);
  else if (rank == 0) rc = outpath_commit(w->tmp, w->path, w->key, w->overwrite);
  if (rank == 0 && rc) unlink(w->tmp);
  aptq_unregister_tmpfile(w->tmp);
  return aptq_agree(w->comm, rc);
}

void qfile_discard(QFileWriter *w) {
  if (w->file >= 0) H5Fclose(w->file);
  w->file = -1;
  int rank;
  MPI_Comm_rank(w->comm, &rank);
  if (rank == 0) unlink(w->tmp);
  aptq_unregister_tmpfile(w->tmp);
}

/* --- reading ----------------------------------------------------------- */

int h5_attr_string(hid_t loc, const char *name, char *buf, size_t size) {
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t t = H5Aget_type(a);
  int rc = -1;
  if (H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t) && H5Tget_size(t) <= size) {
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5Tget_size(t));
    rc = H5Aread(a, mt, buf) < 0 ? -1 : 0;
    buf[size - 1] = 0;
    H5Tclose(mt);
  }
  H5Tclose(t);
  H5Aclose(a);
  return rc;
}

int h5_attr_int(hid_t loc, const char *name, int *v) {
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  if (a < 0) return -1;
  int rc = H5Aread(a, H5T_NATIVE_INT, v) < 0 ? -1 : 0;
  H5Aclose(a);
  return rc;
}

int qfile_open(QFileReader *r, const char *path, MPI_Comm comm) {
  memset(r, 0, sizeof *r);
  snprintf(r->path, sizeof r->path, "%s", path);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (access(path, R_OK) != 0) return aptq_error("quantized file '%s' cannot be read: %s", path, strerror(errno));
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  r->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  if (r->file < 0) return aptq_error("'%s' is not an HDF5 file (or is damaged)", path);
  char format[64] = "";
  int version = 0;
  if (h5_attr_string(r->file, "format", format, sizeof format) || strcmp(format, "aptq-quantized-model") ||
      h5_attr_int(r->file, "format_version", &version))
    return aptq_error("'%s' is HDF5 but not an aptq quantized model (no format attribute)", path);
  if (version != QFILE_FORMAT_VERSION)
    return aptq_error("'%s' has format_version %d; this aptq reads version %d", path, version, QFILE_FORMAT_VERSION);
  hid_t meta = H5Gopen2(r->file, "/meta", H5P_DEFAULT);
  int rc = meta < 0 ? -1 : h5_attr_string(meta, "model_fingerprint", r->model_fingerprint, sizeof r->model_fingerprint);
  if (meta >= 0) H5Gclose(meta);
  if (rc) return aptq_error("'%s' has no /meta model_fingerprint", path);
  return 0;
}

/* rows == 0: a 1-D dataset of cols elements */
static int read_all(QFileReader *r, hid_t g, const char *lname, const char *dname, hid_t type, int rows, int cols, void *buf) {
  hid_t d = H5Dopen2(g, dname, H5P_DEFAULT);
  if (d < 0) return aptq_error("%s: layer %s has no dataset '%s'", r->path, lname, dname);
  hid_t space = H5Dget_space(d);
  hsize_t dims[2] = {0, 0};
  int nd = H5Sget_simple_extent_ndims(space);
  H5Sget_simple_extent_dims(space, dims, NULL);
  H5Sclose(space);
  int rc = 0;
  int shape_ok = rows ? (nd == 2 && dims[0] == (hsize_t)rows && dims[1] == (hsize_t)cols) : (nd == 1 && dims[0] == (hsize_t)cols);
  if (!shape_ok) rc = aptq_error("%s: layer %s dataset '%s' has the wrong shape (expected %d x %d)", r->path, lname, dname, rows, cols);
  else if (H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    rc = aptq_error("%s: cannot read layer %s dataset '%s'", r->path, lname, dname);
  H5Dclose(d);
  return rc;
}

int qfile_read_linear(QFileReader *r, const char *name, int rows, int cols, float *W) {
  char gname[512];
  snprintf(gname, sizeof gname, "/layers/%s", name);
  if (H5Lexists(r->file, "/layers", H5P_DEFAULT) <= 0 || H5Lexists(r->file, gname, H5P_DEFAULT) <= 0)
    return aptq_error("%s: layer %s is missing", r->path, name);
  hid_t g = H5Gopen2(r->file, gname, H5P_DEFAULT);
  int bits = 0, grows = 0, gcols = 0, group_size = -1;
  if (h5_attr_int(g, "bits", &bits) || h5_attr_int(g, "rows", &grows) || h5_attr_int(g, "cols", &gcols) ||
      h5_attr_int(g, "group_size", &group_size)) {
    H5Gclose(g);
    return aptq_error("%s: layer %s lacks its bits/rows/cols/group_size attributes", r->path, name);
  }
  if (grows != rows || gcols != cols || bits < 1 || bits > 8 || group_size < 0) {
    H5Gclose(g);
    return aptq_error("%s: layer %s is %d x %d at %d bits (group %d) but the model needs %d x %d; wrong model for this file", r->path, name,
                      grows, gcols, bits, group_size, rows, cols);
  }
  int ng = quant_ngroups(cols, group_size), wpr = quant_words_per_row(cols, bits);
  QLayerBuffers b;
  int rc = qlayer_buffers_alloc(&b, rows, cols, bits, group_size);
  uint8_t *codes = aptq_malloc((size_t)cols, "codes of a row");
  if (!codes) rc = APTQ_ERR;
  uint32_t *qw = b.qweight;
  float *scales = b.scales;
  int32_t *zeros = b.zeros, *g_idx = b.g_idx;
  if (!rc) rc = read_all(r, g, name, "qweight", H5T_NATIVE_UINT32, rows, wpr, qw);
  if (!rc) rc = read_all(r, g, name, "scales", H5T_NATIVE_FLOAT, rows, ng, scales);
  if (!rc) rc = read_all(r, g, name, "zeros", H5T_NATIVE_INT32, rows, ng, zeros);
  if (!rc) rc = read_all(r, g, name, "g_idx", H5T_NATIVE_INT32, 0, cols, g_idx);
  for (int j = 0; !rc && j < cols; j++)
    if (g_idx[j] < 0 || g_idx[j] >= ng) rc = aptq_error("%s: layer %s g_idx[%d] = %d is outside [0, %d)", r->path, name, j, g_idx[j], ng);
  for (int i = 0; !rc && i < rows; i++) {
    quant_unpack_row(qw + (size_t)i * wpr, cols, bits, codes);
    for (int j = 0; j < cols; j++) {
      int gi = g_idx[j];
      W[(size_t)i * cols + j] = quant_dequant(codes[j], scales[(size_t)i * ng + gi], zeros[(size_t)i * ng + gi]);
    }
  }
  qlayer_buffers_free(&b);
  aptq_free(codes);
  H5Gclose(g);
  return rc;
}

int qfile_open_model(QFileReader *r, const char *path, const Model *m, MPI_Comm comm) {
  int rc = qfile_open(r, path, comm);
  if (!rc && strcmp(r->model_fingerprint, m->fingerprint))
    rc =
        aptq_error("'%s' was made from a different model (fingerprint %.12s..., this model %.12s...); give the model it was quantized from",
                   path, r->model_fingerprint, m->fingerprint);
  return aptq_agree(comm, rc);
}

int qfile_block_weights(QFileReader *r, const Model *m, int l, BlockWeights *w) {
  CHECK(block_weights_load(m, l, w));
  for (int k = 0; r->file >= 0 && k < LIN_COUNT; k++) {
    char name[256];
    linear_layer_name(l, k, name, sizeof name);
    CHECK(qfile_read_linear(r, name, (int)m->linear[l][k].rows, (int)m->linear[l][k].cols, w->w[k]));
  }
  return 0;
}

void qfile_close(QFileReader *r) {
  if (r->file > 0) H5Fclose(r->file);
  r->file = -1;
}

int h5_read_matrix(const char *path, const char *name, hid_t memtype, int r0, int r1, int *rows, int *cols, void *buf, MPI_Comm comm) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (access(path, R_OK) != 0) return aptq_error("input '%s' cannot be read: %s", path, strerror(errno));
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  if (f < 0) return aptq_error("'%s' is not an HDF5 file (or is damaged)", path);
  int rc = 0;
  if (H5Lexists(f, name, H5P_DEFAULT) <= 0) {
    H5Fclose(f);
    return aptq_error("'%s' has no dataset '%s'", path, name);
  }
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  hid_t space = d < 0 ? -1 : H5Dget_space(d);
  hsize_t dims[2] = {0, 0};
  int nd = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
  if (nd == 2) H5Sget_simple_extent_dims(space, dims, NULL);
  hid_t dtype = d < 0 ? -1 : H5Dget_type(d);
  H5T_class_t cls = dtype < 0 ? H5T_NO_CLASS : H5Tget_class(dtype);
  if (nd != 2 || dims[0] == 0 || dims[1] == 0 || dims[0] > (1u << 30) || dims[1] > (1u << 30))
    rc = aptq_error("'%s' dataset '%s' must be a non-empty 2-D matrix", path, name);
  else if (cls != H5T_FLOAT && cls != H5T_INTEGER) rc = aptq_error("'%s' dataset '%s' must hold numbers", path, name);
  if (!rc) {
    *rows = (int)dims[0];
    *cols = (int)dims[1];
  }
  if (!rc && buf) {
    hsize_t start[2] = {(hsize_t)r0, 0}, count[2] = {(hsize_t)(r1 - r0), dims[1]};
    hid_t mspace = H5Screate_simple(2, count, NULL);
    if (r1 > r0) H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
    else {
      H5Sselect_none(space);
      H5Sselect_none(mspace);
    }
    if (H5Dread(d, memtype, mspace, space, H5P_DEFAULT, buf) < 0) rc = aptq_error("cannot read dataset '%s' of '%s'", name, path);
    H5Sclose(mspace);
  }
  if (dtype >= 0) H5Tclose(dtype);
  if (space >= 0) H5Sclose(space);
  if (d >= 0) H5Dclose(d);
  H5Fclose(f);
  return rc;
}

/* ---------------------------------------------------------- layer copy */
static int read_rows_serial(hid_t g, const char *name, hid_t memtype, int r0, int n, int cols, void *buf) {
  hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
  if (d < 0) return -1;
  hid_t fs = H5Dget_space(d);
  hsize_t start[2] = {(hsize_t)r0, 0}, count[2] = {(hsize_t)n, (hsize_t)cols};
  int nd = H5Sget_simple_extent_ndims(fs);
  H5Sselect_hyperslab(fs, H5S_SELECT_SET, nd == 2 ? start : start + 1, NULL, nd == 2 ? count : count + 1, NULL);
  hid_t ms = H5Screate_simple(nd, nd == 2 ? count : count + 1, NULL);
  int rc = (n == 0 || H5Dread(d, memtype, ms, fs, H5P_DEFAULT, buf) >= 0) ? 0 : -1;
  H5Sclose(ms);
  H5Sclose(fs);
  H5Dclose(d);
  return rc;
}

typedef struct {
  QFileWriter *w;
  const char *group;
  int rc;
} AttrCopy;

static herr_t copy_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  AttrCopy *c = data;
  static const char *const written[] = {"bits", "rows", "cols", "group_size", "sym"}; /* by qfile_write_layer */
  for (int i = 0; i < 5; i++)
    if (!strcmp(name, written[i])) return 0;
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = H5Aget_type(a);
  H5T_class_t cls = H5Tget_class(t);
  H5Tclose(t);
  H5Aclose(a);
  if (cls == H5T_INTEGER) {
    int v;
    c->rc = h5_attr_int(loc, name, &v) || qfile_attr_int(c->w, c->group, name, v);
  } else if (cls == H5T_FLOAT) {
    double v = 0;
    a = H5Aopen(loc, name, H5P_DEFAULT);
    c->rc = H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0 || qfile_attr_double(c->w, c->group, name, v);
    H5Aclose(a);
  } else if (cls == H5T_STRING) {
    char v[1024];
    c->rc = h5_attr_string(loc, name, v, sizeof v) || qfile_attr_string(c->w, c->group, name, v);
  }
  return c->rc ? -1 : 0;
}

int qlayer_buffers_alloc(QLayerBuffers *b, int n, int cols, int bits, int group_size) {
  int ng = quant_ngroups(cols, group_size), wpr = quant_words_per_row(cols, bits);
  b->qweight = aptq_malloc(sizeof(uint32_t) * ((size_t)n * wpr + 1), "packed codes");
  b->scales = aptq_malloc(sizeof(float) * ((size_t)n * ng + 1), "scales");
  b->zeros = aptq_malloc(sizeof(int32_t) * ((size_t)n * ng + 1), "zeros");
  b->g_idx = aptq_malloc(sizeof(int32_t) * ((size_t)cols + 1), "g_idx");
  return b->qweight && b->scales && b->zeros && b->g_idx ? 0 : APTQ_ERR;
}

void qlayer_buffers_free(QLayerBuffers *b) {
  aptq_free(b->qweight);
  aptq_free(b->scales);
  aptq_free(b->zeros);
  aptq_free(b->g_idx);
  memset(b, 0, sizeof *b);
}

int qfile_copy_layer(QFileWriter *w, const char *src_path, const char *name) {
  int rank, size, bits = 0, rows = 0, cols = 0, gs = 0, sym = 0;
  MPI_Comm_rank(w->comm, &rank);
  MPI_Comm_size(w->comm, &size);
  char gname[512];
  snprintf(gname, sizeof gname, "/layers/%s", name);
  hid_t f = H5Fopen(src_path, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t g = f >= 0 ? H5Gopen2(f, gname, H5P_DEFAULT) : -1;
  int rc = g < 0 || h5_attr_int(g, "bits", &bits) || h5_attr_int(g, "rows", &rows) || h5_attr_int(g, "cols", &cols) ||
           h5_attr_int(g, "group_size", &gs) || h5_attr_int(g, "sym", &sym);
  if (rc) rc = aptq_error("checkpoint block file '%s' lacks layer %s; remove the checkpoint and start again", src_path, name);
  CHECK(aptq_agree(w->comm, rc));
  int ng = quant_ngroups(cols, gs), wpr = quant_words_per_row(cols, bits), r0, n;
  shard_range(rows, size, rank, &r0, &n);
  QLayerBuffers b;
  rc = qlayer_buffers_alloc(&b, n, cols, bits, gs);
  if (!rc && (read_rows_serial(g, "qweight", H5T_NATIVE_UINT32, r0, n, wpr, b.qweight) ||
              read_rows_serial(g, "scales", H5T_NATIVE_FLOAT, r0, n, ng, b.scales) ||
              read_rows_serial(g, "zeros", H5T_NATIVE_INT32, r0, n, ng, b.zeros) ||
              read_rows_serial(g, "g_idx", H5T_NATIVE_INT32, 0, 1, cols, b.g_idx)))
    rc = aptq_error("cannot read layer %s from checkpoint block file '%s'", name, src_path);
  rc = aptq_agree(w->comm, rc);
  if (!rc) {
    QLayerSlab slab = {name, rows, cols, bits, gs, sym, r0, r0 + n, b.qweight, b.scales, b.zeros, b.g_idx};
    rc = qfile_write_layer(w, &slab);
  }
  if (!rc) {
    AttrCopy c = {w, gname, 0};
    H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_attr, &c);
    rc = c.rc;
  }
  qlayer_buffers_free(&b);
  H5Gclose(g);
  H5Fclose(f);
  return rc;
}
