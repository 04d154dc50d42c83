// linear.cc — the fused linear + cross-entropy (xent_linear_cross_entropy, xent.h): the loss of
// cross_entropy(h·Wᵀ + b, target) and its gradients into h, W and b, without ever holding the [N, V] logits.
//
// Shapes: h [N, H] (the input's leading dimensions are the rows), W [V, H], b [V], target [N]. Rows go in chunks of
// n, whose logits fit the chunk budget; per chunk (c: its rows):
//   logits[n, V]    = h_c · Wᵀ + b               GEMM (gemm.h), in the compute type A (float, or double)
//   loss, dlogits   = the kernel layer on logits, in place, one pass (kernels.h: every option, reduction scale)
//   grad_h_c[n, H]  = dlogits · W                GEMM
//   grad_W[V, H]   += dlogitsᵀ · h_c             GEMM, accumulated in A across chunks (the output itself, or a
//                                                float accumulator for float16/bfloat16 and odd strides)
//   grad_b[V]      += Σ_c dlogits                in double
// dlogits carries each row's upstream gradient (grad_loss, or the reduction's scale) before it is summed into
// grad_W. The products' operands are of type O: the dtype itself for float32, float64 and bfloat16 (where the
// library multiplies bfloat16; dlogits are then rounded to bfloat16 for the two backward products, as mixed
// precision does), float32 for float16. Operands the library cannot read as they are (a conversion, odd strides)
// are copied: the rows of a chunk into a staging buffer, W a tile of rows at a time.
#include "src/linear.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#include "src/checks.h"
#include "src/faults.h"
#include "src/gemm.h"
#include "src/kernels.h"
#include "src/plan.h"
#include "src/reductions.h"
#include "src/scalar.h"
#include "src/targets.h"
#include "xent/half.h"

namespace xent::internal {
namespace {

constexpr int64_t kDefaultChunkBytes = int64_t{128} << 20;
std::atomic<int64_t> g_chunk_bytes{0};

// Rows of W converted at a time when it cannot be read as it is: a tile of about this many bytes in the compute
// type, which the GEMM then reads from cache.
constexpr int64_t kWeightTileBytes = int64_t{4} << 20;

// The rows of a tensor whose leading dimensions are the rows (the input, the gradient of the input, the target,
// per-row losses): where row r starts, in elements.
struct Rows {
  int rank = 0;
  std::array<int64_t, XENT_MAX_RANK> shape{}, strides{};
  int64_t uniform = -1;  // the one stride between consecutive rows when the dimensions coalesce, else −1

