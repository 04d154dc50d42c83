"""out=: the gradient functions write into the caller's arrays (views included, or over the inputs on request)."""
import numpy as np
import pytest

import xent


def dense_inputs(shape, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(shape).astype(dtype), (rng.normal(size=shape) * 4).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("C", [3, 10, 100, 1000])
def test_dense_out_matches_new_arrays(dtype, C):
    labels, logits = dense_inputs((37, C), dtype)
    expected = xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits)
    out = tuple(np.full_like(e, np.nan) for e in expected)
    result = xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits, out=out)
    assert all(r is o for r, o in zip(result, out))
    for r, e in zip(result, expected):
        np.testing.assert_array_equal(r, e)


def test_some_outputs_given_others_new():
    labels, logits = dense_inputs((8, 5))
    expected = xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits)
    grad_logits = np.empty_like(logits)
    loss, gx, gy = xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits,
                                                               out=(None, grad_logits, None))
    assert gx is grad_logits and loss is not None and gy is not None
    for r, e in zip((loss, gx, gy), expected):
        np.testing.assert_array_equal(r, e)


@pytest.mark.parametrize("layout", ["every other column", "rows reversed", "column-major"])
def test_strided_out_is_written_in_place(layout):
    labels, logits = dense_inputs((6, 9))
    _, expected, _ = xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits)
    backing = np.full((6, 18), 7.0, np.float32)
    out = {"every other column": backing[:, ::2], "rows reversed": backing[::-1, :9],
           "column-major": np.asfortranarray(backing[:, :9])}[layout]
    xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits, out=(None, out, None))
    np.testing.assert_array_equal(out, expected)
    if layout == "every other column":  # the elements between the view's are untouched
        np.testing.assert_array_equal(backing[:, 1::2], 7.0)


@pytest.mark.parametrize("C", [3, 10, 100, 1000])
def test_gradients_over_their_own_inputs(C):
    labels, logits = dense_inputs((33, C))
    expected = xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits)
    x, y = logits.copy(), labels.copy()
    loss, gx, gy = xent.softmax_cross_entropy_with_logits_grad(labels=y, logits=x, out=(None, x, y))
    assert gx is x and gy is y
    for r, e in zip((loss, gx, gy), expected):
        np.testing.assert_allclose(r, e, rtol=1e-6, atol=1e-7)


def test_broadcast_labels_gradient_is_summed_into_out():
    labels, logits = dense_inputs((1, 7))[0], dense_inputs((5, 7), seed=1)[1]
    expected = xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits)
    out = (np.empty(5, np.float32), np.empty((5, 7), np.float32), np.empty((1, 7), np.float32))
    xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits, out=out)
    for r, e in zip(out, expected):
        np.testing.assert_array_equal(r, e)


@pytest.mark.parametrize("C", [10, 1000])
def test_sparse_out_and_in_place(C):
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(21, C)) * 4).astype(np.float32)
    labels = rng.integers(0, C, size=21)
    expected = xent.sparse_softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits)
    out = (np.empty(21, np.float32), np.empty((21, C), np.float32))
    result = xent.sparse_softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits, out=out)
    assert result[0] is out[0] and result[1] is out[1]
    np.testing.assert_array_equal(out[0], expected[0])
    np.testing.assert_array_equal(out[1], expected[1])
    x = logits.copy()
    loss, gx = xent.sparse_softmax_cross_entropy_with_logits_grad(labels=labels, logits=x, out=(None, x))
    assert gx is x
    np.testing.assert_allclose(loss, expected[0], rtol=1e-6)
    np.testing.assert_allclose(gx, expected[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_cross_entropy_grad_out(reduction):
    rng = np.random.default_rng(4)
    logits = (rng.normal(size=(12, 6)) * 2).astype(np.float32)
    target = rng.integers(0, 6, size=12)
    kw = dict(reduction=reduction, label_smoothing=0.1, z_loss=1e-3)
    expected = xent.cross_entropy_grad(logits, target, **kw)
    out = (np.empty(expected[0].shape, np.float32), np.empty_like(logits))
    result = xent.cross_entropy_grad(logits, target, out=out, **kw)
    assert result[0] is out[0] and result[1] is out[1]
    np.testing.assert_array_equal(out[0], expected[0])
    np.testing.assert_array_equal(out[1], expected[1])


def test_out_errors_name_the_problem_and_write_nothing():
    labels, logits = dense_inputs((4, 5))
    loss = np.full(4, 7.0, np.float32)

    def call(out):
        return xent.softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits, out=out)

    with pytest.raises(ValueError, match="grad_logits"):
        call((loss, np.empty((4, 6), np.float32), None))  # wrong shape
    with pytest.raises(TypeError, match="grad_logits"):
        call((loss, np.empty((4, 5), np.float64), None))  # wrong dtype
    read_only = np.empty((4, 5), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="grad_logits .out=. is read-only"):
        call((loss, read_only, None))
    odd = np.lib.stride_tricks.as_strided(np.zeros(100, np.float32), (4, 5), (21, 4))  # rows 21 bytes apart
    with pytest.raises(ValueError, match="not whole elements"):
        call((loss, odd, None))
    with pytest.raises(ValueError, match="grad_logits"):
        call((loss, labels, None))  # over an input that is not its own
    shared = np.empty((4, 5), np.float32)
    with pytest.raises(ValueError, match="grad_labels"):
        call((loss, shared, shared))  # two outputs in one array
    with pytest.raises(TypeError, match="tuple of 3"):
        call((loss, None))
    with pytest.raises(TypeError, match="numpy array"):
        call(([0.0] * 4, None, None))
    np.testing.assert_array_equal(loss, 7.0)  # checked before anything is written
