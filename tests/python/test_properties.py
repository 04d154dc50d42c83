"""Property tests of the Python layer (Hypothesis): xent.cross_entropy_grad and the torch drop-in on arrays of every
dtype and awkward layouts (negative strides, zero strides from broadcast views, transposes, any class axis), class
indices or probabilities, every option and reduction, against a float64 reference written from the definitions in
include/xent/xent.h."""
import numpy as np
import torch
from hypothesis import given, settings, strategies as st

import xent
import xent.torch

TOLERANCE = {np.float16: 2e-2, np.float32: 2e-5, np.float64: 1e-11}


def reference(logits, target, axis, weight, ignore_index, reduction, eps, z, cap):
    """(loss, grad_logits) in float64; logits and probabilities with the class axis at `axis`."""
    x = np.moveaxis(np.asarray(logits, np.float64), axis, -1)
    C = x.shape[-1]
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    xp = cap * np.tanh(x / cap) if cap else x
    m = xp.max(-1, keepdims=True)
    lse = m + np.log(np.exp(xp - m).sum(-1, keepdims=True))
    if np.issubdtype(np.asarray(target).dtype, np.integer):
        t = np.asarray(target)
        keep = t != ignore_index
        safe = np.where(keep, t, 0)
        a = (1 - eps) * w[safe][..., None] * (np.arange(C) == safe[..., None]) + eps / C * w
        a = a * keep[..., None]
        denominator = (w[safe] * keep).sum()
    else:
        a = w * ((1 - eps) * np.moveaxis(np.asarray(target, np.float64), axis, -1) + eps / C)
        keep = np.ones(x.shape[:-1], bool)
        denominator = keep.size
    loss = (a * (lse - xp)).sum(-1) + z * lse[..., 0] ** 2 * keep
    scale = 1.0 if reduction != "mean" else (1 / denominator if denominator else 0.0)
    grad = scale * ((a.sum(-1, keepdims=True) + 2 * z * lse * keep[..., None]) * np.exp(xp - lse) - a)
    if cap:
        grad = grad * (1 - (xp / cap) ** 2)
    if reduction == "sum":
        loss = loss.sum()
    elif reduction == "mean":
        loss = loss.sum() * scale
    return loss, np.moveaxis(grad, -1, axis)


@st.composite
def layouts(draw, shape, dtype):
    """An array of `shape` and dtype whose memory layout is drawn: contiguous, reversed along some dimensions,
    transposed, a strided slice of a larger array, or a broadcast view (stride 0) of a smaller one."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["contiguous", "reversed", "transposed", "sliced", "broadcast"]))
    if kind == "broadcast":
        small = tuple(1 if draw(st.booleans()) else n for n in shape)
        return np.broadcast_to((rng.standard_normal(small) * 3).astype(dtype), shape)
    if kind == "sliced":
        return (rng.standard_normal(tuple(2 * n for n in shape)) * 3).astype(dtype)[tuple(slice(None, None, 2) for _ in shape)]
    a = (rng.standard_normal(shape) * 3).astype(dtype)
    if kind == "reversed":
        return a[tuple(slice(None, None, -1) if draw(st.booleans()) else slice(None) for _ in shape)]
    if kind == "transposed" and len(shape) > 1:
        return np.ascontiguousarray(a.T).T
    return a


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    C = shape[axis]
    logits = draw(layouts(shape, dtype))
    indices = draw(st.booleans())
    rest = tuple(n for d, n in enumerate(shape) if d != axis % len(shape))
    if indices:
        target = np.asarray(draw(st.lists(st.integers(0, C - 1) | st.just(-100), min_size=int(np.prod(rest)),
                                          max_size=int(np.prod(rest)))), np.int64).reshape(rest)
    else:
        target = np.abs(draw(layouts(shape, dtype)))
    weight = (np.abs(draw(layouts((C,), dtype))) + 0.1).astype(dtype) if draw(st.booleans()) else None
    options = dict(weight=weight, ignore_index=-100, reduction=draw(st.sampled_from(["none", "sum", "mean"])),
                   label_smoothing=draw(st.sampled_from([0.0, 0.1, 0.5])), z_loss=draw(st.sampled_from([0.0, 1e-3])),
                   softcap=draw(st.sampled_from([None, 2.0, 30.0])))
    return logits, target, axis, options


def check(loss, grad, logits, target, axis, options):
    want_loss, want_grad = reference(logits, target, axis, options["weight"], options["ignore_index"],
                                     options["reduction"], options["label_smoothing"], options["z_loss"],
                                     options["softcap"] or 0.0)
    tol = TOLERANCE[np.dtype(logits.dtype).type]
    scale = 1 + np.abs(want_loss).max(initial=0)
    np.testing.assert_allclose(np.asarray(loss, np.float64), want_loss, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(np.asarray(grad, np.float64), want_grad, rtol=tol, atol=tol)


@settings(max_examples=300, deadline=None)
@given(problems())
def test_numpy_layer_matches_the_float64_reference(problem):
    logits, target, axis, options = problem
    before = (logits.copy(), target.copy())
    loss, grad = xent.cross_entropy_grad(logits, target, axis=axis, **options)
    check(loss, grad, logits, target, axis, options)
    assert np.array_equal(logits, before[0]) and np.array_equal(target, before[1]), "an input was modified"


@settings(max_examples=150, deadline=None)
@given(problems())
def test_torch_drop_in_matches_the_float64_reference(problem):
    logits, target, axis, options = problem
    x = torch.from_numpy(np.array(logits)).requires_grad_()  # torch: no negative strides; a copy keeps the values
    t = torch.from_numpy(np.array(target))
    w = None if options["weight"] is None else torch.from_numpy(options["weight"])
    loss = xent.torch.cross_entropy(x, t, axis=axis, **dict(options, weight=w))
    loss.backward(torch.ones_like(loss))
    check(loss.detach().numpy(), x.grad.numpy(), logits, target, axis, options)
