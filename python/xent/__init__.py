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
    "sparse_softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "linear_cross_entropy",
    "linear_cross_entropy_grad",
    "set_num_threads",
    "get_num_threads",
    "set_linear_chunk_bytes",
    "get_linear_chunk_bytes",
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
    if type(labels) is np.ndarray and type(logits) is np.ndarray and labels.dtype is logits.dtype and \
            logits.dtype.type in _FLOATS:
        return labels, logits, axis  # the common case, at a call's least cost (the binding checks axis)
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


def _out(out, names):
    """The caller's output arrays (out=: None, or a tuple with one entry per output, each None or a numpy array)."""
    if out is None:
        return (None,) * len(names)
    if not isinstance(out, (tuple, list)) or len(out) != len(names):
        raise TypeError(f"out must be None or a tuple of {len(names)} (" + ", ".join(names) + "), each None or an array")
    for a, name in zip(out, names):
        if a is not None and not isinstance(a, np.ndarray):
            raise TypeError(f"out: {name} must be None or a numpy array, received {type(a).__name__}")
    return tuple(out)


_OUT_DOC = """
    out: None, or a tuple with one entry per result, each None (a new array) or a writable numpy array of that
    result's shape and logits' dtype, written in place and returned (no new memory: a training loop reuses its
    gradient buffers, and a new 0.5 GB array costs its page faults on every call). grad_logits may be the logits
    array itself: the gradient is then written over the logits (opt-in, as llm.c's fused classifier does). Any
    other overlap with an input or another output raises ValueError, as do a wrong shape or dtype, a read-only
    array and strides that are not whole elements."""


def softmax_cross_entropy_with_logits_grad(*, labels, logits, axis=-1, grad_loss=None, out=None):
    """Loss and both gradients in one pass: returns (loss, grad_logits, grad_labels).

    grad_logits = g * (sum(labels) * softmax(logits) - labels)  (exact also when labels do not sum to 1)
    grad_labels = g * (logsumexp(logits) - logits)
    where g is `grad_loss` (the loss's shape; default ones). Each gradient has its input's shape, summed over the
    dimensions that input was broadcast along. grad_labels is 0 where a label is 0 on a -inf logit.
    With out=(loss, grad_logits, grad_labels), grad_labels may also be the labels array itself.
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
    out_loss, out_grad_logits, out_grad_labels = _out(out, ("loss", "grad_logits", "grad_labels"))
    return _xent.grad(labels, logits, axis, grad_loss, out_loss, out_grad_logits, out_grad_labels)


def set_num_threads(n):
    """Caps the threads xent uses; n <= 0 restores the default (all cores)."""
    _xent.set_num_threads(int(n))


def get_num_threads():
    """The threads xent's next call may use (1 in a process created by fork())."""
    return _xent.get_num_threads()


# ---- Class-index targets and the loss options

_INDICES = (np.int32, np.int64)


def _int_array(x, name):
    if type(x) is np.ndarray and x.dtype.type in _INDICES:
        return x
    a = np.asarray(x)
    if a.dtype == np.int32 or a.dtype == np.int64:
        return a
    if a.dtype.kind in "iu" and a.dtype != np.uint64:
        return a.astype(np.int64)  # other integer widths (and lists): the values are kept exactly
    raise TypeError(f"{name} must hold integer class indices (int32 or int64), received dtype {a.dtype}")


def _logits(logits):
    if type(logits) is np.ndarray and logits.dtype.type in _FLOATS:
        return logits
    if _is_array(logits):
        return _float_array(logits, "logits")
    return np.asarray(logits, dtype=np.float32)


def _like(value, logits, name, like="logits"):
    """An optional float argument in the dtype of `like` (logits): lists are converted, arrays must match."""
    if value is None:
        return None
    if _is_array(value):
        value = _float_array(value, name)
        if value.dtype != logits.dtype:
            raise TypeError(f"{name} must have {like}' dtype {logits.dtype}, received {value.dtype} "
                            f"(cast it with {name}.astype(np.{logits.dtype}))")
        return value
    return np.asarray(value, dtype=logits.dtype)


def sparse_softmax_cross_entropy_with_logits(*, labels, logits, name=None, axis=-1):
    """Softmax cross-entropy with integer class labels, as tf.nn.sparse_softmax_cross_entropy_with_logits.

    loss = logsumexp(logits) - logits[label] per row; labels (int32/int64) have logits' shape without the class axis
    (`axis`, an extension; default last). A label outside [0, C) raises ValueError naming the value and the range.
    -inf logits away from the label stay finite; a -inf logit at the label gives inf.
    """
    del name
    logits, labels = _logits(logits), _int_array(labels, "labels")
    return _xent.sparse(labels, logits, axis, None, False)[0]


def sparse_softmax_cross_entropy_with_logits_grad(*, labels, logits, axis=-1, grad_loss=None, out=None):
    """(loss, grad_logits) with grad_logits = grad_loss * (softmax(logits) - onehot(labels)).
    """
    logits, labels = _logits(logits), _int_array(labels, "labels")
    out_loss, out_grad_logits = _out(out, ("loss", "grad_logits"))
    return tuple(_xent.sparse(labels, logits, axis, _like(grad_loss, logits, "grad_loss"), True, out_loss,
                              out_grad_logits))


