#include "qfile.h"

#include <errno.h>
#include <math.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "forward.h"
#include "h5read.h"
#include "memory.h"
#include "outpath.h"
#include "quant.h"
#include "sha256.h"
#include "tokens.h"

void linear_layer_name(int layer, int kind, char *buf, int size) {
  snprintf(buf, (size_t)size, "model.layers.%d.%s", layer, linear_names[kind]);
}

/* Does the HDF5 error stack (which holds the MPI-IO layer's message) say
 * the device is full or the file too large? */
static herr_t find_no_space(unsigned n, const H5E_error2_t *e, void *data) {
  (void)n;
  int *found = data;
  if (e->desc && (strstr(e->desc, "No space left") || strstr(e->desc, "ENOSPC") || strstr(e->desc, "quota") ||
                  strstr(e->desc, "too large") || strstr(e->desc, "EFBIG")))
    *found = 1;
  return 0;
}

/* Is the device of the directory of path full (less than 64 KiB free)? */
static int device_full(const char *path) {
  char dir[OPT_PATH_MAX + 64];
  snprintf(dir, sizeof dir, "%s", path);
  struct statvfs st;
  return statvfs(dirname(dir), &st) == 0 && (double)st.f_bavail * st.f_frsize < 65536.0;
}

/* A write that failed: "no space" when the error stack or the device says
 * so (the usual cause), else which write. */
static int h5fail(const QFileWriter *w, const char *what) {
  int full = 0;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, find_no_space, &full);
  if (full || errno == ENOSPC || errno == EFBIG || errno == EDQUOT || device_full(w->tmp))
    return aptq_error("no space left on device writing %s '%s'; free space or choose another %s", w->key, w->path, w->key);
  return aptq_error("HDF5 failed to %s in '%s' (temporary file of %s '%s')", what, w->tmp, w->key, w->path);
}

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
  w->file = -1;
  w->comm = comm;
  w->key = key;
  w->overwrite = overwrite;
  snprintf(w->path, sizeof w->path, "%s", path);
  /* one temporary name for all ranks: rank 0 creates it (outpath_temp), the
   * file is then opened (truncated: it is new and empty) by all */
  int rank;
  MPI_Comm_rank(comm, &rank);
  CHECK(aptq_agree(comm, rank == 0 ? outpath_temp(path, key, w->tmp, sizeof w->tmp, NULL) : 0));
  MPI_Bcast(w->tmp, sizeof w->tmp, MPI_CHAR, 0, comm);
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
    if (rank == 0) unlink(w->tmp);
    aptq_unregister_tmpfile(w->tmp);
    return aptq_agree(
        comm,
        aptq_error("cannot create the output file '%s' (temporary '%s'); check that its directory exists and is writable", path, w->tmp));
  }
  if (rank != 0) aptq_register_tmpfile(w->tmp);
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
  char what[300];
  snprintf(what, sizeof what, "write dataset '%s'", name);
  return st < 0 ? h5fail(w, what) : 0;
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
  char what[300];
  snprintf(what, sizeof what, "write dataset '%s'", name);
  return st < 0 ? h5fail(w, what) : 0;
}

int qfile_write_matrix(QFileWriter *w, const char *group, const char *name, hid_t type, int rows, int cols, int r0, int r1,
                       const void *data) {
  hid_t g = open_group(w->file, group);
  if (g < 0) return h5fail(w, "create a group");
  int rc = write_rows(w, g, name, type, rows, cols, r0, r1, data);
  H5Gclose(g);
  return rc;
}

int qfile_write_vector(QFileWriter *w, const char *group, const char *name, hid_t type, int n, int mine, const void *data) {
  hid_t g = open_group(w->file, group);
  if (g < 0) return h5fail(w, "create a group");
  int rc = write_vector(w, g, name, type, n, mine, data);
  H5Gclose(g);
  return rc;
}

