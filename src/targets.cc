#include "src/targets.h"

#include <vector>

#include "src/scalar.h"

namespace xent::internal {

xent_status scan_targets(const Layout& l, xent_dtype dtype, double* denominator, std::string* error) {
  if (!l.sparse) {
    *denominator = static_cast<double>(l.rows);
    return XENT_OK;
  }
  const Options& o = l.options;
  double total = 0;
  std::vector<int64_t> index(l.batch_rank, 0);
  int64_t offset = 0;
  for (int64_t row = 0; row < l.rows; ++row) {
    const int64_t t = load_index(l.data[kLabels], l.label_dtype, offset);
    if (!(o.has_ignore && t == o.ignore_index)) {
      if (t < 0 || t >= l.classes) {
        *error = "Received a label value of " + std::to_string(t) + " which is outside the valid range of [0, " +
                 std::to_string(l.classes) + ")" + (o.has_ignore ? " and is not ignore_index (" +
                 std::to_string(o.ignore_index) + ")" : std::string());
        return XENT_INVALID_ARGUMENT;
      }
      total += o.weight ? load_as_double(o.weight, dtype, t * o.weight_stride) : 1.0;
    }
    for (int d = l.batch_rank - 1; d >= 0; --d) {  // next row
      offset += l.batch_strides[kLabels][d];
      if (++index[d] < l.batch_shape[d]) break;
      offset -= l.batch_strides[kLabels][d] * index[d];
      index[d] = 0;
    }
  }
  *denominator = total;
  return XENT_OK;
}

}  // namespace xent::internal
