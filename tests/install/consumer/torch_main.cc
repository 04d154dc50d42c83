// The seed example's second row through an installed xent's PyTorch operator, from C++ (libtorch, no Python):
// probabilities [0, 0.8, 0.2] against logits [0, 5, 1], with its gradient by libtorch's autograd.
#include <torch/torch.h>

#include <cstdio>

#include "xent/xent_torch.h"

int main() {
  const torch::Tensor logits = torch::tensor({{0.f, 5.f, 1.f}}).requires_grad_();
  const torch::Tensor labels = torch::tensor({{0.f, 0.8f, 0.2f}});
  const torch::Tensor loss = xent::torch::cross_entropy(logits, labels);
  loss.backward();
  std::printf("[%.8f] %s\n", loss.item<float>(), logits.grad().sum().abs().item<float>() < 1e-6 ? "ok" : "bad");
}
