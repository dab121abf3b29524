/* Batched, seeded, resumable iteration over an ns_dataset.
 *
 * The permutation of epoch e is a pure function of (seed, e) (see io.h for the exact
 * recipe), so (seed, epoch, position) is the whole state and a restored loader continues with
 * exactly the batches the original would have served. */
#include "nnscope/io.h"
#include "io_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ns_loader {
    const ns_dataset *ds;
    int64_t batch_size;
    bool shuffle, drop_last;
    uint64_t seed;
    uint64_t epoch;
    int64_t position;
    int64_t *perm; /* order of epoch `epoch`; NULL when not shuffling */
};

/* splitmix64 (Steele, Lea, Flood 2014): used only to seed xoshiro256**. */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** 1.0 (Blackman, Vigna 2018). */
static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform integer in [0, bound) by rejection: unbiased and deterministic given the stream. */
static uint64_t uniform_below(uint64_t s[4], uint64_t bound) {
    uint64_t threshold = (0 - bound) % bound; /* 2^64 mod bound */
    for (;;) {
        uint64_t r = xoshiro_next(s);
        if (r >= threshold) return r % bound;
    }
}

static void make_perm(ns_loader *ld) {
    if (!ld->perm) return;
    int64_t n = ld->ds->n;
    for (int64_t i = 0; i < n; i++) ld->perm[i] = i;
    uint64_t x = ld->seed + ld->epoch * 0xD1B54A32D192ED03ull;
    uint64_t s[4];
    for (int k = 0; k < 4; k++) s[k] = splitmix64(&x);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)uniform_below(s, (uint64_t)i + 1);
        int64_t t = ld->perm[i];
        ld->perm[i] = ld->perm[j];
        ld->perm[j] = t;
    }
}

/* Samples served per epoch. */
static int64_t epoch_len(const ns_loader *ld) {
    int64_t n = ld->ds->n;
    return ld->drop_last ? n - n % ld->batch_size : n;
}

ns_loader *ns_loader_new(const ns_dataset *ds, int64_t batch_size, bool shuffle, uint64_t seed,
                         bool drop_last) {
    assert(ds && batch_size >= 1 && ds->n >= 0);
    ns_loader *ld = calloc(1, sizeof *ld);
    if (!ld) return NULL;
    ld->ds = ds;
    ld->batch_size = batch_size;
    ld->shuffle = shuffle;
    ld->drop_last = drop_last;
    ld->seed = seed;
    if (shuffle) {
        ld->perm = malloc((size_t)(ds->n > 0 ? ds->n : 1) * sizeof *ld->perm);
        if (!ld->perm) {
            free(ld);
            return NULL;
        }
        make_perm(ld);
    }
    return ld;
}

void ns_loader_free(ns_loader *ld) {
    if (!ld) return;
    free(ld->perm);
    free(ld);
}

int64_t ns_loader_next(ns_loader *ld, float *x, int32_t *y) {
    assert(ld && x && y);
    int64_t end = epoch_len(ld);
    if (ld->position >= end) {
        ld->epoch++;
        ld->position = 0;
        make_perm(ld);
        return 0;
    }
    int64_t b = end - ld->position < ld->batch_size ? end - ld->position : ld->batch_size;
    const ns_dataset *ds = ld->ds;
    size_t per = (size_t)ds->rows * (size_t)ds->cols;
    for (int64_t k = 0; k < b; k++) {
        int64_t i = ld->perm ? ld->perm[ld->position + k] : ld->position + k;
        memcpy(x + (size_t)k * per, ds->images + (size_t)i * per, per * sizeof(float));
        y[k] = ds->labels[i];
    }
    ld->position += b;
    return b;
}

int64_t ns_loader_batches_per_epoch(const ns_loader *ld) {
    return (epoch_len(ld) + ld->batch_size - 1) / ld->batch_size;
}

ns_loader_state ns_loader_get_state(const ns_loader *ld) {
    ns_loader_state st = {
        .seed = ld->seed,
        .epoch = ld->epoch,
        .position = ld->position,
        .n = ld->ds->n,
        .batch_size = ld->batch_size,
        .shuffle = ld->shuffle,
        .drop_last = ld->drop_last,
    };
    return st;
}

bool ns_loader_set_state(ns_loader *ld, const ns_loader_state *st, char *err, size_t errlen) {
    if (st->n != ld->ds->n)
        return io_err(err, errlen,
                      "loader state is for a dataset of %lld samples, this loader has %lld",
                      (long long)st->n, (long long)ld->ds->n);
    if (st->batch_size != ld->batch_size)
        return io_err(err, errlen, "loader state has batch size %lld, this loader uses %lld",
                      (long long)st->batch_size, (long long)ld->batch_size);
    if (st->shuffle != ld->shuffle || st->drop_last != ld->drop_last)
        return io_err(err, errlen,
                      "loader state has shuffle=%d drop_last=%d, this loader has shuffle=%d "
                      "drop_last=%d",
                      st->shuffle, st->drop_last, ld->shuffle, ld->drop_last);
    if (st->position < 0 || st->position > epoch_len(ld))
        return io_err(err, errlen, "loader state position %lld is outside the epoch (0..%lld)",
                      (long long)st->position, (long long)epoch_len(ld));
    bool reshuffle = st->seed != ld->seed || st->epoch != ld->epoch;
    ld->seed = st->seed;
    ld->epoch = st->epoch;
    ld->position = st->position;
    if (reshuffle) make_perm(ld);
    return true;
}

int ns_loader_state_format(const ns_loader_state *st, char *buf, size_t buflen) {
    return snprintf(buf, buflen,
                    "seed=%" PRIu64 " epoch=%" PRIu64 " position=%" PRId64 " n=%" PRId64
                    " batch_size=%" PRId64 " shuffle=%d drop_last=%d",
                    st->seed, st->epoch, st->position, st->n, st->batch_size, st->shuffle ? 1 : 0,
                    st->drop_last ? 1 : 0);
}

/* Reads "<name>=<digits>" at *p, then one space unless last. */
static bool parse_field(const char **p, const char *name, bool last, uint64_t *out) {
    size_t k = strlen(name);
    if (strncmp(*p, name, k) != 0 || (*p)[k] != '=') return false;
    const char *s = *p + k + 1;
    if (*s < '0' || *s > '9') return false;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    if (last ? *s != '\0' : *s++ != ' ') return false;
    *p = s;
    *out = v;
    return true;
}

bool ns_loader_state_parse(const char *text, ns_loader_state *st, char *err, size_t errlen) {
    const char *p = text;
    enum { NF = 7 };
    uint64_t v[NF];
    static const char *const names[NF] = {"seed",       "epoch",   "position", "n",
                                          "batch_size", "shuffle", "drop_last"};
    for (int i = 0; i < NF; i++) {
        if (!parse_field(&p, names[i], i == NF - 1, &v[i]) || (i >= 2 && v[i] > INT64_MAX) ||
            (i == 4 && v[i] == 0) || (i >= 5 && v[i] > 1))
            return io_err(err, errlen,
                          "invalid loader state '%.100s': expected 'seed=S epoch=E position=P "
                          "n=N batch_size=B shuffle=0|1 drop_last=0|1' (bad or missing %s)",
                          text, names[i]);
    }
    st->seed = v[0];
    st->epoch = v[1];
    st->position = (int64_t)v[2];
    st->n = (int64_t)v[3];
    st->batch_size = (int64_t)v[4];
    st->shuffle = v[5] == 1;
    st->drop_last = v[6] == 1;
    return true;
}