int qfile_write_layer(QFileWriter *w, const QLayerSlab *s) {
  char gname[512];
  snprintf(gname, sizeof gname, "/layers/%s", s->name);
  hid_t g = open_group(w->file, gname);
  if (g < 0) return h5fail(w, "create a layer group");
  int ng = quant_ngroups(s->cols, s->group_size), rank;
  MPI_Comm_rank(w->comm, &rank);
  int rc = put_int(g, "bits", s->bits) || put_int(g, "rows", s->rows) || put_int(g, "cols", s->cols) ||
           put_int(g, "group_size", s->group_size) || put_int(g, "sym", s->sym);
  if (rc) rc = h5fail(w, "write layer attributes");
  if (!rc) rc = write_rows(w, g, "qweight", H5T_NATIVE_UINT32, s->rows, quant_words_per_row(s->cols, s->bits), s->r0, s->r1, s->qweight);
  if (!rc) rc = write_rows(w, g, "scales", H5T_NATIVE_FLOAT, s->rows, ng, s->r0, s->r1, s->scales);
  if (!rc) rc = write_rows(w, g, "zeros", H5T_NATIVE_INT32, s->rows, ng, s->r0, s->r1, s->zeros);
  if (!rc) rc = write_vector(w, g, "g_idx", H5T_NATIVE_INT32, s->cols, rank == 0, s->g_idx);
  if (!rc && s->mins) rc = write_rows(w, g, "mins", H5T_NATIVE_FLOAT, s->rows, ng, s->r0, s->r1, s->mins);
  H5Gclose(g);
  if (!rc && w->tee) rc = qfile_write_layer(w->tee, s);
  return rc;
}

static int in_group(QFileWriter *w, const char *group, hid_t *g) {
  *g = open_group(w->file, group);
  return *g < 0 ? h5fail(w, "open a group") : 0;
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
  if (rc) return h5fail(w, "write an attribute");
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
  if (rc) return h5fail(w, "write file attributes");
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
  if (rc) return h5fail(w, "write run metadata");
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
  return rc ? h5fail(w, "write the model config") : 0;
}

int qfile_commit(QFileWriter *w) {
  H5Pclose(w->dxpl);
  int ok = H5Fclose(w->file) >= 0;
  w->file = -1;
  ok = aptq_all_ok(w->comm, ok);
  int rank;
  MPI_Comm_rank(w->comm, &rank);
  int rc = 0;
  if (!ok) rc = h5fail(w, "flush and close the file");
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

static const char QFILE_FIX[] = "the file is damaged or not an aptq output: re-run aptq quantize";
static const char CHECKPOINT_FIX[] = "the checkpoint is damaged or not an aptq checkpoint: remove the checkpoint directory and start again";

static H5Src qfile_src(const QFileReader *r) { return (H5Src){"quantized file", r->path, QFILE_FIX}; }

int qfile_attach(QFileReader *r, const char *path, hid_t file) {
  memset(r, 0, sizeof *r);
  snprintf(r->path, sizeof r->path, "%s", path);
  r->file = file;
  H5Src s = qfile_src(r);
  char format[64] = "";
  int version = 0;
  CHECK(h5r_attr_string(&s, file, "/", "format", format, sizeof format));
  if (strcmp(format, "aptq-quantized-model"))
    return aptq_error(
        "quantized file '%s' is HDF5 but not an aptq quantized model (its format attribute is not "
        "'aptq-quantized-model'); give the file aptq quantize wrote",
        path);
  CHECK(h5r_attr_int(&s, file, "/", "format_version", &version));
  if (version != QFILE_FORMAT_VERSION)
    return aptq_error("'%s' has format_version %d; this aptq reads version %d", path, version, QFILE_FORMAT_VERSION);
  CHECK(h5r_attr_string(&s, file, "/meta", "model_fingerprint", r->model_fingerprint, sizeof r->model_fingerprint));
  return h5r_check_sha256(&s, "/meta", "model_fingerprint", r->model_fingerprint);
}

int qfile_open(QFileReader *r, const char *path, MPI_Comm comm) {
  memset(r, 0, sizeof *r);
  r->file = -1;
  H5Src s = {"quantized file", path, QFILE_FIX};
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), file;
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  int rc = h5r_open(&s, fapl, &file);
  H5Pclose(fapl);
  CHECK(rc);
  return qfile_attach(r, path, file);
}

