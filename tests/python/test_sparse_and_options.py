"""Class-index targets and the loss options in the numpy API: references, finite differences, errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import xent


def test_sparse_seed():
    loss = xent.sparse_softmax_cross_entropy_with_logits(labels=[0, 1], logits=[[0.0, -np.inf], [1.0, 2.0]])
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss, [0.0, np.log1p(np.exp(-1.0))], rtol=1e-6)


def test_sparse_label_on_masked_logit_is_inf():
    assert xent.sparse_softmax_cross_entropy_with_logits(labels=[1], logits=[[0.0, -np.inf]])[0] == np.inf


def test_sparse_higher_rank_and_scalar():
    logits = np.arange(16, dtype=np.float32).reshape(2, 2, 4) / 4
    labels = np.array([[3, 2], [0, 3]])
    loss = xent.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    expected = np.log(np.exp(logits).sum(-1)) - np.take_along_axis(logits, labels[..., None], -1)[..., 0]
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    scalar = xent.sparse_softmax_cross_entropy_with_logits(labels=2, logits=logits[0, 0])
    assert scalar.shape == () and np.isclose(scalar, np.log(np.exp(logits[0, 0]).sum()) - logits[0, 0, 2])


def test_sparse_out_of_range_names_value_and_range():
    with pytest.raises(ValueError, match=r"Received a label value of 7 which is outside the valid range of \[0, 5\)"):
        xent.sparse_softmax_cross_entropy_with_logits(labels=[7], logits=np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match="-1"):
        xent.sparse_softmax_cross_entropy_with_logits(labels=[-1], logits=np.zeros((1, 5), np.float32))


def test_sparse_type_errors():
    with pytest.raises(TypeError, match="integer class indices"):
        xent.sparse_softmax_cross_entropy_with_logits(labels=[0.0], logits=[[1.0, 2.0]])
    with pytest.raises(TypeError, match="float16, float32 or float64"):
        xent.sparse_softmax_cross_entropy_with_logits(labels=[0], logits=np.array([[1, 2]]))
    with pytest.raises(TypeError):
        xent.sparse_softmax_cross_entropy_with_logits([0], [[1.0, 2.0]])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_sparse_grad_matches_torch(axis):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 9)) * 3
    C = logits.shape[axis]
    labels = rng.integers(0, C, size=logits.shape[1 - axis % 2])
    g = rng.normal(size=labels.shape)
    loss, gx = xent.sparse_softmax_cross_entropy_with_logits_grad(labels=labels, logits=logits, axis=axis, grad_loss=g)
    x = torch.tensor(np.moveaxis(logits, axis, -1), requires_grad=True)
    expected = F.cross_entropy(x, torch.tensor(labels), reduction="none")
    expected.backward(torch.tensor(g))
    np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(gx, np.moveaxis(x.grad.numpy(), -1, axis), rtol=1e-12, atol=1e-15)


OPTIONS = [
    {},
    {"weight": "w"},
    {"label_smoothing": 0.1},
    {"ignore_index": 3},
    {"weight": "w", "label_smoothing": 0.2, "ignore_index": 3},
]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("targets", ["indices", "probabilities"])
def test_cross_entropy_matches_torch(options, reduction, targets):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(10, 7)) * 2
    if targets == "indices":
        target = rng.integers(0, 7, size=10)
    else:
        target = rng.random((10, 7))
        target /= target.sum(1, keepdims=True)
    kw = dict(options, reduction=reduction)
    if targets == "probabilities":
        kw.pop("ignore_index", None)  # applies to class indices only (torch refuses it for probabilities)
    if kw.get("weight") == "w":
        kw["weight"] = rng.random(7) + 0.5
    loss, gx = xent.cross_entropy_grad(logits, target, **kw)
    torch_kw = {k: (torch.tensor(v) if k == "weight" else v) for k, v in kw.items()}
    x = torch.tensor(logits, requires_grad=True)
    expected = F.cross_entropy(x, torch.tensor(target), **torch_kw)
    expected.backward(torch.ones_like(expected))
    np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(gx, x.grad.numpy(), rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(xent.cross_entropy(logits, target, **kw), loss, rtol=1e-15)


def finite_difference(f, x, h=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + h
        up = f(x)
        x[i] = saved - h
        down = f(x)
        x[i] = saved
        grad[i] = (up - down) / (2 * h)
    return grad


@pytest.mark.parametrize("targets", ["indices", "probabilities"])
@pytest.mark.parametrize("options", [
    {"z_loss": 1e-2}, {"softcap": 2.0}, {"z_loss": 1e-3, "softcap": 5.0, "label_smoothing": 0.1, "weight": True},
])
def test_z_loss_and_softcap_by_finite_differences(targets, options):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5, 6)) * 3
    target = rng.integers(0, 6, size=5) if targets == "indices" else rng.random((5, 6))
    kw = dict(options, reduction="sum")
    if kw.get("weight") is True:
        kw["weight"] = rng.random(6) + 0.5
    loss, gx = xent.cross_entropy_grad(logits, target, **kw)
    numeric = finite_difference(lambda x: xent.cross_entropy(x, target, **kw), logits)
    np.testing.assert_allclose(gx, numeric, rtol=1e-6, atol=1e-8)


def test_z_loss_and_softcap_values():
    rng = np.random.default_rng(3)
    logits, target = rng.normal(size=(4, 5)) * 4, rng.integers(0, 5, size=4)
    capped = 3.0 * np.tanh(logits / 3.0)
    lse = np.log(np.exp(capped).sum(1))
    expected = lse - capped[np.arange(4), target] + 1e-2 * lse ** 2
    got = xent.cross_entropy(logits, target, reduction="none", z_loss=1e-2, softcap=3.0)
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_all_rows_ignored_mean_is_zero():
    loss, gx = xent.cross_entropy_grad(np.ones((3, 4)), np.full(3, -100))
    assert loss == 0 and np.all(gx == 0)


@pytest.mark.parametrize("kw, error, message", [
    ({"reduction": "avg"}, ValueError, "reduction must be 'none', 'sum' or 'mean'"),
    ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must be in \[0, 1\]"),
    ({"z_loss": -1.0}, ValueError, "z_loss must be finite and >= 0"),
    ({"softcap": 0.0}, ValueError, "softcap must be > 0"),
    ({"weight": [1.0, 2.0]}, ValueError, r"weight must have shape \[4\]"),
    ({"weight": np.ones(4, np.float32)}, TypeError, "weight must have logits' dtype"),
])
def test_option_errors(kw, error, message):
    with pytest.raises(error, match=message):
        xent.cross_entropy(np.zeros((2, 4)), np.array([0, 1]), **kw)
