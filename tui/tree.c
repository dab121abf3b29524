/* The module tree as visible rows: depth-first order, siblings sorted by a key, collapsed
 * subtrees hidden, a filter that keeps matches and their ancestors. See model.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model.h"

const char *ns_tui_sort_name(ns_tui_sort s) {
    static const char *names[NS_SORT_COUNT_] = {"tree", "name", "grad", "ratio", "params", "flags"};
    return (int)s >= 0 && s < NS_SORT_COUNT_ ? names[s] : "?";
}

typedef struct {
    double key;
    const char *name;
    int64_t id;
    int idx;
} sort_item;

static int cmp_item(const void *a, const void *b) {
    const sort_item *x = a, *y = b;
    /* NaN (no value) sorts last; larger keys first. */
    int nx = isnan(x->key), ny = isnan(y->key);
    if (nx != ny) return nx ? 1 : -1;
    if (!nx && x->key != y->key) return x->key > y->key ? -1 : 1;
    if (x->name && y->name) {
        int c = strcasecmp(x->name, y->name);
        if (c) return c;
    }
    return x->id < y->id ? -1 : x->id > y->id;
}

static double sort_key(const ns_tui_mod *d, ns_tui_sort sort) {
    switch (sort) {
    case NS_SORT_GRAD:
        return ns_ring_last(&d->grad);
    case NS_SORT_RATIO:
        return ns_ring_last(&d->ratio);
    case NS_SORT_PARAMS:
        return (double)d->tree_params;
    case NS_SORT_FLAGS:
        return (d->max_sev + 1) * 8.0 + (!d->registered ? 4 : 0) + (d->created_in_forward ? 2 : 0) +
               (d->nonfinite > 0 ? 1 : 0);
    default:
        return 0;
    }
}

static void sort_segment(const ns_tui_model *m, int *seg, int n, ns_tui_sort sort) {
    if (n < 2) return;
    sort_item stack_items[64];
    sort_item *items = n <= 64 ? stack_items : malloc(sizeof *items * (size_t)n);
    if (!items) return;
    for (int i = 0; i < n; i++) {
        const ns_tui_mod *d = &m->mods[seg[i]];
        items[i].key = sort_key(d, sort);
        items[i].name = sort == NS_SORT_TREE ? NULL : d->name;
        items[i].id = d->id;
        items[i].idx = seg[i];
    }
    if (n > 1) qsort(items, (size_t)n, sizeof *items, cmp_item);
    for (int i = 0; i < n; i++) seg[i] = items[i].idx;
    if (items != stack_items) free(items);
}

static int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return 1;
    return n == 0;
}

typedef struct {
    ns_tui_model *m;
    ns_tui_sort sort;
    const unsigned char *vis; /* NULL: all visible */
    int *pool;                /* sibling segments along the current path */
    int pool_top;
    int failed;
} tree_walk;

static int add_row(ns_tui_model *m, int mod, int depth, int last, uint64_t more) {
    if (m->nrows == m->caprows) {
        int cap = m->caprows ? m->caprows * 2 : 64;
        ns_tui_row *rows = realloc(m->rows, sizeof *rows * (size_t)cap);
        if (!rows) return -1;
        m->rows = rows;
        m->caprows = cap;
    }
    ns_tui_row *r = &m->rows[m->nrows++];
    r->mod = mod;
    r->depth = depth;
    r->last = last;
    r->more = more;
    return 0;
}

static void walk(tree_walk *w, int *seg, int n, int depth, uint64_t more) {
    ns_tui_model *m = w->m;
    sort_segment(m, seg, n, w->sort);
    for (int i = 0; i < n && !w->failed; i++) {
        int mi = seg[i], last = i == n - 1;
        if (add_row(m, mi, depth, last, more) != 0) {
            w->failed = 1;
            return;
        }
        const ns_tui_mod *d = &m->mods[mi];
        if (d->collapsed || d->first_child < 0) continue;
        int *kids = w->pool + w->pool_top, nk = 0;
        for (int c = d->first_child; c >= 0; c = m->mods[c].next_sibling)
            if (!w->vis || w->vis[c]) kids[nk++] = c;
        w->pool_top += nk;
        uint64_t child_more = more;
        if (depth >= 1 && depth <= 64 && !last) child_more |= (uint64_t)1 << (depth - 1);
        walk(w, kids, nk, depth + 1, child_more);
        w->pool_top -= nk;
    }
}

int ns_tui_model_build_rows(ns_tui_model *m, ns_tui_sort sort, const char *filter) {
    if (!m->linked) ns_tui_model_link(m);
    m->nrows = 0;
    if (m->nmods == 0) return 0;
    unsigned char *vis = NULL;
    int *pool = malloc(sizeof(int) * (size_t)m->nmods);
    if (!pool) return -1;
    if (filter && filter[0]) {
        vis = calloc((size_t)m->nmods, 1);
        if (!vis) {
            free(pool);
            return -1;
        }
        for (int i = 0; i < m->nmods; i++) {
            const ns_tui_mod *d = &m->mods[i];
            if (!contains_ci(d->path, filter) && !contains_ci(d->name, filter) &&
                !contains_ci(d->type, filter) && !contains_ci(d->flags, filter))
                continue;
            for (int a = i, guard = 0; a >= 0 && !vis[a] && guard <= m->nmods;
                 a = m->mods[a].parent, guard++)
                vis[a] = 1;
        }
    }
    int nroots = 0;
    for (int i = 0; i < m->nmods; i++)
        if (m->mods[i].parent < 0 && (!vis || vis[i])) pool[nroots++] = i;
    tree_walk w = {m, sort, vis, pool, nroots, 0};
    walk(&w, pool, nroots, 0, 0);
    free(pool);
    free(vis);
    return w.failed ? -1 : m->nrows;
}
