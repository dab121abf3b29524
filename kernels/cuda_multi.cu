// Multi-tensor kernels: the fused optimizer updates (SGD, Adam/AdamW) and the norms of many
// tensors in one launch each, and the activation statistics of one tensor.
//
// Multi-tensor scheme (plan in launch.h, ns_mt_plan): each block takes one chunk of one tensor,
// reduces its statistics to a partial (double), and bumps the tensor's arrival counter; the
// last block of a tensor to arrive sums that tensor's partials in chunk order and writes its
// statistics. One launch, deterministic results, one upload of the tables and one read-back.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_common.cuh"

#define MT_THREADS 256
#define MT_STATS 4 // g^2 (or x^2), (w_new - w_old)^2, w_new^2, non-finite count

struct mt_slot {
    float *w;       // updated weights, or the tensor measured by norms
    const float *g; // gradient (optimizers)
    float *s1, *s2;
    int32_t first, nchunks;
    union {
        ns_k_sgd sgd;
        ns_k_adam adam;
    } a;
};

enum { OP_NORM, OP_SGD, OP_ADAM };

template <int OP> __device__ inline int mt_elem(const mt_slot &s, int64_t i, float out[3]) {
    if (OP == OP_SGD) return ns_k_sgd_elem(&s.a.sgd, s.w, s.s1, s.g, i, out);
    if (OP == OP_ADAM) return ns_k_adam_elem(&s.a.adam, s.w, s.s1, s.s2, s.g, i, out);
    float x = s.w[i];
    out[0] = x * x;
    out[1] = out[2] = 0.0f;
    return !isfinite(x);
}

template <int OP>
__global__ void mt_kernel(const mt_slot *slots, const ns_mt_chunk *chunks, double *partials,
                          unsigned int *counters, double *stats) {
    __shared__ double scratch[32];
    __shared__ bool is_last;
    ns_mt_chunk ch = chunks[blockIdx.x];
    mt_slot s = slots[ch.slot];
    float acc[3] = {0, 0, 0}, out[3];
    int bad = 0;
    for (int64_t i = ch.start + threadIdx.x; i < ch.start + ch.len; i += blockDim.x) {
        bad += mt_elem<OP>(s, i, out);
        acc[0] += out[0];
        acc[1] += out[1];
        acc[2] += out[2];
    }
    double tot[MT_STATS];
    for (int k = 0; k < 3; k++) tot[k] = ns_block_sum((double)acc[k], scratch);
    tot[3] = ns_block_sum((double)bad, scratch);
    if (threadIdx.x == 0) {
        for (int k = 0; k < MT_STATS; k++) partials[blockIdx.x * MT_STATS + k] = tot[k];
        __threadfence(); // partials visible before the arrival is counted
        unsigned int prev = atomicAdd(&counters[ch.slot], 1u);
        is_last = prev == (unsigned int)s.nchunks - 1;
    }
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    const volatile double *vp = partials;
    for (int k = 0; k < MT_STATS; k++) {
        double v = 0;
        for (int c = threadIdx.x; c < s.nchunks; c += blockDim.x)
            v += vp[(int64_t)(s.first + c) * MT_STATS + k];
        v = ns_block_sum(v, scratch);
        if (threadIdx.x == 0) stats[ch.slot * MT_STATS + k] = v;
    }
    if (threadIdx.x == 0) counters[ch.slot] = 0; // ready for the next launch
}

// Plans, uploads, launches and reads back. slots[i].w/g/s1/s2/a are filled by the caller, who
// holds ns_cu_lock(); lens[i] == 0 or active[i] == false: stats zero. out: n * MT_STATS doubles
// (host).
template <int OP>
static void mt_run(int n, mt_slot *slots, const int64_t *lens, const bool *active, double *out) {
    int64_t nch = ns_mt_count(n, lens, active, NS_MT_CHUNK);
    if (nch == 0) {
        memset(out, 0, sizeof(double) * MT_STATS * (size_t)n);
        return;
    }
    // Host staging: [slots | chunks | first | nchunks]; device: [slots | chunks | partials | stats]
    size_t sz_slots = sizeof(mt_slot) * (size_t)n, sz_chunks = sizeof(ns_mt_chunk) * (size_t)nch;
    size_t sz_idx = sizeof(int32_t) * (size_t)n;
    size_t sz_part = sizeof(double) * MT_STATS * (size_t)nch;
    size_t sz_stats = sizeof(double) * MT_STATS * (size_t)n;
    char *h = (char *)ns_cu_buffer(NS_BUF_MT_HOST, sz_slots + sz_chunks + 2 * sz_idx + sz_stats);
    mt_slot *hs = (mt_slot *)h;
    ns_mt_chunk *hc = (ns_mt_chunk *)(h + sz_slots);
    int32_t *first = (int32_t *)(h + sz_slots + sz_chunks), *cnt = first + n;
    double *hstats = (double *)(h + sz_slots + sz_chunks + 2 * sz_idx);
    ns_mt_plan(n, lens, active, NS_MT_CHUNK, hc, first, cnt);
    for (int i = 0; i < n; i++) {
        slots[i].first = first[i];
        slots[i].nchunks = cnt[i];
    }
    memcpy(hs, slots, sz_slots);
    char *d = (char *)ns_cu_buffer(NS_BUF_MT_DEV, sz_slots + sz_chunks + sz_part + sz_stats);
    unsigned int *counters =
        (unsigned int *)ns_cu_buffer(NS_BUF_MT_COUNT, sizeof(unsigned int) * (size_t)n);
    double *dstats = (double *)(d + sz_slots + sz_chunks + sz_part);
    cudaCheck(cudaMemcpyAsync(d, h, sz_slots + sz_chunks, cudaMemcpyHostToDevice, ns_cu_stream));
    mt_kernel<OP><<<(unsigned)nch, MT_THREADS, 0, ns_cu_stream>>>(
        (const mt_slot *)d, (const ns_mt_chunk *)(d + sz_slots),
        (double *)(d + sz_slots + sz_chunks), counters, dstats);
    NS_CU_LAUNCHED();
    cudaCheck(cudaMemcpyAsync(hstats, dstats, sz_stats, cudaMemcpyDeviceToHost, ns_cu_stream));
    cudaCheck(cudaStreamSynchronize(ns_cu_stream));
    for (int i = 0; i < n; i++)
        for (int k = 0; k < MT_STATS; k++)
            out[i * MT_STATS + k] = cnt[i] ? hstats[i * MT_STATS + k] : 0.0;
}

