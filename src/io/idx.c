/* idx files (the MNIST format): magic 0x00 0x00 <type> <ndim>, ndim big-endian uint32
 * dimensions, then the row-major payload. Only type 0x08 (unsigned byte) is read.
 * zlib's gzread() reads gzip and plain files alike, so one path serves .gz and raw files. */
#include "nnscope/io.h"
#include "io_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Payloads larger than this are refused outright (MNIST's largest file is 47 MB). */
#define IDX_MAX_PAYLOAD ((int64_t)1 << 34)
/* The payload buffer grows as data arrives, so a header that lies about its dimensions cannot
 * make us allocate more than twice what the file really holds. */
#define IDX_FIRST_CHUNK ((size_t)1 << 20)

static const char *type_name(unsigned t) {
    switch (t) {
    case 0x08:
        return "unsigned byte";
    case 0x09:
        return "signed byte";
    case 0x0B:
        return "int16";
    case 0x0C:
        return "int32";
    case 0x0D:
        return "float32";
    case 0x0E:
        return "float64";
    default:
        return "unknown";
    }
}

/* gzerror()'s text without the "<path>: " prefix zlib puts in front of it. */
static const char *gz_msg(gzFile f, const char *path, int *code) {
    const char *msg = gzerror(f, code);
    size_t k = strlen(path);
    if (strncmp(msg, path, k) == 0 && strncmp(msg + k, ": ", 2) == 0) msg += k + 2;
    return msg;
}

/* Reads up to n bytes; returns the count read, or -1 on a read error (message in err). */
static int64_t read_full(gzFile f, const char *path, void *buf, size_t n, char *err,
                         size_t errlen) {
    size_t got = 0;
    while (got < n) {
        size_t want = n - got;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(f, (char *)buf + got, (unsigned)want);
        if (r < 0) {
            int code;
            const char *msg = gz_msg(f, path, &code);
            io_err(err, errlen, "%s: read error: %s", path,
                   code == Z_ERRNO ? strerror(errno) : msg);
            return -1;
        }
        if (r == 0) {
            /* A gzip stream cut short reports its error only through gzerror(). */
            int code;
            const char *msg = gz_msg(f, path, &code);
            if (code != Z_OK && code != Z_BUF_ERROR) {
                io_err(err, errlen, "%s: read error: %s", path, msg);
                return -1;
            }
            break;
        }
        got += (size_t)r;
    }
    return (int64_t)got;
}

/* True when the last read hit the end of the file in the middle of a gzip stream. */
static bool cut_short(gzFile f) {
    int code;
    gzerror(f, &code);
    return code == Z_BUF_ERROR;
}

/* Counts the bytes left in f (for the trailing-data message). */
static int64_t count_rest(gzFile f) {
    char buf[1 << 14];
    int64_t total = 0;
    int r;
    while ((r = gzread(f, buf, sizeof buf)) > 0) total += r;
    return total;
}