def _cross_entropy(logits, target, axis, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
                   grad_loss, gradients, out=(None, None)):
    logits = _logits(logits)
    if not (type(target) is np.ndarray and target.dtype.type in _INDICES):
        target_array = np.asarray(target)
        if target_array.dtype.kind in "iu":
            target = _int_array(target, "target")
        elif target_array.dtype.kind == "f":
            target = _like(target, logits, "target")
        else:
            raise TypeError(f"target must hold class indices (int) or probabilities (logits' dtype), received dtype "
                            f"{target_array.dtype}")
    # The options (reduction by name, ignore_index, softcap, axis) are checked by the binding.
    return _xent.cross_entropy(logits, target, axis, _like(weight, logits, "weight"), ignore_index, reduction,
                               label_smoothing, z_loss, softcap, _like(grad_loss, logits, "grad_loss"), gradients,
                               *out)


def cross_entropy(logits, target, *, axis=-1, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                  z_loss=0.0, softcap=None):
    """Cross-entropy with PyTorch's options plus z-loss and logit soft-capping, fused into one pass.

    target: class indices (int, logits' shape without `axis`) or probabilities (logits' shape). Per row, with
    x' = softcap*tanh(x/softcap) (if given), lse = logsumexp(x'), eps = label_smoothing and w = weight:
      loss = sum_j a_j (lse - x'_j) + z_loss * lse**2,
      a_j = (1-eps) w_t [j == t] + eps/C w_j   (indices)   or   w_j ((1-eps) y_j + eps/C)   (probabilities).
    reduction 'mean' divides by sum of w[t] over rows not equal to ignore_index (indices) or by the row count
    (probabilities); when nothing is left it returns 0 (PyTorch: nan). See include/xent/xent.h.
    """
    return _cross_entropy(logits, target, axis, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
                          None, False)[0]


def cross_entropy_grad(logits, target, *, axis=-1, weight=None, ignore_index=-100, reduction="mean",
                       label_smoothing=0.0, z_loss=0.0, softcap=None, grad_loss=None, out=None):
    """(loss, grad_logits) of cross_entropy in one pass; grad_loss has the loss's shape (default 1).
    """
    return tuple(_cross_entropy(logits, target, axis, weight, ignore_index, reduction, label_smoothing, z_loss,
                                softcap, grad_loss, True, _out(out, ("loss", "grad_logits"))))


# ---- The fused linear + cross-entropy

def _linear(input, linear_weight, target, linear_bias, weight, ignore_index, reduction, label_smoothing, z_loss,
            softcap, grad_loss, gradients, out=(None, None, None, None)):
    input = _logits(input)
    linear_weight = _like(linear_weight, input, "linear_weight", "input")
    target = _int_array(target, "target")
    # The options (reduction by name, ignore_index, softcap) are checked by the binding.
    return _xent.linear(input, linear_weight, target, _like(linear_bias, input, "linear_bias", "input"),
                        _like(weight, input, "weight", "input"), ignore_index, reduction, label_smoothing, z_loss,
                        softcap, _like(grad_loss, input, "grad_loss", "input"), gradients, *out)


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None, ignore_index=-100,
                         reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None):
    """The loss of cross_entropy(input @ linear_weight.T + linear_bias, target) without ever holding the logits.

    input [..., H] (float16, float32 or float64), linear_weight [V, H] (torch.nn.Linear's layout), linear_bias [V],
    target: class indices of input's shape without its last dimension. Options as cross_entropy's (weight [V],
    ignore_index, reduction, label_smoothing over the V classes, z_loss, softcap). Rows go in chunks whose logits fit
    the chunk budget (set_linear_chunk_bytes); see include/xent/xent.h.
    """
    return _linear(input, linear_weight, target, linear_bias, weight, ignore_index, reduction, label_smoothing, z_loss,
                   softcap, None, False)[0]


def linear_cross_entropy_grad(input, linear_weight, target, *, linear_bias=None, weight=None, ignore_index=-100,
                              reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None, grad_loss=None,
                              out=None):
    """(loss, grad_input, grad_linear_weight, grad_linear_bias) of linear_cross_entropy in one pass over the chunks;
    grad_linear_bias is None without a linear_bias. grad_loss has the loss's shape (target's for reduction 'none'),
    default 1; with 'none' each row's value multiplies that row's contribution to every gradient.

    out: None, or a tuple of four (loss, grad_input, grad_linear_weight, grad_linear_bias), each None (a new array)
    or a writable numpy array of that result's shape and input's dtype, written in place and returned. Overlap with
    an input or another output raises ValueError.
    """
    return tuple(_linear(input, linear_weight, target, linear_bias, weight, ignore_index, reduction, label_smoothing,
                         z_loss, softcap, grad_loss, True,
                         _out(out, ("loss", "grad_input", "grad_linear_weight", "grad_linear_bias"))))


def set_linear_chunk_bytes(n):
    """The fused linear + cross-entropy's working memory in bytes (n <= 0: the default, 64 MiB); see xent.h."""
    _xent.set_linear_chunk_bytes(int(n))


def get_linear_chunk_bytes():
    """The fused linear + cross-entropy's working memory, in bytes (see set_linear_chunk_bytes)."""
    return _xent.get_linear_chunk_bytes()


for _f in (softmax_cross_entropy_with_logits_grad, sparse_softmax_cross_entropy_with_logits_grad, cross_entropy_grad):
    _f.__doc__ += _OUT_DOC
del _f
