#include "checkpoint.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "h5read.h"
#include "outpath.h"
#include "sha256.h"

static const char CHECKPOINT_FIX[] = "the checkpoint is damaged or not an aptq checkpoint: remove the checkpoint directory and start again";

/* Options that change the result; a resumed run must repeat them exactly. */
static int result_options(const Options *o, char *buf, size_t size) {
  static const char *const ignored[] = {"output", "report",    "overwrite", "checkpoint", "resume",    "threads",
                                        "tokens", "quantized", "compare",   "logits",     "tokenizer", "format"};
  size_t len = 0;
  buf[0] = 0;
  const char *key;
  char value[OPT_PATH_MAX];
  for (int i = 0; options_item(o, i, &key, value, sizeof value); i++) {
    int skip = 0;
    for (size_t k = 0; k < sizeof ignored / sizeof *ignored; k++) skip |= !strcmp(key, ignored[k]);
    if (skip) continue;
    int n = snprintf(buf + len, size - len, "%s = %s\n", key, value);
    if (n < 0 || (size_t)n >= size - len) return aptq_error("options too long for the checkpoint record");
    len += (size_t)n;
  }
  return 0;
}

static void state_path(const Checkpoint *ck, char *buf, size_t size) { snprintf(buf, size, "%s/state.h5", ck->dir); }
static void block_path(const Checkpoint *ck, int l, char *buf, size_t size) { snprintf(buf, size, "%s/block-%d.h5", ck->dir, l); }

/* The first line of a that differs from b, for the error message. */
static void first_difference(const char *a, const char *b, char *out, size_t size) {
  while (*a && *b) {
    const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
    size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
    if (la != lb || strncmp(a, b, la)) {
      snprintf(out, size, "it was made with '%.*s', this run has '%.*s'", (int)la, a, (int)lb, b);
      return;
    }
    a += la + (ea ? 1 : 0);
    b += lb + (eb ? 1 : 0);
  }
  snprintf(out, size, "the option lists differ");
}

int checkpoint_read_meta(const H5Src *s, hid_t f, CheckpointMeta *cm) {
  char format[64] = "";
  CHECK(h5r_attr_string(s, f, "/meta", "format", format, sizeof format));
  if (strcmp(format, "aptq-checkpoint"))
    return aptq_error("%s '%s' is not an aptq checkpoint (its format attribute is not 'aptq-checkpoint'); %s", s->what, s->path, s->fix);
  CHECK(h5r_attr_string(s, f, "/meta", "options", cm->options, sizeof cm->options));
  CHECK(h5r_attr_string(s, f, "/meta", "model_fingerprint", cm->fingerprint, sizeof cm->fingerprint));
  CHECK(h5r_attr_string(s, f, "/meta", "calib_sha256", cm->calib_sha256, sizeof cm->calib_sha256));
  CHECK(h5r_check_sha256(s, "/meta", "model_fingerprint", cm->fingerprint));
  CHECK(h5r_check_sha256(s, "/meta", "calib_sha256", cm->calib_sha256));
  CHECK(h5r_attr_int(s, f, "/meta", "next_block", &cm->next_block));
  CHECK(h5r_attr_int(s, f, "/meta", "layers", &cm->layers));
  return h5r_attr_int(s, f, "/meta", "stats", &cm->stats);
}

