// Elementwise, broadcasting, transpose, block copies and dropout. The per-element math is in
// elem.h (shared with the CPU tests); each entry is one grid-stride launch.
#include "cuda_common.cuh"

void ns_cu_binary(enum ns_binary_op op, const float *a, const float *b, float *y, int64_t n) {
    int o = (int)op;
    ns_each(n, [=] __device__(int64_t i) { y[i] = ns_k_binary(o, a[i], b[i]); });
}

void ns_cu_axpy(float alpha, const float *x, float *y, int64_t n) {
    ns_each(n, [=] __device__(int64_t i) { y[i] += alpha * x[i]; });
}

void ns_cu_mul_acc(const float *a, const float *b, float *y, int64_t n) {
    ns_each(n, [=] __device__(int64_t i) { y[i] += a[i] * b[i]; });
}

void ns_cu_affine(const float *x, float *y, int64_t n, float s, float t) {
    ns_each(n, [=] __device__(int64_t i) { y[i] = x[i] * s + t; });
}

void ns_cu_unary(enum ns_unary_op op, const float *x, float *y, int64_t n, float alpha) {
    int o = (int)op;
    ns_each(n, [=] __device__(int64_t i) { y[i] = ns_k_unary(o, x[i], alpha); });
}

void ns_cu_unary_bwd_acc(enum ns_unary_op op, const float *x, const float *y, const float *gy,
                         float *gx, int64_t n, float alpha) {
    int o = (int)op;
    ns_each(n, [=] __device__(int64_t i) {
        gx[i] += ns_k_unary_grad(o, x[i], y ? y[i] : 0.0f, gy[i], alpha);
    });
}

// (outer, c, inner): y = x + b[channel]
void ns_cu_bias_add(const float *x, const float *b, float *y, int64_t outer, int64_t c,
                    int64_t inner) {
    ns_each(outer * c * inner,
            [=] __device__(int64_t i) { y[i] = x[i] + b[ns_k_channel(i, c, inner)]; });
}

// ------------------------------------------------------------------ reduce over the middle axis

// inner == 1, short rows: one warp per row, double accumulation like the CPU.
__global__ void reduce_rows_warp(const float *x, float *y, int64_t rows, int64_t len, float scale) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *xr = x + r * len;
    double s = 0;
    for (int64_t l = lane; l < len; l += 32) s += xr[l];
    s = ns_warp_sum(s);
    if (lane == 0) y[r] = (float)(s * (double)scale);
}

// inner == 1, long rows: one block per row (grid-stride over rows).
__global__ void reduce_rows_block(const float *x, float *y, int64_t rows, int64_t len,
                                  float scale) {
    __shared__ double scratch[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * len;
        double s = 0;
        for (int64_t l = threadIdx.x; l < len; l += blockDim.x) s += xr[l];
        s = ns_block_sum(s, scratch);
        if (threadIdx.x == 0) y[r] = (float)(s * (double)scale);
    }
}

void ns_cu_reduce(const float *x, float *y, int64_t outer, int64_t len, int64_t inner,
                  float scale) {
    if (outer * inner == 0) return;
    if (inner > 1) { // one thread per output, float sum in l order: bitwise the CPU's result
        ns_each(outer * inner,
                [=] __device__(int64_t i) { y[i] = ns_k_reduce_inner(x, i, len, inner, scale); });
        return;
    }
    if (len <= 4096) {
        ns_rows_plan p = ns_plan_warp_rows(outer, NS_CUDA_BLOCK);
        reduce_rows_warp<<<p.blocks, p.threads, 0, ns_cu_stream>>>(x, y, outer, len, scale);
    } else {
        int blocks = outer > NS_CUDA_MAX_BLOCKS ? NS_CUDA_MAX_BLOCKS : (int)outer;
        reduce_rows_block<<<blocks, 1024, 0, ns_cu_stream>>>(x, y, outer, len, scale);
    }
    NS_CU_LAUNCHED();
}

void ns_cu_expand_acc(const float *gy, float *gx, int64_t outer, int64_t len, int64_t inner,
                      float scale) {
    ns_each(outer * len * inner,
            [=] __device__(int64_t i) { gx[i] += scale * gy[ns_k_expand_src(i, len, inner)]; });
}

// ------------------------------------------------------------------ transpose

// y (cols, rows) = x (rows, cols)^T through a 32x33 shared tile; block (32, 8).
__global__ void transpose_kernel(const float *x, float *y, int64_t rows, int64_t cols, bool acc) {
    __shared__ float tile[NS_TILE][NS_TILE + 1];
    int64_t c0 = (int64_t)blockIdx.x * NS_TILE;
    for (int64_t r0 = (int64_t)blockIdx.y * NS_TILE; r0 < rows;
         r0 += (int64_t)gridDim.y * NS_TILE) {
        for (int j = threadIdx.y; j < NS_TILE; j += blockDim.y) {
            int64_t r = r0 + j, c = c0 + threadIdx.x;
            if (r < rows && c < cols) tile[j][threadIdx.x] = x[r * cols + c];
        }
        __syncthreads();
        for (int j = threadIdx.y; j < NS_TILE; j += blockDim.y) {
            int64_t c = c0 + j, r = r0 + threadIdx.x; // output row c, column r
            if (r < rows && c < cols) {
                if (acc)
                    y[c * rows + r] += tile[threadIdx.x][j];
                else
                    y[c * rows + r] = tile[threadIdx.x][j];
            }
        }
        __syncthreads();
    }
}

void ns_cu_transpose(const float *x, float *y, int64_t rows, int64_t cols, bool acc) {
    if (rows == 0 || cols == 0) return;
    int gx, gy;
    ns_plan_transpose(rows, cols, &gx, &gy);
    transpose_kernel<<<dim3(gx, gy), dim3(NS_TILE, 8), 0, ns_cu_stream>>>(x, y, rows, cols, acc);
    NS_CU_LAUNCHED();
}

// ------------------------------------------------------------------ block copies, dropout

void ns_cu_copy_blocks(const float *src, int64_t ss, float *dst, int64_t ds, int64_t rows,
                       int64_t len, bool acc) {
    if (rows == 0 || len == 0) return;
    if (!acc && rows == 1) {
        cudaCheck(
            cudaMemcpyAsync(dst, src, (size_t)len * 4, cudaMemcpyDeviceToDevice, ns_cu_stream));
        return;
    }
    if (!acc && ss >= len && ds >= len) { // one strided copy (pitches must cover a row)
        cudaCheck(cudaMemcpy2DAsync(dst, (size_t)ds * 4, src, (size_t)ss * 4, (size_t)len * 4,
                                    (size_t)rows, cudaMemcpyDeviceToDevice, ns_cu_stream));
        return;
    }
    ns_each(rows * len, [=] __device__(int64_t i) {
        int64_t s, d;
        ns_k_block_offsets(i, len, ss, ds, &s, &d);
        dst[d] = acc ? dst[d] + src[s] : src[s];
    });
}

void ns_cu_dropout(const float *x, float *y, int64_t n, float p, uint64_t seed, uint64_t counter,
                   bool acc) {
    float scale = 1.0f / (1.0f - p);
    if (acc)
        ns_each(n, [=] __device__(int64_t i) {
            y[i] += x[i] * ns_k_dropout_keep(seed, counter, i, p, scale);
        });
    else
        ns_each(n, [=] __device__(int64_t i) {
            y[i] = x[i] * ns_k_dropout_keep(seed, counter, i, p, scale);
        });
}
