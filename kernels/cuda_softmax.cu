// Softmax / log-softmax over the last dim, their backward, and the fused cross-entropy. One warp
// per row (rows of any length; lanes stride over the columns); sums in double like the CPU.
#include <assert.h>
#include <limits.h>

#include "cuda_common.cuh"

// Log-sum-exp pieces of row xr: max and sum of exp(x - max) (double), in every lane.
__device__ inline void row_lse(const float *xr, int64_t cols, int lane, float *mx_out,
                               double *s_out) {
    float mx = -INFINITY;
    for (int64_t c = lane; c < cols; c += 32) mx = fmaxf(mx, xr[c]);
    mx = ns_warp_max(mx);
    double s = 0;
    for (int64_t c = lane; c < cols; c += 32) s += exp((double)(xr[c] - mx));
    *mx_out = mx;
    *s_out = ns_warp_sum(s);
}

__global__ void softmax_kernel(const float *x, float *y, int64_t rows, int64_t cols, bool log) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    float mx;
    double s;
    row_lse(xr, cols, lane, &mx, &s);
    if (log) {
        float lse = mx + (float)::log(s);
        for (int64_t c = lane; c < cols; c += 32) yr[c] = xr[c] - lse;
    } else {
        float inv = (float)(1.0 / s);
        for (int64_t c = lane; c < cols; c += 32) yr[c] = expf(xr[c] - mx) * inv;
    }
}

void ns_cu_softmax(const float *x, float *y, int64_t rows, int64_t cols, bool log) {
    ns_rows_plan p = ns_plan_warp_rows(rows, NS_CUDA_BLOCK);
    if (!p.blocks || !cols) return;
    softmax_kernel<<<p.blocks, p.threads, 0, ns_cu_stream>>>(x, y, rows, cols, log);
    NS_CU_LAUNCHED();
}

__global__ void softmax_bwd_kernel(const float *y, const float *gy, float *gx, int64_t rows,
                                   int64_t cols, bool log) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *yr = y + r * cols, *gr = gy + r * cols;
    float *xr = gx + r * cols;
    double s = 0;
    if (log) {
        for (int64_t c = lane; c < cols; c += 32) s += gr[c];
        float fs = (float)ns_warp_sum(s);
        for (int64_t c = lane; c < cols; c += 32) xr[c] += gr[c] - expf(yr[c]) * fs;
    } else {
        for (int64_t c = lane; c < cols; c += 32) s += (double)gr[c] * yr[c];
        float fs = (float)ns_warp_sum(s);
        for (int64_t c = lane; c < cols; c += 32) xr[c] += yr[c] * (gr[c] - fs);
    }
}

void ns_cu_softmax_bwd_acc(const float *y, const float *gy, float *gx, int64_t rows, int64_t cols,
                           bool log) {
    ns_rows_plan p = ns_plan_warp_rows(rows, NS_CUDA_BLOCK);
    if (!p.blocks || !cols) return;
    softmax_bwd_kernel<<<p.blocks, p.threads, 0, ns_cu_stream>>>(y, gy, gx, rows, cols, log);
    NS_CU_LAUNCHED();
}

// ------------------------------------------------------------------ cross-entropy

// Per row: log-softmax into logp, -logp[target] into row_loss; a target outside [0, cols)
// lowers *bad to the row index (atomicMin: the first bad row wins, deterministically).
__global__ void ce_rows_kernel(const float *logits, const int32_t *target, float *logp,
                               double *row_loss, int32_t *bad, int64_t rows, int64_t cols) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *xr = logits + r * cols;
    float *yr = logp + r * cols;
    float mx;
    double s;
    row_lse(xr, cols, lane, &mx, &s);
    float lse = mx + (float)::log(s);
    for (int64_t c = lane; c < cols; c += 32) yr[c] = xr[c] - lse;
    if (lane == 0) {
        int32_t t = target[r];
        if (t < 0 || t >= cols) {
            atomicMin(bad, (int32_t)r);
            row_loss[r] = 0;
        } else {
            row_loss[r] = -(double)(xr[t] - lse); // the value just written to logp[r, t]
        }
    }
}

// One block: loss = sum(row_loss) / rows, summed in a fixed order.
__global__ void ce_mean_kernel(const double *row_loss, float *loss, int64_t rows) {
    __shared__ double scratch[32];
    double s = 0;
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) s += row_loss[r];
    s = ns_block_sum(s, scratch);
    if (threadIdx.x == 0) *loss = (float)(s / (double)rows);
}

#define CE_NONE 0x7f7f7f7f // memset byte 0x7f: larger than any row index accepted below

int64_t ns_cu_cross_entropy(const float *logits, const int32_t *target, float *logp,
                            float *loss_dev, int64_t rows, int64_t cols) {
    assert(rows > 0 && rows < CE_NONE);
    ns_cu_lock();
    char *dev = (char *)ns_cu_buffer(NS_BUF_CE_DEV, 64 + (size_t)rows * sizeof(double));
    int32_t *bad = (int32_t *)dev, *host_bad = (int32_t *)ns_cu_buffer(NS_BUF_CE_HOST, 64);
    double *row_loss = (double *)(dev + 64);
    cudaCheck(cudaMemsetAsync(bad, 0x7f, 4, ns_cu_stream));
    ns_rows_plan p = ns_plan_warp_rows(rows, NS_CUDA_BLOCK);
    ce_rows_kernel<<<p.blocks, p.threads, 0, ns_cu_stream>>>(logits, target, logp, row_loss, bad,
                                                             rows, cols);
    NS_CU_LAUNCHED();
    ce_mean_kernel<<<1, 1024, 0, ns_cu_stream>>>(row_loss, loss_dev, rows);
    NS_CU_LAUNCHED();
    cudaCheck(cudaMemcpyAsync(host_bad, bad, 4, cudaMemcpyDeviceToHost, ns_cu_stream));
    cudaCheck(cudaStreamSynchronize(ns_cu_stream));
    int32_t first = *host_bad;
    ns_cu_unlock();
    return first == CE_NONE ? -1 : (int64_t)first;
}

void ns_cu_cross_entropy_bwd_acc(const float *logp, const int32_t *target, const float *g_dev,
                                 float *gx, int64_t rows, int64_t cols) {
    ns_each(rows * cols, [=] __device__(int64_t i) {
        float g = *g_dev / (float)rows;
        int64_t r = i / cols, c = i % cols;
        float v = gx[i] + g * expf(logp[i]);
        if (c == target[r]) v -= g;
        gx[i] = v;
    });
}