  Rows() = default;
  Rows(const xent_tensor& t, int leading) : rank(leading) {
    for (int d = 0; d < leading; ++d) shape[d] = t.shape[d], strides[d] = t.strides[d];
    // Coalesced: each dimension longer than 1 steps over everything inside it.
    int64_t step = 0;
    bool first = true;
    uniform = 0;
    for (int d = leading - 1; d >= 0; --d) {
      if (shape[d] == 1) continue;
      if (first) {
        uniform = strides[d], step = strides[d] * shape[d], first = false;
      } else if (strides[d] != step) {
        uniform = -1;
        return;
      } else {
        step *= shape[d];
      }
    }
  }
  int64_t offset(int64_t r) const {
    if (uniform >= 0 || rank == 0) return r * std::max<int64_t>(uniform, 0);
    int64_t at = 0;
    for (int d = rank - 1; d >= 0; --d) {
      at += (r % shape[d]) * strides[d];
      r /= shape[d];
    }
    return at;
  }
};

// A float matrix the GEMM reads as it is: row-major with leading dimension ld (≥ its columns), or column-major,
// that is its transpose row-major with leading dimension ld (≥ its rows).
struct Matrix {
  bool direct = false, column_major = false;
  int64_t ld = 0;
};
// rows × cols of dtype with the given strides, as a GEMM of operand dtype `o` reads it.
Matrix matrix_of(xent_dtype dtype, xent_dtype o, int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  if (dtype != o) return {};
  // Strides of dimensions of length 1 do not matter: take the contiguous ones.
  if (rows <= 1) row_stride = std::max<int64_t>(cols, 1);
  if (cols <= 1) col_stride = 1;
  if (col_stride == 1 && row_stride >= std::max<int64_t>(cols, 1)) return {true, false, row_stride};
  if (rows > 1 && cols > 1 && row_stride == 1 && col_stride >= rows) return {true, true, col_stride};
  return {};
}

template <typename A>
A load_as(const void* base, xent_dtype dtype, int64_t index) {
  switch (dtype) {
    case XENT_FLOAT16: return static_cast<A>(to_float(static_cast<const float16*>(base)[index]));
    case XENT_BFLOAT16: return static_cast<A>(to_float(static_cast<const bfloat16*>(base)[index]));
    case XENT_FLOAT32: return static_cast<A>(static_cast<const float*>(base)[index]);
    default: return static_cast<A>(static_cast<const double*>(base)[index]);
  }
}

// Everything validation resolves.
struct LinearPlan {
  xent_dtype dtype = XENT_FLOAT32;
  int64_t N = 0, H = 0, V = 0;
  const void* input = nullptr;
  Rows input_rows;
  int64_t input_h_stride = 1;
  const void* weight = nullptr;  // W [V, H]
  int64_t w_stride[2] = {0, 0};
  const void* bias = nullptr;
  int64_t bias_stride = 0;
  const void* target = nullptr;
  xent_dtype target_dtype = XENT_INT64;
  Rows target_rows;
  Options options;  // weight (class weights) in the input's dtype; beta = label_smoothing / V
  const void* grad_loss = nullptr;  // per row (NONE) or a scalar
  Rows grad_loss_rows;
  void* loss = nullptr;
  Rows loss_rows;
  void* grad_input = nullptr;
  Rows grad_input_rows;
  int64_t grad_input_h_stride = 1;
  void* grad_weight = nullptr;
  int64_t gw_stride[2] = {0, 0};
  void* grad_bias = nullptr;
  int64_t grad_bias_stride = 0;
  bool gradients() const { return grad_input || grad_weight || grad_bias; }
};

void resolve(const LinearRequest& r, LinearPlan* plan) {
  LinearPlan& p = *plan;
  check_tensor(r.input, "input", true, XENT_FLOAT32, nullptr);
  const xent_tensor& in = *r.input;
  p.dtype = static_cast<xent_dtype>(in.dtype);
  if (in.rank < 1) throw fail(XENT_INVALID_ARGUMENT, "input must have rank >= 1 ([..., H]), received rank 0");
  check_tensor(r.linear_weight, "linear_weight", true, p.dtype, "input");
  check_tensor(r.linear_bias, "linear_bias", false, p.dtype, "input");
  check_tensor(r.target, "target", true, p.dtype, nullptr, true);
  check_tensor(r.grad_loss, "grad_loss", false, p.dtype, "input");
  check_tensor(r.loss, "loss", false, p.dtype, "input");
  check_tensor(r.grad_input, "grad_input", false, p.dtype, "input");
  check_tensor(r.grad_linear_weight, "grad_linear_weight", false, p.dtype, "input");
  check_tensor(r.grad_linear_bias, "grad_linear_bias", false, p.dtype, "input");
  if (r.options == nullptr)
    throw fail(XENT_INVALID_ARGUMENT, "options must not be NULL (see xent_default_loss_options)");
  check_tensor(r.options->weight, "weight", false, p.dtype, "input");

  const int lead = in.rank - 1;
  p.H = in.shape[lead];
  p.N = element_count(in) / std::max<int64_t>(p.H, 1);
  if (p.H == 0) {  // no features: the rows are the leading dimensions' product all the same
    p.N = 1;
    for (int d = 0; d < lead; ++d) p.N *= in.shape[d];
  }
  const xent_tensor& w = *r.linear_weight;
  if (w.rank != 2 || w.shape[1] != p.H)
    throw fail(XENT_INVALID_ARGUMENT, "linear_weight must have shape [V, H] with H = ", p.H,
               " (input's last dimension): input is ", shape_string(in.shape, in.rank), ", linear_weight is ",
               shape_string(w.shape, w.rank));
  p.V = w.shape[0];
  if (p.V == 0 && p.N > 0)
    throw fail(XENT_INVALID_ARGUMENT, "linear_weight must have at least one row (one class), received shape ",
               shape_string(w.shape, w.rank));
  const int64_t v_shape[] = {p.V};
  if (r.linear_bias) require_shape(*r.linear_bias, "linear_bias", v_shape, 1, "one per row of linear_weight");
  require_shape(*r.target, "target", in.shape, lead, "input's shape without its last dimension");

  // Options, as xent_cross_entropy's.
  const xent_loss_options& o = *r.options;
  if (o.reduction != XENT_REDUCTION_NONE && o.reduction != XENT_REDUCTION_SUM && o.reduction != XENT_REDUCTION_MEAN)
    throw fail(XENT_INVALID_ARGUMENT, "reduction must be XENT_REDUCTION_NONE (0), SUM (1) or MEAN (2), received ",
               o.reduction);
  if (!(o.label_smoothing >= 0 && o.label_smoothing <= 1))
    throw fail(XENT_INVALID_ARGUMENT, "label_smoothing must be in [0, 1], received ", o.label_smoothing);
  if (!(o.z_loss >= 0 && o.z_loss < INFINITY))
    throw fail(XENT_INVALID_ARGUMENT, "z_loss must be finite and >= 0, received ", o.z_loss);
  if (!(o.softcap >= 0 && o.softcap < INFINITY))
    throw fail(XENT_INVALID_ARGUMENT, "softcap must be finite and > 0 (or 0 for none), received ", o.softcap);
  if (o.weight) {
    require_shape(*o.weight, "weight", v_shape, 1, "one weight per class: per row of linear_weight");
    p.options.weight = o.weight->data;
    p.options.weight_stride = o.weight->strides[0];
  }
  p.options.reduction = static_cast<xent_reduction>(o.reduction);
  p.options.alpha = 1 - o.label_smoothing;
  p.options.beta = p.V > 0 ? o.label_smoothing / static_cast<double>(p.V) : 0;
  p.options.z_loss = o.z_loss;
  p.options.softcap = o.softcap;
  p.options.has_ignore = true;
  p.options.ignore_index = o.ignore_index;

  // Outputs.
  const bool reduced = p.options.reduction != XENT_REDUCTION_NONE;
  const char* loss_what = reduced ? "a scalar: the loss is reduced" : "target's shape";
  if (r.loss) require_shape(*r.loss, "loss", in.shape, reduced ? 0 : lead, loss_what);
  if (r.grad_loss) require_shape(*r.grad_loss, "grad_loss", in.shape, reduced ? 0 : lead, loss_what);
  if (r.grad_input) require_shape(*r.grad_input, "grad_input", in.shape, in.rank, "input's shape");
  if (r.grad_linear_weight)
    require_shape(*r.grad_linear_weight, "grad_linear_weight", w.shape, 2, "linear_weight's shape");
  if (r.grad_linear_bias) {
    if (!r.linear_bias)
      throw fail(XENT_INVALID_ARGUMENT, "grad_linear_bias must be NULL: there is no linear_bias");
    require_shape(*r.grad_linear_bias, "grad_linear_bias", v_shape, 1, "linear_bias' shape");
  }
  const std::pair<const xent_tensor*, const char*> outputs[] = {{r.loss, "loss"},
                                                                {r.grad_input, "grad_input"},
                                                                {r.grad_linear_weight, "grad_linear_weight"},
                                                                {r.grad_linear_bias, "grad_linear_bias"}};
  const std::pair<const xent_tensor*, const char*> inputs[] = {
      {r.input, "input"},   {r.linear_weight, "linear_weight"}, {r.linear_bias, "linear_bias"},
      {r.target, "target"}, {r.options->weight, "weight"},      {r.grad_loss, "grad_loss"}};
  for (size_t i = 0; i < std::size(outputs); ++i) {
    if (outputs[i].first == nullptr) continue;
    check_no_self_overlap(*outputs[i].first, outputs[i].second);
    for (const auto& [t, name] : inputs) check_disjoint(outputs[i].first, outputs[i].second, t, name);
    for (size_t j = i + 1; j < std::size(outputs); ++j)
      check_disjoint(outputs[i].first, outputs[i].second, outputs[j].first, outputs[j].second);
  }

  p.input = in.data;
  p.input_rows = Rows(in, lead);
  p.input_h_stride = in.strides[lead];
  p.weight = w.data;
  p.w_stride[0] = w.strides[0], p.w_stride[1] = w.strides[1];
  if (r.linear_bias) p.bias = r.linear_bias->data, p.bias_stride = r.linear_bias->strides[0];
  p.target = r.target->data;
  p.target_dtype = static_cast<xent_dtype>(r.target->dtype);
  p.target_rows = Rows(*r.target, lead);
  if (r.grad_loss) p.grad_loss = r.grad_loss->data, p.grad_loss_rows = Rows(*r.grad_loss, reduced ? 0 : lead);
  if (r.loss) p.loss = r.loss->data, p.loss_rows = Rows(*r.loss, reduced ? 0 : lead);
  if (r.grad_input) {
    p.grad_input = r.grad_input->data;
    p.grad_input_rows = Rows(*r.grad_input, lead);
    p.grad_input_h_stride = r.grad_input->strides[lead];
  }
  if (r.grad_linear_weight) {
    p.grad_weight = r.grad_linear_weight->data;
    p.gw_stride[0] = r.grad_linear_weight->strides[0], p.gw_stride[1] = r.grad_linear_weight->strides[1];
  }
  if (r.grad_linear_bias) p.grad_bias = r.grad_linear_bias->data, p.grad_bias_stride = r.grad_linear_bias->strides[0];
}

// The class-index targets checked (each in [0, V) or ignore_index) and the MEAN's denominator, as the op does.
xent_status scan(const LinearPlan& p, int threads, double* denominator, std::string* error) {
  Layout l;
  l.rows = p.N;
  l.classes = l.vocab_size = p.V;
  l.sparse = true;
  l.label_dtype = p.target_dtype;
  l.options = p.options;
  l.data[kLabels] = const_cast<void*>(p.target);
  l.batch_rank = p.target_rows.rank;
  for (int d = 0; d < l.batch_rank; ++d)
    l.batch_shape[d] = p.target_rows.shape[d], l.batch_strides[kLabels][d] = p.target_rows.strides[d];
  if (l.batch_rank == 0) l.batch_rank = 1, l.batch_shape[0] = 1;  // one row: a scalar target
  return scan_targets(l, p.dtype, threads, denominator, error);
}

// The products' operand type for a dtype: O, its GemmType and its dtype.
template <typename O>
struct OperandOf;
template <>
struct OperandOf<float> {
  static constexpr GemmType kGemm = GemmType::kFloat32;
  static constexpr xent_dtype kDtype = XENT_FLOAT32;
};
template <>
struct OperandOf<double> {
  static constexpr GemmType kGemm = GemmType::kFloat64;
  static constexpr xent_dtype kDtype = XENT_FLOAT64;
};
template <>
struct OperandOf<bfloat16> {
  static constexpr GemmType kGemm = GemmType::kBFloat16;
  static constexpr xent_dtype kDtype = XENT_BFLOAT16;
};

// Element `index` of a tensor of dtype as an operand of type O (bfloat16 operands come from bfloat16 tensors).
template <typename O>
O operand(const void* base, xent_dtype dtype, int64_t index) {
  if constexpr (std::is_same_v<O, bfloat16>) {
    (void)dtype;
    return static_cast<const bfloat16*>(base)[index];
  } else {
    return load_as<O>(base, dtype, index);
  }
}

// A buffer kept by the calling thread between calls up to the chunk budget (so that a training loop does not fault
// fresh pages in every step); larger ones are the call's own.
template <typename E>
E* buffer(int64_t elements, std::vector<E>& own, int slot) {
  thread_local std::vector<E> kept[5];
  const int64_t budget_elements = linear_chunk_bytes() / static_cast<int64_t>(sizeof(E));
  std::vector<E>& b = elements <= budget_elements ? kept[slot] : own;
  if (static_cast<int64_t>(b.size()) < elements) b.resize(static_cast<size_t>(elements));
  return b.data();
}

// The fused op with compute type A (float or double) and product operands O (A, or bfloat16).
template <typename A, typename O>
void run(const LinearPlan& p, int threads, double denominator) {
  constexpr xent_dtype kA = std::is_same_v<A, double> ? XENT_FLOAT64 : XENT_FLOAT32;
  constexpr xent_dtype kO = OperandOf<O>::kDtype;
  constexpr GemmType kGemm = OperandOf<O>::kGemm;
  // dlogits (A) are rounded to O for the backward products when O is narrower.
  constexpr bool kNarrowOperands = !std::is_same_v<A, O>;
  const int64_t N = p.N, H = p.H, V = p.V;
  const bool grads = p.gradients(), reduced = p.options.reduction != XENT_REDUCTION_NONE;
  const xent_dtype dtype = p.dtype;

  // Operands as the GEMM reads them.
  const Matrix w = matrix_of(dtype, kO, V, H, p.w_stride[0], p.w_stride[1]);
  const Matrix gw = p.grad_weight ? matrix_of(dtype, kA, V, H, p.gw_stride[0], p.gw_stride[1]) : Matrix{};
  const int64_t H1 = std::max<int64_t>(H, 1);
  const bool input_direct = dtype == kO && (H <= 1 || p.input_h_stride == 1) && p.input_rows.uniform >= H1;
  const bool grad_input_direct =
      dtype == kA && (H <= 1 || p.grad_input_h_stride == 1) && p.grad_input_rows.uniform >= H1;
  // Rows per chunk: as many as the budget holds, at least one.
  const int64_t n = std::max<int64_t>(
      1, std::min<int64_t>(std::max<int64_t>(N, 1), linear_chunk_bytes() / std::max<int64_t>(V * sizeof(A), 1)));
  const int64_t tile = w.direct ? V : std::clamp<int64_t>(kWeightTileBytes / (H1 * sizeof(O)), 1, std::max<int64_t>(V, 1));

  // Buffers, all allocated before anything is written.
  std::vector<A> own_logits, own_gin;
  std::vector<O> own_x, own_tile, own_dlogits;
  A* logits = buffer<A>(n * V, own_logits, 0);
  O* x_stage = input_direct ? nullptr : buffer<O>(n * H, own_x, 1);
  A* gin_stage = p.grad_input && !grad_input_direct ? buffer<A>(n * H, own_gin, 2) : nullptr;
  O* w_tile = w.direct ? nullptr : buffer<O>(tile * H, own_tile, 3);
  O* dlogits_o = kNarrowOperands && grads ? buffer<O>(n * V, own_dlogits, 4) : nullptr;
  std::vector<A> gw_acc(p.grad_weight && !gw.direct ? static_cast<size_t>(V * H) : 0);
  std::vector<double> gb_acc(p.grad_bias ? static_cast<size_t>(V) : 0, 0.0);
  std::vector<A> bias(p.bias ? static_cast<size_t>(V) : 0), class_weight;
  for (int64_t v = 0; v < static_cast<int64_t>(bias.size()); ++v) bias[v] = load_as<A>(p.bias, dtype, v * p.bias_stride);
  Options options = p.options;
  if (options.weight && dtype != kA) {  // the kernel reads class weights in its own type
    class_weight.resize(static_cast<size_t>(V));
    for (int64_t v = 0; v < V; ++v) class_weight[v] = load_as<A>(p.options.weight, dtype, v * p.options.weight_stride);
    options.weight = class_weight.data(), options.weight_stride = 1;
  }
  std::vector<int64_t> targets(static_cast<size_t>(n));
  std::vector<A> grad_loss(p.grad_loss && !reduced ? static_cast<size_t>(n) : 0);
  std::vector<double> own_row_loss;
  double* row_loss = row_loss_buffer(std::max<int64_t>(N, 1), own_row_loss);

  double grad_scale = 1;
  if (reduced) {
    const double upstream = p.grad_loss ? load_as_double(p.grad_loss, dtype, 0) : 1.0;
    grad_scale = p.options.reduction == XENT_REDUCTION_SUM ? upstream
                 : denominator == 0                         ? 0.0
                                                            : upstream / denominator;
  }

  // W's rows [v0, v0 + count) for the GEMM: in place, or copied into w_tile. Returns the pointer and sets ld.
  const auto weight_tile = [&](int64_t v0, int64_t count, int64_t* ld) -> const O* {
    if (w.direct) {
      *ld = w.ld;
      return static_cast<const O*>(p.weight) + (w.column_major ? v0 : v0 * w.ld);
    }
    for (int64_t v = 0; v < count; ++v)
      for (int64_t h = 0; h < H; ++h)
        w_tile[v * H + h] = operand<O>(p.weight, dtype, (v0 + v) * p.w_stride[0] + h * p.w_stride[1]);
    *ld = H1;
    return w_tile;
  };
  const bool w_transposed = w.direct && w.column_major;  // the tile is Wᵀ's columns: [H, count] row-major

  for (int64_t c0 = 0; c0 < N; c0 += n) {
    const int64_t m = std::min(n, N - c0);
    // h_c [m, H]: in place, or staged.
    const O* x = nullptr;
    int64_t ldx = H1;
    if (input_direct) {
      x = static_cast<const O*>(p.input) + p.input_rows.offset(c0);
      ldx = m > 1 ? p.input_rows.uniform : ldx;
    } else {
      for (int64_t i = 0; i < m; ++i) {
        const int64_t at = p.input_rows.offset(c0 + i);
        for (int64_t h = 0; h < H; ++h) x_stage[i * H + h] = operand<O>(p.input, dtype, at + h * p.input_h_stride);
      }
      x = x_stage;
    }
    // logits [m, V] = h_c · Wᵀ + b.
    if (p.bias)
      for (int64_t i = 0; i < m; ++i) std::memcpy(logits + i * V, bias.data(), static_cast<size_t>(V) * sizeof(A));
    for (int64_t v0 = 0; v0 < V; v0 += tile) {
      const int64_t t = std::min(tile, V - v0);
      int64_t ldw = H1;
      const O* wt = H > 0 ? weight_tile(v0, t, &ldw) : nullptr;
      gemm(kGemm, false, !w_transposed, m, t, H, x, ldx, wt, ldw, p.bias ? 1.0 : 0.0, logits + v0, V, threads);
    }
    // Loss and dlogits of the chunk: the op on its logits, in place.
    for (int64_t i = 0; i < m; ++i) {
      const int64_t at = p.target_rows.offset(c0 + i);
      targets[i] = p.target_dtype == XENT_INT32 ? static_cast<const int32_t*>(p.target)[at]
                                                 : static_cast<const int64_t*>(p.target)[at];
    }
    for (int64_t i = 0; i < static_cast<int64_t>(grad_loss.size()) && i < m; ++i)
      grad_loss[i] = load_as<A>(p.grad_loss, dtype, p.grad_loss_rows.offset(c0 + i));
    Layout l;
    l.rows = m;
    l.classes = l.vocab_size = V;
    l.batch_rank = 1;
    l.batch_shape[0] = m;
    l.data[kLogits] = logits;
    l.class_stride[kLogits] = 1, l.batch_strides[kLogits][0] = V;
    l.data[kLabels] = targets.data();
    l.batch_strides[kLabels][0] = 1;
    if (grads) {
      l.data[kGradLogits] = logits;  // in place
      l.class_stride[kGradLogits] = 1, l.batch_strides[kGradLogits][0] = V;
    }
    if (!grad_loss.empty()) {
      l.data[kGradLoss] = grad_loss.data();
      l.batch_strides[kGradLoss][0] = 1;
    }
    l.sparse = true;
    l.label_dtype = XENT_INT64;
    l.options = options;
    l.general = true;
    l.grad_scale = grad_scale;
    l.row_loss = row_loss + c0;
    run_kernels(l, kA, false, threads);
    if (!grads) continue;
    // grad_b += Σ rows of dlogits (before they are rounded for the products).
    if (p.grad_bias)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t v = 0; v < V; ++v) gb_acc[v] += static_cast<double>(logits[i * V + v]);
    const O* dl = reinterpret_cast<const O*>(logits);
    if constexpr (kNarrowOperands) {
#pragma omp parallel for schedule(static) num_threads(threads) if (m * V > (int64_t{1} << 16))
      for (int64_t i = 0; i < m * V; ++i) dlogits_o[i] = to_bfloat16(static_cast<float>(logits[i]));
      dl = dlogits_o;
    }
    // grad_h_c [m, H] = dlogits · W.
    if (p.grad_input && H > 0) {
      A* gin = grad_input_direct ? static_cast<A*>(p.grad_input) + p.grad_input_rows.offset(c0) : gin_stage;
      const int64_t ldg = grad_input_direct && m > 1 ? p.grad_input_rows.uniform : H1;
      for (int64_t v0 = 0; v0 < V; v0 += tile) {
        const int64_t t = std::min(tile, V - v0);
        int64_t ldw;
        const O* wt = weight_tile(v0, t, &ldw);
        gemm(kGemm, false, w_transposed, m, H, t, dl + v0, V, wt, ldw, v0 > 0 ? 1.0 : 0.0, gin, ldg, threads);
      }
      if (!grad_input_direct)
        for (int64_t i = 0; i < m; ++i) {
          const int64_t at = p.grad_input_rows.offset(c0 + i);
          for (int64_t h = 0; h < H; ++h)
            store_from_double(p.grad_input, dtype, at + h * p.grad_input_h_stride, gin_stage[i * H + h]);
        }
    }
    // grad_W [V, H] += dlogitsᵀ · h_c, or its transpose for a column-major output.
    if (p.grad_weight && H > 0) {
      const double beta = c0 > 0 ? 1.0 : 0.0;
      if (gw.direct && gw.column_major)
        gemm(kGemm, true, false, H, V, m, x, ldx, dl, V, beta, static_cast<A*>(p.grad_weight), gw.ld, threads);
      else if (gw.direct)
        gemm(kGemm, true, false, V, H, m, dl, V, x, ldx, beta, static_cast<A*>(p.grad_weight), gw.ld, threads);
      else
        gemm(kGemm, true, false, V, H, m, dl, V, x, ldx, beta, gw_acc.data(), H, threads);
    }
  }

