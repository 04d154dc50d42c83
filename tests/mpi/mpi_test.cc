// mpi_test.cc — xent_mpi.h on 1 to 4 processes (ctest starts it under mpirun): every rank holds a shard of unequal
// size of a 1000-class vocabulary and must get the loss and its shard of the gradient that the single-process op
// (xent_cross_entropy_grad) computes on the gathered logits, for every option, reduction, dtype and kind of target;
// the fused linear op with the head's rows sharded against xent_linear_cross_entropy_grad; rows split across
// processes as well (data_comm); a bad argument on one rank is an error on every rank, at once.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "xent/half.h"
#include "xent/xent_mpi.h"

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Shard k of n of V classes: sizes grow with k (unequal), the first ones may be empty when V < n.
void shard_of(int64_t V, int k, int n, int64_t* start, int64_t* count) {
  const int64_t total = int64_t{n} * (n + 1) / 2;
  const auto bound = [&](int j) { return V * (int64_t{j} * (j + 1) / 2) / total; };
  *start = bound(k);
  *count = bound(k + 1) - *start;
}

// Values of one dtype in a byte buffer.
struct Buffer {
  xent_dtype dtype;
  std::vector<double> host;  // what the values are, as double
  std::vector<unsigned char> bytes;
  Buffer(xent_dtype d, int64_t n) : dtype(d), host(n), bytes(n * size()) {}
  int64_t size() const { return dtype == XENT_FLOAT64 ? 8 : dtype == XENT_FLOAT32 ? 4 : 2; }
  void set(int64_t i, double v) {
    unsigned char* at = bytes.data() + i * size();
    if (dtype == XENT_FLOAT64) *reinterpret_cast<double*>(at) = v;
    else if (dtype == XENT_FLOAT32) *reinterpret_cast<float*>(at) = static_cast<float>(v);
    else if (dtype == XENT_BFLOAT16) *reinterpret_cast<xent::bfloat16*>(at) = xent::to_bfloat16(v);
    else *reinterpret_cast<xent::float16*>(at) = xent::to_float16(v);
    host[i] = get(i);
  }
  double get(int64_t i) const {
    const unsigned char* at = bytes.data() + i * size();
    if (dtype == XENT_FLOAT64) return *reinterpret_cast<const double*>(at);
    if (dtype == XENT_FLOAT32) return *reinterpret_cast<const float*>(at);
    if (dtype == XENT_BFLOAT16) return xent::to_float(*reinterpret_cast<const xent::bfloat16*>(at));
    return xent::to_float(*reinterpret_cast<const xent::float16*>(at));
  }
  void* data(int64_t at = 0) { return bytes.data() + at * size(); }
};

double tolerance(xent_dtype d) { return d == XENT_FLOAT64 ? 1e-12 : d == XENT_FLOAT32 ? 2e-5 : 1.6e-2; }

struct Case {
  xent_dtype dtype = XENT_FLOAT32;
  bool indices = true;
  int reduction = XENT_REDUCTION_MEAN;
  bool weight = false;
  double label_smoothing = 0, z_loss = 0, softcap = 0;
  int64_t rows = 37, V = 1000;
};

std::string name(const Case& c) {
  return std::string(xent_dtype_name(c.dtype)) + (c.indices ? " indices" : " probabilities") + " reduction " +
         std::to_string(c.reduction) + (c.weight ? " weight" : "") + " eps " + std::to_string(c.label_smoothing) +
         " z " + std::to_string(c.z_loss) + " cap " + std::to_string(c.softcap) + " on " +
         std::to_string(world_size()) + " ranks";
}