int qlayer_check(const H5Src *s, const char *name, int n, int cols, int bits, int ng, const QLayerBuffers *b) {
  int wpr = quant_words_per_row(cols, bits), used = (int)(((int64_t)cols * bits) % 32), maxq = (1 << bits) - 1;
  uint32_t pad = used ? ~((1u << used) - 1) : 0; /* the bits of a row's last word past its last code */
  for (int j = 0; j < cols; j++)
    if (b->g_idx[j] < 0 || b->g_idx[j] >= ng)
      return aptq_error("%s '%s': layer %s g_idx[%d] = %d is outside [0, %d); %s", s->what, s->path, name, j, b->g_idx[j], ng, s->fix);
  /* 3- and 6-bit groups of 16 without mins (grid = q3_k | q6_k) may hold
   * negative scales: llama.cpp's sub-block scales d * sc of either sign
   * (grid_search, ksearch.h); any other scale is positive */
  int signed_ok = !b->mins && (bits == 3 || bits == 6) && ng == quant_ngroups(cols, 16);
  for (size_t i = 0; i < (size_t)n * ng; i++) {
    float sc = b->scales[i];
    if (signed_ok && (!isfinite(sc) || sc == 0.0f))
      return aptq_error("%s '%s': layer %s scales[%zu][%zu] = %g; a scale must be finite and nonzero; %s", s->what, s->path, name, i / ng,
                        i % ng, sc, s->fix);
    if (!signed_ok && (!isfinite(sc) || !(sc > 0)))
      return aptq_error("%s '%s': layer %s scales[%zu][%zu] = %g; a scale must be finite and positive; %s", s->what, s->path, name, i / ng,
                        i % ng, sc, s->fix);
    if (b->zeros[i] < 0 || b->zeros[i] > maxq)
      return aptq_error("%s '%s': layer %s zeros[%zu][%zu] = %d is outside [0, %d] (%d bits); %s", s->what, s->path, name, i / ng, i % ng,
                        b->zeros[i], maxq, bits, s->fix);
    if (b->mins && !isfinite(b->mins[i]))
      return aptq_error("%s '%s': layer %s mins[%zu][%zu] = %g; a min must be finite; %s", s->what, s->path, name, i / ng, i % ng,
                        b->mins[i], s->fix);
  }
  for (int i = 0; pad && i < n; i++)
    if (b->qweight[(size_t)i * wpr + wpr - 1] & pad)
      return aptq_error("%s '%s': layer %s qweight row %d has non-zero padding bits past its %d codes; %s", s->what, s->path, name, i, cols,
                        s->fix);
  return 0;
}

/* The layer attributes of group g checked: bits in [1, 8], group_size >= 0, sym 0 or 1 (when asked). */
static int layer_attrs(const H5Src *s, hid_t file, const char *g, int *bits, int *rows, int *cols, int *gs, int *sym) {
  CHECK(h5r_attr_int(s, file, g, "bits", bits));
  CHECK(h5r_attr_int(s, file, g, "rows", rows));
  CHECK(h5r_attr_int(s, file, g, "cols", cols));
  CHECK(h5r_attr_int(s, file, g, "group_size", gs));
  if (sym) CHECK(h5r_attr_int(s, file, g, "sym", sym));
  if (*bits < 1 || *bits > 8) return aptq_error("%s '%s': '%s' has bits = %d, outside [1, 8]; %s", s->what, s->path, g, *bits, s->fix);
  if (*gs < 0) return aptq_error("%s '%s': '%s' has group_size = %d, which is negative; %s", s->what, s->path, g, *gs, s->fix);
  if (sym && *sym != 0 && *sym != 1) return aptq_error("%s '%s': '%s' has sym = %d, not 0 or 1; %s", s->what, s->path, g, *sym, s->fix);
  return 0;
}

/* groups of a layer; a group_size past the width is one group (and cannot overflow) */
static int layer_ngroups(int cols, int gs) { return quant_ngroups(cols, gs > cols ? cols : gs); }