// Host scratch for the slot arrays (n is the number of parameters: small).
static mt_slot *slot_array(int n, int64_t **lens, bool **active) {
    static mt_slot *s;
    static int64_t *l;
    static bool *a;
    static int cap;
    if (n > cap) {
        free(s);
        free(l);
        free(a);
        cap = n * 2;
        s = (mt_slot *)calloc((size_t)cap, sizeof *s);
        l = (int64_t *)calloc((size_t)cap, sizeof *l);
        a = (bool *)calloc((size_t)cap, sizeof *a);
        if (!s || !l || !a) {
            fprintf(stderr, "nnscope: out of host memory for %d optimizer slots\n", n);
            exit(1);
        }
    }
    memset(s, 0, sizeof *s * (size_t)n);
    *lens = l;
    *active = a;
    return s;
}

void ns_cu_sgd_step(int n, const ns_optim_slot *slots, float momentum, float dampening,
                    bool nesterov, bool first_step, double *stats) {
    if (n <= 0) return;
    ns_cu_lock(); // the slot arrays and the staging buffers are shared
    int64_t *lens;
    bool *active;
    mt_slot *s = slot_array(n, &lens, &active);
    bool mom = momentum != 0.0f;
    for (int i = 0; i < n; i++) {
        const ns_optim_slot *o = &slots[i];
        s[i].w = o->w;
        s[i].g = o->g;
        s[i].s1 = o->s1;
        lens[i] = o->n;
        active[i] = o->g != NULL;
        ns_k_sgd *a = &s[i].a.sgd;
        a->momentum = momentum;
        a->damp = 1.0f - dampening;
        a->lr = o->lr;
        a->wd = o->weight_decay;
        a->use_mom = mom;
        a->use_wd = o->weight_decay != 0.0f;
        a->nesterov = mom && nesterov;
        a->first = mom && first_step;
    }
    mt_run<OP_SGD>(n, s, lens, active, stats);
    ns_cu_unlock();
}

void ns_cu_adam_step(int n, const ns_optim_slot *slots, float beta1, float beta2, float eps,
                     bool decoupled_wd, float bias_corr1, float bias_corr2, double *stats) {
    if (n <= 0) return;
    ns_cu_lock();
    int64_t *lens;
    bool *active;
    mt_slot *s = slot_array(n, &lens, &active);
    float bc2_sqrt = sqrtf(bias_corr2);
    for (int i = 0; i < n; i++) {
        const ns_optim_slot *o = &slots[i];
        s[i].w = o->w;
        s[i].g = o->g;
        s[i].s1 = o->s1;
        s[i].s2 = o->s2;
        lens[i] = o->n;
        active[i] = o->g != NULL;
        s[i].a.adam = ns_k_adam_args(beta1, beta2, eps, decoupled_wd, bias_corr1, bc2_sqrt, o->lr,
                                     o->weight_decay);
    }
    mt_run<OP_ADAM>(n, s, lens, active, stats);
    ns_cu_unlock();
}

void ns_cu_norms(int n, const float *const *xs, const int64_t *lens_in, double *sumsq,
                 int64_t *nonfinite) {
    if (n <= 0) return;
    ns_cu_lock();
    int64_t *lens;
    bool *active;
    mt_slot *s = slot_array(n, &lens, &active);
    for (int i = 0; i < n; i++) {
        s[i].w = (float *)xs[i];
        lens[i] = lens_in[i];
        active[i] = true;
    }
    double *st = (double *)malloc(sizeof(double) * MT_STATS * (size_t)n);
    if (!st) {
        fprintf(stderr, "nnscope: out of host memory for the norms of %d tensors\n", n);
        exit(1);
    }
    mt_run<OP_NORM>(n, s, lens, active, st);
    for (int i = 0; i < n; i++) {
        sumsq[i] = st[i * MT_STATS];
        nonfinite[i] = (int64_t)st[i * MT_STATS + 3];
    }
    free(st);
    ns_cu_unlock();
}

