/* nnscope io: idx(.gz) datasets, a seeded data loader, safetensors files.
 *
 * This part of nnscope knows nothing about tensors: it moves plain float arrays between files
 * and caller buffers. The engine wraps it (state_dict, checkpoints, training samples).
 *
 * Errors a user can cause (missing, truncated or malformed files, inconsistent datasets) make a
 * function return false and write one message naming the file into err[errlen] (err may be NULL
 * when errlen is 0). Programmer errors (NULL arguments, a batch size of 0) are assert()s.
 */
#ifndef NNSCOPE_IO_H
#define NNSCOPE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NS_IO_MAX_DIMS 4

/* ---- idx files (MNIST, Fashion-MNIST) ---------------------------------------------------- */

/* An idx file of unsigned bytes (type code 0x08): ndim dimensions, row-major payload. */
typedef struct ns_idx {
    int ndim;                     /* 1..4 */
    int64_t dims[NS_IO_MAX_DIMS]; /* dims[0] is the sample count; unused entries are 0 */
    int64_t numel;                /* product of dims */
    uint8_t *data;                /* numel bytes, owned: release with ns_idx_free() */
} ns_idx;

/* Reads an idx file, raw or gzip-compressed (detected from the content, not the name). Checks
 * the magic (0x00 0x00 0x08 ndim), 1..4 dimensions, each >= 1, and that the payload is exactly
 * the product of the dimensions: truncated data or trailing bytes are errors that give the
 * expected and actual sizes, and so are gzip errors (bad CRC, stream cut short). As with
 * gunzip, bytes after the end of the last gzip stream are ignored. On failure *out is zeroed and
 * err names the file. */
bool ns_idx_load(const char *path, ns_idx *out, char *err, size_t errlen);

/* Releases the payload of an idx read by ns_idx_load() and zeroes *idx (NULL-safe). */
void ns_idx_free(ns_idx *idx);

/* ---- datasets ---------------------------------------------------------------------------- */

/* An image-classification dataset held in memory. images[i*rows*cols ...] is sample i, already
 * normalised as (x/255 - mean)/std, computed as the float32 operations x / 255.0f, - mean,
 * / std: the operations of torchvision's ToTensor() followed by Normalize((mean,), (std,)). */
typedef struct ns_dataset {
    int64_t n;       /* number of samples */
    int rows, cols;  /* image size; a sample has rows*cols floats */
    int num_classes; /* every label is in [0, num_classes) */
    float *images;   /* n*rows*cols floats */
    int32_t *labels; /* n labels */
    bool owned;      /* false for views made by ns_dataset_slice() */
} ns_dataset;

/* Loads an images idx file (n x rows x cols bytes) and a labels idx file (n bytes), normalises
 * the images with mean and std (std > 0) and checks that both files hold the same number of
 * samples and that every label is < num_classes. Release with ns_dataset_free(). */
bool ns_dataset_load_idx(const char *images_path, const char *labels_path, float mean, float std,
                         int num_classes, ns_dataset *out, char *err, size_t errlen);

/* The folder ns_fashion_mnist_load() uses when given dir == NULL: $NNSCOPE_DATA when set and
 * non-empty, else /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist). */
const char *ns_fashion_mnist_dir(void);

/* Loads Fashion-MNIST from dir (NULL: ns_fashion_mnist_dir()): train-images-idx3-ubyte.gz and
 * train-labels-idx1-ubyte.gz when train, else the t10k-* pair; 10 classes. The usual
 * normalisation is mean 0.2860, std 0.3530 (0.1307, 0.3081 for MNIST). */
bool ns_fashion_mnist_load(const char *dir, bool train, float mean, float std, ns_dataset *out,
                           char *err, size_t errlen);

/* Makes *out a view of samples [begin, end) of src (e.g. a validation split). The view borrows
 * src's arrays: it must not outlive src, and ns_dataset_free() on it frees nothing. */
void ns_dataset_slice(const ns_dataset *src, int64_t begin, int64_t end, ns_dataset *out);

/* Releases a dataset's arrays (unless it is a view) and zeroes *ds (NULL-safe). */
void ns_dataset_free(ns_dataset *ds);

/* ---- data loader ------------------------------------------------------------------------- */

/* A loader walks a dataset in batches, one epoch after another, optionally shuffled.
 *
 * Shuffling: the order of epoch e is a Fisher-Yates shuffle of 0..n-1 (i from n-1 down to 1,
 * swap i with j uniform in [0, i]) driven by xoshiro256** whose four state words are the first
 * four outputs of splitmix64 started at seed + e * 0xD1B54A32D192ED03; j is drawn by rejection
 * (draw r until r >= 2^64 mod (i+1), then j = r mod (i+1)). So the order depends on (seed, e)
 * alone, and (seed, epoch, position) is the loader's whole state. */
typedef struct ns_loader ns_loader;

/* The part of a loader's state that a checkpoint keeps. n, batch_size, shuffle and drop_last
 * are stored to check that a restored state belongs to an equivalent loader. */
typedef struct ns_loader_state {
    uint64_t seed;      /* shuffle seed */
    uint64_t epoch;     /* epochs completed so far (0 during the first epoch) */
    int64_t position;   /* samples already served in this epoch */
    int64_t n;          /* dataset size */
    int64_t batch_size; /* batch size */
    bool shuffle;       /* the loader shuffles */
    bool drop_last;     /* the loader drops the last short batch */
} ns_loader_state;

