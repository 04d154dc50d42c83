// broadcast_gradient.h — gradients of broadcast inputs: the kernel writes the full broadcast shape into a
// temporary (in the compute type, so nothing is rounded twice), then it is summed over the broadcast dimensions
// in double and rounded once into the caller's tensor.
#pragma once

#include <memory>

#include "src/plan.h"

namespace xent::internal {

class BroadcastGradient {
 public:
  // Points plan operand `op` at a new full-shape temporary. Throws std::bad_alloc.
  BroadcastGradient(Plan& plan, Operand op, const xent_tensor* output);
  // Sums the temporary into the output.
  void reduce() const;

 private:
  const Plan& plan_;
  const xent_tensor* output_;
  std::unique_ptr<float[]> float_temp_;
  std::unique_ptr<double[]> double_temp_;
};

}  // namespace xent::internal
