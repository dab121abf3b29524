// Batch norm (own kernels: see docs/cuda.md for why not cuDNN's), im2col / col2im and pooling.
#include "cuda_common.cuh"

// ------------------------------------------------------------------ batch norm over (outer, c,
// inner)

#define BN_THREADS 256

// One block per channel (grid-stride): two passes in double, mean then biased variance.
__global__ void bn_stats_kernel(const float *x, float *mean, float *var, int64_t outer, int64_t c,
                                int64_t inner) {
    __shared__ double scratch[32];
    __shared__ double sh_mean;
    int64_t m = outer * inner;
    double cnt = (double)m;
    for (int64_t j = blockIdx.x; j < c; j += gridDim.x) {
        double s = 0;
        for (int64_t e = threadIdx.x; e < m; e += blockDim.x)
            s += x[((e / inner) * c + j) * inner + e % inner];
        s = ns_block_sum(s, scratch);
        if (threadIdx.x == 0) sh_mean = s / cnt;
        __syncthreads();
        double mu = sh_mean, v = 0;
        for (int64_t e = threadIdx.x; e < m; e += blockDim.x) {
            double d = x[((e / inner) * c + j) * inner + e % inner] - mu;
            v += d * d;
        }
        v = ns_block_sum(v, scratch);
        if (threadIdx.x == 0) {
            mean[j] = (float)mu;
            var[j] = (float)(v / cnt);
        }
        __syncthreads(); // sh_mean is rewritten by the next channel
    }
}

static int channel_blocks(int64_t c) {
    return c > NS_CUDA_MAX_BLOCKS ? NS_CUDA_MAX_BLOCKS : (int)c;
}

void ns_cu_bn_stats(const float *x, float *mean, float *var, int64_t outer, int64_t c,
                    int64_t inner) {
    if (c == 0) return;
    bn_stats_kernel<<<channel_blocks(c), BN_THREADS, 0, ns_cu_stream>>>(x, mean, var, outer, c,
                                                                        inner);
    NS_CU_LAUNCHED();
}

void ns_cu_bn_apply(const float *x, const float *mean, const float *invstd, const float *gamma,
                    const float *beta, float *y, int64_t outer, int64_t c, int64_t inner) {
    ns_each(outer * c * inner, [=] __device__(int64_t i) {
        y[i] = ns_k_bn_apply(x, mean, invstd, gamma, beta, i, c, inner);
    });
}

void ns_cu_bn_update_running(float *rm, float *rv, const float *mean, const float *var, int64_t c,
                             float momentum, int64_t count) {
    float unbias = count > 1 ? (float)count / (float)(count - 1) : 1.0f;
    ns_each(c, [=] __device__(int64_t j) {
        rm[j] = (1.0f - momentum) * rm[j] + momentum * mean[j];
        rv[j] = (1.0f - momentum) * rv[j] + momentum * var[j] * unbias;
    });
}

void ns_cu_bn_invstd(const float *var, float *invstd, int64_t c, float eps) {
    ns_each(c, [=] __device__(int64_t j) { invstd[j] = 1.0f / sqrtf(var[j] + eps); });
}

// One block per channel: sum(gy) and sum(gy * xhat), then the input gradient.
__global__ void bn_bwd_kernel(const float *x, const float *mean, const float *invstd,
                              const float *gamma, const float *gy, float *gx, float *ggamma,
                              float *gbeta, int64_t outer, int64_t c, int64_t inner,
                              bool training) {
    __shared__ double scratch[32];
    __shared__ double sh_sg, sh_sgx;
    int64_t m = outer * inner;
    double cnt = (double)m;
    for (int64_t j = blockIdx.x; j < c; j += gridDim.x) {
        float mu = mean[j], is = invstd[j];
        double sg = 0, sgx = 0;
        for (int64_t e = threadIdx.x; e < m; e += blockDim.x) {
            int64_t idx = ((e / inner) * c + j) * inner + e % inner;
            float g = gy[idx];
            sg += g;
            sgx += g * (x[idx] - mu) * is;
        }
        sg = ns_block_sum(sg, scratch);
        sgx = ns_block_sum(sgx, scratch);
        if (threadIdx.x == 0) {
            sh_sg = sg;
            sh_sgx = sgx;
            if (ggamma) ggamma[j] += (float)sgx;
            if (gbeta) gbeta[j] += (float)sg;
        }
        __syncthreads();
        if (gx) {
            float k = (gamma ? gamma[j] : 1.0f) * is;
            float mg = (float)(sh_sg / cnt), mgx = (float)(sh_sgx / cnt);
            for (int64_t e = threadIdx.x; e < m; e += blockDim.x) {
                int64_t idx = ((e / inner) * c + j) * inner + e % inner;
                if (training) {
                    float xh = (x[idx] - mu) * is;
                    gx[idx] += k * (gy[idx] - mg - xh * mgx);
                } else {
                    gx[idx] += k * gy[idx];
                }
            }
        }
        __syncthreads();
    }
}