/* Rows [r0, r0 + n) of the layer stored in group g (rows × cols) into b. */
static int read_layer_rows(const H5Src *s, hid_t file, const char *g, int rows, int cols, int bits, int ng, int r0, int n, hid_t dxpl,
                           QLayerBuffers *b) {
  char d[600];
  int wpr = quant_words_per_row(cols, bits);
  snprintf(d, sizeof d, "%s/qweight", g);
  CHECK(h5r_read(s, file, d, H5T_NATIVE_UINT32, rows, wpr, r0, r0 + n, dxpl, b->qweight));
  snprintf(d, sizeof d, "%s/scales", g);
  CHECK(h5r_read(s, file, d, H5T_NATIVE_FLOAT, rows, ng, r0, r0 + n, dxpl, b->scales));
  snprintf(d, sizeof d, "%s/zeros", g);
  CHECK(h5r_read(s, file, d, H5T_NATIVE_INT32, rows, ng, r0, r0 + n, dxpl, b->zeros));
  snprintf(d, sizeof d, "%s/g_idx", g);
  CHECK(h5r_read(s, file, d, H5T_NATIVE_INT32, 0, cols, 0, 1, dxpl, b->g_idx));
  int has_mins; /* optional: rows × groups, float (grid = q4_k | q5_k | q2_k) */
  snprintf(d, sizeof d, "%s/mins", g);
  CHECK(h5r_exists(s, file, d, &has_mins));
  if (!has_mins) return 0;
  b->mins = aptq_malloc(sizeof(float) * ((size_t)n * ng + 1), "mins");
  if (!b->mins) return APTQ_ERR;
  return h5r_read(s, file, d, H5T_NATIVE_FLOAT, rows, ng, r0, r0 + n, dxpl, b->mins);
}

void qlayer_dequantize(const QLayerBuffers *b, int rows, int cols, int bits, int ng, uint8_t *codes, float *W) {
  int wpr = quant_words_per_row(cols, bits);
  for (int i = 0; i < rows; i++) {
    quant_unpack_row(b->qweight + (size_t)i * wpr, cols, bits, codes);
    for (int j = 0; j < cols; j++) {
      int gi = b->g_idx[j];
      size_t k = (size_t)i * ng + gi;
      W[(size_t)i * cols + j] =
          b->mins ? quant_dequant_min(codes[j], b->scales[k], b->zeros[k], b->mins[k]) : quant_dequant(codes[j], b->scales[k], b->zeros[k]);
    }
  }
}

int qfile_read_stored(QFileReader *r, const char *name, int rows, int cols, QLayerBuffers *b, int *bits, int *group_size) {
  memset(b, 0, sizeof *b);
  H5Src s = qfile_src(r);
  char g[512];
  snprintf(g, sizeof g, "/layers/%s", name);
  int exists, grows = 0, gcols = 0, gs = -1;
  CHECK(h5r_exists(&s, r->file, g, &exists));
  if (!exists) return aptq_error("%s: layer %s is missing", r->path, name);
  CHECK(layer_attrs(&s, r->file, g, bits, &grows, &gcols, &gs, NULL));
  if (grows != rows || gcols != cols)
    return aptq_error("%s: layer %s is %d x %d at %d bits (group %d) but the model needs %d x %d; wrong model for this file", r->path, name,
                      grows, gcols, *bits, gs, rows, cols);
  *group_size = gs > cols ? cols : gs;
  int ng = layer_ngroups(cols, gs);
  CHECK(qlayer_buffers_alloc(b, rows, cols, *bits, *group_size));
  CHECK(read_layer_rows(&s, r->file, g, rows, cols, *bits, ng, 0, rows, H5P_DEFAULT, b));
  return qlayer_check(&s, name, rows, cols, *bits, ng, b);
}

int qfile_read_linear(QFileReader *r, const char *name, int rows, int cols, float *W) {
  QLayerBuffers b;
  int bits = 0, gs = 0;
  int rc = qfile_read_stored(r, name, rows, cols, &b, &bits, &gs);
  uint8_t *codes = rc ? NULL : aptq_malloc((size_t)cols, "codes of a row");
  if (!rc && !codes) rc = APTQ_ERR;
  if (!rc) qlayer_dequantize(&b, rows, cols, bits, quant_ngroups(cols, gs), codes, W);
  qlayer_buffers_free(&b);
  aptq_free(codes);
  return rc;
}

