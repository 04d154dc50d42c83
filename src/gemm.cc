// gemm.cc — gemm.h through oneDNN's matmul (XENT_HAVE_DNNL) and OpenBLAS (XENT_HAVE_OPENBLAS), as CMakeLists.txt
// finds them.
#include "src/gemm.h"

#include <omp.h>

#include <algorithm>
#include <new>
#include <stdexcept>
#include <string>

#if XENT_HAVE_DNNL
#include "oneapi/dnnl/dnnl.hpp"
#endif
#if XENT_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace xent::internal {
namespace {

// C = beta · C for K = 0 (no library is asked for an empty product).
void scale(GemmType type, int64_t M, int64_t N, double beta, void* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      if (type == GemmType::kFloat64) {
        double& c = static_cast<double*>(C)[i * ldc + j];
        c = beta == 0 ? 0 : beta * c;
      } else {
        float& c = static_cast<float*>(C)[i * ldc + j];
        c = beta == 0 ? 0.0f : static_cast<float>(beta) * c;
      }
    }
}

#if XENT_HAVE_DNNL
// The matmul of oneDNN, which runs on OpenMP: with the calling thread's thread count set to `threads` for the call.
void dnnl_gemm(bool bf16, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
               const void* B, int64_t ldb, double beta, float* C, int64_t ldc, int threads) {
  using namespace dnnl;
  static const engine cpu(engine::kind::cpu, 0);
  const memory::data_type in = bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  const memory::desc a({M, K}, in, trans_a ? memory::dims{1, lda} : memory::dims{lda, 1});
  const memory::desc b({K, N}, in, trans_b ? memory::dims{1, ldb} : memory::dims{ldb, 1});
  const memory::desc c({M, N}, memory::data_type::f32, memory::dims{ldc, 1});
  primitive_attr attr;
  if (beta != 0) {
    post_ops ops;
    ops.append_sum(static_cast<float>(beta));
    attr.set_post_ops(ops);
  }
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  try {
    stream s(cpu);
    // oneDNN keeps created primitives in its cache: the chunks of a call, and later calls of the same shapes,
    // find them there.
    const matmul::primitive_desc pd(matmul::desc(a, b, c), attr, cpu);
    matmul(pd).execute(s, {{DNNL_ARG_SRC, memory(a, cpu, const_cast<void*>(A))},
                           {DNNL_ARG_WEIGHTS, memory(b, cpu, const_cast<void*>(B))},
                           {DNNL_ARG_DST, memory(c, cpu, C)}});
    s.wait();
  } catch (const dnnl::error& e) {
    omp_set_num_threads(saved);
    if (e.status == dnnl_out_of_memory) throw std::bad_alloc();
    throw std::runtime_error(std::string("oneDNN matmul: ") + e.what());
  }
  omp_set_num_threads(saved);
}

// Whether oneDNN multiplies bfloat16 on this CPU (natively or not: oneDNN 2.6 needs AVX-512 for it).
bool dnnl_has_bf16() {
  static const bool has = [] {
    using namespace dnnl;
    try {
      const engine cpu(engine::kind::cpu, 0);
      const memory::desc a({16, 16}, memory::data_type::bf16, memory::format_tag::ab);
      const memory::desc c({16, 16}, memory::data_type::f32, memory::format_tag::ab);
      matmul::primitive_desc(matmul::desc(a, a, c), cpu);
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return has;
}
#endif

}  // namespace

bool gemm_supports(GemmType type) {
  switch (type) {
#if XENT_HAVE_DNNL
    case GemmType::kFloat32: return true;
    case GemmType::kBFloat16: return dnnl_has_bf16();
#endif
#if XENT_HAVE_OPENBLAS
    case GemmType::kFloat64: return true;
#endif
    default: return false;
  }
}

void gemm(GemmType type, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
          const void* B, int64_t ldb, double beta, void* C, int64_t ldc, int threads) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale(type, M, N, beta, C, ldc);
  if (!gemm_supports(type)) throw std::logic_error("gemm: no library multiplies this type in this build");
#if XENT_HAVE_OPENBLAS
  if (type == GemmType::kFloat64) {
    openblas_set_num_threads(threads);
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                1.0, static_cast<const double*>(A), lda, static_cast<const double*>(B), ldb, beta,
                static_cast<double*>(C), ldc);
    return;
  }
#endif
#if XENT_HAVE_DNNL
  dnnl_gemm(type == GemmType::kBFloat16, trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, static_cast<float*>(C), ldc,
            threads);
#endif
}

}  // namespace xent::internal