void ns_cu_bn_bwd_acc(const float *x, const float *mean, const float *invstd, const float *gamma,
                      const float *gy, float *gx, float *ggamma, float *gbeta, int64_t outer,
                      int64_t c, int64_t inner, bool training) {
    if (c == 0 || (!gx && !ggamma && !gbeta)) return;
    bn_bwd_kernel<<<channel_blocks(c), BN_THREADS, 0, ns_cu_stream>>>(
        x, mean, invstd, gamma, gy, gx, ggamma, gbeta, outer, c, inner, training);
    NS_CU_LAUNCHED();
}

// ------------------------------------------------------------------ im2col / col2im (one image)

void ns_cu_im2col(const float *x, float *col, int64_t cin, int64_t h, int64_t w, int64_t k,
                  int64_t stride, int64_t pad, int64_t ho, int64_t wo) {
    ns_k_conv_geom g = {cin, h, w, k, stride, pad, ho, wo};
    ns_each(cin * k * k * ho * wo, [=] __device__(int64_t i) { col[i] = ns_k_im2col(x, i, g); });
}

// A gather: each input pixel sums the col entries that map to it (no atomics).
void ns_cu_col2im_acc(const float *col, float *gx, int64_t cin, int64_t h, int64_t w, int64_t k,
                      int64_t stride, int64_t pad, int64_t ho, int64_t wo) {
    ns_k_conv_geom g = {cin, h, w, k, stride, pad, ho, wo};
    ns_each(cin * h * w, [=] __device__(int64_t i) { gx[i] = ns_k_col2im(col, gx[i], i, g); });
}

// ------------------------------------------------------------------ pooling over (planes, h, w)

void ns_cu_max_pool(const float *x, float *y, int32_t *am, int64_t planes, int64_t h, int64_t w,
                    int64_t k, int64_t s, int64_t pad, int64_t ho, int64_t wo) {
    ns_k_pool_geom g = {h, w, k, s, pad, ho, wo};
    ns_each(planes * ho * wo, [=] __device__(int64_t i) { ns_k_max_pool(x, i, g, y, am); });
}

// One thread per plane, outputs in order (the table gives no window geometry for a gather).
void ns_cu_max_pool_bwd_acc(const float *gy, const int32_t *am, float *gx, int64_t planes,
                            int64_t hw, int64_t howo) {
    ns_each(planes,
            [=] __device__(int64_t p) { ns_k_max_pool_bwd_plane(gy, am, gx, p, hw, howo); });
}

void ns_cu_avg_pool(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t k,
                    int64_t s, int64_t pad, int64_t ho, int64_t wo) {
    ns_k_pool_geom g = {h, w, k, s, pad, ho, wo};
    ns_each(planes * ho * wo, [=] __device__(int64_t i) { y[i] = ns_k_avg_pool(x, i, g); });
}

void ns_cu_avg_pool_bwd_acc(const float *gy, float *gx, int64_t planes, int64_t h, int64_t w,
                            int64_t k, int64_t s, int64_t pad, int64_t ho, int64_t wo) {
    ns_k_pool_geom g = {h, w, k, s, pad, ho, wo};
    ns_each(planes * h * w,
            [=] __device__(int64_t i) { gx[i] = ns_k_avg_pool_bwd(gy, gx[i], i, g); });
}
