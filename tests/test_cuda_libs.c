/* The CUDA backend's dlopen layer (kernels/cuda_libs.c), on any machine with the CUDA libraries:
 * cuBLAS and cuDNN load by soname and every entry point the backend uses resolves. Without a
 * GPU the libraries' handle creation fails; that is the only failure accepted, and the message
 * must say so. Built only with the CUDA backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "cuda_internal.h"

static void expect_loaded_or_no_device(bool ok, const char *why, const char *lib) {
    if (ok) return; /* a GPU machine: the handle was created */
    if (!strstr(why, "does not start")) fail_msg("%s: %s", lib, why);
    print_message("%s loads and resolves; %s\n", lib, why);
}

/* Every cuBLAS symbol resolves (a missing one or a wrong soname fails here, not on a GPU). */
static void test_cublas_symbols(void **state) {
    (void)state;
    char why[256] = "";
    bool ok = ns_cu_load_cublas(why, sizeof why);
    expect_loaded_or_no_device(ok, why, "cuBLAS");
    assert_non_null(ns_cublas.Create);
    assert_non_null(ns_cublas.Sgemm);
    assert_non_null(ns_cublas.GetStatusString);
    assert_string_equal(ns_cublas.GetStatusString(CUBLAS_STATUS_SUCCESS), "success");
}

static void test_cudnn_symbols(void **state) {
    (void)state;
    char why[256] = "";
    bool ok = ns_cu_load_cudnn(why, sizeof why);
#ifdef NS_HAVE_CUDNN
    expect_loaded_or_no_device(ok, why, "cuDNN");
    assert_non_null(ns_cudnn.ConvolutionBackwardFilter);
    assert_non_null(ns_cudnn.GetErrorString);
    assert_string_equal(ns_cudnn.GetErrorString(CUDNN_STATUS_SUCCESS), "CUDNN_STATUS_SUCCESS");
    /* the answer is cached: a second call agrees */
    char why2[256] = "";
    assert_int_equal(ns_cu_load_cudnn(why2, sizeof why2), ok);
    assert_string_equal(why, why2);
#else
    assert_false(ok);
    assert_non_null(strstr(why, "without cuDNN"));
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cublas_symbols),
        cmocka_unit_test(test_cudnn_symbols),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