// Runs the case on every rank (its rows given by `row_seed`, its vocabulary communicator `comm`) and checks this
// rank's loss and shard gradient against the single-process op on the whole logits.
void check_case(const Case& c, MPI_Comm comm, MPI_Comm data_comm, int row_seed, double denominator_scale = 1) {
  SCOPED_TRACE(name(c));
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const int64_t R = c.rows, V = c.V;
  std::mt19937 rng(11 + row_seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform;
  Buffer logits(c.dtype, R * V), probs(c.dtype, R * V), weight(c.dtype, V);
  for (int64_t i = 0; i < R * V; ++i) logits.set(i, 3 * normal(rng)), probs.set(i, uniform(rng));
  for (int64_t j = 0; j < V; ++j) weight.set(j, 0.25 + (j % 5) * 0.25);
  std::vector<int64_t> targets(R);
  for (int64_t i = 0; i < R; ++i) targets[i] = i % 7 == 3 ? -100 : static_cast<int64_t>(uniform(rng) * V);
  const bool reduced = c.reduction != XENT_REDUCTION_NONE;
  Buffer grad_loss(c.dtype, reduced ? 1 : R);
  for (int64_t i = 0; i < grad_loss.host.size(); ++i) grad_loss.set(i, 0.5 + uniform(rng));

  const int64_t full_shape[] = {R, V}, rows_shape[] = {R}, weight_shape[] = {V};
  const int32_t loss_rank = reduced ? 0 : 1;
  const xent_tensor tv = xent_make_tensor(targets.data(), XENT_INT64, 1, rows_shape, nullptr);
  const xent_tensor gl = xent_make_tensor(grad_loss.data(), c.dtype, loss_rank, rows_shape, nullptr);

  // The single-process op on the whole logits. With rows split over data_comm, MEAN's denominator is the batch's:
  // the reference takes it as SUM scaled by 1 / (the batch's denominator) through grad_loss and the loss.
  Buffer ref_loss(c.dtype, R), ref_grad(c.dtype, R * V);
  {
    xent_tensor x = xent_make_tensor(logits.data(), c.dtype, 2, full_shape, nullptr);
    xent_tensor p = xent_make_tensor(probs.data(), c.dtype, 2, full_shape, nullptr);
    xent_tensor w = xent_make_tensor(weight.data(), c.dtype, 1, weight_shape, nullptr);
    xent_tensor l = xent_make_tensor(ref_loss.data(), c.dtype, loss_rank, rows_shape, nullptr);
    xent_tensor g = xent_make_tensor(ref_grad.data(), c.dtype, 2, full_shape, nullptr);
    xent_loss_options o = xent_default_loss_options();
    o.weight = c.weight ? &w : nullptr;
    o.reduction = c.reduction;
    o.label_smoothing = c.label_smoothing, o.z_loss = c.z_loss, o.softcap = c.softcap;
    Buffer scaled(c.dtype, 1);
    xent_tensor gs = gl;
    if (denominator_scale != 1) {  // MEAN over the batch = SUM of these rows / the batch's denominator
      o.reduction = XENT_REDUCTION_SUM;
      scaled.set(0, grad_loss.host[0] / denominator_scale);
      gs = xent_make_tensor(scaled.data(), c.dtype, 0, rows_shape, nullptr);
    }
    ASSERT_EQ(xent_cross_entropy_grad(&x, c.indices ? &tv : &p, -1, &o, &gs, &l, &g), XENT_OK) << xent_last_error_message();
    if (denominator_scale != 1) ref_loss.set(0, ref_loss.get(0) / denominator_scale);
  }

  // This rank's shard.
  int64_t start = 0, count = 0;
  shard_of(V, rank, size, &start, &count);
  const int64_t shape[] = {R, count}, strides[] = {V, 1}, w_shape[] = {count};
  const xent_tensor xs = xent_make_tensor(logits.data(start), c.dtype, 2, shape, strides);
  const xent_tensor ps = xent_make_tensor(probs.data(start), c.dtype, 2, shape, strides);
  const xent_tensor ws = xent_make_tensor(weight.data(start), c.dtype, 1, w_shape, nullptr);
  Buffer loss(c.dtype, R), grad(c.dtype, R * std::max<int64_t>(count, 1));
  const xent_tensor lv = xent_make_tensor(loss.data(), c.dtype, loss_rank, rows_shape, nullptr);
  const xent_tensor gv = xent_make_tensor(grad.data(), c.dtype, 2, shape, nullptr);
  xent_loss_options o = xent_default_loss_options();
  o.weight = c.weight ? &ws : nullptr;
  o.reduction = c.reduction;
  o.label_smoothing = c.label_smoothing, o.z_loss = c.z_loss, o.softcap = c.softcap;
  ASSERT_EQ(xent_mpi_cross_entropy_grad(&xs, c.indices ? &tv : &ps, -1, start, &o, comm, data_comm, &gl, &lv, &gv),
            XENT_OK)
      << xent_last_error_message();
  const double tol = tolerance(c.dtype);
  for (int64_t i = 0; i < (reduced ? 1 : R); ++i)
    EXPECT_NEAR(loss.get(i), ref_loss.get(i), tol * (std::fabs(ref_loss.get(i)) + 1e-3)) << "loss of row " << i;
  double worst = 0;
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < count; ++j) {
      const double want = ref_grad.get(i * V + start + j);
      worst = std::max(worst, std::fabs(grad.get(i * count + j) - want) / (std::fabs(want) + 1e-2));
    }
  EXPECT_LE(worst, tol) << "grad_logits_shard of rank " << rank;
  // The loss-only entry point gives the same loss.
  Buffer loss_only(c.dtype, R);
  const xent_tensor lo = xent_make_tensor(loss_only.data(), c.dtype, loss_rank, rows_shape, nullptr);
  ASSERT_EQ(xent_mpi_cross_entropy(&xs, c.indices ? &tv : &ps, -1, start, &o, comm, data_comm, &lo), XENT_OK)
      << xent_last_error_message();
  for (int64_t i = 0; i < (reduced ? 1 : R); ++i) EXPECT_EQ(loss_only.get(i), loss.get(i));
}