int qfile_open_model(QFileReader *r, const char *path, const Model *m, MPI_Comm comm) {
  int rc = qfile_open(r, path, comm);
  if (!rc && strcmp(r->model_fingerprint, m->fingerprint)) {
    int n = sha256_hex_shown(r->model_fingerprint, m->fingerprint);
    rc = aptq_error("'%s' was made from a different model (fingerprint %.*s..., this model %.*s...); give the model it was quantized from",
                    path, n, r->model_fingerprint, n, m->fingerprint);
  }
  return aptq_agree(comm, rc);
}

int qfile_block_weights(QFileReader *r, const Model *m, int l, BlockWeights *w) {
  CHECK(block_weights_load(m, l, w));
  for (int k = 0; r->file >= 0 && k < LIN_COUNT; k++) {
    char name[256];
    linear_layer_name(l, k, name, sizeof name);
    CHECK(qfile_read_linear(r, name, (int)m->linear[l][k].rows, (int)m->linear[l][k].cols, w->w[k]));
    memory_release_free(); /* the stored form's freed pages, before the next layer's (of another size) */
  }
  return 0;
}

/* Bytes qfile_read_linear holds for layer g (rows × cols) besides W: the
 * stored form (qlayer_buffers_alloc, mins where stored) and a row's codes;
 * an error for a layer of another shape (reading it reports that). */
static int stored_bytes(const H5Src *s, hid_t file, const char *g, int rows, int cols, double *bytes) {
  int bits, grows, gcols, gs, has_mins;
  char d[600];
  CHECK(layer_attrs(s, file, g, &bits, &grows, &gcols, &gs, NULL));
  if (grows != rows || gcols != cols) return APTQ_ERR;
  snprintf(d, sizeof d, "%s/mins", g);
  CHECK(h5r_exists(s, file, d, &has_mins));
  *bytes = qlayer_buffers_bytes(rows, cols, bits, gs > cols ? cols : gs, has_mins) + cols; /* + a row's codes */
  return 0;
}

double qfile_stored_bytes_max(const QFileReader *r, const Model *m) {
  H5Src s = qfile_src(r);
  double most = 0;
  for (int l = 0; r->file >= 0 && l < m->cfg.n_layers; l++)
    for (int k = 0; k < LIN_COUNT; k++) {
      char name[256], g[512];
      double b;
      linear_layer_name(l, k, name, sizeof name);
      snprintf(g, sizeof g, "/layers/%s", name);
      if (stored_bytes(&s, r->file, g, (int)m->linear[l][k].rows, (int)m->linear[l][k].cols, &b)) {
        aptq_clear_error(); /* reading the layer reports it */
        continue;
      }
      most = b > most ? b : most;
    }
  return most;
}

void qfile_close(QFileReader *r) {
  if (r->file >= 0) H5Fclose(r->file);
  r->file = -1;
}

/* ---------------------------------------------------------- layer copy */
typedef struct {
  QFileWriter *w;
  const H5Src *src;
  hid_t file;
  const char *group;
  int rc;
} AttrCopy;

/* Every attribute of the source layer group but those qfile_write_layer
 * writes, read as one value (h5read.h) and written again. */
static herr_t copy_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  AttrCopy *c = data; /* c->w NULL: only read (the check before anything is written) */
  static const char *const written[] = {"bits", "rows", "cols", "group_size", "sym"}; /* by qfile_write_layer */
  for (int i = 0; i < 5; i++)
    if (!strcmp(name, written[i])) return 0;
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = a < 0 ? -1 : H5Aget_type(a);
  H5T_class_t cls = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  if (cls == H5T_INTEGER) {
    int v;
    c->rc = h5r_attr_int(c->src, c->file, c->group, name, &v) || (c->w && qfile_attr_int(c->w, c->group, name, v));
  } else if (cls == H5T_FLOAT) {
    double v = 0;
    c->rc = h5r_attr_double(c->src, c->file, c->group, name, &v) || (c->w && qfile_attr_double(c->w, c->group, name, v));
  } else {
    char v[1024];
    c->rc = h5r_attr_string(c->src, c->file, c->group, name, v, sizeof v) || (c->w && qfile_attr_string(c->w, c->group, name, v));
  }
  return c->rc ? -1 : 0;
}

