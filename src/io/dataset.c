/* In-memory image-classification datasets built from idx files (MNIST, Fashion-MNIST). */
#include "nnscope/io.h"
#include "io_internal.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FASHION_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

bool ns_dataset_load_idx(const char *images_path, const char *labels_path, float mean, float std,
                         int num_classes, ns_dataset *out, char *err, size_t errlen) {
    assert(images_path && labels_path && out && num_classes >= 1);
    memset(out, 0, sizeof *out);
    if (!(std > 0.0f) || !isfinite(std) || !isfinite(mean))
        return io_err(err, errlen, "%s: normalisation needs a finite mean and std > 0 (got %g, %g)",
                      images_path, (double)mean, (double)std);

    ns_idx im, lb;
    if (!ns_idx_load(images_path, &im, err, errlen)) return false;
    if (!ns_idx_load(labels_path, &lb, err, errlen)) {
        ns_idx_free(&im);
        return false;
    }
    bool ok = false;
    if (im.ndim != 3) {
        io_err(err, errlen, "%s: images idx file has %d dimensions; expected 3 (n, rows, cols)",
               images_path, im.ndim);
        goto done;
    }
    if (lb.ndim != 1) {
        io_err(err, errlen, "%s: labels idx file has %d dimensions; expected 1 (n)", labels_path,
               lb.ndim);
        goto done;
    }
    if (im.dims[0] != lb.dims[0]) {
        io_err(err, errlen, "%s has %lld images but %s has %lld labels", images_path,
               (long long)im.dims[0], labels_path, (long long)lb.dims[0]);
        goto done;
    }
    if (im.dims[1] > INT32_MAX || im.dims[2] > INT32_MAX) {
        io_err(err, errlen, "%s: image size %lldx%lld is too large", images_path,
               (long long)im.dims[1], (long long)im.dims[2]);
        goto done;
    }
    for (int64_t i = 0; i < lb.numel; i++) {
        if (lb.data[i] >= num_classes) {
            io_err(err, errlen, "%s: label %d at index %lld is out of range [0, %d)", labels_path,
                   lb.data[i], (long long)i, num_classes);
            goto done;
        }
    }

    out->images = malloc((size_t)im.numel * sizeof(float));
    out->labels = malloc((size_t)lb.numel * sizeof(int32_t));
    if (!out->images || !out->labels) {
        io_err(err, errlen, "%s: out of memory for %lld images", images_path,
               (long long)im.dims[0]);
        free(out->images);
        free(out->labels);
        memset(out, 0, sizeof *out);
        goto done;
    }
    /* Same float32 operations as ToTensor (x / 255) then Normalize ((x - mean) / std). */
    float lut[256];
    for (int v = 0; v < 256; v++) {
        float x = (float)v / 255.0f;
        lut[v] = (x - mean) / std;
    }
    for (int64_t i = 0; i < im.numel; i++) out->images[i] = lut[im.data[i]];
    for (int64_t i = 0; i < lb.numel; i++) out->labels[i] = lb.data[i];
    out->n = im.dims[0];
    out->rows = (int)im.dims[1];
    out->cols = (int)im.dims[2];
    out->num_classes = num_classes;
    out->owned = true;
    ok = true;
done:
    ns_idx_free(&im);
    ns_idx_free(&lb);
    return ok;
}

const char *ns_fashion_mnist_dir(void) {
    const char *env = getenv("NNSCOPE_DATA");
    return env && *env ? env : FASHION_DEFAULT_DIR;
}

bool ns_fashion_mnist_load(const char *dir, bool train, float mean, float std, ns_dataset *out,
                           char *err, size_t errlen) {
    if (!dir) dir = ns_fashion_mnist_dir();
    const char *split = train ? "train" : "t10k";
    size_t n = strlen(dir) + 64;
    char *images = malloc(n), *labels = malloc(n);
    if (!images || !labels) {
        free(images);
        free(labels);
        memset(out, 0, sizeof *out);
        return io_err(err, errlen, "%s: out of memory", dir);
    }
    snprintf(images, n, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(labels, n, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    bool ok = ns_dataset_load_idx(images, labels, mean, std, 10, out, err, errlen);
    free(images);
    free(labels);
    return ok;
}

void ns_dataset_slice(const ns_dataset *src, int64_t begin, int64_t end, ns_dataset *out) {
    assert(src && out && 0 <= begin && begin <= end && end <= src->n);
    int64_t per = (int64_t)src->rows * src->cols;
    *out = *src;
    out->n = end - begin;
    out->images = src->images ? src->images + begin * per : NULL;
    out->labels = src->labels ? src->labels + begin : NULL;
    out->owned = false;
}

void ns_dataset_free(ns_dataset *ds) {
    if (!ds) return;
    if (ds->owned) {
        free(ds->images);
        free(ds->labels);
    }
    memset(ds, 0, sizeof *ds);
}
