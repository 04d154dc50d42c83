"""The Python package: TensorFlow's signatures and conversions, errors, finite differences, PyTorch cross-checks."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import xent

SEED_LABELS = [[1, 0, 0], [0, 0.8, 0.2]]
SEED_LOGITS = [[4, 2, 1], [0, 5, 1]]


def reference(labels, logits, axis=-1):
    """float64 numpy reference, relative to the row max; label 0 on a -inf logit contributes 0."""
    labels, logits = np.broadcast_arrays(np.asarray(labels, np.float64), np.asarray(logits, np.float64))
    m = np.max(logits, axis=axis, keepdims=True)
    m = np.where(np.isneginf(m), 0.0, m)
    shifted = logits - m
    log_sum = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    with np.errstate(invalid="ignore"):
        terms = np.where(labels == 0, 0.0, labels * (log_sum - shifted))
    return np.sum(terms, axis=axis)


# ---- TensorFlow's seed example, signatures and conversions

def test_seed_example():
    loss = xent.softmax_cross_entropy_with_logits(labels=SEED_LABELS, logits=SEED_LOGITS)
    assert loss.dtype == np.float32
    np.testing.assert_array_equal(loss, np.array([0.16984604, 0.82474494], np.float32))


def test_keyword_only():
    with pytest.raises(TypeError):
        xent.softmax_cross_entropy_with_logits(SEED_LABELS, SEED_LOGITS)
    with pytest.raises(TypeError):
        xent.softmax_cross_entropy_with_logits_grad(SEED_LABELS, SEED_LOGITS)


def test_name_is_accepted():
    xent.softmax_cross_entropy_with_logits(labels=SEED_LABELS, logits=SEED_LOGITS, name="loss")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_lists_take_the_other_arguments_dtype(dtype):
    loss = xent.softmax_cross_entropy_with_logits(labels=SEED_LABELS, logits=np.array(SEED_LOGITS, dtype))
    assert loss.dtype == dtype
    loss = xent.softmax_cross_entropy_with_logits(labels=np.array(SEED_LABELS, dtype), logits=SEED_LOGITS)
    assert loss.dtype == dtype
    # atol: log(sum) near sum = 1 turns the float64 rounding of the sum (1 + e^-2 + e^-3 here, up to 1 ulp of 1)
    # into an absolute error; relative to a loss of 0.17 that is 1.0e-15 on AVX2 (Zen 3), more than 2 eps. It is
    # below every float32/float16 tolerance here, so only float64 sees it.
    np.testing.assert_allclose(loss, reference(SEED_LABELS, SEED_LOGITS), rtol=2 * np.finfo(dtype).eps,
                               atol=2 * np.finfo(np.float64).eps)


def test_different_dtypes_name_the_cast():
    with pytest.raises(TypeError, match="must have the same dtype.*astype"):
        xent.softmax_cross_entropy_with_logits(labels=np.array(SEED_LABELS), logits=np.float32(SEED_LOGITS))


def test_non_float_dtypes():
    with pytest.raises(TypeError, match="float16, float32 or float64"):
        xent.softmax_cross_entropy_with_logits(labels=np.array(SEED_LABELS), logits=np.array(SEED_LOGITS))
    with pytest.raises(TypeError, match="axis must be an int"):
        xent.softmax_cross_entropy_with_logits(labels=SEED_LABELS, logits=SEED_LOGITS, axis=1.0)
    with pytest.raises(TypeError, match="grad_loss must have logits' dtype"):
        xent.softmax_cross_entropy_with_logits_grad(labels=SEED_LABELS, logits=SEED_LOGITS,
                                                    grad_loss=np.ones(2, np.float64))


@pytest.mark.parametrize("labels, logits, kwargs, message", [
    ([[1.0] * 4] * 3, [[1.0] * 4] * 2, {}, r"must be broadcastable: logits_size=\[2,4\] labels_size=\[3,4\]"),
    (1.0, 2.0, {}, "rank >= 1"),
    (SEED_LABELS, SEED_LOGITS, {"axis": 2}, r"axis 2 is out of range.*\[-2, 2\)"),
    (SEED_LABELS, SEED_LOGITS, {"axis": -3}, "out of range"),
    (np.zeros((3, 0), np.float32), np.zeros((3, 0), np.float32), {}, "at least one class"),
])
def test_value_errors(labels, logits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits, **kwargs)


def test_grad_loss_shape_error():
    with pytest.raises(ValueError, match=r"grad_loss must have shape \[2\]"):
        xent.softmax_cross_entropy_with_logits_grad(labels=SEED_LABELS, logits=SEED_LOGITS, grad_loss=[1.0, 2.0, 3.0])


def test_empty_batch():
    loss = xent.softmax_cross_entropy_with_logits(labels=np.zeros((0, 5)), logits=np.zeros((0, 5)))
    assert loss.shape == (0,) and loss.dtype == np.float64


# ---- Numerics the issue promises

def test_masked_logit_is_zero_not_nan():
    loss, gx, gy = xent.softmax_cross_entropy_with_logits_grad(labels=[[1.0, 0.0]], logits=[[0.0, -np.inf]])
    assert loss[0] == 0 and np.all(gx == 0) and np.all(np.isfinite(gy))


def test_label_mass_on_masked_logit_is_inf():
    loss = xent.softmax_cross_entropy_with_logits(labels=[[0.5, 0.5]], logits=[[0.0, -np.inf]])
    assert loss[0] == np.inf


def test_huge_logits():
    loss = xent.softmax_cross_entropy_with_logits(labels=[[0.0, 1.0], [1.0, 0.0]], logits=[[1e30, -1e30], [3e38, 3e38]])
    np.testing.assert_allclose(loss, [2e30, np.log(2)], rtol=1e-6)


def test_nan_stays_in_its_row():
    loss = xent.softmax_cross_entropy_with_logits(labels=np.eye(3), logits=[[0, np.nan, 1], [0, 1, 2], [3, 2, 1]])
    assert np.isnan(loss[0]) and np.all(np.isfinite(loss[1:]))


def test_single_class_gradient_is_exact():
    _, gx, _ = xent.softmax_cross_entropy_with_logits_grad(labels=[[-1.0], [0.0], [1.0], [1.0]],
                                                           logits=[[0.5], [-2.0], [3.0], [7.0]])
    np.testing.assert_array_equal(gx, np.zeros((4, 1), np.float32))


def test_float16_long_row():
    loss = xent.softmax_cross_entropy_with_logits(labels=np.eye(1, 100000, dtype=np.float16),
                                                  logits=np.zeros((1, 100000), np.float16))
    assert loss.dtype == np.float16 and loss[0] == np.float16(np.log(100000))


def test_inputs_are_not_modified():
    rng = np.random.default_rng(0)
    labels, logits = rng.random((5, 7)), rng.normal(size=(5, 7))
    labels_copy, logits_copy = labels.copy(), logits.copy()
    xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits)
    np.testing.assert_array_equal(labels, labels_copy)
    np.testing.assert_array_equal(logits, logits_copy)


# ---- Layouts, axes and broadcasting against the numpy reference

@pytest.mark.parametrize("view", [
    lambda a: a, lambda a: a.T.copy().T, lambda a: a[::-1, ::-2], lambda a: a[:, 1::3],
    lambda a: np.asfortranarray(a), lambda a: a[::2],
])
def test_strided_views_are_read_in_place(view):
    rng = np.random.default_rng(1)
    labels, logits = view(rng.random((6, 33))), view(rng.normal(size=(6, 33)) * 5)
    loss = xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    np.testing.assert_allclose(loss, reference(labels, logits), rtol=1e-13)


def test_misaligned_strides_are_copied():
    raw = np.zeros(8 * 12 + 1, np.uint8)[1:].view(np.float64).reshape(3, 4)  # data at an odd address
    raw[:] = np.arange(12).reshape(3, 4)
    loss = xent.softmax_cross_entropy_with_logits(labels=np.ones((3, 4)), logits=raw)
    np.testing.assert_allclose(loss, reference(np.ones((3, 4)), raw), rtol=1e-13)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_any_axis(axis):
    rng = np.random.default_rng(2)
    labels, logits = rng.random((4, 5, 6)), rng.normal(size=(4, 5, 6))
    loss = xent.softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=axis)
    np.testing.assert_allclose(loss, reference(labels, logits, axis), rtol=1e-13)


@pytest.mark.parametrize("labels_shape, logits_shape", [
    ((3, 1), (3, 4)), ((1, 4), (2, 4)), ((4,), (3, 4)), ((2, 1, 4), (3, 4)), ((3, 4), (3, 1)),
])
def test_broadcasting_and_summed_gradients(labels_shape, logits_shape):
    rng = np.random.default_rng(3)
    labels, logits = rng.random(labels_shape), rng.normal(size=logits_shape)
    g = rng.normal(size=np.broadcast_shapes(labels_shape, logits_shape)[:-1])
    loss, gx, gy = xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits, grad_loss=g)
    np.testing.assert_allclose(loss, reference(labels, logits), rtol=1e-13)
    assert gx.shape == logits.shape and gy.shape == labels.shape
    check_gradients_by_finite_differences(labels, logits, -1, g, gx, gy)


# ---- Finite differences in float64

def check_gradients_by_finite_differences(labels, logits, axis, g, gx, gy, h=1e-6):
    def objective(y, x):
        return np.sum(g * reference(y, x, axis))
    for array, grad in ((logits, gx), (labels, gy)):
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + h
            up = objective(labels, logits)
            array[index] = saved - h
            down = objective(labels, logits)
            array[index] = saved
            numeric[index] = (up - down) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), data=st.data())
def test_gradients_match_finite_differences(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    labels = rng.random(shape) * 2 - 0.5  # unnormalised and signed: the gradient is exact anyway
    logits = rng.normal(size=shape) * 3
    g = rng.normal(size=reference(labels, logits, axis).shape)
    loss, gx, gy = xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits, axis=axis, grad_loss=g)
    np.testing.assert_allclose(loss, reference(labels, logits, axis), rtol=1e-12, atol=1e-14)
    check_gradients_by_finite_differences(labels, logits, axis, g, gx, gy)


# ---- PyTorch: F.cross_entropy with probability targets, and autograd for both gradients

@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("shape", [(8, 10), (3, 1000), (4, 7, 5)])
def test_matches_pytorch(dtype, rtol, shape):
    rng = np.random.default_rng(4)
    logits = (rng.normal(size=shape) * 4).astype(dtype)
    labels = rng.random(shape).astype(dtype)
    labels /= labels.sum(axis=1, keepdims=True)  # torch's class axis is 1
    g = rng.normal(size=shape[:1] + shape[2:]).astype(dtype)

    x = torch.tensor(logits, requires_grad=True)
    y = torch.tensor(labels, requires_grad=True)
    expected = F.cross_entropy(x, y, reduction="none")
    expected.backward(torch.tensor(g))

    loss, gx, gy = xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits, axis=1, grad_loss=g)
    np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(gx, x.grad.numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(gy, y.grad.numpy(), rtol=rtol, atol=rtol)


def test_unnormalised_labels_match_pytorch_autograd():
    """torch's autograd of -sum(y * log_softmax(x)) is the exact gradient; TensorFlow's softmax - y is not."""
    rng = np.random.default_rng(5)
    logits, labels = rng.normal(size=(6, 9)), rng.random((6, 9)) * 3
    x = torch.tensor(logits, requires_grad=True)
    (-(torch.tensor(labels) * torch.log_softmax(x, dim=1)).sum()).backward()
    _, gx, _ = xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits)
    np.testing.assert_allclose(gx, x.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_threads_setting():
    xent.set_num_threads(1)
    assert xent.get_num_threads() == 1
    loss = xent.softmax_cross_entropy_with_logits(labels=SEED_LABELS, logits=SEED_LOGITS)
    xent.set_num_threads(0)
    assert xent.get_num_threads() >= 1
    np.testing.assert_array_equal(loss, np.array([0.16984604, 0.82474494], np.float32))