double qlayer_buffers_bytes(int n, int cols, int bits, int group_size, int mins) {
  double ng = quant_ngroups(cols, group_size), wpr = quant_words_per_row(cols, bits);
  return sizeof(uint32_t) * ((double)n * wpr + 1) + (2.0 + (mins != 0)) * sizeof(float) * ((double)n * ng + 1) +
         sizeof(int32_t) * ((double)cols + 1);
}

int qlayer_buffers_alloc(QLayerBuffers *b, int n, int cols, int bits, int group_size) {
  int ng = quant_ngroups(cols, group_size), wpr = quant_words_per_row(cols, bits);
  b->qweight = aptq_malloc(sizeof(uint32_t) * ((size_t)n * wpr + 1), "packed codes");
  b->scales = aptq_malloc(sizeof(float) * ((size_t)n * ng + 1), "scales");
  b->zeros = aptq_malloc(sizeof(int32_t) * ((size_t)n * ng + 1), "zeros");
  b->g_idx = aptq_malloc(sizeof(int32_t) * ((size_t)cols + 1), "g_idx");
  b->mins = NULL;
  return b->qweight && b->scales && b->zeros && b->g_idx ? 0 : APTQ_ERR;
}

void qlayer_buffers_free(QLayerBuffers *b) {
  aptq_free(b->qweight);
  aptq_free(b->scales);
  aptq_free(b->zeros);
  aptq_free(b->g_idx);
  aptq_free(b->mins);
  memset(b, 0, sizeof *b);
}

int qlayer_read_rows(const H5Src *s, hid_t f, const char *name, int rows, int cols, int r0, int n, QLayerBuffers *b, QLayerSlab *slab) {
  char g[512];
  snprintf(g, sizeof g, "/layers/%s", name);
  int bits, grows, gcols, gs, sym;
  CHECK(layer_attrs(s, f, g, &bits, &grows, &gcols, &gs, &sym));
  if (grows != rows || gcols != cols)
    return aptq_error("%s '%s': layer %s is %d x %d but the model's is %d x %d; %s", s->what, s->path, name, grows, gcols, rows, cols,
                      s->fix);
  int ng = layer_ngroups(cols, gs);
  CHECK(qlayer_buffers_alloc(b, n, cols, bits, gs > cols ? cols : gs));
  CHECK(read_layer_rows(s, f, g, rows, cols, bits, ng, r0, n, H5P_DEFAULT, b));
  CHECK(qlayer_check(s, name, n, cols, bits, ng, b));
  *slab = (QLayerSlab){name, rows, cols, bits, gs, sym, r0, r0 + n, b->qweight, b->scales, b->zeros, b->g_idx, b->mins};
  return 0;
}

int qfile_copy_layer(QFileWriter *w, const char *src_path, const char *name, int rows, int cols) {
  int rank, size;
  MPI_Comm_rank(w->comm, &rank);
  MPI_Comm_size(w->comm, &size);
  char gname[512];
  snprintf(gname, sizeof gname, "/layers/%s", name);
  H5Src s = {"checkpoint", src_path, CHECKPOINT_FIX};
  hid_t f = -1;
  QLayerBuffers b = {0};
  QLayerSlab slab;
  hid_t g = -1;
  int r0, n;
  shard_range(rows, size, rank, &r0, &n);
  int rc = h5r_open(&s, H5P_DEFAULT, &f);
  if (!rc) rc = qlayer_read_rows(&s, f, name, rows, cols, r0, n, &b, &slab);
  if (!rc) rc = h5r_group(&s, f, gname, &g);
  AttrCopy c = {NULL, &s, f, gname, 0};
  if (!rc && H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_attr, &c) < 0) rc = c.rc ? c.rc : APTQ_ERR;
  rc = aptq_agree(w->comm, rc); /* every rank read and checked the same: now the collective writes */
  if (!rc) rc = qfile_write_layer(w, &slab);
  c.w = w;
  if (!rc && H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_attr, &c) < 0) rc = c.rc ? c.rc : APTQ_ERR;
  qlayer_buffers_free(&b);
  if (g >= 0) H5Gclose(g);
  if (f >= 0) H5Fclose(f);
  return rc;
}
