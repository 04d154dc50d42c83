// The seed example through an installed xent: the C++ header and the C API.
#include <cstdio>

#include "xent/xent.hpp"

int main() {
  const float logits[] = {4, 2, 1, 0, 5, 1};
  const float labels[] = {1, 0, 0, 0, 0.8f, 0.2f};
  float loss[2];
  xent::softmax_cross_entropy({labels, {2, 3}}, {logits, {2, 3}}, {loss, {2}});
  std::printf("[%.8f, %.8f]\n", loss[0], loss[1]);
}
