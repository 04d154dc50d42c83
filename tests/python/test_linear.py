"""The fused linear + cross-entropy from Python: xent.linear_cross_entropy(_grad) on numpy arrays against the
materialised composition (logits = input @ W.T + b through xent.cross_entropy_grad, in float64), and
xent.torch.linear_cross_entropy / LinearCrossEntropyLoss against PyTorch's F.linear + F.cross_entropy: every option
and reduction, gradients into input, weight and bias, gradcheck, chunk budgets, dtypes, strides, errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import xent
import xent.torch

OPTIONS = [
    dict(),
    dict(label_smoothing=0.1),
    dict(z_loss=1e-3),
    dict(softcap=5.0),
    dict(weight="w"),
    dict(weight="w", label_smoothing=0.1, z_loss=1e-3, softcap=5.0),
]


def problem(N=37, H=31, V=203, dtype=np.float64, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((N, H)).astype(dtype)
    W = (rng.standard_normal((V, H)) * 3 / np.sqrt(H)).astype(dtype)
    b = rng.standard_normal(V).astype(dtype) if bias else None
    t = rng.integers(0, V, N)
    t[::7] = -100
    w = (0.25 + (np.arange(V) % 7) * 0.125).astype(dtype)
    return h, W, b, t, w


def composition(h, W, b, t, grad_loss=None, **options):
    """Loss and gradients through materialised logits, in float64."""
    h64, W64 = h.astype(np.float64), W.astype(np.float64)
    logits = h64 @ W64.T + (0 if b is None else b.astype(np.float64))
    if options.get("weight") is not None:
        options["weight"] = options["weight"].astype(np.float64)
    if grad_loss is not None:
        grad_loss = np.asarray(grad_loss, dtype=np.float64)
    loss, dl = xent.cross_entropy_grad(logits, t, grad_loss=grad_loss, **options)
    return loss, dl @ W64, dl.T @ h64, None if b is None else dl.sum(0)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("bias", [False, True])
def test_numpy_matches_composition(reduction, opts, bias):
    h, W, b, t, w = problem(bias=bias)
    options = dict(opts, reduction=reduction)
    if options.get("weight") == "w":
        options["weight"] = w
    g = np.random.default_rng(1).uniform(-2, 2, t.shape) if reduction == "none" else 1.5
    want = composition(h, W, b, t, grad_loss=g, **dict(options))
    got = xent.linear_cross_entropy_grad(h, W, t, linear_bias=b, grad_loss=g, **options)
    for x, y in zip(got, want):
        if y is None:
            assert x is None
        else:
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)
    loss = xent.linear_cross_entropy(h, W, t, linear_bias=b, **options)
    np.testing.assert_allclose(loss, composition(h, W, b, t, **dict(options))[0], rtol=1e-10, atol=1e-12)


def test_float32_within_tolerance_and_chunks_do_not_matter():
    h, W, b, t, w = problem(N=300, H=64, V=1000, dtype=np.float32)
    want = composition(h, W, b, t, reduction="mean", label_smoothing=0.1)
    results = []
    for budget in (1000 * 4, 7 * 1000 * 4, 1 << 30):  # one row, seven rows (a ragged last chunk), all rows
        xent.set_linear_chunk_bytes(budget)
        assert xent.get_linear_chunk_bytes() == budget
        results.append(xent.linear_cross_entropy_grad(h, W, t, linear_bias=b, reduction="mean", label_smoothing=0.1))
    xent.set_linear_chunk_bytes(0)
    assert xent.get_linear_chunk_bytes() == 64 << 20
    for got in results:
        for x, y in zip(got, want):
            np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-6 * np.abs(y).max())


def test_leading_dimensions_strides_and_out():
    h, W, b, t, w = problem(N=24, H=9, V=50)
    h3, t3 = h.reshape(2, 3, 4, 9), t.reshape(2, 3, 4)
    want = composition(h, W, b, t, reduction="none")
    # Transposed weight, a strided input, a non-contiguous target.
    Wt = np.asfortranarray(W)
    h_strided = np.zeros((2, 3, 4, 18))[..., ::2]
    h_strided[...] = h3
    t_strided = np.zeros((2, 3, 8), dtype=np.int64)[..., ::2]
    t_strided[...] = t3
    out = (np.empty((2, 3, 4)), np.empty((2, 3, 4, 9)), np.empty((50, 9)), np.empty(50))
    got = xent.linear_cross_entropy_grad(h_strided, Wt, t_strided, linear_bias=b, reduction="none", out=out)
    assert all(g is o for g, o in zip(got, out))
    np.testing.assert_allclose(got[0].ravel(), want[0], rtol=1e-10)
    np.testing.assert_allclose(got[1].reshape(24, 9), want[1], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got[3], want[3], rtol=1e-10, atol=1e-14)


def test_errors_name_the_argument():
    h, W, b, t, w = problem(N=6, H=4, V=5)
    with pytest.raises(ValueError, match="linear_weight must have shape \\[V, H\\] with H = 4"):
        xent.linear_cross_entropy(h, W[:, :3], t)
    with pytest.raises(ValueError, match="linear_bias must have shape \\[5\\]"):
        xent.linear_cross_entropy(h, W, t, linear_bias=b[:4])
    with pytest.raises(ValueError, match="outside the valid range of \\[0, 5\\)"):
        xent.linear_cross_entropy(h, W, np.array([0, 1, 2, 3, 9, 0]))
    with pytest.raises(TypeError, match="linear_weight must have input. dtype float64"):
        xent.linear_cross_entropy(h, W.astype(np.float32), t)
    with pytest.raises(ValueError, match="reduction must be"):
        xent.linear_cross_entropy(h, W, t, reduction="avg")


# ---- PyTorch

def torch_problem(dtype=torch.float64, bias=True, N=37, H=31, V=203):
    h, W, b, t, w = problem(N=N, H=H, V=V, bias=bias)
    to = lambda a: None if a is None else torch.tensor(a, dtype=dtype)
    return to(h), to(W), to(b), torch.tensor(t), to(w)


def torch_reference(h, W, b, t, weight=None, reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None):
    """PyTorch's linear + cross-entropy, with z-loss and soft-capping written out."""
    logits = F.linear(h, W, b)
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    loss = F.cross_entropy(logits, t, weight=weight, reduction="none", label_smoothing=label_smoothing)
    if z_loss:
        keep = t != -100
        loss = loss + z_loss * torch.logsumexp(logits, -1) ** 2 * keep
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    keep = t != -100
    den = (weight[t.clamp(min=0)] * keep).sum() if weight is not None else keep.sum()
    return loss.sum() / den


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("opts", OPTIONS)
def test_torch_forward_and_backward_match_pytorch(reduction, opts):
    h, W, b, t, w = torch_problem()
    options = dict(opts, reduction=reduction)
    if options.get("weight") == "w":
        options["weight"] = w
    grads = []
    for f in (xent.torch.linear_cross_entropy, None):
        hh, WW, bb = (x.clone().requires_grad_() for x in (h, W, b))
        if f is None:
            loss = torch_reference(hh, WW, bb, t, **options)
        else:
            loss = f(hh, WW, t, linear_bias=bb, **options)
        g = torch.linspace(-1, 2, loss.numel(), dtype=loss.dtype).reshape(loss.shape) if reduction == "none" else \
            torch.tensor(1.7, dtype=loss.dtype)
        loss.backward(g)
        grads.append((loss.detach(), hh.grad, WW.grad, bb.grad))
    for x, y in zip(*grads):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_torch_gradcheck(reduction):
    h, W, b, t, w = torch_problem(N=5, H=3, V=7)
    f = lambda hh, WW, bb: xent.torch.linear_cross_entropy(hh, WW, t, linear_bias=bb, reduction=reduction,
                                                           label_smoothing=0.1, z_loss=1e-2, softcap=4.0)
    assert torch.autograd.gradcheck(f, tuple(x.clone().requires_grad_() for x in (h, W, b)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_torch_dtypes_against_float64(dtype):
    h, W, b, t, w = torch_problem(N=64, H=32, V=500)
    hd, Wd, bd = (x.to(dtype) for x in (h, W, b))
    got = [x.clone().requires_grad_() for x in (hd, Wd, bd)]
    loss = xent.torch.linear_cross_entropy(got[0], got[1], t, linear_bias=got[2], label_smoothing=0.1)
    loss.backward()
    want = [x.double().requires_grad_() for x in (hd, Wd, bd)]
    ref = torch_reference(want[0], want[1], want[2], t, label_smoothing=0.1)
    ref.backward()
    tol = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    assert loss.dtype == dtype
    torch.testing.assert_close(loss.double(), ref.detach(), rtol=tol, atol=tol)
    for x, y in zip(got, want):
        assert x.grad.dtype == dtype
        scale = y.grad.abs().max()
        torch.testing.assert_close(x.grad.double(), y.grad, rtol=tol, atol=tol * scale)


def test_torch_no_grad_runs_the_forward_only_and_module():
    h, W, b, t, w = torch_problem(dtype=torch.float32)
    with torch.no_grad():
        loss = xent.torch.linear_cross_entropy(h, W.requires_grad_(), t)
    assert not loss.requires_grad
    m = xent.torch.LinearCrossEntropyLoss(31, 203, bias=True, label_smoothing=0.1)
    assert m.weight.shape == (203, 31) and m.bias.shape == (203,)
    loss = m(h, t)
    loss.backward()
    ref = torch_reference(h, m.weight.detach().clone().requires_grad_(), m.bias.detach(), t, label_smoothing=0.1)
    torch.testing.assert_close(loss.detach(), ref.detach(), rtol=1e-5, atol=1e-6)
    assert m.weight.grad is not None and m.bias.grad is not None
    assert "in_features=31, num_classes=203, bias=True" in repr(m)


def test_char_lm_example_trains_to_the_same_curve():
    from examples import train_char_lm
    reference, fused = train_char_lm.main(["--steps", "60"])
    assert reference[-1] < reference[0] - 0.5  # it learns
    for a, b in zip(reference, fused):
        assert abs(a - b) <= 1e-4 * abs(a)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_bfloat16_tiled_vocabulary_matches_one_pass(reduction):
    # A budget below the float32 weight-gradient accumulator tiles the vocabulary (include/xent/xent.h): the same
    # results as one pass, up to rounding.
    h, W, b, t, w = torch_problem(N=64, H=32, V=500)
    hd, Wd, bd = (x.to(torch.bfloat16) for x in (h, W, b))
    grad_loss = torch.linspace(-1, 2, 64, dtype=torch.bfloat16) if reduction == "none" else None
    results = []
    for budget in (0, 20_000):
        xent.set_linear_chunk_bytes(budget)
        got = [x.clone().requires_grad_() for x in (hd, Wd, bd)]
        loss = xent.torch.linear_cross_entropy(got[0], got[1], t, linear_bias=got[2], reduction=reduction,
                                               z_loss=1e-3)
        loss.backward(grad_loss)
        results.append([loss.detach()] + [x.grad for x in got])
    xent.set_linear_chunk_bytes(0)
    for x, y in zip(*results):
        torch.testing.assert_close(x.float(), y.float(), rtol=2e-2, atol=2e-2 * y.float().abs().max().item())


def test_readme_quick_start_runs_and_matches_pytorch():
    import pathlib
    import re
    readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Fused linear + cross-entropy"):]
    section = section[:section.index("\n## ", 1)]
    code = [c for c in re.findall(r"```python\n(.*?)```", section, re.S) if "xent.torch" in c][0]
    scope = {}
    exec(code, scope)
    hidden, head, target, loss = scope["hidden"], scope["head"], scope["target"], scope["loss"]
    h = hidden.detach().clone().requires_grad_()
    ref = F.cross_entropy(F.linear(h, head.weight, head.bias), target, label_smoothing=0.1)
    torch.testing.assert_close(loss.detach(), ref.detach(), rtol=1e-5, atol=1e-6)
    assert hidden.grad is not None and head.weight.grad is not None and head.bias.grad is not None