  // Results of every chunk: gradients that were accumulated apart, and the loss.
  if (p.grad_weight && (N == 0 || !gw.direct || H == 0)) {
    for (int64_t v = 0; v < V; ++v)
      for (int64_t h = 0; h < H; ++h)
        store_from_double(p.grad_weight, dtype, v * p.gw_stride[0] + h * p.gw_stride[1],
                          N == 0 || gw_acc.empty() ? 0.0 : static_cast<double>(gw_acc[v * H + h]));
  }
  for (int64_t v = 0; v < static_cast<int64_t>(gb_acc.size()); ++v)
    store_from_double(p.grad_bias, dtype, v * p.grad_bias_stride, gb_acc[v]);
  if (p.loss) {
    if (reduced) {
      double total = deterministic_sum(row_loss, N, threads);
      if (p.options.reduction == XENT_REDUCTION_MEAN) total = denominator == 0 ? 0.0 : total / denominator;
      store_from_double(p.loss, dtype, 0, total);
    } else {
      for (int64_t i = 0; i < N; ++i) store_from_double(p.loss, dtype, p.loss_rows.offset(i), row_loss[i]);
    }
  }
}

}  // namespace

void set_linear_chunk_bytes(int64_t bytes) { g_chunk_bytes.store(bytes > 0 ? bytes : 0); }