/* Creates a loader over ds (which must outlive it) serving batches of batch_size (>= 1)
 * samples, shuffled from seed when shuffle is set, in dataset order otherwise. With drop_last
 * the final short batch of each epoch is skipped. Returns NULL only when out of memory. */
ns_loader *ns_loader_new(const ns_dataset *ds, int64_t batch_size, bool shuffle, uint64_t seed,
                         bool drop_last);

/* Releases a loader (NULL-safe); the dataset is untouched. */
void ns_loader_free(ns_loader *ld);

/* Copies the next batch into x (batch_size*rows*cols floats) and y (batch_size labels) and
 * returns the number of samples copied. Returns 0 once the epoch is exhausted; the loader has
 * then moved to the next epoch (reshuffled) and the following call serves its first batch. */
int64_t ns_loader_next(ns_loader *ld, float *x, int32_t *y);

/* Number of batches ns_loader_next() serves per epoch (before returning 0). */
int64_t ns_loader_batches_per_epoch(const ns_loader *ld);

/* The loader's current state (see ns_loader_state). */
ns_loader_state ns_loader_get_state(const ns_loader *ld);

/* Restores a state taken by ns_loader_get_state(), on this loader or on a new one over the same
 * data: the following batches are then identical to those the original loader served next.
 * Fails, leaving the loader unchanged, when n, batch_size, shuffle or drop_last differ or
 * position is past the end of the epoch. */
bool ns_loader_set_state(ns_loader *ld, const ns_loader_state *st, char *err, size_t errlen);

/* Writes st as "seed=S epoch=E position=P n=N batch_size=B shuffle=0|1 drop_last=0|1" into buf
 * (a safetensors metadata value, for example); returns the length snprintf() would return. */
int ns_loader_state_format(const ns_loader_state *st, char *buf, size_t buflen);

/* Parses the text ns_loader_state_format() writes (all seven fields, in that order). */
bool ns_loader_state_parse(const char *text, ns_loader_state *st, char *err, size_t errlen);

/* ---- safetensors ------------------------------------------------------------------------- */

/* One named float32 tensor. ndim 0 is a scalar (one value); a dimension of 0 is allowed and
 * makes an empty tensor (data may then be NULL). */
typedef struct ns_st_tensor {
    const char *name;              /* UTF-8, unique within a file */
    int ndim;                      /* 0..4 */
    int64_t shape[NS_IO_MAX_DIMS]; /* unused entries are 0 */
    const float *data;             /* numel floats, row-major */
} ns_st_tensor;

/* A safetensors file read into memory. tensors[] is in file (data offset) order; names, data
 * and metadata strings all belong to the ns_st_file and live until ns_st_file_free(). */
typedef struct ns_st_file {
    int n;                  /* number of tensors */
    ns_st_tensor *tensors;  /* n tensors; data is 4-byte aligned */
    int n_meta;             /* number of __metadata__ entries */
    const char **meta_keys; /* n_meta keys, sorted by strcmp() */
    const char **meta_vals; /* n_meta values, matching meta_keys */
    void *priv_;            /* storage; not for callers */
} ns_st_file;

/* Writes tensors and string metadata to path as a safetensors file that the reference
 * implementation (Python safetensors, PyTorch) reads, with the reference writer's layout:
 * tensors ordered by name (strcmp), data in that order, compact JSON header with __metadata__
 * first (keys sorted), padded with spaces to a multiple of 8 bytes. The write is atomic: a
 * temporary file in the same folder is written, fsync()ed and renamed over path, so a failed
 * write (disk full, ...) leaves an existing file untouched; err then gives the path and
 * strerror(). Fails also on duplicate tensor names or metadata keys, invalid UTF-8 names, ndim
 * outside 0..4 or negative dimensions. meta_keys/meta_vals may be NULL when n_meta is 0. */
bool ns_safetensors_write(const char *path, const ns_st_tensor *ts, int n,
                          const char *const *meta_keys, const char *const *meta_vals, int n_meta,
                          char *err, size_t errlen);

/* Reads a safetensors file whose tensors are all F32. Rejects, naming the file: files shorter
 * than 8 bytes, a header length above 100 MB or past the end of the file, non-safetensors files,
 * invalid JSON or UTF-8, a header that breaks the schema, dtypes other than F32 (naming dtype
 * and tensor), more than 4 dimensions, data_offsets out of range, overlapping, leaving gaps or
 * not covering the data exactly, a byte size other than numel*4, and duplicate names. On
 * failure *out is zeroed. Release with ns_st_file_free(). */
bool ns_safetensors_read(const char *path, ns_st_file *out, char *err, size_t errlen);

/* Releases everything ns_safetensors_read() allocated and zeroes *f (NULL-safe). */
void ns_st_file_free(ns_st_file *f);

/* The tensor called name, or NULL (binary search over the names). */
const ns_st_tensor *ns_st_find(const ns_st_file *f, const char *name);

/* The metadata value for key, or NULL. */
const char *ns_st_meta(const ns_st_file *f, const char *key);

/* Number of elements of a tensor: the product of its shape (1 for a scalar). */
int64_t ns_st_numel(const ns_st_tensor *t);

#ifdef __cplusplus
}
#endif

#endif /* NNSCOPE_IO_H */
