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
//
// When the float accumulator of grad_W would not fit the budget, the vocabulary is tiled instead (class Fused:
// the schedules "rows" and "tiles"), composing the stages of stages.h across tiles as the sharded op does across
// processes.
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
#include "src/parallel.h"
#include "src/plan.h"
#include "src/reductions.h"
#include "src/scalar.h"
#include "src/shards.h"
#include "src/stages.h"
#include "src/targets.h"
#include "xent/half.h"

namespace xent::internal {
namespace {

constexpr int64_t kDefaultChunkBytes = int64_t{64} << 20;
std::atomic<int64_t> g_chunk_bytes{0};

// Rows of W converted at a time when it cannot be read as it is: a tile of about this many bytes in the compute
// type, which the GEMM then reads from cache.
constexpr int64_t kWeightTileBytes = int64_t{4} << 20;

// The narrowest tile of classes the tiled schedule takes to fit more rows per chunk: narrower tiles make skinny
// products, which the library runs below its rate; wider ones leave fewer rows per chunk, and each tile's
// accumulator is then read and written once per chunk (docs/performance.md, the fused op's tile shapes).
constexpr int64_t kMinTileClasses = 1024;

// The part size that splits `total` into as many parts as parts of at most `most` would, evened out (no small
// ragged last part: each product of a chunk or tile runs at the size of the others).
int64_t balanced(int64_t total, int64_t most) {
  if (total <= most || most <= 0) return std::max<int64_t>(most, 1);
  const int64_t parts = (total - 1) / most + 1;  // (no sum that could pass INT64_MAX)
  return (total - 1) / parts + 1;
}

// The rows of a tensor whose leading dimensions are the rows (the input, the gradient of the input, the target,
// per-row losses): where row r starts, in elements.
struct Rows {
  int rank = 0;
  std::array<int64_t, XENT_MAX_RANK> shape{}, strides{};
  int64_t uniform = -1;  // the one stride between consecutive rows when the dimensions coalesce, else −1