int64_t linear_chunk_bytes() {
  const int64_t bytes = g_chunk_bytes.load();
  return bytes > 0 ? bytes : kDefaultChunkBytes;
}

xent_status linear_cross_entropy(const LinearRequest& request, int threads, std::string* error) {
  LinearPlan plan;
  try {
    resolve(request, &plan);
  } catch (const Failure& f) {
    *error = f.message;
    return f.status;
  }
  // The products' operands: bfloat16 where the library multiplies it, else float32 (float16 too), float64.
  const bool bf16 = plan.dtype == XENT_BFLOAT16 && gemm_supports(GemmType::kBFloat16);
  const GemmType type = plan.dtype == XENT_FLOAT64 ? GemmType::kFloat64 : bf16 ? GemmType::kBFloat16 : GemmType::kFloat32;
  if (!gemm_supports(type)) {
    *error = std::string("xent_linear_cross_entropy: this build of xent has no GEMM library for ") +
             xent_dtype_name(plan.dtype) + " (oneDNN for float32, bfloat16 and float16, OpenBLAS for float64)";
    return XENT_UNSUPPORTED;
  }
  fault_point("linear");
  double denominator = 0;
  if (const xent_status status = scan(plan, threads, &denominator, error); status != XENT_OK) return status;
  if (type == GemmType::kFloat64) run<double, double>(plan, threads, denominator);
  else if (bf16) run<float, bfloat16>(plan, threads, denominator);
  else run<float, float>(plan, threads, denominator);
  return XENT_OK;
}

}  // namespace xent::internal