TEST(Mpi, EqualsTheSingleProcessOp) {
  for (xent_dtype dtype : {XENT_FLOAT32, XENT_FLOAT64})
    for (bool indices : {true, false})
      for (int reduction : {XENT_REDUCTION_NONE, XENT_REDUCTION_SUM, XENT_REDUCTION_MEAN}) {
        check_case({.dtype = dtype, .indices = indices, .reduction = reduction}, MPI_COMM_WORLD, MPI_COMM_NULL, 0);
        check_case({.dtype = dtype, .indices = indices, .reduction = reduction, .weight = true, .label_smoothing = 0.1,
                    .z_loss = 1e-3, .softcap = 4},
                   MPI_COMM_WORLD, MPI_COMM_NULL, 0);
      }
  check_case({.dtype = XENT_BFLOAT16, .label_smoothing = 0.2}, MPI_COMM_WORLD, MPI_COMM_NULL, 0);
  check_case({.dtype = XENT_FLOAT16, .indices = false, .reduction = XENT_REDUCTION_NONE}, MPI_COMM_WORLD,
             MPI_COMM_NULL, 0);
  check_case({.label_smoothing = 0.3, .V = 3}, MPI_COMM_WORLD, MPI_COMM_NULL, 0);  // 4 ranks: an empty shard
}

