// broadcast_gradient.h — gradients of broadcast inputs: the kernel writes the full broadcast shape into a
// temporary (in the compute type, so nothing is rounded twice), then it is summed over the broadcast dimensions
// in double (compensated: error independent of the number of terms) and rounded once into the caller's tensor.
#pragma once

#include <memory>

#include "src/plan.h"

namespace xent::internal {

class BroadcastGradient {
 public:
  // A full-shape temporary (row-major over the plan's broadcast shape, as the plan's layout expects) for the
  // gradient that ends up in `output`. Throws std::bad_alloc.
  BroadcastGradient(const Plan& plan, const xent_tensor* output);
  void* data() const;
  // Sums the temporary into the output.
  void reduce() const;

 private:
  const Plan& plan_;
  const xent_tensor* output_;
  std::unique_ptr<float[]> float_temp_;
  std::unique_ptr<double[]> double_temp_;
};

}  // namespace xent::internal
