// gemm_choice.cc — the three matrix products of the fused linear + cross-entropy (src/linear.cc), timed on one GEMM
// library, so that the libraries can be compared on this machine's shapes (docs/performance.md, "The fused
// linear + cross-entropy: which GEMM"). Compiled once per library (CMakeLists.txt: xent_gemm_choice_<library>):
//   XENT_GEMM_DNNL      oneDNN's matmul (f32, and bf16 inputs with f32 accumulation)
//   XENT_GEMM_OPENBLAS  OpenBLAS's cblas_sgemm (Debian's build has no bf16 cblas_sbgemm)
//   XENT_GEMM_BLIS      BLIS's cblas_sgemm (no bf16)
//
//   build/xent_gemm_choice_dnnl [N H V [chunk]]     default: three language-model heads, chunks of 512 rows
//   (BLIS, not a dependency of the build: g++ -O2 -std=c++20 -fopenmp -DXENT_GEMM_BLIS
//    -I/usr/include/x86_64-linux-gnu/blis-openmp bench/gemm_choice.cc -L/usr/lib/x86_64-linux-gnu/blis-openmp -lblis)
//
// For a chunk of n rows of the input h [N, H] and the weight W [V, H]: logits = h_c · Wᵀ [n, V];
// grad_input_c = dlogits · W [n, H]; grad_W += dlogitsᵀ · h_c [V, H]. Prints GFLOP/s of each, best of 3 calls,
// with every core (OpenMP or the library's own threads).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <tuple>
#include <vector>

#if defined(XENT_GEMM_DNNL)
#include "oneapi/dnnl/dnnl.hpp"
#define XENT_GEMM_NAME "oneDNN matmul"
#elif defined(XENT_GEMM_OPENBLAS)
#include <cblas.h>
#define XENT_GEMM_NAME "OpenBLAS"
#elif defined(XENT_GEMM_BLIS)
#include <cblas.h>
#define XENT_GEMM_NAME "BLIS"
#else
#error "define XENT_GEMM_DNNL, XENT_GEMM_OPENBLAS or XENT_GEMM_BLIS"
#endif

namespace {

using Clock = std::chrono::steady_clock;

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

// C[M, N] (row-major, ldc) = alpha · op(A) · op(B) + beta · C, A and B row-major with leading dimensions lda, ldb;
// bf16: A and B hold bfloat16 bits, C float. Returns false where the library has no such product.
bool gemm(bool bf16, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
          const void* B, int64_t ldb, float beta, float* C, int64_t ldc) {
#if defined(XENT_GEMM_DNNL)
  using namespace dnnl;
  static engine eng(engine::kind::cpu, 0);
  static stream s(eng);
  const memory::data_type in = bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  const memory::desc a({M, K}, in, trans_a ? memory::dims{1, lda} : memory::dims{lda, 1});
  const memory::desc b({K, N}, in, trans_b ? memory::dims{1, ldb} : memory::dims{ldb, 1});
  const memory::desc c({M, N}, memory::data_type::f32, memory::dims{ldc, 1});
  primitive_attr attr;
  if (beta != 0) {
    post_ops ops;
    ops.append_sum(beta);
    attr.set_post_ops(ops);
  }
  try {
    const matmul::primitive_desc pd(matmul::desc(a, b, c), attr, eng);
    matmul(pd).execute(s, {{DNNL_ARG_SRC, memory(a, eng, const_cast<void*>(A))},
                           {DNNL_ARG_WEIGHTS, memory(b, eng, const_cast<void*>(B))},
                           {DNNL_ARG_DST, memory(c, eng, C)}});
    s.wait();
  } catch (const dnnl::error&) {
    return false;
  }
  return true;
#else
  const auto ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
  if (bf16) return false;  // Debian's OpenBLAS 0.3.21 is built without cblas_sbgemm, BLIS has none
  cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, static_cast<const float*>(A), lda, static_cast<const float*>(B),
              ldb, beta, C, ldc);
  return true;
#endif
}

double best_seconds(const std::function<bool()>& call) {
  double best = 1e30;
  for (int k = 0; k < 3; ++k) {
    const auto start = Clock::now();
    if (!call()) return -1;
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
  }
  return best;
}

void run(int64_t N, int64_t H, int64_t V, int64_t chunk) {
  const int64_t n = std::min(chunk, N);
  std::vector<float> h(n * H), W(V * H), logits(n * V), grad_input(n * H), grad_W(V * H, 0.0f);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000 - 0.5f;
  for (size_t i = 0; i < W.size(); ++i) W[i] = static_cast<float>((i * 40503u) % 1000) / 1000 - 0.5f;
  std::vector<uint16_t> hb(h.size()), Wb(W.size()), lb(logits.size());
  for (size_t i = 0; i < h.size(); ++i) hb[i] = to_bf16(h[i]);
  for (size_t i = 0; i < W.size(); ++i) Wb[i] = to_bf16(W[i]);
  for (size_t i = 0; i < logits.size(); ++i) lb[i] = to_bf16(0.001f * static_cast<float>(i % 97));
  const double flops = 2.0 * static_cast<double>(n) * V * H;
  for (bool bf16 : {false, true}) {
    const void* hp = bf16 ? static_cast<const void*>(hb.data()) : h.data();
    const void* Wp = bf16 ? static_cast<const void*>(Wb.data()) : W.data();
    const void* lp = bf16 ? static_cast<const void*>(lb.data()) : logits.data();
    const double t_logits = best_seconds([&] { return gemm(bf16, false, true, n, V, H, hp, H, Wp, H, 0, logits.data(), V); });
    const double t_input = best_seconds([&] { return gemm(bf16, false, false, n, H, V, lp, V, Wp, H, 0, grad_input.data(), H); });
    const double t_weight = best_seconds([&] { return gemm(bf16, true, false, V, H, n, lp, V, hp, H, 1, grad_W.data(), H); });
    const auto rate = [&](double t) { return t < 0 ? 0.0 : flops / t / 1e9; };
    std::printf("%-14s %-4s N=%-5lld H=%-5lld V=%-6lld chunk=%-5lld  logits %6.1f  grad_input %6.1f  grad_weight %6.1f GFLOP/s\n",
                XENT_GEMM_NAME, bf16 ? "bf16" : "f32", static_cast<long long>(N), static_cast<long long>(H),
                static_cast<long long>(V), static_cast<long long>(n), rate(t_logits), rate(t_input), rate(t_weight));
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::printf("%d threads\n", omp_get_max_threads());
  if (argc >= 4) {
    run(std::atoll(argv[1]), std::atoll(argv[2]), std::atoll(argv[3]), argc >= 5 ? std::atoll(argv[4]) : 512);
    return 0;
  }
  for (const auto& [N, H, V] : {std::tuple<int64_t, int64_t, int64_t>{4096, 1024, 32000}, {2048, 2048, 128256},
                                {1024, 4096, 256000}})
    run(N, H, V, 512);
}
