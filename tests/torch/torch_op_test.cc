// The PyTorch operators from C++ without Python (xent_torch.h): against ATen's own cross_entropy and linear, with
// libtorch's autograd, TorchScript compiled in C++, the in-place backward and the errors.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "xent/xent_torch.h"

namespace {

using at::Tensor;

torch::Tensor Logits(std::vector<int64_t> shape, torch::Dtype dtype = torch::kFloat64, int seed = 0) {
  torch::manual_seed(seed);
  return (torch::randn(shape, torch::kFloat64) * 3).to(dtype);
}

void ExpectClose(const Tensor& a, const Tensor& b, double rtol = 1e-12, double atol = 1e-14) {
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_TRUE(torch::allclose(a.to(torch::kFloat64), b.to(torch::kFloat64), rtol, atol))
      << "max |a - b| = " << (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// Loss and gradient of f(x) for a copy of x that requires grad.
std::pair<Tensor, Tensor> LossAndGradient(const Tensor& logits, const std::function<Tensor(const Tensor&)>& f) {
  Tensor x = logits.clone().requires_grad_();
  Tensor loss = f(x);
  loss.backward(torch::ones_like(loss));
  return {loss.detach(), x.grad()};
}

TEST(TorchOp, EqualsAtenCrossEntropyWithEveryOption) {
  const Tensor logits = Logits({16, 11});
  Tensor target = torch::randint(0, 11, {16}, torch::kLong);
  target[3] = -100;
  const Tensor weight = torch::rand({11}, torch::kFloat64) + 0.5;
  for (const char* reduction : {"mean", "sum", "none"}) {
    for (double smoothing : {0.0, 0.2}) {
      for (bool weighted : {false, true}) {
        SCOPED_TRACE(std::string(reduction) + " smoothing " + std::to_string(smoothing) + " weighted " +
                     std::to_string(weighted));
        const c10::optional<Tensor> w = weighted ? c10::optional<Tensor>(weight) : c10::nullopt;
        const int64_t r = std::string(reduction) == "mean" ? at::Reduction::Mean
                          : std::string(reduction) == "sum" ? at::Reduction::Sum
                                                            : at::Reduction::None;
        auto [got, got_grad] = LossAndGradient(
            logits, [&](const Tensor& x) { return xent::torch::cross_entropy(x, target, w, -100, reduction, smoothing); });
        auto [want, want_grad] = LossAndGradient(
            logits, [&](const Tensor& x) { return at::cross_entropy_loss(x, target, w, r, -100, smoothing); });
        ExpectClose(got, want);
        ExpectClose(got_grad, want_grad);
      }
    }
  }
}

TEST(TorchOp, ClassDimensionIsOneAsInAten) {
  const Tensor logits = Logits({4, 6, 5, 3});
  const Tensor target = torch::randint(0, 6, {4, 5, 3}, torch::kLong);
  auto [got, got_grad] = LossAndGradient(logits, [&](const Tensor& x) { return xent::torch::cross_entropy(x, target); });
  auto [want, want_grad] = LossAndGradient(logits, [&](const Tensor& x) { return at::cross_entropy_loss(x, target); });
  ExpectClose(got, want);
  ExpectClose(got_grad, want_grad);
  // Rank 1: the class dimension is 0 and the target a scalar.
  const Tensor row = Logits({7});
  ExpectClose(xent::torch::cross_entropy(row, torch::tensor(2L)), at::cross_entropy_loss(row, torch::tensor(2L)));
}

TEST(TorchOp, ProbabilityTargetsAndTheirGradient) {
  const Tensor logits = Logits({8, 5});
  const Tensor probabilities = torch::rand({8, 5}, torch::kFloat64).softmax(1);
  std::vector<Tensor> results;
  for (bool ours : {true, false}) {
    Tensor x = logits.clone().requires_grad_(), y = probabilities.clone().requires_grad_();
    Tensor loss = ours ? xent::torch::cross_entropy(x, y, c10::nullopt, -100, "mean", 0.1)
                       : at::cross_entropy_loss(x, y, c10::nullopt, at::Reduction::Mean, -100, 0.1);
    loss.backward();
    results.insert(results.end(), {loss.detach(), x.grad(), y.grad()});
  }
  for (int i = 0; i < 3; ++i) ExpectClose(results[i], results[i + 3]);
}

TEST(TorchOp, HigherDerivativesEqualAtens) {
  const Tensor logits = Logits({6, 9});
  const Tensor target = torch::randint(0, 9, {6}, torch::kLong);
  const Tensor v = torch::randn({6, 9}, torch::kFloat64);
  std::vector<Tensor> results;
  for (bool ours : {true, false}) {
    Tensor x = logits.clone().requires_grad_();
    Tensor loss = ours ? xent::torch::cross_entropy(x, target, c10::nullopt, -100, "mean", 0.1)
                       : at::cross_entropy_loss(x, target, c10::nullopt, at::Reduction::Mean, -100, 0.1);
    Tensor g = torch::autograd::grad({loss}, {x}, {}, true, true)[0];
    Tensor hv = torch::autograd::grad({(g * v).sum()}, {x})[0];
    results.insert(results.end(), {g.detach(), hv});
  }
  ExpectClose(results[0], results[2]);
  ExpectClose(results[1], results[3]);
}

TEST(TorchOp, EveryDtype) {
  for (auto dtype : {torch::kFloat32, torch::kFloat16, torch::kBFloat16}) {
    const Tensor logits = Logits({32, 100}, dtype);
    const Tensor target = torch::randint(0, 100, {32}, torch::kLong);
    auto [got, got_grad] = LossAndGradient(logits, [&](const Tensor& x) { return xent::torch::cross_entropy(x, target); });
    auto [want, want_grad] =
        LossAndGradient(logits.to(torch::kFloat64), [&](const Tensor& x) { return at::cross_entropy_loss(x, target); });
    EXPECT_EQ(got.scalar_type(), dtype);
    EXPECT_EQ(got_grad.scalar_type(), dtype);
    const double tolerance = dtype == torch::kFloat32 ? 1e-5 : 1e-2;
    ExpectClose(got, want, tolerance, tolerance);
    ExpectClose(got_grad, want_grad, tolerance, tolerance);
  }
}

TEST(TorchOp, InplaceBackwardWritesTheGradientOverTheLogits) {
  const Tensor h = Logits({16, 8}), W = Logits({11, 8}, torch::kFloat64, 1);
  const Tensor target = torch::randint(0, 11, {16}, torch::kLong);
  std::vector<Tensor> grads;
  for (bool inplace : {false, true}) {
    Tensor weight = W.clone().requires_grad_();
    Tensor logits = torch::matmul(h, weight.t());  // a linear layer's output: its backward needs h, not the logits
    const auto version = logits._version();
    Tensor loss = xent::torch::cross_entropy(logits, target, c10::nullopt, -100, "mean", 0.0, 0.0, c10::nullopt,
                                             c10::nullopt, inplace);
    loss.backward();
    grads.push_back(weight.grad());
    if (inplace) {
      EXPECT_GT(logits._version(), version);
      // The logits' memory now holds their gradient: dlogits = W.grad's left factor (dW = dlogitsᵀ · h).
      ExpectClose(torch::matmul(logits.detach().t(), h), weight.grad());
    }
  }
  ExpectClose(grads[0], grads[1]);
}

TEST(TorchOp, InplaceBackwardRefusesWhatItWouldCorrupt) {
  const Tensor target = torch::randint(0, 5, {4}, torch::kLong);
  // A leaf: its values are the caller's.
  Tensor leaf = Logits({4, 5}).requires_grad_();
  EXPECT_THROW(xent::torch::cross_entropy(leaf, target, c10::nullopt, -100, "mean", 0, 0, c10::nullopt, c10::nullopt,
                                          true),
               c10::ValueError);
  // Logits saved by another node (pow saves its input) whose backward runs after the loss's (autograd runs later
  // nodes first): it sees the bumped version.
  Tensor x = Logits({4, 5}).requires_grad_();
  Tensor logits = x * 2;
  Tensor other = logits.pow(2).sum();
  Tensor loss = xent::torch::cross_entropy(logits, target, c10::nullopt, -100, "mean", 0, 0, c10::nullopt,
                                           c10::nullopt, true) +
                other;
  try {
    loss.backward();
    ADD_FAILURE() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("modified by an inplace operation"), std::string::npos) << e.what();
  }
}

// TorchScript compiled in C++, as torch::jit::load compiles a module saved by Python: `ops.NS.name` resolves to the
// registered operator NS::name (what the importer of saved code does).
struct OpsNamespaces : torch::jit::SugaredValue {
  std::string kind() const override { return "ops"; }
  std::shared_ptr<torch::jit::SugaredValue> attr(const torch::jit::SourceRange&, torch::jit::GraphFunction&,
                                                 const std::string& ns) override {
    return std::make_shared<torch::jit::BuiltinModule>(ns);
  }
};
struct OpsResolver : torch::jit::Resolver {
  std::shared_ptr<torch::jit::SugaredValue> resolveValue(const std::string& name, torch::jit::GraphFunction& f,
                                                         const torch::jit::SourceRange& loc) override {
    if (name == "ops") return std::make_shared<OpsNamespaces>();
    return torch::jit::nativeResolver()->resolveValue(name, f, loc);
  }
};

TEST(TorchOp, TorchScriptCompiledInCpp) {
  torch::jit::CompilationUnit unit;
  unit.define(c10::nullopt, R"(
def loss(x: Tensor, t: Tensor):
    return ops.xent.cross_entropy(x, t, None, -100, "sum", 0.1, 1e-3, 5.0)
)",
              std::make_shared<OpsResolver>(), nullptr);
  const Tensor logits = Logits({5, 7});
  const Tensor target = torch::randint(0, 7, {5}, torch::kLong);
  const Tensor got = unit.run_method("loss", logits, target).toTensor();
  ExpectClose(got, xent::torch::cross_entropy(logits, target, c10::nullopt, -100, "sum", 0.1, 1e-3, 5.0));
}

TEST(TorchOp, LinearCrossEntropyEqualsLinearThenCrossEntropy) {
  const Tensor input = Logits({12, 8}), W = Logits({10, 8}, torch::kFloat64, 1), b = Logits({10}, torch::kFloat64, 2);
  Tensor target = torch::randint(0, 10, {12}, torch::kLong);
  target[0] = -100;
  for (const char* reduction : {"mean", "none"}) {
    SCOPED_TRACE(reduction);
    std::vector<Tensor> results;
    for (bool ours : {true, false}) {
      Tensor h = input.clone().requires_grad_(), w = W.clone().requires_grad_(), bias = b.clone().requires_grad_();
      Tensor loss = ours ? xent::torch::linear_cross_entropy(h, w, target, bias, c10::nullopt, -100, reduction, 0.1)
                         : at::cross_entropy_loss(at::linear(h, w, bias), target, c10::nullopt,
                                                  std::string(reduction) == "mean" ? at::Reduction::Mean
                                                                                   : at::Reduction::None,
                                                  -100, 0.1);
      (loss * 3).sum().backward();  // an upstream gradient other than 1
      results.insert(results.end(), {loss.detach(), h.grad(), w.grad(), bias.grad()});
    }
    for (int i = 0; i < 4; ++i) ExpectClose(results[i], results[i + 4], 1e-10, 1e-12);
  }
}

TEST(TorchOp, ErrorsNameTheProblem) {
  const Tensor logits = Logits({4, 5});
  const auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { xent::torch::cross_entropy(logits, torch::full({4}, 5L)); }).find("outside"),
            std::string::npos);
  EXPECT_NE(message([&] { xent::torch::cross_entropy(logits, torch::zeros({4}, torch::kLong), c10::nullopt, -100,
                                                     "avg"); })
                .find("reduction must be"),
            std::string::npos);
  EXPECT_NE(message([&] { xent::torch::cross_entropy(logits.to(torch::kInt), torch::zeros({4}, torch::kLong)); })
                .find("dtype"),
            std::string::npos);
  EXPECT_THROW(xent::torch::cross_entropy(logits, torch::zeros({3}, torch::kLong)), c10::ValueError);
}

}  // namespace

