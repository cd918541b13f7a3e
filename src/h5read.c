#include "h5read.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "inpath.h"

/* "<what> '<path>': <problem>; <fix>" */
static int refuse(const H5Src *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(const H5Src *s, const char *fmt, ...) {
  char problem[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(problem, sizeof problem, fmt, ap);
  va_end(ap);
  return aptq_error("%s '%s': %s; %s", s->what, s->path, problem, s->fix);
}

static const char *class_name(H5T_class_t c) {
  switch (c) {
    case H5T_INTEGER: return "integers";
    case H5T_FLOAT: return "floating-point numbers";
    case H5T_STRING: return "a string";
    case H5T_NO_CLASS: return "numbers";
    default: return "neither numbers nor a string";
  }
}

int h5r_open(const H5Src *s, hid_t fapl, hid_t *file) {
  *file = -1;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  CHECK(inpath_check(s->path, s->what, s->fix));
  *file = H5Fopen(s->path, H5F_ACC_RDONLY, fapl);
  if (*file < 0) return aptq_error("%s '%s' is not an HDF5 file (or is damaged); %s", s->what, s->path, s->fix);
  return 0;
}

int h5r_open_image(const H5Src *s, const void *image, size_t size, hid_t *file) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_core(fapl, 65536, 0);
  H5Pset_file_image(fapl, (void *)image, size);
  *file = H5Fopen(s->path, H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  if (*file < 0) return aptq_error("%s '%s' is not an HDF5 file (or is damaged); %s", s->what, s->path, s->fix);
  return 0;
}

static const char *link_kind(H5L_type_t t) {
  return t == H5L_TYPE_SOFT ? "a soft link" : t == H5L_TYPE_EXTERNAL ? "an external link (into another file)" : "a user-defined link";
}

int h5r_exists(const H5Src *s, hid_t file, const char *name, int *exists) {
  char buf[1024];
  *exists = 0;
  if (name[0] != '/' || strlen(name) >= sizeof buf) return refuse(s, "object name '%.64s' is not an absolute path", name);
  snprintf(buf, sizeof buf, "%s", name);
  for (char *p = buf + 1; *(p - 1); p++) {
    if (*p != '/' && *p) continue;
    char c = *p;
    *p = 0;
    if (p > buf + 1) { /* not the root */
      htri_t e = H5Lexists(file, buf, H5P_DEFAULT);
      if (e < 0) return refuse(s, "cannot look up '%s'", buf);
      if (e == 0) return 0;
      H5L_info_t li;
      if (H5Lget_info(file, buf, &li, H5P_DEFAULT) < 0) return refuse(s, "cannot look up '%s'", buf);
      if (li.type != H5L_TYPE_HARD)
        return refuse(s, "'%s' is %s; aptq reads only objects stored in the file itself, reached by hard links", buf, link_kind(li.type));
    }
    *p = c;
  }
  *exists = 1;
  return 0;
}

/* obj opened (hard links only) and of the type wanted (H5I_GROUP, H5I_DATASET). */
static int open_object(const H5Src *s, hid_t file, const char *name, H5I_type_t type, hid_t *obj) {
  int exists;
  *obj = -1;
  CHECK(h5r_exists(s, file, name, &exists));
  const char *kind = type == H5I_GROUP ? "group" : "dataset";
  if (!exists) return refuse(s, "%s '%s' is missing", kind, name);
  *obj = H5Oopen(file, name, H5P_DEFAULT);
  if (*obj < 0) return refuse(s, "cannot open %s '%s'", kind, name);
  if (H5Iget_type(*obj) != type) {
    H5Oclose(*obj);
    *obj = -1;
    return refuse(s, "'%s' is not a %s", name, kind);
  }
  return 0;
}

int h5r_group(const H5Src *s, hid_t file, const char *name, hid_t *g) { return open_object(s, file, name, H5I_GROUP, g); }

/* Attribute name of obj opened, one value of class cls; *t its type. */
static int attr_open(const H5Src *s, hid_t file, const char *obj, const char *name, H5T_class_t cls, hid_t *a, hid_t *t) {
  int exists;
  *a = *t = -1;
  CHECK(h5r_exists(s, file, obj, &exists));
  if (!exists) return refuse(s, "object '%s' is missing", obj);
  if (H5Aexists_by_name(file, obj, name, H5P_DEFAULT) <= 0) return refuse(s, "'%s' has no attribute '%s'", obj, name);
  *a = H5Aopen_by_name(file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
  if (*a < 0) return refuse(s, "cannot open attribute '%s' of '%s'", name, obj);
  hid_t space = H5Aget_space(*a);
  H5S_class_t sc = space < 0 ? H5S_NO_CLASS : H5Sget_simple_extent_type(space);
  hssize_t n = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
  if (space >= 0) H5Sclose(space);
  *t = H5Aget_type(*a);
  H5T_class_t c = *t < 0 ? H5T_NO_CLASS : H5Tget_class(*t);
  int rc = 0;
  if (sc != H5S_SCALAR && !(sc == H5S_SIMPLE && n == 1))
    rc = refuse(s, "attribute '%s' of '%s' holds %lld values, expected one", name, obj, sc == H5S_SIMPLE ? (long long)n : 0LL);
  else if (c != cls) rc = refuse(s, "attribute '%s' of '%s' holds %s, expected %s", name, obj, class_name(c), class_name(cls));
  else if (c == H5T_STRING && H5Tis_variable_str(*t) != 0)
    rc = refuse(s, "attribute '%s' of '%s' is a variable-length string, expected a fixed-length one", name, obj);
  if (rc) {
    if (*t >= 0) H5Tclose(*t);
    H5Aclose(*a);
    *a = *t = -1;
  }
  return rc;
}

static int attr_number(const H5Src *s, hid_t file, const char *obj, const char *name, H5T_class_t cls, hid_t memtype, void *v) {
  hid_t a, t;
  CHECK(attr_open(s, file, obj, name, cls, &a, &t));
  int rc = H5Aread(a, memtype, v) < 0 ? refuse(s, "cannot read attribute '%s' of '%s'", name, obj) : 0;
  H5Tclose(t);
  H5Aclose(a);
  return rc;
}

int h5r_attr_int(const H5Src *s, hid_t file, const char *obj, const char *name, int *v) {
  return attr_number(s, file, obj, name, H5T_INTEGER, H5T_NATIVE_INT, v);
}

int h5r_attr_double(const H5Src *s, hid_t file, const char *obj, const char *name, double *v) {
  return attr_number(s, file, obj, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, v);
}

int h5r_attr_string(const H5Src *s, hid_t file, const char *obj, const char *name, char *buf, size_t size) {
  hid_t a, t;
  CHECK(attr_open(s, file, obj, name, H5T_STRING, &a, &t));
  size_t n = H5Tget_size(t);
  int rc = 0;
  if (n == 0 || n > size) rc = refuse(s, "attribute '%s' of '%s' is a string of %zu bytes, expected at most %zu", name, obj, n, size);
  if (!rc) {
    /* read as a null-terminated string one byte longer where the buffer
     * allows: a stored null-padded string of n characters (h5py's
     * np.bytes_) keeps its last one */
    size_t m = n < size ? n + 1 : size;
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, m);
    H5Tset_cset(mt, H5Tget_cset(t));
    if (H5Aread(a, mt, buf) < 0) rc = refuse(s, "cannot read attribute '%s' of '%s'", name, obj);
    buf[m - 1] = 0;
    H5Tclose(mt);
  }
  H5Tclose(t);
  H5Aclose(a);
  return rc;
}

/* Contiguous data lies inside the file (HDF5 1.10 does not check a damaged
 * layout's address and size against the end of the file before reading). */
static int check_extent(const H5Src *s, hid_t d, const char *name) {
  haddr_t offset = H5Dget_offset(d);
  if (offset == HADDR_UNDEF) return 0; /* never written: the fill value */
  hsize_t size = H5Dget_storage_size(d), eof = 0;
  hid_t f = H5Iget_file_id(d);
  herr_t st = f < 0 ? -1 : H5Fget_filesize(f, &eof);
  if (f >= 0) H5Fclose(f);
  if (st < 0 || offset > eof || size > eof - offset)
    return refuse(s, "dataset '%s' claims %llu bytes at offset %llu, past the end of the file", name, (unsigned long long)size,
                  (unsigned long long)offset);
  return 0;
}

int h5r_check_sha256(const H5Src *s, const char *obj, const char *name, const char *value) {
  if (strlen(value) != 64 || strspn(value, "0123456789abcdef") != 64)
    return refuse(s, "attribute '%s' of '%s' is not a SHA-256 (64 lowercase hex digits)", name, obj);
  return 0;
}

/* The dataset keeps its data in the file: no external raw storage, not virtual. */
static int check_storage(const H5Src *s, hid_t d, const char *name) {
  hid_t dcpl = H5Dget_create_plist(d);
  if (dcpl < 0) return refuse(s, "cannot read the storage properties of dataset '%s'", name);
  int next = H5Pget_external_count(dcpl);
  H5D_layout_t layout = H5Pget_layout(dcpl);
  H5Pclose(dcpl);
  if (next != 0)
    return refuse(
        s, "dataset '%s' keeps its data in external files (HDF5 external raw storage); aptq reads only data stored in the file itself",
        name);
  if (layout == H5D_VIRTUAL)
    return refuse(
        s, "dataset '%s' is a virtual dataset (mapped from other datasets or files); aptq reads only data stored in the file itself", name);
  if (layout != H5D_CONTIGUOUS && layout != H5D_CHUNKED && layout != H5D_COMPACT)
    return refuse(s, "dataset '%s' has an unknown storage layout", name);
  return layout == H5D_CONTIGUOUS ? check_extent(s, d, name) : 0;
}

static int check_dataset(const H5Src *s, hid_t d, const char *name, H5T_class_t cls, int nd, hsize_t *dims) {
  CHECK(check_storage(s, d, name));
  hid_t t = H5Dget_type(d);
  H5T_class_t c = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
  if (t >= 0) H5Tclose(t);
  int numeric = c == H5T_INTEGER || c == H5T_FLOAT;
  if (cls == H5T_NO_CLASS ? !numeric : c != cls)
    return refuse(s, "dataset '%s' holds %s, expected %s", name, class_name(c == H5T_NO_CLASS ? H5T_NCLASSES : c), class_name(cls));
  hid_t space = H5Dget_space(d);
  int have = space < 0 || H5Sget_simple_extent_type(space) != H5S_SIMPLE ? 0 : H5Sget_simple_extent_ndims(space);
  if (have == nd) H5Sget_simple_extent_dims(space, dims, NULL);
  if (space >= 0) H5Sclose(space);
  if (have != nd) return refuse(s, "dataset '%s' has rank %d, expected %d", name, have, nd);
  return 0;
}

int h5r_dataset(const H5Src *s, hid_t file, const char *name, H5T_class_t cls, int nd, hsize_t *dims, hid_t *d) {
  CHECK(open_object(s, file, name, H5I_DATASET, d));
  int rc = check_dataset(s, *d, name, cls, nd, dims);
  if (rc) {
    H5Dclose(*d);
    *d = -1;
  }
  return rc;
}

/* h5r_read of a dataset of class cls (H5T_NO_CLASS: integer or float) */
static int read_rows(const H5Src *s, hid_t file, const char *name, H5T_class_t cls, hid_t memtype, int rows, int cols, int r0, int r1,
                     hid_t dxpl, void *buf) {
  int nd = rows ? 2 : 1;
  hsize_t dims[2] = {0, 0};
  hid_t d;
  CHECK(h5r_dataset(s, file, name, cls, nd, dims, &d));
  int rc = 0;
  if (nd == 2 && (dims[0] != (hsize_t)rows || dims[1] != (hsize_t)cols))
    rc = refuse(s, "dataset '%s' is %llu x %llu, expected %d x %d", name, (unsigned long long)dims[0], (unsigned long long)dims[1], rows,
                cols);
  else if (nd == 1 && dims[0] != (hsize_t)cols)
    rc = refuse(s, "dataset '%s' has %llu elements, expected %d", name, (unsigned long long)dims[0], cols);
  else if (r0 < 0 || r1 < r0 || (nd == 2 && r1 > rows))
    rc = aptq_error("rows [%d, %d) of dataset '%s' of '%s' asked for, outside [0, %d)", r0, r1, name, s->path, rows);
  if (!rc) {
    hid_t fs = H5Dget_space(d);
    hsize_t start[2] = {(hsize_t)r0, 0}, count[2] = {(hsize_t)(r1 - r0), (hsize_t)cols};
    if (nd == 1) count[0] = (hsize_t)cols;
    hid_t ms = H5Screate_simple(nd, count, NULL);
    if (nd == 1 || r1 > r0) H5Sselect_hyperslab(fs, H5S_SELECT_SET, nd == 1 ? start + 1 : start, NULL, count, NULL);
    else {
      H5Sselect_none(fs);
      H5Sselect_none(ms);
    }
    if (H5Dread(d, memtype, ms, fs, dxpl, buf) < 0) rc = refuse(s, "cannot read dataset '%s'", name);
    H5Sclose(ms);
    H5Sclose(fs);
  }
  H5Dclose(d);
  return rc;
}

int h5r_read(const H5Src *s, hid_t file, const char *name, hid_t memtype, int rows, int cols, int r0, int r1, hid_t dxpl, void *buf) {
  /* the class of the memory type: a float dataset would fill an integer buffer only by rounding */
  return read_rows(s, file, name, H5Tget_class(memtype), memtype, rows, cols, r0, r1, dxpl, buf);
}

static int open_mpi(const H5Src *s, hid_t *file, MPI_Comm comm) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  int rc = h5r_open(s, fapl, file);
  H5Pclose(fapl);
  return rc;
}

int h5_matrix_shape(const H5Src *s, const char *name, int *rows, int *cols, MPI_Comm comm) {
  hid_t f, d;
  hsize_t dims[2] = {0, 0};
  CHECK(open_mpi(s, &f, comm));
  int rc = h5r_dataset(s, f, name, H5T_NO_CLASS, 2, dims, &d);
  if (!rc) H5Dclose(d);
  H5Fclose(f);
  CHECK(rc);
  if (dims[0] == 0 || dims[1] == 0 || dims[0] > (1u << 30) || dims[1] > (1u << 30))
    return refuse(s, "dataset '%s' is %llu x %llu; it must be a non-empty matrix of at most 2^30 x 2^30", name, (unsigned long long)dims[0],
                  (unsigned long long)dims[1]);
  *rows = (int)dims[0];
  *cols = (int)dims[1];
  return 0;
}

int h5_read_matrix(const H5Src *s, const char *name, hid_t memtype, int rows, int cols, int r0, int r1, void *buf, MPI_Comm comm) {
  hid_t f;
  CHECK(open_mpi(s, &f, comm));
  /* any numeric class: the W and H of aptq layer may be stored as integers */
  int rc = read_rows(s, f, name, H5T_NO_CLASS, memtype, rows, cols, r0, r1, H5P_DEFAULT, buf);
  H5Fclose(f);
  return rc;
}
