/* safetensors files: an 8-byte little-endian header length N, N bytes of JSON
 * {"__metadata__": {...}, "<name>": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}},
 * then the data buffer, which the tensors' [b, e) ranges must tile exactly.
 *
 * The writer reproduces the reference implementation's layout (huggingface/safetensors,
 * `prepare()` + `Metadata` serialisation): tensors sorted by dtype alignment then name (all F32
 * here, so by name), data in that order, compact JSON with __metadata__ first, header padded
 * with spaces to a multiple of 8. The reader applies the reference reader's checks and a few
 * stricter ones (duplicate keys, unknown fields). */
#include "nnscope/io.h"
#include "io_internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000ull /* the reference's MAX_HEADER_SIZE */

static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

static void swap32(void *buf, size_t count) {
    uint8_t *b = buf;
    for (size_t i = 0; i < count; i++, b += 4) {
        uint8_t t0 = b[0], t1 = b[1];
        b[0] = b[3], b[1] = b[2], b[2] = t1, b[3] = t0;
    }
}

int64_t ns_st_numel(const ns_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* ---- writing ----------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->len + n) c *= 2;
        char *np = realloc(b->p, c);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = c;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_puts(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

static void sb_u64(sbuf *b, uint64_t v) {
    char t[24];
    int n = snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    sb_put(b, t, (size_t)n);
}

/* A JSON string as serde_json writes it: ", \ and control characters escaped (\b \f \n \r \t,
 * others as \u00xx), everything else, UTF-8 included, verbatim. */
static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        const char *rep = NULL;
        switch (*p) {
        case '"':
            rep = "\\\"";
            break;
        case '\\':
            rep = "\\\\";
            break;
        case '\b':
            rep = "\\b";
            break;
        case '\f':
            rep = "\\f";
            break;
        case '\n':
            rep = "\\n";
            break;
        case '\r':
            rep = "\\r";
            break;
        case '\t':
            rep = "\\t";
            break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                rep = esc;
            }
        }
        if (rep) {
            sb_puts(b, rep);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

typedef struct sort_item {
    const char *key;
    int index;
} sort_item;

static int cmp_item(const void *a, const void *b) {
    const sort_item *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

static bool write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (w == 0) {
            errno = EIO;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Writes count floats as little-endian bytes. */
static bool write_floats(int fd, const float *data, size_t count) {
    if (host_is_little_endian()) return write_all(fd, data, count * sizeof(float));
    float chunk[1024];
    while (count > 0) {
        size_t k = count < 1024 ? count : 1024;
        memcpy(chunk, data, k * sizeof(float));
        swap32(chunk, k);
        if (!write_all(fd, chunk, k * sizeof(float))) return false;
        data += k;
        count -= k;
    }
    return true;
}

/* Opens a fresh temporary file next to path (same folder, so rename() is atomic). */
static int open_temp(const char *path, char *tmp, size_t tmplen) {
    static atomic_uint counter; /* writers on several threads get distinct names */
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(tmp, tmplen, "%s.tmp-%ld-%u", path, (long)getpid(),
                 atomic_fetch_add(&counter, 1u));
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

/* fsync() the folder holding path so the rename itself is durable. Best effort. */
static void sync_parent(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

bool ns_safetensors_write(const char *path, const ns_st_tensor *ts, int n,
                          const char *const *meta_keys, const char *const *meta_vals, int n_meta,
                          char *err, size_t errlen) {
    assert(path && n >= 0 && n_meta >= 0 && (n == 0 || ts));
    assert(n_meta == 0 || (meta_keys && meta_vals));
    bool ok = false;
    sort_item *order = malloc(((size_t)n + 1) * sizeof *order);
    sort_item *morder = malloc(((size_t)n_meta + 1) * sizeof *morder);
    sbuf h = {0};
    char *tmp = NULL;
    int fd = -1;
    if (!order || !morder) {
        io_err(err, errlen, "%s: out of memory", path);
        goto done;
    }

    for (int i = 0; i < n; i++) {
        const ns_st_tensor *t = &ts[i];
        assert(t->name);
        if (!io_utf8_valid((const unsigned char *)t->name, strlen(t->name))) {
            io_err(err, errlen, "%s: tensor %d has a name that is not valid UTF-8", path, i);
            goto done;
        }
        if (strcmp(t->name, "__metadata__") == 0) {
            io_err(err, errlen, "%s: '__metadata__' is reserved and cannot name a tensor", path);
            goto done;
        }
        if (t->ndim < 0 || t->ndim > NS_IO_MAX_DIMS) {
            io_err(err, errlen, "%s: tensor '%s' has %d dimensions; 0 to %d are supported", path,
                   t->name, t->ndim, NS_IO_MAX_DIMS);
            goto done;
        }
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) {
                io_err(err, errlen, "%s: tensor '%s' has negative dimension %lld", path, t->name,
                       (long long)t->shape[d]);
                goto done;
            }
            if (t->shape[d] > 0 && numel > INT64_MAX / 4 / t->shape[d]) {
                io_err(err, errlen, "%s: tensor '%s' is too large", path, t->name);
                goto done;
            }
            numel *= t->shape[d];
        }
        assert(numel == 0 || t->data);
        order[i] = (sort_item){t->name, i};
    }
    qsort(order, (size_t)n, sizeof *order, cmp_item);
    for (int i = 1; i < n; i++) {
        if (strcmp(order[i - 1].key, order[i].key) == 0) {
            io_err(err, errlen, "%s: duplicate tensor name '%s'", path, order[i].key);
            goto done;
        }
    }
    for (int i = 0; i < n_meta; i++) {
        assert(meta_keys[i] && meta_vals[i]);
        if (!io_utf8_valid((const unsigned char *)meta_keys[i], strlen(meta_keys[i])) ||
            !io_utf8_valid((const unsigned char *)meta_vals[i], strlen(meta_vals[i]))) {
            io_err(err, errlen, "%s: metadata entry %d is not valid UTF-8", path, i);
            goto done;
        }
        morder[i] = (sort_item){meta_keys[i], i};
    }
    qsort(morder, (size_t)n_meta, sizeof *morder, cmp_item);
    for (int i = 1; i < n_meta; i++) {
        if (strcmp(morder[i - 1].key, morder[i].key) == 0) {
            io_err(err, errlen, "%s: duplicate metadata key '%s'", path, morder[i].key);
            goto done;
        }
    }

    /* Header, exactly as serde_json serialises the reference's Metadata. */
    sb_puts(&h, "{");
    if (n_meta > 0) {
        sb_puts(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_puts(&h, ",");
            sb_json_string(&h, meta_keys[morder[i].index]);
            sb_puts(&h, ":");
            sb_json_string(&h, meta_vals[morder[i].index]);
        }
        sb_puts(&h, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const ns_st_tensor *t = &ts[order[i].index];
        if (i || n_meta > 0) sb_puts(&h, ",");
        sb_json_string(&h, t->name);
        sb_puts(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) sb_puts(&h, ",");
            sb_u64(&h, (uint64_t)t->shape[d]);
        }
        uint64_t bytes = (uint64_t)ns_st_numel(t) * 4;
        sb_puts(&h, "],\"data_offsets\":[");
        sb_u64(&h, offset);
        sb_puts(&h, ",");
        sb_u64(&h, offset + bytes);
        sb_puts(&h, "]}");
        offset += bytes;
    }
    sb_puts(&h, "}");
    while (h.len % 8) sb_puts(&h, " ");
    if (h.oom) {
        io_err(err, errlen, "%s: out of memory building the header", path);
        goto done;
    }
    if (h.len > ST_MAX_HEADER) {
        io_err(err, errlen, "%s: header of %zu bytes exceeds the 100 MB limit", path, h.len);
        goto done;
    }

    size_t tmplen = strlen(path) + 48;
    tmp = malloc(tmplen);
    if (!tmp) {
        io_err(err, errlen, "%s: out of memory", path);
        goto done;
    }
    fd = open_temp(path, tmp, tmplen);
    if (fd < 0) {
        io_err(err, errlen, "%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    bool written = write_all(fd, len8, 8) && write_all(fd, h.p, h.len);
    for (int i = 0; written && i < n; i++) {
        const ns_st_tensor *t = &ts[order[i].index];
        written = write_floats(fd, t->data, (size_t)ns_st_numel(t));
    }
    if (!written || fsync(fd) != 0) {
        io_err(err, errlen, "%s: write failed: %s", path, strerror(errno));
        goto done;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) {
        io_err(err, errlen, "%s: write failed: %s", path, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        io_err(err, errlen, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto done;
    }
    free(tmp);
    tmp = NULL;
    sync_parent(path);
    ok = true;
done:
    if (fd >= 0) close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(h.p);
    free(order);
    free(morder);
    return ok;
}

/* ---- reading ----------------------------------------------------------------------------- */

typedef struct st_storage {
    char *strings;                /* the JSON document's decoded strings: names, metadata */
    float *data;                  /* the data buffer */
    const ns_st_tensor **by_name; /* tensors sorted by name, for ns_st_find() */
} st_storage;

static int cmp_tensor_ptr(const void *a, const void *b) {
    return strcmp((*(const ns_st_tensor *const *)a)->name, (*(const ns_st_tensor *const *)b)->name);
}

static int cmp_name_tensor(const void *key, const void *elem) {
    return strcmp(key, (*(const ns_st_tensor *const *)elem)->name);
}

typedef struct entry {
    const char *name;
    const json_node *node;
    uint64_t begin, end, bytes;
    int ndim;
    int64_t shape[NS_IO_MAX_DIMS];
} entry;

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

static int cmp_entry_offset(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

typedef struct kv {
    const char *k, *v;
} kv;

static int cmp_kv(const void *a, const void *b) {
    return strcmp(((const kv *)a)->k, ((const kv *)b)->k);
}

static const char *const known_dtypes[] = {
    "BOOL",    "U8",      "I8",  "I16",     "U16",     "F16", "BF16",
    "I32",     "U32",     "F32", "F64",     "I64",     "U64", "F8_E4M3",
    "F8_E5M2", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64", NULL};

static bool is_known_dtype(const char *s) {
    for (int i = 0; known_dtypes[i]; i++)
        if (strcmp(s, known_dtypes[i]) == 0) return true;
    return false;
}

/* Checks one tensor entry's fields and fills e (name and node already set). */
static bool parse_entry(const char *path, const json_doc *doc, entry *e, char *err, size_t errlen) {
    const json_node *obj = e->node;
    if (obj->type != JSON_OBJECT)
        return io_err(err, errlen, "%s: header entry for tensor '%s' is not a JSON object", path,
                      e->name);
    const json_node *dtype = NULL, *shape = NULL, *offs = NULL;
    for (int32_t c = obj->first_child; c >= 0; c = doc->nodes[c].next) {
        const json_node *f = &doc->nodes[c];
        const char *k = json_key(doc, f);
        const json_node **slot = strcmp(k, "dtype") == 0          ? &dtype
                                 : strcmp(k, "shape") == 0        ? &shape
                                 : strcmp(k, "data_offsets") == 0 ? &offs
                                                                  : NULL;
        if (!slot)
            return io_err(err, errlen, "%s: tensor '%s' has unknown field '%s'", path, e->name, k);
        if (*slot)
            return io_err(err, errlen, "%s: tensor '%s' has field '%s' twice", path, e->name, k);
        *slot = f;
    }
    if (!dtype || !shape || !offs)
        return io_err(err, errlen, "%s: tensor '%s' lacks the field '%s'", path, e->name,
                      !dtype   ? "dtype"
                      : !shape ? "shape"
                               : "data_offsets");
    if (dtype->type != JSON_STRING)
        return io_err(err, errlen, "%s: tensor '%s': dtype is not a string", path, e->name);
    const char *dt = json_str(doc, dtype);
    if (strcmp(dt, "F32") != 0) {
        if (is_known_dtype(dt))
            return io_err(err, errlen,
                          "%s: tensor '%s' has dtype %s; only F32 tensors are supported", path,
                          e->name, dt);
        return io_err(err, errlen, "%s: tensor '%s' has unknown dtype '%.40s'", path, e->name, dt);
    }
    if (shape->type != JSON_ARRAY)
        return io_err(err, errlen, "%s: tensor '%s': shape is not an array", path, e->name);
    if (shape->count > NS_IO_MAX_DIMS)
        return io_err(err, errlen, "%s: tensor '%s' has %d dimensions; at most %d are supported",
                      path, e->name, shape->count, NS_IO_MAX_DIMS);
    e->ndim = shape->count;
    uint64_t numel = 1;
    bool overflow = false;
    int d = 0;
    for (int32_t c = shape->first_child; c >= 0; c = doc->nodes[c].next, d++) {
        uint64_t v;
        if (!json_u64(doc, &doc->nodes[c], &v) || v > INT64_MAX)
            return io_err(err, errlen,
                          "%s: tensor '%s': shape entry %d is not a non-negative integer", path,
                          e->name, d);
        e->shape[d] = (int64_t)v;
        if (v && numel > (UINT64_MAX / 4) / v) overflow = true;
        numel *= v;
    }
    if (overflow) return io_err(err, errlen, "%s: tensor '%s': shape is too large", path, e->name);
    e->bytes = numel * 4;
    if (offs->type != JSON_ARRAY || offs->count != 2 ||
        !json_u64(doc, &doc->nodes[offs->first_child], &e->begin) ||
        !json_u64(doc, &doc->nodes[doc->nodes[offs->first_child].next], &e->end))
        return io_err(err, errlen,
                      "%s: tensor '%s': data_offsets is not a pair of non-negative integers", path,
                      e->name);
    return true;
}

static void shape_str(const entry *e, char *buf, size_t len) {
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < e->ndim && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", d ? ", " : "", (long long)e->shape[d]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

/* Validates the header and lays out *out (except data pointers). */
static bool parse_header(const char *path, const json_doc *doc, uint64_t data_len, ns_st_file *out,
                         entry **entries_out, char *err, size_t errlen) {
    const json_node *root = &doc->nodes[0];
    if (root->type != JSON_OBJECT)
        return io_err(err, errlen, "%s: safetensors header is not a JSON object", path);
    const json_node *meta = NULL;
    int n = 0;
    for (int32_t c = root->first_child; c >= 0; c = doc->nodes[c].next) {
        const json_node *m = &doc->nodes[c];
        if (memchr(json_key(doc, m), '\0', m->key_len))
            return io_err(err, errlen, "%s: a header key contains a NUL character", path);
        if (strcmp(json_key(doc, m), "__metadata__") == 0) {
            if (meta) return io_err(err, errlen, "%s: duplicate '__metadata__' entry", path);
            meta = m;
        } else {
            n++;
        }
    }
    entry *es = calloc((size_t)n + 1, sizeof *es);
    out->tensors = calloc((size_t)n + 1, sizeof *out->tensors);
    int n_meta = meta && meta->type == JSON_OBJECT ? meta->count : 0;
    out->meta_keys = calloc((size_t)n_meta + 1, sizeof(char *));
    out->meta_vals = calloc((size_t)n_meta + 1, sizeof(char *));
    *entries_out = es;
    if (!es || !out->tensors || !out->meta_keys || !out->meta_vals)
        return io_err(err, errlen, "%s: out of memory", path);

    if (meta) {
        if (meta->type != JSON_OBJECT)
            return io_err(err, errlen, "%s: '__metadata__' is not a JSON object", path);
        kv *pairs = malloc(((size_t)n_meta + 1) * sizeof *pairs);
        if (!pairs) return io_err(err, errlen, "%s: out of memory", path);
        int i = 0;
        for (int32_t c = meta->first_child; c >= 0; c = doc->nodes[c].next, i++) {
            const json_node *m = &doc->nodes[c];
            const char *k = json_key(doc, m);
            if (m->type != JSON_STRING) {
                free(pairs);
                return io_err(err, errlen, "%s: metadata value for '%s' is not a string", path, k);
            }
            if (memchr(k, '\0', m->key_len) || memchr(json_str(doc, m), '\0', m->val_len)) {
                free(pairs);
                return io_err(err, errlen, "%s: metadata entry '%s' contains a NUL character", path,
                              k);
            }
            pairs[i] = (kv){k, json_str(doc, m)};
        }
        qsort(pairs, (size_t)n_meta, sizeof *pairs, cmp_kv);
        for (int j = 0; j < n_meta; j++) {
            out->meta_keys[j] = pairs[j].k;
            out->meta_vals[j] = pairs[j].v;
        }
        free(pairs);
        for (int j = 1; j < n_meta; j++)
            if (strcmp(out->meta_keys[j - 1], out->meta_keys[j]) == 0)
                return io_err(err, errlen, "%s: duplicate metadata key '%s'", path,
                              out->meta_keys[j]);
        out->n_meta = n_meta;
    }

    int i = 0;
    for (int32_t c = root->first_child; c >= 0; c = doc->nodes[c].next) {
        const json_node *m = &doc->nodes[c];
        if (m == meta) continue;
        es[i].name = json_key(doc, m);
        es[i].node = m;
        if (!parse_entry(path, doc, &es[i], err, errlen)) return false;
        i++;
    }
    qsort(es, (size_t)n, sizeof *es, cmp_entry_name);
    for (int j = 1; j < n; j++)
        if (strcmp(es[j - 1].name, es[j].name) == 0)
            return io_err(err, errlen, "%s: duplicate tensor name '%s'", path, es[j].name);

    for (int j = 0; j < n; j++) {
        const entry *e = &es[j];
        if (e->begin > e->end)
            return io_err(err, errlen, "%s: tensor '%s' has reversed data_offsets [%llu, %llu]",
                          path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end);
        if (e->end > data_len)
            return io_err(err, errlen,
                          "%s: tensor '%s' has data_offsets [%llu, %llu] past the end of the "
                          "%llu-byte data buffer (truncated file?)",
                          path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                          (unsigned long long)data_len);
        if (e->end - e->begin != e->bytes) {
            char s[128];
            shape_str(e, s, sizeof s);
            return io_err(err, errlen,
                          "%s: tensor '%s' has shape %s (%llu bytes as F32) but data_offsets "
                          "[%llu, %llu] span %llu bytes",
                          path, e->name, s, (unsigned long long)e->bytes,
                          (unsigned long long)e->begin, (unsigned long long)e->end,
                          (unsigned long long)(e->end - e->begin));
        }
    }
    qsort(es, (size_t)n, sizeof *es, cmp_entry_offset);
    uint64_t expect = 0;
    for (int j = 0; j < n; j++) {
        const entry *e = &es[j];
        if (e->begin < expect)
            return io_err(err, errlen,
                          "%s: tensor '%s' data_offsets [%llu, %llu] overlap tensor '%s' [%llu, "
                          "%llu]",
                          path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                          es[j - 1].name, (unsigned long long)es[j - 1].begin,
                          (unsigned long long)es[j - 1].end);
        if (e->begin > expect)
            return io_err(err, errlen,
                          "%s: data bytes [%llu, %llu) belong to no tensor (gap before '%s')", path,
                          (unsigned long long)expect, (unsigned long long)e->begin, e->name);
        expect = e->end;
    }
    if (expect != data_len)
        return io_err(err, errlen,
                      "%s: the data buffer has %llu bytes but the tensors cover %llu (trailing "
                      "bytes)",
                      path, (unsigned long long)data_len, (unsigned long long)expect);
    out->n = n;
    return true;
}

static bool read_exact(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (r < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (r == 0) {
            errno = 0;
            return false;
        }
        p += r;
        n -= (size_t)r;
    }
    return true;
}

bool ns_safetensors_read(const char *path, ns_st_file *out, char *err, size_t errlen) {
    assert(path && out);
    memset(out, 0, sizeof *out);
    bool ok = false;
    char *header = NULL;
    json_doc doc = {0};
    entry *es = NULL;
    st_storage *store = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return io_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        io_err(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        io_err(err, errlen, "%s: not a regular file", path);
        goto done;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        io_err(err, errlen,
               "%s: not a safetensors file (or truncated): %llu bytes, less than the 8-byte "
               "header length",
               path, (unsigned long long)size);
        goto done;
    }
    uint8_t len8[8];
    if (!read_exact(fd, len8, 8)) {
        io_err(err, errlen, "%s: read error: %s", path, errno ? strerror(errno) : "file shrank");
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | len8[i];
    if (hlen > ST_MAX_HEADER) {
        io_err(err, errlen,
               "%s: not a safetensors file: its first 8 bytes give a header length of %llu, over "
               "the 100 MB limit",
               path, (unsigned long long)hlen);
        goto done;
    }
    if (hlen > size - 8) {
        io_err(err, errlen,
               "%s: truncated or not a safetensors file: header length %llu but only %llu bytes "
               "follow it",
               path, (unsigned long long)hlen, (unsigned long long)(size - 8));
        goto done;
    }
    header = malloc(hlen + 1);
    if (!header) {
        io_err(err, errlen, "%s: out of memory for a %llu-byte header", path,
               (unsigned long long)hlen);
        goto done;
    }
    if (!read_exact(fd, header, hlen)) {
        io_err(err, errlen, "%s: read error: %s", path, errno ? strerror(errno) : "file shrank");
        goto done;
    }
    header[hlen] = '\0';
    if (hlen == 0 || header[0] != '{') {
        io_err(err, errlen, "%s: not a safetensors file: the header does not start with '{'", path);
        goto done;
    }
    if (!io_utf8_valid((const unsigned char *)header, hlen)) {
        io_err(err, errlen, "%s: safetensors header is not valid UTF-8", path);
        goto done;
    }
    char jmsg[128];
    if (!json_parse(header, hlen, &doc, jmsg, sizeof jmsg)) {
        io_err(err, errlen, "%s: invalid JSON in safetensors header: %s", path, jmsg);
        goto done;
    }
    uint64_t data_len = size - 8 - hlen;
    if (!parse_header(path, &doc, data_len, out, &es, err, errlen)) goto done;

    store = calloc(1, sizeof *store);
    if (!store) {
        io_err(err, errlen, "%s: out of memory", path);
        goto done;
    }
    store->data = malloc(data_len ? data_len : 1);
    store->by_name = malloc(((size_t)out->n + 1) * sizeof *store->by_name);
    if (!store->data || !store->by_name) {
        io_err(err, errlen, "%s: out of memory for %llu bytes of tensor data", path,
               (unsigned long long)data_len);
        goto done;
    }
    if (!read_exact(fd, store->data, data_len)) {
        io_err(err, errlen, "%s: read error: %s", path, errno ? strerror(errno) : "file shrank");
        goto done;
    }
    if (!host_is_little_endian()) swap32(store->data, data_len / 4);
    for (int i = 0; i < out->n; i++) {
        ns_st_tensor *t = &out->tensors[i];
        t->name = es[i].name;
        t->ndim = es[i].ndim;
        memcpy(t->shape, es[i].shape, sizeof t->shape);
        t->data = store->data + es[i].begin / 4;
        store->by_name[i] = t;
    }
    qsort(store->by_name, (size_t)out->n, sizeof *store->by_name, cmp_tensor_ptr);
    store->strings = doc.strings; /* names and metadata point into it */
    doc.strings = NULL;
    out->priv_ = store;
    store = NULL;
    ok = true;
done:
    close(fd);
    free(header);
    free(es);
    json_free(&doc);
    if (store) {
        free(store->data);
        free(store->by_name);
        free(store);
    }
    if (!ok) {
        free(out->tensors);
        free(out->meta_keys);
        free(out->meta_vals);
        memset(out, 0, sizeof *out);
    }
    return ok;
}

void ns_st_file_free(ns_st_file *f) {
    if (!f) return;
    st_storage *store = f->priv_;
    if (store) {
        free(store->strings);
        free(store->data);
        free(store->by_name);
        free(store);
    }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_vals);
    memset(f, 0, sizeof *f);
}

const ns_st_tensor *ns_st_find(const ns_st_file *f, const char *name) {
    const st_storage *store = f->priv_;
    if (!store || f->n == 0) return NULL;
    const ns_st_tensor *const *hit =
        bsearch(name, store->by_name, (size_t)f->n, sizeof *store->by_name, cmp_name_tensor);
    return hit ? *hit : NULL;
}

static int cmp_key(const void *key, const void *elem) {
    return strcmp(key, *(const char *const *)elem);
}

const char *ns_st_meta(const ns_st_file *f, const char *key) {
    if (f->n_meta == 0) return NULL;
    const char *const *hit =
        bsearch(key, f->meta_keys, (size_t)f->n_meta, sizeof *f->meta_keys, cmp_key);
    return hit ? f->meta_vals[hit - f->meta_keys] : NULL;
}