// The fused linear + cross-entropy with the head's rows sharded: against xent_linear_cross_entropy_grad on the whole
// head, for every reduction and option, float32 and float64 (and bfloat16, whose grad_input sums rounded parts).
void check_linear(xent_dtype dtype, int reduction, bool options, bool bias) {
  SCOPED_TRACE(std::string("linear ") + xent_dtype_name(dtype) + " reduction " + std::to_string(reduction) +
               (options ? " options" : "") + (bias ? " bias" : "") + " on " + std::to_string(world_size()) + " ranks");
  const int rank = world_rank(), size = world_size();
  const int64_t N = 29, H = 24, V = 300;
  std::mt19937 rng(3);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform;
  Buffer h(dtype, N * H), W(dtype, V * H), b(dtype, V), cw(dtype, V);
  for (int64_t i = 0; i < N * H; ++i) h.set(i, normal(rng));
  for (int64_t i = 0; i < V * H; ++i) W.set(i, normal(rng) * 0.5);
  for (int64_t v = 0; v < V; ++v) b.set(v, normal(rng)), cw.set(v, 0.5 + (v % 3) * 0.25);
  std::vector<int64_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[i] = i % 6 == 1 ? -100 : static_cast<int64_t>(uniform(rng) * V);
  const bool reduced = reduction != XENT_REDUCTION_NONE;
  Buffer g(dtype, reduced ? 1 : N);
  for (int64_t i = 0; i < static_cast<int64_t>(g.host.size()); ++i) g.set(i, 0.5 + uniform(rng));
  const int64_t hs[] = {N, H}, ws[] = {V, H}, vs[] = {V}, ns[] = {N};
  const int32_t loss_rank = reduced ? 0 : 1;
  const xent_tensor hv = xent_make_tensor(h.data(), dtype, 2, hs, nullptr);
  const xent_tensor tv = xent_make_tensor(t.data(), XENT_INT64, 1, ns, nullptr);
  const xent_tensor gv = xent_make_tensor(g.data(), dtype, loss_rank, ns, nullptr);
  xent_loss_options o = xent_default_loss_options();
  o.reduction = reduction;
  if (options) o.label_smoothing = 0.1, o.z_loss = 1e-3, o.softcap = 6;
  // The whole head.
  Buffer loss(dtype, N), gin(dtype, N * H), gw(dtype, V * H), gb(dtype, V);
  {
    const xent_tensor wv = xent_make_tensor(W.data(), dtype, 2, ws, nullptr), bv = xent_make_tensor(b.data(), dtype, 1, vs, nullptr);
    const xent_tensor cv = xent_make_tensor(cw.data(), dtype, 1, vs, nullptr);
    const xent_tensor lv = xent_make_tensor(loss.data(), dtype, loss_rank, ns, nullptr);
    const xent_tensor giv = xent_make_tensor(gin.data(), dtype, 2, hs, nullptr);
    const xent_tensor gwv = xent_make_tensor(gw.data(), dtype, 2, ws, nullptr), gbv = xent_make_tensor(gb.data(), dtype, 1, vs, nullptr);
    xent_loss_options whole = o;
    if (options) whole.weight = &cv;
    ASSERT_EQ(xent_linear_cross_entropy_grad(&hv, &wv, bias ? &bv : nullptr, &tv, &whole, &gv, &lv, &giv, &gwv,
                                             bias ? &gbv : nullptr),
              XENT_OK)
        << xent_last_error_message();
  }
  // This rank's rows of the head.
  int64_t start = 0, count = 0;
  shard_of(V, rank, size, &start, &count);
  const int64_t wss[] = {count, H}, vss[] = {count};
  const xent_tensor wk = xent_make_tensor(W.data(start * H), dtype, 2, wss, nullptr);
  const xent_tensor bk = xent_make_tensor(b.data(start), dtype, 1, vss, nullptr);
  const xent_tensor ck = xent_make_tensor(cw.data(start), dtype, 1, vss, nullptr);
  Buffer sloss(dtype, N), sgin(dtype, N * H), sgw(dtype, std::max<int64_t>(count, 1) * H), sgb(dtype, std::max<int64_t>(count, 1));
  const xent_tensor lk = xent_make_tensor(sloss.data(), dtype, loss_rank, ns, nullptr);
  const xent_tensor gik = xent_make_tensor(sgin.data(), dtype, 2, hs, nullptr);
  const xent_tensor gwk = xent_make_tensor(sgw.data(), dtype, 2, wss, nullptr), gbk = xent_make_tensor(sgb.data(), dtype, 1, vss, nullptr);
  if (options) o.weight = &ck;
  ASSERT_EQ(xent_mpi_linear_cross_entropy_grad(&hv, &wk, bias ? &bk : nullptr, &tv, start, &o, MPI_COMM_WORLD,
                                               MPI_COMM_NULL, &gv, &lk, &gik, &gwk, bias ? &gbk : nullptr),
            XENT_OK)
      << xent_last_error_message();
  const double tol = dtype == XENT_FLOAT64 ? 1e-11 : dtype == XENT_FLOAT32 ? 2e-5 : 3e-2;
  const auto expect_close = [&](const Buffer& got, int64_t got_at, const Buffer& want, int64_t want_at, int64_t n,
                                const char* what) {
    double worst = 0;
    for (int64_t i = 0; i < n; ++i)
      worst = std::max(worst, std::fabs(got.get(got_at + i) - want.get(want_at + i)) / (std::fabs(want.get(want_at + i)) + 1e-2));
    EXPECT_LE(worst, tol) << what;
  };
  expect_close(sloss, 0, loss, 0, reduced ? 1 : N, "loss");
  expect_close(sgin, 0, gin, 0, N * H, "grad_input");
  expect_close(sgw, 0, gw, start * H, count * H, "grad_linear_weight_shard");
  if (bias) expect_close(sgb, 0, gb, start, count, "grad_linear_bias_shard");
  Buffer lonly(dtype, N);
  const xent_tensor lo = xent_make_tensor(lonly.data(), dtype, loss_rank, ns, nullptr);
  ASSERT_EQ(xent_mpi_linear_cross_entropy(&hv, &wk, bias ? &bk : nullptr, &tv, start, &o, MPI_COMM_WORLD,
                                          MPI_COMM_NULL, &lo),
            XENT_OK)
      << xent_last_error_message();
  expect_close(lonly, 0, loss, 0, reduced ? 1 : N, "loss of the forward alone");
}

