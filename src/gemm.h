// gemm.h — the matrix products of the fused linear + cross-entropy (linear.cc), through the BLAS-class libraries
// chosen by measurement on this project's machines (docs/performance.md, "The fused linear + cross-entropy: which
// GEMM"): oneDNN's matmul for float32 and bfloat16 (native bfloat16 dot products where the CPU has them), OpenBLAS
// for float64 (oneDNN has no float64 on CPUs). Row-major operands with leading dimensions.
#pragma once

#include <cstdint>

namespace xent::internal {

// The operands' type; products accumulate in float (double for kFloat64) and write C in that type.
enum class GemmType { kFloat32, kBFloat16, kFloat64 };

// Whether this build can multiply operands of this type (without its library the fused op returns
// XENT_UNSUPPORTED for the dtypes that need it).
bool gemm_supports(GemmType type);

// C[M, N] = op(A)[M, K] · op(B)[K, N] + beta · C, where op(X) is X or (trans) Xᵀ, every matrix row-major with its
// leading dimension (op(A) is M × K: A is M × K with lda ≥ K, or K × M with lda ≥ M when transposed). A and B hold
// `type` (bfloat16 as its 16 bits), C float (double for kFloat64). beta 0 ignores C's contents (NaN included).
// Up to `threads` threads. Throws std::bad_alloc if the library cannot allocate.
void gemm(GemmType type, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
          const void* B, int64_t ldb, double beta, void* C, int64_t ldc, int threads);

}  // namespace xent::internal