static bool load(gzFile f, const char *path, ns_idx *out, char *err, size_t errlen) {
    unsigned char magic[4];
    int64_t r = read_full(f, path, magic, 4, err, errlen);
    if (r < 0) return false;
    if (r < 4)
        return io_err(err, errlen, "%s: not an idx file: %lld bytes, shorter than the 4-byte magic",
                      path, (long long)r);
    if (magic[0] != 0 || magic[1] != 0)
        return io_err(err, errlen,
                      "%s: not an idx file: magic starts 0x%02x 0x%02x, expected 0x00 0x00", path,
                      magic[0], magic[1]);
    if (magic[2] != 0x08)
        return io_err(err, errlen,
                      "%s: idx data type 0x%02x (%s) is not supported; only 0x08 (unsigned byte)",
                      path, magic[2], type_name(magic[2]));
    int ndim = magic[3];
    if (ndim < 1 || ndim > NS_IO_MAX_DIMS)
        return io_err(err, errlen, "%s: idx file has %d dimensions; expected 1 to %d", path, ndim,
                      NS_IO_MAX_DIMS);

    unsigned char dimbuf[4 * NS_IO_MAX_DIMS];
    r = read_full(f, path, dimbuf, 4 * (size_t)ndim, err, errlen);
    if (r < 0) return false;
    if (r < 4 * ndim)
        return io_err(err, errlen,
                      "%s: truncated idx header: %d dimensions need %d bytes, file has %lld", path,
                      ndim, 4 + 4 * ndim, (long long)(4 + r));
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        const unsigned char *b = dimbuf + 4 * i;
        int64_t d = ((int64_t)b[0] << 24) | ((int64_t)b[1] << 16) | ((int64_t)b[2] << 8) | b[3];
        if (d == 0) return io_err(err, errlen, "%s: idx dimension %d is 0", path, i);
        out->dims[i] = d;
        if (numel > IDX_MAX_PAYLOAD / d)
            return io_err(err, errlen, "%s: idx dimensions describe more than %lld bytes", path,
                          (long long)IDX_MAX_PAYLOAD);
        numel *= d;
    }
    out->ndim = ndim;
    out->numel = numel;

    char shape[96];
    int o = 0;
    for (int i = 0; i < ndim; i++)
        o += snprintf(shape + o, sizeof shape - (size_t)o, "%s%lld", i ? "x" : "",
                      (long long)out->dims[i]);
    int64_t header = 4 + 4 * (int64_t)ndim;

    size_t cap = (size_t)numel < IDX_FIRST_CHUNK ? (size_t)numel : IDX_FIRST_CHUNK;
    uint8_t *data = malloc(cap);
    if (!data) return io_err(err, errlen, "%s: out of memory for %zu bytes", path, cap);
    size_t got = 0;
    for (;;) {
        r = read_full(f, path, data + got, cap - got, err, errlen);
        if (r < 0) {
            free(data);
            return false;
        }
        got += (size_t)r;
        if (got < cap || cap == (size_t)numel) break;
        size_t ncap = cap * 2 < (size_t)numel ? cap * 2 : (size_t)numel;
        uint8_t *nd = realloc(data, ncap);
        if (!nd) {
            free(data);
            return io_err(err, errlen, "%s: out of memory for %zu bytes", path, ncap);
        }
        data = nd;
        cap = ncap;
    }
    if ((int64_t)got < numel) {
        free(data);
        return io_err(err, errlen,
                      "%s: truncated idx file: shape %s needs %lld payload bytes (%lld in all), "
                      "file has %lld (%lld in all)%s",
                      path, shape, (long long)numel, (long long)(header + numel), (long long)got,
                      (long long)(header + (int64_t)got),
                      cut_short(f) ? "; the gzip stream is cut short" : "");
    }
    char extra;
    r = read_full(f, path, &extra, 1, err, errlen);
    if (r < 0) {
        free(data);
        return false;
    }
    if (r > 0) {
        int64_t more = 1 + count_rest(f);
        free(data);
        return io_err(err, errlen,
                      "%s: trailing data in idx file: shape %s needs %lld payload bytes (%lld in "
                      "all), file has %lld (%lld in all)",
                      path, shape, (long long)numel, (long long)(header + numel),
                      (long long)(numel + more), (long long)(header + numel + more));
    }
    if (cut_short(f)) {
        free(data);
        return io_err(err, errlen,
                      "%s: truncated gzip file: the payload is complete but the gzip stream "
                      "ends early (missing trailer)",
                      path);
    }
    out->data = data;
    return true;
}

bool ns_idx_load(const char *path, ns_idx *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return io_err(err, errlen, "%s: cannot open: %s", path,
                      errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 17);
    bool ok = load(f, path, out, err, errlen);
    gzclose(f);
    if (!ok) memset(out, 0, sizeof *out);
    return ok;
}

void ns_idx_free(ns_idx *idx) {
    if (!idx) return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}