TEST(Mpi, FusedLinearEqualsTheSingleProcessOp) {
  for (xent_dtype dtype : {XENT_FLOAT32, XENT_FLOAT64})
    for (int reduction : {XENT_REDUCTION_NONE, XENT_REDUCTION_SUM, XENT_REDUCTION_MEAN})
      for (bool options : {false, true}) check_linear(dtype, reduction, options, options);
  check_linear(XENT_BFLOAT16, XENT_REDUCTION_MEAN, true, true);
}

// Rows split over two groups of vocabulary shards (data parallelism): MEAN divides by the batch's denominator.
TEST(Mpi, RowsAlsoSplitAcrossProcesses) {
  const int size = world_size(), rank = world_rank();
  if (size % 2 != 0) GTEST_SKIP() << "needs an even number of ranks";
  MPI_Comm vocab, data;
  const int group = rank / (size / 2);  // which rows
  MPI_Comm_split(MPI_COMM_WORLD, group, rank, &vocab);
  MPI_Comm_split(MPI_COMM_WORLD, rank % (size / 2), rank, &data);
  for (bool weight : {false, true}) {
    const Case c{.reduction = XENT_REDUCTION_MEAN, .weight = weight, .label_smoothing = 0.1};
    // The batch's denominator, from what each group's rows are (the same generator as check_case's).
    double denominator = 0;
    for (int g = 0; g < 2; ++g) {
      std::mt19937 rng(11 + g);
      std::normal_distribution<double> normal;
      std::uniform_real_distribution<double> uniform;
      for (int64_t i = 0; i < c.rows * c.V; ++i) normal(rng), uniform(rng);
      for (int64_t i = 0; i < c.rows; ++i) {
        const int64_t t = i % 7 == 3 ? -100 : static_cast<int64_t>(uniform(rng) * c.V);
        if (t != -100) denominator += weight ? static_cast<double>(static_cast<float>(0.25 + (t % 5) * 0.25)) : 1.0;
      }
    }
    check_case(c, vocab, data, group, denominator);
  }
  MPI_Comm_free(&vocab);
  MPI_Comm_free(&data);
}