int checkpoint_begin(Checkpoint *ck, const Options *o, const Model *m, const TokenShard *calib, int nstats, MPI_Comm comm) {
  memset(ck, 0, sizeof *ck);
  ck->block.file = -1;
  ck->nstats = nstats;
  ck->opts = o;
  if (!o->checkpoint[0]) {
    if (o->resume) return aptq_agree(comm, aptq_error("resume = yes needs checkpoint = DIR, the directory of the interrupted run"));
    return 0;
  }
  ck->on = 1;
  snprintf(ck->dir, sizeof ck->dir, "%s", o->checkpoint);
  int rank;
  MPI_Comm_rank(comm, &rank);
  int rc = rank == 0 ? outpath_check_dir(ck->dir, "checkpoint", o) : 0;
  if (!rc && rank == 0 && mkdir(ck->dir, 0777) != 0 && errno != EEXIST)
    rc = aptq_error("checkpoint: cannot create directory '%s': %s; give a writable path", ck->dir, strerror(errno));
  struct stat st;
  if (!rc && rank == 0 && (stat(ck->dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(ck->dir, W_OK) != 0))
    rc = aptq_error("checkpoint: '%s' is not a writable directory; give a writable directory", ck->dir);
  CHECK(aptq_agree(comm, rc));
  /* the run's own files, replaced block after block (overwrite does not
   * apply; resume does): never an input, another output or a special file */
  char path[OPT_PATH_MAX + 32];
  for (int l = 0; l < m->cfg.n_layers; l++) {
    block_path(ck, l, path, sizeof path);
    CHECK(output_check(path, "checkpoint", 1, o, comm));
  }
  state_path(ck, path, sizeof path);
  CHECK(output_check(path, "checkpoint", 1, o, comm));
  int exists = access(path, F_OK) == 0;
  if (!o->resume) {
    if (exists)
      rc = aptq_error("checkpoint '%s' holds the state of an earlier run; give resume = yes to continue it, or remove the directory",
                      ck->dir);
    return aptq_agree(comm, rc);
  }
  if (!exists) return aptq_agree(comm, aptq_error("resume = yes but '%s' has no checkpoint (no state.h5); run without resume", ck->dir));
  /* every rank reads the small attributes itself */
  static char want[65536];
  static CheckpointMeta cm;
  rc = result_options(o, want, sizeof want);
  H5Src s = {"checkpoint", path, CHECKPOINT_FIX};
  hid_t f = -1;
  if (!rc) rc = h5r_open(&s, H5P_DEFAULT, &f);
  if (!rc) rc = checkpoint_read_meta(&s, f, &cm);
  if (f >= 0) H5Fclose(f);
  char diff[2 * OPT_PATH_MAX];
  if (!rc && strcmp(want, cm.options)) {
    first_difference(cm.options, want, diff, sizeof diff);
    rc = aptq_error("checkpoint '%s' does not match this run: %s; resume with the options of the interrupted run", ck->dir, diff);
  }
  int n = sha256_hex_shown(cm.fingerprint, m->fingerprint);
  if (!rc && strcmp(cm.fingerprint, m->fingerprint))
    rc = aptq_error("checkpoint '%s' was made from a different model (fingerprint %.*s..., this model %.*s...); resume with that model",
                    ck->dir, n, cm.fingerprint, n, m->fingerprint);
  n = sha256_hex_shown(cm.calib_sha256, calib->sha256);
  if (!rc && strcmp(cm.calib_sha256, calib->sha256))
    rc = aptq_error("checkpoint '%s' was made with different calibration tokens (sha256 %.*s..., these %.*s...); resume with those tokens",
                    ck->dir, n, cm.calib_sha256, n, calib->sha256);
  int nlayers = cm.layers, stats_cols = cm.stats;
  ck->next_block = cm.next_block;
  if (!rc && (nlayers != m->cfg.n_layers * LIN_COUNT || stats_cols != nstats || ck->next_block < 1 || ck->next_block > m->cfg.n_layers))
    rc = aptq_error("checkpoint '%s' is inconsistent (block %d of %d, %d layers); remove it and start again", ck->dir, ck->next_block,
                    m->cfg.n_layers, nlayers);
  CHECK(aptq_agree(comm, rc));
  ck->stats = aptq_malloc(sizeof(double) * (size_t)nlayers * nstats, "checkpoint statistics");
  CHECK(aptq_agree(comm, !ck->stats));
  return aptq_agree(comm, h5_read_matrix(&s, "/state/stats", H5T_NATIVE_DOUBLE, nlayers, nstats, 0, nlayers, ck->stats, comm));
}

int checkpoint_restore(Checkpoint *ck, const Model *m, const TokenShard *calib, float *X, QFileWriter *out, MPI_Comm comm) {
  char path[OPT_PATH_MAX + 32];
  state_path(ck, path, sizeof path);
  int rank, T = calib->seqlen;
  MPI_Comm_rank(comm, &rank);
  H5Src s = {"checkpoint", path, CHECKPOINT_FIX};
  /* the activations entering block next_block: every calibration sequence, the model's width */
  CHECK(aptq_agree(comm, h5_read_matrix(&s, "/state/X", H5T_NATIVE_FLOAT, calib->nseq * T, m->cfg.dim, calib->first * T,
                                        (calib->first + calib->count) * T, X, comm)));
  for (int l = 0; l < ck->next_block; l++) {
    block_path(ck, l, path, sizeof path);
    for (int k = 0; k < LIN_COUNT; k++) {
      char name[256];
      linear_layer_name(l, k, name, sizeof name);
      CHECK(qfile_copy_layer(out, path, name, (int)m->linear[l][k].rows, (int)m->linear[l][k].cols));
    }
  }
  if (rank == 0) {
    printf("aptq quantize: resumed from '%s' after block %d of %d\n", ck->dir, ck->next_block, m->cfg.n_layers);
    fflush(stdout);
  }
  return 0;
}

int checkpoint_block_begin(Checkpoint *ck, int l, MPI_Comm comm) {
  char path[OPT_PATH_MAX + 32];
  block_path(ck, l, path, sizeof path);
  return qfile_create(&ck->block, path, "checkpoint", 1, comm);
}

int checkpoint_save(Checkpoint *ck, const Model *m, const TokenShard *calib, int l, const float *X, const double *stats, MPI_Comm comm) {
  CHECK(qfile_commit(&ck->block));
  static char opts[65536];
  CHECK(aptq_agree(comm, result_options(ck->opts, opts, sizeof opts)));
  char path[OPT_PATH_MAX + 32];
  state_path(ck, path, sizeof path);
  int rank, T = calib->seqlen, D = m->cfg.dim, n = m->cfg.n_layers * LIN_COUNT;
  MPI_Comm_rank(comm, &rank);
  QFileWriter w;
  CHECK(qfile_create(&w, path, "checkpoint", 1, comm));
  if (qfile_attr_string(&w, "/meta", "format", "aptq-checkpoint") || qfile_attr_string(&w, "/meta", "options", opts) ||
      qfile_attr_string(&w, "/meta", "model_fingerprint", m->fingerprint) ||
      qfile_attr_string(&w, "/meta", "calib_sha256", calib->sha256) || qfile_attr_int(&w, "/meta", "next_block", l + 1) ||
      qfile_attr_int(&w, "/meta", "layers", n) || qfile_attr_int(&w, "/meta", "stats", ck->nstats) ||
      qfile_write_matrix(&w, "/state", "X", H5T_NATIVE_FLOAT, calib->nseq * T, D, calib->first * T, (calib->first + calib->count) * T, X) ||
      qfile_write_matrix(&w, "/state", "stats", H5T_NATIVE_DOUBLE, n, ck->nstats, 0, rank == 0 ? n : 0, stats))
    aptq_fatal(comm);
  return qfile_commit(&w);
}

void checkpoint_finish(Checkpoint *ck, const Model *m, MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  MPI_Barrier(comm);
  if (rank == 0) {
    char path[OPT_PATH_MAX + 32];
    state_path(ck, path, sizeof path);
    unlink(path);
    for (int l = 0; l < m->cfg.n_layers; l++) {
      block_path(ck, l, path, sizeof path);
      unlink(path);
    }
  }
  aptq_free(ck->stats);
  ck->stats = NULL;
}
