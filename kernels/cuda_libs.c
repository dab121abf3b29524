/* cuBLAS and cuDNN, loaded with dlopen when the CUDA backend starts (see cuda_internal.h for
 * why they are not linked). The library is looked up by its soname (LD_LIBRARY_PATH, the
 * system's ld.so cache), then in the CUDA library folder found at build time. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

#ifndef NS_CUDA_LIBDIR
#define NS_CUDA_LIBDIR "/usr/local/cuda/lib64"
#endif
#define STR_(x) #x
#define STR(x) STR_(x)

ns_cublas_api ns_cublas;
cublasHandle_t ns_cublas_handle;

static void *open_lib(const char *soname, char *why, size_t whylen) {
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (h) return h;
    char first[256];
    snprintf(first, sizeof first, "%s", dlerror());
    char path[512];
    snprintf(path, sizeof path, "%s/%s", NS_CUDA_LIBDIR, soname);
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(why, whylen, "cannot load %s: %s", soname, first);
    return h;
}

/* Resolves name into *slot; false (why filled) when missing. */
static bool sym(void *lib, const char *soname, const char *name, void **slot, char *why,
                size_t whylen) {
    *slot = dlsym(lib, name);
    if (!*slot) snprintf(why, whylen, "%s has no symbol %s", soname, name);
    return *slot != NULL;
}

#define SYM(lib, so, api, field, name) sym(lib, so, name, (void **)&(api).field, why, whylen)

bool ns_cu_load_cublas(char *why, size_t whylen) {
    const char *so = "libcublas.so." STR(CUBLAS_VER_MAJOR);
    void *lib = open_lib(so, why, whylen);
    if (!lib) return false;
    if (!SYM(lib, so, ns_cublas, Create, "cublasCreate_v2") ||
        !SYM(lib, so, ns_cublas, Destroy, "cublasDestroy_v2") ||
        !SYM(lib, so, ns_cublas, SetStream, "cublasSetStream_v2") ||
        !SYM(lib, so, ns_cublas, SetMathMode, "cublasSetMathMode") ||
        !SYM(lib, so, ns_cublas, Sgemm, "cublasSgemm_v2") ||
        !SYM(lib, so, ns_cublas, GetStatusString, "cublasGetStatusString"))
        return false;
    cublasStatus_t s = ns_cublas.Create(&ns_cublas_handle);
    if (s != CUBLAS_STATUS_SUCCESS) {
        snprintf(why, whylen, "cuBLAS does not start: %s", ns_cublas.GetStatusString(s));
        return false;
    }
    cublasCheck(ns_cublas.SetStream(ns_cublas_handle, ns_cu_stream));
    cublasCheck(ns_cublas.SetMathMode(ns_cublas_handle, CUBLAS_DEFAULT_MATH));
    return true;
}

#ifdef NS_HAVE_CUDNN

ns_cudnn_api ns_cudnn;
cudnnHandle_t ns_cudnn_handle;

void ns_cudnn_check(cudnnStatus_t s, const char *expr, const char *file, int line) {
    if (s == CUDNN_STATUS_SUCCESS) return;
    fprintf(stderr, "nnscope: cuDNN error at %s:%d: %s (%s)\n", file, line,
            ns_cudnn.GetErrorString ? ns_cudnn.GetErrorString(s) : "unknown status", expr);
    exit(1);
}

static pthread_once_t g_cudnn_once = PTHREAD_ONCE_INIT;
static bool g_cudnn_ok;
static char g_cudnn_why[256];

static void load_cudnn(void) {
    char *why = g_cudnn_why;
    size_t whylen = sizeof g_cudnn_why;
    const char *so = "libcudnn.so." STR(CUDNN_MAJOR);
    void *lib = open_lib(so, why, whylen);
    if (!lib) return;
#define C(field) SYM(lib, so, ns_cudnn, field, "cudnn" #field)
    if (!C(Create) || !C(Destroy) || !C(SetStream) || !C(GetErrorString) ||
        !C(CreateTensorDescriptor) || !C(SetTensor4dDescriptor) || !C(DestroyTensorDescriptor) ||
        !C(CreateFilterDescriptor) || !C(SetFilter4dDescriptor) || !C(DestroyFilterDescriptor) ||
        !C(CreateConvolutionDescriptor) || !C(SetConvolution2dDescriptor) ||
        !C(SetConvolutionMathType) || !C(DestroyConvolutionDescriptor) ||
        !C(GetConvolutionForwardAlgorithm_v7) || !C(GetConvolutionForwardWorkspaceSize) ||
        !C(ConvolutionForward) || !C(GetConvolutionBackwardDataAlgorithm_v7) ||
        !C(GetConvolutionBackwardDataWorkspaceSize) || !C(ConvolutionBackwardData) ||
        !C(GetConvolutionBackwardFilterAlgorithm_v7) ||
        !C(GetConvolutionBackwardFilterWorkspaceSize) || !C(ConvolutionBackwardFilter))
        return;
#undef C
    cudnnStatus_t s = ns_cudnn.Create(&ns_cudnn_handle);
    if (s != CUDNN_STATUS_SUCCESS) {
        snprintf(why, whylen, "cuDNN does not start: %s", ns_cudnn.GetErrorString(s));
        return;
    }
    cudnnCheck(ns_cudnn.SetStream(ns_cudnn_handle, ns_cu_stream));
    g_cudnn_ok = true;
}

bool ns_cu_load_cudnn(char *why, size_t whylen) {
    pthread_once(&g_cudnn_once, load_cudnn);
    if (!g_cudnn_ok && why) snprintf(why, whylen, "%s", g_cudnn_why);
    return g_cudnn_ok;
}

#else

bool ns_cu_load_cudnn(char *why, size_t whylen) {
    if (why) snprintf(why, whylen, "this nnscope was built without cuDNN");
    return false;
}

#endif