  Rows() = default;
  Rows(const xent_tensor& t, int leading) : rank(leading) {
    uniform = 0;
    for (int d = 0; d < leading; ++d) shape[d] = t.shape[d], strides[d] = t.strides[d];
    // A tensor of no elements (an input of H = 0 beside rows that exist) addresses nothing: every row starts at 0.
    // Its strides were never checked against an extent and may be anything (INT64_MIN): none is used.
    for (int d = 0; d < t.rank; ++d)
      if (t.shape[d] == 0) {
        strides.fill(0);
        return;
      }
    // Coalesced: each dimension longer than 1 steps over everything inside it. The step past the last row may not
    // fit in int64 (only the rows' own offsets are bounded by the checked extent): then the rows do not coalesce.
    int64_t step = 0;
    bool first = true;
    for (int d = leading - 1; d >= 0; --d) {
      if (shape[d] == 1) continue;
      if (first) {
        uniform = strides[d], first = false;
        if (__builtin_mul_overflow(strides[d], shape[d], &step)) {
          uniform = -1;
          return;
        }
      } else if (strides[d] != step || __builtin_mul_overflow(step, shape[d], &step)) {
        uniform = -1;
        return;
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
  int64_t vocab_start = 0, vocab_size = 0;  // W's rows as classes of a vocabulary (the single op: 0 and V)
  Options options;  // weight (class weights) in the input's dtype; beta = label_smoothing / vocab_size
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
    for (int d = 0; d < lead; ++d)
      if (__builtin_mul_overflow(p.N, in.shape[d], &p.N) || p.N > (int64_t{1} << 59))
        throw fail(XENT_INVALID_ARGUMENT, "input has more than 2^59 rows (shape ", shape_string(in.shape, in.rank),
                   "), more than xent can count in bytes");
  }
  const xent_tensor& w = *r.linear_weight;
  if (w.rank != 2 || w.shape[1] != p.H)
    throw fail(XENT_INVALID_ARGUMENT, "linear_weight must have shape [V, H] with H = ", p.H,
               " (input's last dimension): input is ", shape_string(in.shape, in.rank), ", linear_weight is ",
               shape_string(w.shape, w.rank));
  p.V = w.shape[0];
  const bool shard = r.vocab_size >= 0;
  p.vocab_start = shard ? r.vocab_start : 0;
  p.vocab_size = shard ? r.vocab_size : p.V;
  if (shard && (r.vocab_start < 0 || r.vocab_start > r.vocab_size || p.V > r.vocab_size - r.vocab_start))
    throw fail(XENT_INVALID_ARGUMENT, "the shard's classes [vocab_start, vocab_start + V) = [", r.vocab_start, ", ",
               r.vocab_start, " + ", p.V, ") must lie in the vocabulary [0, vocab_size) = [0, ", r.vocab_size, ")");
  if (p.V == 0 && p.N > 0 && !shard)  // (a shard of a vocabulary may hold no classes)
    throw fail(XENT_INVALID_ARGUMENT, "linear_weight must have at least one row (one class), received shape ",
               shape_string(w.shape, w.rank));
  const int64_t v_shape[] = {p.V};
  if (r.linear_bias) require_shape(*r.linear_bias, "linear_bias", v_shape, 1, "one per row of linear_weight");
  require_shape(*r.target, "target", in.shape, lead, "input's shape without its last dimension");

  // Options, as xent_cross_entropy's.
  const xent_loss_options& o = *r.options;
  check_option_values(o);
  if (o.weight) {
    require_shape(*o.weight, "weight", v_shape, 1, "one weight per class: per row of linear_weight");
    p.options.weight = o.weight->data;
    p.options.weight_stride = o.weight->strides[0];
  }
  p.options.reduction = static_cast<xent_reduction>(o.reduction);
  p.options.alpha = 1 - o.label_smoothing;
  p.options.beta = p.vocab_size > 0 ? o.label_smoothing / static_cast<double>(p.vocab_size) : 0;
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

// The class-index targets checked (each in [0, vocab_size) or ignore_index) and the MEAN's denominator (of a shard:
// its part), as the op does.
xent_status scan(const LinearPlan& p, int threads, double* denominator, std::string* error) {
  Layout l;
  l.rows = p.N;
  l.classes = p.V;
  l.vocab_start = p.vocab_start, l.vocab_size = p.vocab_size;
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

// count values of A, each rounded once to dtype, to base[at + k · stride].
template <typename A>
void store_row(void* base, xent_dtype dtype, int64_t at, int64_t stride, const A* from, int64_t count) {
  const auto store = [&](auto* out, auto convert) {
    for (int64_t k = 0; k < count; ++k) out[at + k * stride] = convert(from[k]);
  };
  switch (dtype) {
    case XENT_FLOAT16: store(static_cast<float16*>(base), [](A v) { return to_float16(v); }); break;
    case XENT_BFLOAT16: store(static_cast<bfloat16*>(base), [](A v) { return to_bfloat16(v); }); break;
    case XENT_FLOAT32: store(static_cast<float*>(base), [](A v) { return static_cast<float>(v); }); break;
    default: store(static_cast<double*>(base), [](A v) { return static_cast<double>(v); }); break;
  }
}

// A buffer kept by the calling thread between calls up to the chunk budget (so that a training loop does not fault
// fresh pages in every step); larger ones are the call's own.
template <typename E>
E* buffer(int64_t elements, std::vector<E>& own, int slot) {
  thread_local std::vector<E> kept[6];
  const int64_t budget_elements = linear_chunk_bytes() / static_cast<int64_t>(sizeof(E));
  std::vector<E>& b = elements <= budget_elements ? kept[slot] : own;
  if (static_cast<int64_t>(b.size()) < elements) b.resize(static_cast<size_t>(elements));
  return b.data();
}

// The fused op with compute type A (float or double) and product operands O (A, or bfloat16), in one of two
// schedules, both within the chunk budget:
//   rows   chunks of rows over the whole vocabulary, one pass, three products per chunk; grad_W accumulates in the
//          output itself, or in an accumulator [V, H] of A (16-bit dtypes, odd strides) when that fits half the
//          budget.
//   tiles  otherwise: the vocabulary in tiles of vt rows of W, so that only a tile's accumulator [vt, H] exists.
//          grad_W of a tile needs every row's dlogits of that tile, and dlogits need each row's statistics over
//          the whole vocabulary: a first pass takes the statistics of every (chunk, tile) block and merges them
//          per row (stages.h: stage 1, merge), a second recomputes each block's logits and finishes them into
//          dlogits (stage 3) for the backward products, grad_input accumulating across the tiles. Four products
//          instead of three: the price of the bound.
// What a Fused runs: the whole op, or one stage of a shard of a vocabulary (xent_linear_shard_statistics, _finish),
// which takes the tiles schedule's two passes apart (the merge between them is the caller's).
enum class Stage { kWhole, kStatistics, kFinish };

template <typename A, typename O>
class Fused {
  static constexpr xent_dtype kA = std::is_same_v<A, double> ? XENT_FLOAT64 : XENT_FLOAT32;
  static constexpr GemmType kGemm = OperandOf<O>::kGemm;
  // dlogits (A) are rounded to O for the backward products when O is narrower.
  static constexpr bool kNarrowOperands = !std::is_same_v<A, O>;

 public:
  Fused(const LinearPlan& p, int threads, double denominator, Stage stage = Stage::kWhole)
      : p_(p), threads_(threads), N_(p.N), H_(p.H), V_(p.V), H1_(std::max<int64_t>(p.H, 1)), denominator_(denominator) {
    const xent_dtype dtype = p.dtype;
    w_ = matrix_of(dtype, OperandOf<O>::kDtype, V_, H_, p.w_stride[0], p.w_stride[1]);
    gw_ = p.grad_weight ? matrix_of(dtype, kA, V_, H_, p.gw_stride[0], p.gw_stride[1]) : Matrix{};
    input_direct_ = dtype == OperandOf<O>::kDtype && (H_ <= 1 || p.input_h_stride == 1) && p.input_rows.uniform >= H1_;
    grad_input_direct_ = dtype == kA && (H_ <= 1 || p.grad_input_h_stride == 1) && p.grad_input_rows.uniform >= H1_;
    grads_ = p.gradients();
    reduced_ = p.options.reduction != XENT_REDUCTION_NONE;

    // The schedule and its sizes.
    const int64_t budget = linear_chunk_bytes();
    const int64_t accumulator_bytes =
        p.grad_weight && !gw_.direct ? V_ * H_ * static_cast<int64_t>(sizeof(A)) : 0;
    const int64_t logit_bytes = sizeof(A) + (kNarrowOperands && grads_ ? sizeof(O) : 0);
    // Per class of a tile: its bias and class weight in the compute type, its bias gradient's sum.
    const int64_t class_bytes = (p.bias ? sizeof(A) : 0) + (p.options.weight && dtype != kA ? sizeof(A) : 0) +
                                (p.grad_bias ? sizeof(double) : 0);
    // Rows when the whole vocabulary's accumulator fits half the budget and a row of its logits the rest.
    tiled_ = N_ > 0 && (stage != Stage::kWhole || accumulator_bytes > budget / 2 ||
                        V_ > (budget - accumulator_bytes) / (logit_bytes + class_bytes));
    // (Without rows no chunk runs: the outputs are zeros, and nothing is sized.)
    const int64_t for_logits = tiled_ || N_ == 0 ? budget / 2 : budget - accumulator_bytes - V_ * class_bytes;
    if (N_ == 0) {
      vt_ = V_;
    } else if (tiled_) {
      // Tiles: as many rows per chunk as hold tiles of kMinTileClasses (all rows if they fit: then each tile's
      // accumulator is written by one product, not read and written once per chunk), tiles as wide as the rest of
      // the budget allows up to what half of it holds of the accumulator and the classes' own values.
      const int64_t widest = std::clamp<int64_t>(budget / 2 / (H1_ * static_cast<int64_t>(sizeof(A)) + class_bytes), 1,
                                                 std::max<int64_t>(V_, 1));
      vt_ = std::clamp<int64_t>(for_logits / (N_ * logit_bytes), std::min(kMinTileClasses, widest), widest);
    } else {
      vt_ = V_;
    }
    n_ = N_ == 0 ? 1 : std::clamp<int64_t>(for_logits / std::max<int64_t>(vt_ * logit_bytes, 1), 1, N_);
    n_ = balanced(N_, n_);
    vt_ = balanced(V_, vt_);
    copy_tile_ = w_.direct ? V_ : std::clamp<int64_t>(kWeightTileBytes / (H1_ * sizeof(O)), 1, std::max<int64_t>(V_, 1));

    // Buffers, all allocated before anything is written; none sized by the vocabulary beyond a tile, and none of
    // logits without rows (which run no chunk: the outputs are zeros).
    if (N_ > 0) {
      logits_ = buffer<A>(n_ * vt_, own_logits_, 0);
      x_stage_ = input_direct_ ? nullptr : buffer<O>(n_ * H_, own_x_, 1);
      if (p.grad_input && !grad_input_direct_) {  // a chunk's rows (rows), or every row across the tiles (tiles)
        gin_stage_ = buffer<A>((tiled_ ? N_ : n_) * H_, own_gin_, 2);
      }
      w_tile_ = w_.direct ? nullptr : buffer<O>(copy_tile_ * H_, own_tile_, 3);
      dlogits_o_ = kNarrowOperands && grads_ ? buffer<O>(n_ * vt_, own_dlogits_, 4) : nullptr;
      if (accumulator_bytes) gw_acc_ = buffer<A>(vt_ * H_, own_gw_acc_, 5);
      gb_acc_.resize(p.grad_bias ? static_cast<size_t>(vt_) : 0);
      bias_.resize(p.bias ? static_cast<size_t>(vt_) : 0);
      // The kernel reads class weights in its own type.
      class_weight_.resize(p.options.weight && dtype != kA ? static_cast<size_t>(vt_) : 0);
    }
    options_ = p.options;
    targets_.resize(static_cast<size_t>(n_));
    grad_loss_.resize(p.grad_loss && !reduced_ ? static_cast<size_t>(n_) : 0);
    if (tiled_) states_.resize(static_cast<size_t>(N_)), part_.resize(static_cast<size_t>(n_));
    row_loss_ = row_loss_buffer(std::max<int64_t>(N_, 1), own_row_loss_);

    if (reduced_) {
      const double upstream = p.grad_loss ? load_as_double(p.grad_loss, dtype, 0) : 1.0;
      grad_scale_ = reduction_scale(p.options.reduction, upstream, denominator);
    }
  }

  void run() {
    if (tiled_) by_tiles();
    else by_rows();
    finish();
  }

  // Stage 1 of a shard: every row's statistics over W's rows, merged across the tiles.
  void statistics(xent_row_statistics* out) {
    if (tiled_) statistics_by_tiles();
    for (int64_t i = 0; i < N_; ++i) {
      out[i] = to_public(tiled_ ? states_[i] : RowState{});
    }
  }

  // Stage 3 of a shard, from every row's merged statistics.
  void finish_shard(const xent_row_statistics* merged) {
    for (int64_t i = 0; i < static_cast<int64_t>(states_.size()); ++i)
      states_[i] = from_public(merged[i]);
    if (tiled_) finish_by_tiles();
    else by_rows();  // no rows: the outputs' zeros
    finish();
  }

 private:
  void by_rows() {
    for (int64_t c0 = 0; c0 < N_; c0 += n_) {
      const int64_t m = std::min(n_, N_ - c0);
      int64_t ldx;
      const O* x = input_rows(c0, m, &ldx);
      logits(x, ldx, m, 0, V_);
      run_kernels(layout(c0, m, 0, V_), kA, false, threads_);
      if (grads_) backward(x, ldx, c0, m, 0, V_);
    }
    if (p_.grad_weight && (N_ == 0 || !gw_.direct || H_ == 0)) store_weight_gradient(0, V_);
    if (p_.grad_bias) store_bias_gradient(0, V_);
  }

  void by_tiles() {
    statistics_by_tiles();
    finish_by_tiles();
  }

  void statistics_by_tiles() {
    for (int64_t c0 = 0; c0 < N_; c0 += n_) {  // statistics of every row, merged across the tiles in order
      const int64_t m = std::min(n_, N_ - c0);
      int64_t ldx;
      const O* x = input_rows(c0, m, &ldx);
      for (int64_t v0 = 0; v0 < V_; v0 += vt_) {
        const int64_t t = std::min(vt_, V_ - v0);
        logits(x, ldx, m, v0, t);
        shard_statistics(layout(c0, m, v0, t), kA, part_.data(), threads_);
        for (int64_t i = 0; i < m; ++i) states_[c0 + i] = v0 == 0 ? part_[i] : Merge(states_[c0 + i], part_[i]);
      }
    }
  }

  void finish_by_tiles() {
    if (V_ == 0) {  // an empty shard of a vocabulary: the losses from the merged statistics, gradients 0
      for (int64_t c0 = 0; c0 < N_; c0 += n_) shard_finish(layout(c0, std::min(n_, N_ - c0), 0, 0), kA, states_.data() + c0, threads_);
      if (p_.grad_input)
        for (int64_t i = 0; i < N_; ++i)
          for (int64_t h = 0; h < H_; ++h)
            store_from_double(p_.grad_input, p_.dtype, p_.grad_input_rows.offset(i) + h * p_.grad_input_h_stride, 0.0);
      return;
    }
    for (int64_t v0 = 0; v0 < V_; v0 += vt_) {  // each tile's gradients, from its logits recomputed
      const int64_t t = std::min(vt_, V_ - v0);
      for (int64_t c0 = 0; c0 < N_; c0 += n_) {
        const int64_t m = std::min(n_, N_ - c0);
        int64_t ldx;
        const O* x = input_rows(c0, m, &ldx);
        logits(x, ldx, m, v0, t);
        shard_finish(layout(c0, m, v0, t), kA, states_.data() + c0, threads_);
        if (grads_) backward(x, ldx, c0, m, v0, t);
      }
      if (p_.grad_weight && (gw_acc_ || H_ == 0)) store_weight_gradient(v0, t);  // (else written in place)
      if (p_.grad_bias) store_bias_gradient(v0, t);
    }
    if (gin_stage_) store_input_gradient(0, N_);
  }

  // Rows [c0, c0 + m) of h as the GEMM reads them, in place or staged; *ld their leading dimension.
  const O* input_rows(int64_t c0, int64_t m, int64_t* ld) {
    if (input_direct_) {
      *ld = m > 1 ? p_.input_rows.uniform : H1_;
      return static_cast<const O*>(p_.input) + p_.input_rows.offset(c0);
    }
    for (int64_t i = 0; i < m; ++i) {
      const int64_t at = p_.input_rows.offset(c0 + i);
      for (int64_t h = 0; h < H_; ++h) x_stage_[i * H_ + h] = operand<O>(p_.input, p_.dtype, at + h * p_.input_h_stride);
    }
    *ld = H1_;
    return x_stage_;
  }

  // W's rows [v0, v0 + count) (count ≤ copy_tile_) as the GEMM reads them: in place, or copied into w_tile_.
  // In place and column-major, the rows are Wᵀ's columns: w_transposed().
  const O* weight_rows(int64_t v0, int64_t count, int64_t* ld) {
    if (w_.direct) {
      *ld = w_.ld;
      return static_cast<const O*>(p_.weight) + (w_.column_major ? v0 : v0 * w_.ld);
    }
    for (int64_t v = 0; v < count; ++v)
      for (int64_t h = 0; h < H_; ++h)
        w_tile_[v * H_ + h] = operand<O>(p_.weight, p_.dtype, (v0 + v) * p_.w_stride[0] + h * p_.w_stride[1]);
    *ld = H1_;
    return w_tile_;
  }
  bool w_transposed() const { return w_.direct && w_.column_major; }

  // logits_ [m, t] = h_c · W[v0 : v0 + t]ᵀ + b[v0 : v0 + t].
  void logits(const O* x, int64_t ldx, int64_t m, int64_t v0, int64_t t) {
    load_tile(v0, t);
    if (p_.bias)
      for (int64_t i = 0; i < m; ++i) std::memcpy(logits_ + i * t, bias_.data(), static_cast<size_t>(t) * sizeof(A));
    else if (H_ == 0)
      std::fill(logits_, logits_ + m * t, A{0});
    if (H_ == 0) return;
    for (int64_t s = v0; s < v0 + t; s += copy_tile_) {
      const int64_t count = std::min(copy_tile_, v0 + t - s);
      int64_t ldw;
      const O* wt = weight_rows(s, count, &ldw);
      gemm(kGemm, false, !w_transposed(), m, count, H_, x, ldx, wt, ldw, p_.bias ? 1.0 : 0.0, logits_ + (s - v0), t,
           threads_);
    }
  }

  // The bias and class weights of the tile [v0, v0 + t) in the compute type (bias_, class_weight_), converted when
  // the tile changes: once per tile in the rows schedule and the finishing pass, once per block in the tiles'
  // statistics pass (t conversions beside a product of m·t·H).
  void load_tile(int64_t v0, int64_t t) {
    if (v0 == tile_v0_) return;
    tile_v0_ = v0;
    if (!bias_.empty())
      for (int64_t v = 0; v < t; ++v) bias_[v] = load_as<A>(p_.bias, p_.dtype, (v0 + v) * p_.bias_stride);
    if (!class_weight_.empty())
      for (int64_t v = 0; v < t; ++v)
        class_weight_[v] = load_as<A>(p_.options.weight, p_.dtype, (v0 + v) * p_.options.weight_stride);
  }

  // The layout of logits_ [m, t]: rows [c0, c0 + m), classes [v0, v0 + t) of V, gradients in place.
  Layout layout(int64_t c0, int64_t m, int64_t v0, int64_t t) {
    load_tile(v0, t);
    for (int64_t i = 0; i < m; ++i) {
      const int64_t at = p_.target_rows.offset(c0 + i);
      targets_[i] = p_.target_dtype == XENT_INT32 ? static_cast<const int32_t*>(p_.target)[at]
                                                   : static_cast<const int64_t*>(p_.target)[at];
    }
    for (int64_t i = 0; i < static_cast<int64_t>(grad_loss_.size()) && i < m; ++i)
      grad_loss_[i] = load_as<A>(p_.grad_loss, p_.dtype, p_.grad_loss_rows.offset(c0 + i));
    Layout l;
    l.rows = m;
    l.classes = t;
    l.vocab_start = p_.vocab_start + v0, l.vocab_size = p_.vocab_size;
    l.batch_rank = 1;
    l.batch_shape[0] = m;
    l.data[kLogits] = logits_;
    l.class_stride[kLogits] = 1, l.batch_strides[kLogits][0] = t;
    l.data[kLabels] = targets_.data();
    l.batch_strides[kLabels][0] = 1;
    if (grads_) {
      l.data[kGradLogits] = logits_;
      l.class_stride[kGradLogits] = 1, l.batch_strides[kGradLogits][0] = t;
    }
    if (!grad_loss_.empty()) {
      l.data[kGradLoss] = grad_loss_.data();
      l.batch_strides[kGradLoss][0] = 1;
    }
    l.sparse = true;
    l.label_dtype = XENT_INT64;
    l.options = options_;
    if (!class_weight_.empty())
      l.options.weight = class_weight_.data(), l.options.weight_stride = 1;
    else if (options_.weight)
      l.options.weight = static_cast<const A*>(options_.weight) + v0 * options_.weight_stride;
    l.general = true;
    l.grad_scale = grad_scale_;
    l.row_loss = row_loss_ + c0;
    return l;
  }

  // The products of dlogits (logits_ [m, t], rows [c0, c0 + m), classes [v0, v0 + t)) into the gradients:
  // grad_b += Σ rows, grad_h_c (+)= dlogits · W[v0 : v0 + t], grad_W[v0 : v0 + t] (+)= dlogitsᵀ · h_c.
  void backward(const O* x, int64_t ldx, int64_t c0, int64_t m, int64_t v0, int64_t t) {
    if (p_.grad_bias)  // before dlogits are rounded for the products
      for (int64_t i = 0; i < m; ++i)
        for (int64_t v = 0; v < t; ++v) gb_acc_[v] += static_cast<double>(logits_[i * t + v]);
    const O* dl = reinterpret_cast<const O*>(logits_);
    if constexpr (kNarrowOperands) {
      const int64_t count = m * t;
      ParallelFor(count, count > (int64_t{1} << 16) ? threads_ : 1,
                  [&](int64_t i) { dlogits_o_[i] = to_bfloat16(static_cast<float>(logits_[i])); });
      dl = dlogits_o_;
    }
    if (p_.grad_input && H_ > 0) {
      A* gin = grad_input_direct_ ? static_cast<A*>(p_.grad_input) + p_.grad_input_rows.offset(c0)
               : tiled_           ? gin_stage_ + c0 * H_
                                  : gin_stage_;
      const int64_t ldg = grad_input_direct_ && m > 1 ? p_.grad_input_rows.uniform : H1_;
      for (int64_t s = v0; s < v0 + t; s += copy_tile_) {
        const int64_t count = std::min(copy_tile_, v0 + t - s);
        int64_t ldw;
        const O* wt = weight_rows(s, count, &ldw);
        gemm(kGemm, false, w_transposed(), m, H_, count, dl + (s - v0), t, wt, ldw, s > 0 ? 1.0 : 0.0, gin, ldg,
             threads_);
      }
      if (!grad_input_direct_ && !tiled_) store_input_gradient(c0, m);
    }
    if (p_.grad_weight && H_ > 0) {
      const double beta = c0 > 0 ? 1.0 : 0.0;
      if (gw_acc_)
        gemm(kGemm, true, false, t, H_, m, dl, t, x, ldx, beta, gw_acc_, H_, threads_);
      else if (gw_.column_major)  // grad_Wᵀ's columns [v0, v0 + t)
        gemm(kGemm, true, false, H_, t, m, x, ldx, dl, t, beta, static_cast<A*>(p_.grad_weight) + v0, gw_.ld,
             threads_);
      else
        gemm(kGemm, true, false, t, H_, m, dl, t, x, ldx, beta, static_cast<A*>(p_.grad_weight) + v0 * gw_.ld,
             gw_.ld, threads_);
    }
  }

  // grad_input's rows [c0, c0 + m) from gin_stage_ (by rows: the chunk's; by tiles: every row's).
  void store_input_gradient(int64_t c0, int64_t m) {
    const A* from = tiled_ ? gin_stage_ + c0 * H_ : gin_stage_;
    ParallelFor(m, m * H_ > (int64_t{1} << 16) ? threads_ : 1, [&](int64_t i) {
      store_row(p_.grad_input, p_.dtype, p_.grad_input_rows.offset(c0 + i), p_.grad_input_h_stride, from + i * H_, H_);
    });
  }

  // grad_W's rows [v0, v0 + t) from the accumulator (0 where nothing was accumulated: no rows or no features).
  void store_weight_gradient(int64_t v0, int64_t t) {
    if (H_ == 0) return;  // (V may be huge when W has no elements)
    if (N_ == 0 || !gw_acc_) {
      for (int64_t v = 0; v < t; ++v)
        for (int64_t h = 0; h < H_; ++h)
          store_from_double(p_.grad_weight, p_.dtype, (v0 + v) * p_.gw_stride[0] + h * p_.gw_stride[1], 0.0);
      return;
    }
    ParallelFor(t, t * H_ > (int64_t{1} << 16) ? threads_ : 1, [&](int64_t v) {
      store_row(p_.grad_weight, p_.dtype, (v0 + v) * p_.gw_stride[0], p_.gw_stride[1], gw_acc_ + v * H_, H_);
    });
  }

  // grad_b's classes [v0, v0 + t) from the tile's accumulator (0 without rows), which starts again from 0.
  void store_bias_gradient(int64_t v0, int64_t t) {
    for (int64_t v = 0; v < t; ++v)
      store_from_double(p_.grad_bias, p_.dtype, (v0 + v) * p_.grad_bias_stride, N_ > 0 ? gb_acc_[v] : 0.0);
    std::fill(gb_acc_.begin(), gb_acc_.end(), 0.0);
  }

  // The loss, from every chunk.
  void finish() {
    if (!p_.loss) return;
    if (reduced_) {
      store_from_double(p_.loss, p_.dtype, 0, reduced_loss(p_.options.reduction, row_loss_, N_, denominator_, threads_));
    } else {
      for (int64_t i = 0; i < N_; ++i) store_from_double(p_.loss, p_.dtype, p_.loss_rows.offset(i), row_loss_[i]);
    }
  }

  const LinearPlan& p_;
  const int threads_;
  const int64_t N_, H_, V_, H1_;
  double denominator_ = 0, grad_scale_ = 1;
  Matrix w_, gw_;
  bool input_direct_ = false, grad_input_direct_ = false, grads_ = false, reduced_ = false, tiled_ = false;
  int64_t n_ = 1, vt_ = 1, copy_tile_ = 1;  // rows per chunk, classes per tile, rows of W per copy
  int64_t tile_v0_ = -1;                     // the tile whose bias and class weights bias_, class_weight_ hold
  std::vector<A> own_logits_, own_gin_, own_gw_acc_, bias_, class_weight_;  // bias_, class_weight_: a tile's
  std::vector<O> own_x_, own_tile_, own_dlogits_;
  A* logits_ = nullptr;
  O* x_stage_ = nullptr;
  A* gin_stage_ = nullptr;
  O* w_tile_ = nullptr;
  O* dlogits_o_ = nullptr;
  A* gw_acc_ = nullptr;  // grad_W's accumulator apart from the output: [vt, H]
  std::vector<double> gb_acc_, own_row_loss_;  // gb_acc_: grad_b of a tile, summed over the chunks
  double* row_loss_ = nullptr;
  Options options_;
  std::vector<int64_t> targets_;
  std::vector<A> grad_loss_;
  std::vector<RowState> states_, part_;
};

}  // namespace

void set_linear_chunk_bytes(int64_t bytes) { g_chunk_bytes.store(bytes > 0 ? bytes : 0); }

int64_t linear_chunk_bytes() {
  const int64_t bytes = g_chunk_bytes.load();
  return bytes > 0 ? bytes : kDefaultChunkBytes;
}

namespace {

// Validates the request (and for a shard, its vocabulary and the statistics' rows), checks the targets, and calls
// f(Fused<A, O>&&) with the plan's types; *denominator: the targets' (a shard's part).
template <typename F>
xent_status with_fused(const LinearRequest& request, int threads, std::string* error, const int64_t* rows,
                       const void* statistics, double* denominator, Stage stage, const F& f) {
  if (stage != Stage::kWhole)
    if (const xent_status status = check_vocab_size(request.vocab_size, error); status != XENT_OK) return status;
  LinearPlan plan;
  try {
    resolve(request, &plan);
  } catch (const Failure& failure) {
    *error = failure.message;
    return failure.status;
  }
  if (rows)
    if (const xent_status status = check_statistics(*rows, plan.N, statistics, "input's leading dimensions' product",
                                                    error);
        status != XENT_OK)
      return status;
  // The products' operands: bfloat16 where the library multiplies it, else float32 (float16 too), float64.
  const bool bf16 = plan.dtype == XENT_BFLOAT16 && gemm_supports(GemmType::kBFloat16);
  const GemmType type = plan.dtype == XENT_FLOAT64 ? GemmType::kFloat64 : bf16 ? GemmType::kBFloat16 : GemmType::kFloat32;
  if (!gemm_supports(type)) {
    *error = std::string("xent_linear_cross_entropy: this build of xent has no GEMM library for ") +
             xent_dtype_name(plan.dtype) + " (oneDNN for float32, bfloat16 and float16, OpenBLAS for float64)";
    return XENT_UNSUPPORTED;
  }
  fault_point("linear");
  double scanned = 0;
  if (const xent_status status = scan(plan, threads, &scanned, error); status != XENT_OK) return status;
  if (stage != Stage::kFinish) *denominator = scanned;
  if (type == GemmType::kFloat64) f(Fused<double, double>(plan, threads, *denominator, stage));
  else if (bf16) f(Fused<float, bfloat16>(plan, threads, *denominator, stage));
  else f(Fused<float, float>(plan, threads, *denominator, stage));
  return XENT_OK;
}

}  // namespace

xent_status linear_cross_entropy(const LinearRequest& request, int threads, std::string* error) {
  double denominator = 0;
  return with_fused(request, threads, error, nullptr, nullptr, &denominator, Stage::kWhole,
                    [](auto&& fused) { fused.run(); });
}

xent_status linear_shard_statistics(const LinearRequest& request, int64_t rows, xent_row_statistics* statistics,
                                    double* denominator, int threads, std::string* error) {
  if (denominator == nullptr) {
    *error = "denominator must not be NULL";
    return XENT_INVALID_ARGUMENT;
  }
  double part = 0;
  const xent_status status = with_fused(request, threads, error, &rows, statistics, &part, Stage::kStatistics,
                                        [&](auto&& fused) { fused.statistics(statistics); });
  if (status == XENT_OK) *denominator = part;
  return status;
}

xent_status linear_shard_finish(const LinearRequest& request, int64_t rows, const xent_row_statistics* merged,
                                double denominator, int threads, std::string* error) {
  return with_fused(request, threads, error, &rows, merged, &denominator, Stage::kFinish,
                    [&](auto&& fused) { fused.finish_shard(merged); });
}

}  // namespace xent::internal
