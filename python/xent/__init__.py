"""xent: softmax cross-entropy with exact gradients, TensorFlow's semantics, at memory speed.

    >>> import xent
    >>> xent.softmax_cross_entropy_with_logits(labels=[[1, 0, 0], [0, .8, .2]], logits=[[4, 2, 1], [0, 5, 1]])
    array([0.16984604, 0.82474494], dtype=float32)

Functions mirror TensorFlow's keyword-only signatures. The math, dtypes, error bound and the handling of -inf,
NaN and broadcasting are documented in include/xent/xent.h and docs/numerics.md.
"""
import numbers

import numpy as np

from . import _xent

__all__ = [
    "softmax_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits_grad",
    "set_num_threads",
    "get_num_threads",
]

_FLOATS = (np.float16, np.float32, np.float64)


def _is_array(x):
    return isinstance(x, (np.ndarray, np.generic)) or hasattr(x, "__array__")


def _float_array(x, name):
    a = np.asarray(x)
    if a.dtype.type not in _FLOATS:
        raise TypeError(f"{name} must be a float16, float32 or float64 array, received dtype {a.dtype}")
    return a


def _inputs(labels, logits, axis):
    """Arrays keep their dtype; lists and scalars become the other argument's dtype, or float32 (as TensorFlow)."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an int, received {type(axis).__name__}")
    labels_is_array, logits_is_array = _is_array(labels), _is_array(logits)
    if labels_is_array:
        labels = _float_array(labels, "labels")
    if logits_is_array:
        logits = _float_array(logits, "logits")
    if labels_is_array and not logits_is_array:
        logits = np.asarray(logits, dtype=labels.dtype)
    elif logits_is_array and not labels_is_array:
        labels = np.asarray(labels, dtype=logits.dtype)
    elif not labels_is_array and not logits_is_array:
        labels, logits = np.asarray(labels, dtype=np.float32), np.asarray(logits, dtype=np.float32)
    if labels.dtype != logits.dtype:
        raise TypeError(
            f"labels and logits must have the same dtype: labels is {labels.dtype}, logits is {logits.dtype} "
            f"(cast one, e.g. labels.astype(np.{logits.dtype}))")
    return labels, logits, int(axis)


def softmax_cross_entropy_with_logits(*, labels, logits, axis=-1, name=None):
    """Softmax cross-entropy between `labels` and `logits` along `axis`, as tf.nn.softmax_cross_entropy_with_logits.

    loss = sum_j labels_j * (logsumexp(logits) - logits_j), one value per row: the broadcast shape of labels and
    logits without the class axis, in logits' dtype (float16, float32 or float64; computed in float32 or float64,
    rounded once). labels and logits broadcast numpy-style, the class axis included. Any axis in [-rank, rank).
    A label 0 on a -inf logit contributes 0; label mass on a -inf logit gives +inf; NaN stays in its row.
    Raises ValueError for shapes, ranks and axis; TypeError for dtypes. `name` is accepted for TensorFlow
    compatibility and ignored.
    """
    del name
    labels, logits, axis = _inputs(labels, logits, axis)
    return _xent.forward(labels, logits, axis)


def softmax_cross_entropy_with_logits_grad(*, labels, logits, axis=-1, grad_loss=None):
    """Loss and both gradients in one pass: returns (loss, grad_logits, grad_labels).

    grad_logits = g * (sum(labels) * softmax(logits) - labels)  (exact also when labels do not sum to 1)
    grad_labels = g * (logsumexp(logits) - logits)
    where g is `grad_loss` (the loss's shape; default ones). Each gradient has its input's shape, summed over the
    dimensions that input was broadcast along. grad_labels is 0 where a label is 0 on a -inf logit.
    """
    labels, logits, axis = _inputs(labels, logits, axis)
    if grad_loss is not None:
        if _is_array(grad_loss):
            grad_loss = _float_array(grad_loss, "grad_loss")
            if grad_loss.dtype != logits.dtype:
                raise TypeError(f"grad_loss must have logits' dtype {logits.dtype}, received {grad_loss.dtype} "
                                f"(cast it with grad_loss.astype(np.{logits.dtype}))")
        else:
            grad_loss = np.asarray(grad_loss, dtype=logits.dtype)
    return _xent.grad(labels, logits, axis, grad_loss)


def set_num_threads(n):
    """Caps the threads xent uses; n <= 0 restores the default (all cores)."""
    _xent.set_num_threads(int(n))


def get_num_threads():
    return _xent.get_num_threads()