// ------------------------------------------------------------------ act_stats

#define ACT_THREADS (NS_ACT_COLS * NS_ACT_LANES)

// x as (rows, cols): block (bx, by) covers columns [bx*32, +32) and rows of split by. Writes its
// partial {sum, sumsq, zeros, nonfinite} and adds per-column zero counts to colzeros.
__global__ void act_kernel(const float *x, int64_t rows, int64_t cols, int64_t rows_per_split,
                           double *partials, unsigned long long *colzeros) {
    __shared__ double scratch[32];
    int tx = threadIdx.x % NS_ACT_COLS, ty = threadIdx.x / NS_ACT_COLS;
    int64_t j = (int64_t)blockIdx.x * NS_ACT_COLS + tx;
    int64_t r0 = (int64_t)blockIdx.y * rows_per_split;
    int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
    double s = 0, ss = 0;
    unsigned long long z = 0, bad = 0;
    if (j < cols) {
        for (int64_t r = r0 + ty; r < r1; r += NS_ACT_LANES) {
            float v = x[r * cols + j];
            s += v;
            ss += (double)(v * v);
            z += v == 0.0f;
            bad += !isfinite(v);
        }
        if (z) atomicAdd(&colzeros[j], z);
    }
    double t[4] = {s, ss, (double)z, (double)bad};
    int64_t b = (int64_t)blockIdx.y * gridDim.x + blockIdx.x;
    for (int k = 0; k < 4; k++) {
        double v = ns_block_sum(t[k], scratch);
        if (threadIdx.x == 0) partials[b * 4 + k] = v;
    }
}

// One block: totals of the partials, and the features whose every element is zero.
__global__ void act_final_kernel(const double *partials, int64_t nparts,
                                 const unsigned long long *colzeros, int64_t feat, int64_t inner,
                                 int64_t rows, double *out) {
    __shared__ double scratch[32];
    for (int k = 0; k < 4; k++) {
        double v = 0;
        for (int64_t p = threadIdx.x; p < nparts; p += blockDim.x) v += partials[p * 4 + k];
        v = ns_block_sum(v, scratch);
        if (threadIdx.x == 0) out[k] = v;
    }
    double dead = 0;
    for (int64_t f = threadIdx.x; f < feat; f += blockDim.x) {
        unsigned long long zf = 0;
        for (int64_t i = 0; i < inner; i++) zf += colzeros[f * inner + i];
        dead += zf == (unsigned long long)(rows * inner);
    }
    dead = ns_block_sum(dead, scratch);
    if (threadIdx.x == 0) out[4] = dead;
}

void ns_cu_act_stats(const float *x, int64_t rows, int64_t feat, int64_t inner, double *sum,
                     double *sumsq, int64_t *zeros, int64_t *dead, int64_t *nonfinite) {
    int64_t cols = feat * inner;
    if (rows <= 0 || cols <= 0) {
        *sum = *sumsq = 0;
        *zeros = *nonfinite = 0;
        *dead =
            rows <= 0 || inner <= 0 ? feat : 0; // no elements: every feature counts as dead (CPU)
        return;
    }
    ns_act_plan p = ns_plan_act_stats(rows, cols);
    int64_t nparts = (int64_t)p.gx * p.gy;
    ns_cu_lock();
    size_t sz_zero = sizeof(unsigned long long) * (size_t)cols;
    char *d =
        (char *)ns_cu_buffer(NS_BUF_ACT_DEV, sz_zero + sizeof(double) * (4 * (size_t)nparts + 8));
    unsigned long long *colzeros = (unsigned long long *)d;
    double *partials = (double *)(d + sz_zero), *dout = partials + 4 * nparts;
    double *hout = (double *)ns_cu_buffer(NS_BUF_ACT_HOST, sizeof(double) * 8);
    cudaCheck(cudaMemsetAsync(colzeros, 0, sz_zero, ns_cu_stream));
    act_kernel<<<dim3(p.gx, p.gy), ACT_THREADS, 0, ns_cu_stream>>>(x, rows, cols, p.rows_per_split,
                                                                   partials, colzeros);
    NS_CU_LAUNCHED();
    act_final_kernel<<<1, 1024, 0, ns_cu_stream>>>(partials, nparts, colzeros, feat, inner, rows,
                                                   dout);
    NS_CU_LAUNCHED();
    cudaCheck(
        cudaMemcpyAsync(hout, dout, sizeof(double) * 5, cudaMemcpyDeviceToHost, ns_cu_stream));
    cudaCheck(cudaStreamSynchronize(ns_cu_stream));
    *sum = hout[0];
    *sumsq = hout[1];
    *zeros = (int64_t)hout[2];
    *nonfinite = (int64_t)hout[3];
    *dead = (int64_t)hout[4];
    ns_cu_unlock();
}