// One rank's bad argument: every rank returns the error naming that rank, nothing is written, nobody hangs.
TEST(Mpi, ABadArgumentOnOneRankIsAnErrorOnEveryRank) {
  const int rank = world_rank(), size = world_size(), last = size - 1;
  const int64_t R = 5, V = 40;
  int64_t start = 0, count = 0;
  shard_of(V, rank, size, &start, &count);
  std::vector<float> x(R * std::max<int64_t>(count, 1), 0.5f), loss(R, -7.f), grad(x.size(), -7.f);
  std::vector<int64_t> t = {1, 2, 3, 4, 5};
  const int64_t rows[] = {R};
  xent_loss_options o = xent_default_loss_options();
  o.reduction = XENT_REDUCTION_NONE;
  const auto expect_everywhere = [&](xent_status status, const std::vector<std::string>& needles, int64_t R_here,
                                     int64_t start_here, const xent_tensor* target) {
    const int64_t rows_here[] = {R_here};
    const xent_tensor lv = xent_make_tensor(loss.data(), XENT_FLOAT32, 1, rows_here, nullptr);
    const int64_t shape_here[] = {R_here, count};
    const xent_tensor xh = xent_make_tensor(x.data(), XENT_FLOAT32, 2, shape_here, nullptr);
    const xent_tensor gh = xent_make_tensor(grad.data(), XENT_FLOAT32, 2, shape_here, nullptr);
    const double begin = MPI_Wtime();
    EXPECT_EQ(xent_mpi_cross_entropy_grad(&xh, target, -1, start_here, &o, MPI_COMM_WORLD, MPI_COMM_NULL, nullptr,
                                          &lv, &gh),
              status);
    EXPECT_LT(MPI_Wtime() - begin, 5.0);
    const std::string message = xent_last_error_message();
    for (const std::string& needle : needles) EXPECT_NE(message.find(needle), std::string::npos) << message;
    EXPECT_EQ(loss[0], -7.f) << "nothing is written";
    EXPECT_EQ(grad[0], -7.f) << "nothing is written";
  };
  // A target outside the vocabulary, on the last rank only.
  std::vector<int64_t> bad = t;
  if (rank == last) bad[3] = 5000;
  const xent_tensor tb = xent_make_tensor(bad.data(), XENT_INT64, 1, rows, nullptr);
  expect_everywhere(XENT_INVALID_ARGUMENT, {"rank " + std::to_string(last), "5000", "[0, 40)"}, R, start, &tb);
  // A NULL target on the last rank.
  const xent_tensor tv = xent_make_tensor(t.data(), XENT_INT64, 1, rows, nullptr);
  expect_everywhere(XENT_INVALID_ARGUMENT, {"rank " + std::to_string(last), "must not be NULL"}, R, start,
                    rank == last ? nullptr : &tv);
  // Shards that do not tile the vocabulary.
  expect_everywhere(XENT_INVALID_ARGUMENT, {"do not tile"}, R, rank == last ? start + 1 : start, &tv);
  // Different row counts.
  if (size > 1) {
    const int64_t rows_less[] = {R - 1};
    const xent_tensor tl = xent_make_tensor(t.data(), XENT_INT64, 1, rows_less, nullptr);
    expect_everywhere(XENT_INVALID_ARGUMENT, {"same rows"}, rank == last ? R - 1 : R, start, rank == last ? &tl : &tv);
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  // Every rank prints its own log (a failure names its rank in SCOPED_TRACE's text); the run fails if any rank's does.
  const int result = RUN_ALL_TESTS();
  int worst = result;
  MPI_Allreduce(&result, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