namespace {

// TensorFlow's two ops against ATen expressions of their definitions, with broadcasting and another class axis.
TEST(TorchOp, TensorFlowOpsAndTheirGradients) {
  const Tensor logits = Logits({4, 6, 5});
  const Tensor labels = torch::rand({6, 1}, torch::kFloat64);  // broadcast over rows and along the last axis
  const Tensor v = torch::randn({4, 5}, torch::kFloat64);
  std::vector<Tensor> results;
  for (bool ours : {true, false}) {
    Tensor x = logits.clone().requires_grad_(), y = labels.clone().requires_grad_();
    Tensor loss = ours ? xent::torch::softmax_cross_entropy_with_logits(y, x, 1)
                       : -(y * at::log_softmax(x, 1)).sum(1);
    auto g = torch::autograd::grad({loss}, {x, y}, {v}, true, true);
    Tensor hv = torch::autograd::grad({(g[0] * g[0]).sum() + g[1].sum()}, {x})[0];
    results.insert(results.end(), {loss.detach(), g[0].detach(), g[1].detach(), hv});
  }
  for (int i = 0; i < 4; ++i) ExpectClose(results[i], results[i + 4]);

  const Tensor indices = torch::randint(0, 6, {4, 5}, torch::kLong);
  auto [got, got_grad] = LossAndGradient(
      logits, [&](const Tensor& x) { return xent::torch::sparse_softmax_cross_entropy_with_logits(indices, x, 1); });
  auto [want, want_grad] = LossAndGradient(
      logits, [&](const Tensor& x) { return at::cross_entropy_loss(x, indices, c10::nullopt, at::Reduction::None); });
  ExpectClose(got, want);
  ExpectClose(got_grad, want_grad);
  EXPECT_THROW(xent::torch::sparse_softmax_cross_entropy_with_logits(torch::full({4, 5}, 6L), logits, 1),
               c10::ValueError);
}

}  // namespace
