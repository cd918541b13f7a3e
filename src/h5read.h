/* Validated reads of HDF5 files that aptq did not necessarily write:
 * quantized files (aptq eval, recon), checkpoints (resume) and aptq layer
 * inputs may come from someone else (issue 13; docs/hdf5-schema.md, "What
 * a reader checks").
 *
 * - A file is opened only if it is a regular file (inpath_check).
 * - Every object is reached through hard links only, component by
 *   component from the root: no soft link and no external link is ever
 *   followed, so a file cannot send the reader into another file or
 *   around its own layout.
 * - A dataset must keep its data inside the file: external raw storage
 *   (H5Pset_external) and virtual datasets are refused before any read.
 * - An attribute must be one value (scalar, or one element) of the
 *   expected class; a string attribute fixed-length and shorter than the
 *   buffer.
 * - A dataset's class, rank and dimensions are checked against the
 *   expected ones before anything is read.
 * Every refusal records one error line:
 *   "<what> '<path>': <problem>; <fix>"
 * All functions are local (no MPI) except where stated. Object names are
 * absolute paths from the root ("/layers/NAME/scales"). */
#ifndef APTQ_H5READ_H
#define APTQ_H5READ_H

#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>

/* The file being read, for the messages. */
typedef struct {
  const char *what; /* "quantized file", "checkpoint", "aptq layer input" */
  const char *path;
  const char *fix; /* e.g. "the file is damaged or not an aptq output: re-run aptq quantize" */
} H5Src;

/* path checked (regular file), then opened read-only with fapl
 * (H5P_DEFAULT, or an MPI-IO one: collective then). */
int h5r_open(const H5Src *s, hid_t fapl, hid_t *file);
/* The same file held in memory (HDF5's core driver; the fuzz targets). */
int h5r_open_image(const H5Src *s, const void *image, size_t size, hid_t *file);

/* *exists = 1 if name exists and every component of it is a hard link,
 * 0 if a component is missing; APTQ_ERR (recorded) if a component is a
 * soft or external link. */
int h5r_exists(const H5Src *s, hid_t file, const char *name, int *exists);
/* Group name (hard links only) opened into *g; missing: an error. */
int h5r_group(const H5Src *s, hid_t file, const char *name, hid_t *g);

/* One attribute NAME of object OBJ: an integer (converted to int), a float
 * (converted to double) or a fixed-length string (NUL-terminated into buf
 * of size bytes). Missing, not one value, another class: an error. */
int h5r_attr_int(const H5Src *s, hid_t file, const char *obj, const char *name, int *v);
int h5r_attr_double(const H5Src *s, hid_t file, const char *obj, const char *name, double *v);
int h5r_attr_string(const H5Src *s, hid_t file, const char *obj, const char *name, char *buf, size_t size);

/* A string attribute's value (read by h5r_attr_string) is a SHA-256 in
 * lowercase hex (64 characters): 0, or an error naming obj and name. */
int h5r_check_sha256(const H5Src *s, const char *obj, const char *name, const char *value);

/* Dataset NAME (hard links only, data inside the file, class cls:
 * H5T_INTEGER or H5T_FLOAT, rank nd) opened into *d, its dimensions into
 * dims (nd values). */
int h5r_dataset(const H5Src *s, hid_t file, const char *name, H5T_class_t cls, int nd, hsize_t *dims, hid_t *d);
/* Rows [r0, r1) of dataset NAME, which must be rows × cols (nd = 2) or,
 * with rows = 0, a vector of cols elements (then r0 = 0, r1 = 1: all of
 * it), converted to memtype into buf. r1 == r0 reads nothing (collective
 * reads: every rank still takes part). dxpl: H5P_DEFAULT or a transfer
 * list. */
int h5r_read(const H5Src *s, hid_t file, const char *name, hid_t memtype, int rows, int cols, int r0, int r1, hid_t dxpl, void *buf);

/* Collective (MPI-IO open on comm): the shape of the 2-D numeric dataset
 * NAME of the file s->path. */
int h5_matrix_shape(const H5Src *s, const char *name, int *rows, int *cols, MPI_Comm comm);
/* Collective: rows [r0, r1) of the rows × cols dataset NAME of s->path
 * (the shape must be exactly that) converted to memtype into buf. */
int h5_read_matrix(const H5Src *s, const char *name, hid_t memtype, int rows, int cols, int r0, int r1, void *buf, MPI_Comm comm);

#endif
