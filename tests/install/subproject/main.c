/* The seed example through the C API, from C. */
#include <stdio.h>

#include "xent/xent.h"

int main(void) {
  float logits[] = {4, 2, 1, 0, 5, 1}, labels[] = {1, 0, 0, 0, 0.8f, 0.2f}, loss[2];
  const int64_t shape[] = {2, 3};
  const xent_tensor x = xent_make_tensor(logits, XENT_FLOAT32, 2, shape, NULL);
  const xent_tensor y = xent_make_tensor(labels, XENT_FLOAT32, 2, shape, NULL);
  const xent_tensor l = xent_make_tensor(loss, XENT_FLOAT32, 1, shape, NULL);
  if (xent_softmax_cross_entropy(&y, &x, -1, &l) != XENT_OK) {
    fprintf(stderr, "%s\n", xent_last_error_message());
    return 1;
  }
  printf("[%.8f, %.8f]\n", loss[0], loss[1]);
  return 0;
}
