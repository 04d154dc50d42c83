"""xent.torch: a drop-in for torch.nn.functional.cross_entropy, in a training loop and under double backward."""
import math

import pytest
import torch
import torch.nn.functional as F

import xent.torch as xt

TOL = {torch.float64: (1e-12, 1e-14), torch.float32: (2e-6, 1e-7), torch.bfloat16: (2e-2, 1e-2),
       torch.float16: (2e-3, 1e-3)}


def inputs(dtype, shape=(16, 11), targets="indices", seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=g, dtype=torch.float64) * 3).to(dtype)
    if targets == "indices":
        target = torch.randint(0, shape[1], (shape[0],) + tuple(shape[2:]), generator=g)
        target[1] = -100
    else:
        target = torch.rand(shape, generator=g, dtype=torch.float64).softmax(1).to(dtype)
    return logits, target


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("targets", ["indices", "probabilities"])
@pytest.mark.parametrize("kw", [{}, {"reduction": "sum"}, {"reduction": "none"}, {"label_smoothing": 0.1},
                                {"weight": True}, {"weight": True, "label_smoothing": 0.2, "reduction": "sum"}])
def test_matches_torch_forward_and_backward(dtype, targets, kw):
    logits, target = inputs(dtype, targets=targets)
    kw = dict(kw)
    if kw.get("weight") is True:
        kw["weight"] = (torch.rand(11, generator=torch.Generator().manual_seed(5), dtype=torch.float64) + 0.5).to(dtype)
    # torch's reference in float64 (its CPU half kernels are missing or round intermediate values).
    ref_kw = {k: (v.double() if k == "weight" else v) for k, v in kw.items()}
    x64 = logits.detach().double().clone().requires_grad_()
    t64 = target.double() if target.is_floating_point() else target
    expected = F.cross_entropy(x64, t64, **ref_kw)
    expected.backward(torch.ones_like(expected))
    x = logits.clone().requires_grad_()
    got = xt.cross_entropy(x, target, **kw)
    got.backward(torch.ones_like(got))
    assert got.dtype == dtype and x.grad.dtype == dtype
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(got.double(), expected.detach(), rtol=rtol, atol=atol)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=rtol, atol=atol)


def test_class_axis_one_for_images():
    logits, _ = inputs(torch.float32, shape=(4, 6, 5))
    target = torch.randint(0, 6, (4, 5))
    x, y = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    a = xt.cross_entropy(x, target, axis=1)
    b = F.cross_entropy(y, target)
    a.backward(), b.backward()
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(x.grad, y.grad)


def test_strided_input_is_read_in_place():
    logits, _ = inputs(torch.float64, shape=(11, 16))
    target = torch.randint(0, 11, (16,), generator=torch.Generator().manual_seed(1))
    x = logits.t().requires_grad_()  # [16, 11], non-contiguous
    a = xt.cross_entropy(x, target)
    b = F.cross_entropy(x, target)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.1, "weight": True}, {"z_loss": 1e-2}, {"softcap": 3.0}])
def test_double_backward_hessian_vector_product(kw):
    logits, target = inputs(torch.float64)
    kw = dict(kw)
    if kw.get("weight") is True:
        kw["weight"] = torch.rand(11, dtype=torch.float64) + 0.5
    v = torch.randn_like(logits)

    def reference(x):
        xp = kw["softcap"] * torch.tanh(x / kw["softcap"]) if "softcap" in kw else x
        base = {k: val for k, val in kw.items() if k not in ("z_loss", "softcap")}
        loss = F.cross_entropy(xp, target, **base)
        if "z_loss" in kw:  # PaLM's z-loss, averaged like the loss
            keep = (target != -100).double()
            loss = loss + kw["z_loss"] * (torch.logsumexp(xp, 1) ** 2 * keep).sum() / keep.sum()
        return loss

    results = []
    for f in (lambda x: xt.cross_entropy(x, target, **kw), reference):
        x = logits.clone().requires_grad_()
        g, = torch.autograd.grad(f(x), x, create_graph=True)
        hv, = torch.autograd.grad((g * v).sum(), x)
        results.append((g.detach(), hv))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-10, atol=1e-12)


def test_gradcheck_and_gradgradcheck():
    logits, target = inputs(torch.float64, shape=(4, 5))
    x = logits.requires_grad_()
    f = lambda x: xt.cross_entropy(x, target, label_smoothing=0.1, z_loss=1e-2)
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_training_loop_matches_torch():
    """Softmax regression on generated data: xent's loss and torch's train to the same weights."""
    from examples.train_softmax_regression import train
    w_xent, loss_xent = train(xt.cross_entropy)
    w_torch, loss_torch = train(F.cross_entropy)
    torch.testing.assert_close(w_xent, w_torch, rtol=1e-4, atol=1e-5)
    assert abs(loss_xent - loss_torch) < 1e-5 and loss_xent < 0.4 * math.log(5)  # trained: far below log(C)


def test_errors():
    logits, target = inputs(torch.float32)
    with pytest.raises(ValueError, match="reduction"):
        xt.cross_entropy(logits, target, reduction="avg")
    with pytest.raises(ValueError, match="outside the valid range"):
        xt.cross_entropy(logits, torch.full((16,), 11))
    with pytest.raises(TypeError, match="weight must have input's dtype torch.float32, received torch.float64"):
        xt.cross_entropy(logits, target, weight=torch.ones(11, dtype=torch.float64))


# ---- The native operator: F.cross_entropy's conventions, TorchScript, the in-place backward

@pytest.mark.parametrize("shape", [(7,), (16, 11), (4, 6, 5), (3, 5, 4, 2)])
@pytest.mark.parametrize("targets", ["indices", "probabilities"])
def test_drop_in_for_f_cross_entropy_class_dimension(shape, targets):
    """The class dimension is where F.cross_entropy has it: 1, or 0 for a 1-D input; nothing to pass."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    C = shape[0] if len(shape) == 1 else shape[1]
    target_shape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    if targets == "indices":
        target = torch.randint(0, C, target_shape, generator=g)
    else:
        target = torch.rand(shape, generator=g, dtype=torch.float64).softmax(0 if len(shape) == 1 else 1)
    for kw in ({}, {"reduction": "none"}, {"label_smoothing": 0.1, "reduction": "sum"}):
        x, y = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        a, b = xt.cross_entropy(x, target, **kw), F.cross_entropy(y, target, **kw)
        a.backward(torch.ones_like(a)), b.backward(torch.ones_like(b))
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-12, atol=1e-14)


def test_cross_entropy_loss_module_takes_torch_arguments():
    logits, target = inputs(torch.float64, shape=(8, 5, 3))
    target = torch.randint(0, 5, (8, 3))
    weight = torch.rand(5, dtype=torch.float64) + 0.5
    for args, kw in (((), {}), ((weight,), {"ignore_index": 2, "reduction": "sum", "label_smoothing": 0.05})):
        ours, theirs = xt.CrossEntropyLoss(*args, **kw), torch.nn.CrossEntropyLoss(*args, **kw)
        torch.testing.assert_close(ours(logits, target), theirs(logits, target))


def test_torchscript_functions_and_modules_save_and_load(tmp_path):
    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(8, 11)
            self.loss = xt.CrossEntropyLoss(label_smoothing=0.1, z_loss=1e-3, softcap=20.0)

        def forward(self, h, target):
            return self.loss(self.linear(h), target) + xt.cross_entropy(self.linear(h), target, reduction="sum")

    torch.manual_seed(0)
    eager = Head()
    h, target = torch.randn(16, 8), torch.randint(0, 11, (16,))
    scripted = torch.jit.script(eager)
    assert "xent::cross_entropy" in str(scripted.inlined_graph)
    scripted.save(str(tmp_path / "head.pt"))
    loaded = torch.jit.load(str(tmp_path / "head.pt"))
    expected = eager(h, target)
    for module in (scripted, loaded):
        torch.testing.assert_close(module(h, target), expected)
    # Gradients through the loaded program equal the eager ones.
    loaded(h, target).backward()
    eager(h, target).backward()
    torch.testing.assert_close(dict(loaded.named_parameters())["linear.weight"].grad, eager.linear.weight.grad)

    linear = torch.jit.script(xt.LinearCrossEntropyLoss(8, 11, bias=True, z_loss=1e-3))
    torch.testing.assert_close(linear(h, target),
                               F.cross_entropy(F.linear(h, linear.weight, linear.bias), target) +
                               1e-3 * (torch.logsumexp(F.linear(h, linear.weight, linear.bias), 1) ** 2).mean())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inplace_backward_equals_the_ordinary_backward(dtype):
    torch.manual_seed(1)
    h = torch.randn(64, 16, dtype=dtype)
    target = torch.randint(0, 300, (64,))
    target[5] = -100
    grads = []
    for inplace in (False, True):
        layer = torch.nn.Linear(16, 300, dtype=dtype)
        torch.manual_seed(2), torch.nn.init.normal_(layer.weight), torch.nn.init.normal_(layer.bias)
        logits = layer(h)
        loss = xt.cross_entropy(logits, target, label_smoothing=0.1, inplace_backward=inplace)
        loss.backward()
        grads.append((loss.detach(), layer.weight.grad, layer.bias.grad))
        if inplace:  # the logits' memory holds their gradient now
            torch.testing.assert_close(logits.detach().float().sum(0), layer.bias.grad.float(), rtol=2e-2, atol=1e-3)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_inplace_backward_refuses_leaves_and_reports_other_uses():
    target = torch.randint(0, 5, (4,))
    leaf = torch.randn(4, 5, requires_grad=True)
    with pytest.raises(ValueError, match="leaf"):
        xt.cross_entropy(leaf, target, inplace_backward=True)
    x = torch.randn(4, 5, requires_grad=True)
    logits = x * 2
    # pow saves the logits, and its backward runs after the loss's (autograd runs later nodes first).
    other = logits.pow(2).sum()
    loss = xt.cross_entropy(logits, target, inplace_backward=True) + other
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    # Without gradients nothing is written: the logits stay as they were.
    with torch.no_grad():
        before = logits.detach().clone()
        xt.cross_entropy(logits, target, inplace_backward=True)
    torch.testing.assert_close(logits.detach(), before)


def test_operators_are_registered_and_documented():
    assert torch.ops.xent.cross_entropy is not None and torch.ops.xent.linear_cross_entropy is not None
    schema = str(torch.ops.xent.cross_entropy.default._schema)
    assert "inplace_backward" in schema and 'reduction="mean"' in schema
    assert "torch.nn.functional.cross_entropy" in xt.cross_entropy.__doc__


def test_large_gradient_in_huge_pages_equals_torch():
    """Gradients from 64 MiB are mapped apart (transparent huge pages): the same values, an ordinary tensor."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2048, 8192, generator=g)
    target = torch.randint(0, 8192, (2048,), generator=g)
    x, y = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    xt.cross_entropy(x * 1, target).backward()
    F.cross_entropy(y * 1, target).backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-5, atol=1e-9)
    x.grad.add_(1)  # a gradient that optimizers may update in place and free
    del x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_tensorflow_ops_equal_the_numpy_ones_and_differentiate(dtype):
    import numpy as np
    import xent
    g = torch.Generator().manual_seed(6)
    logits = (torch.randn(5, 7, generator=g, dtype=torch.float64) * 3).to(dtype)
    labels = torch.rand(5, 7, generator=g, dtype=torch.float64).to(dtype)
    indices = torch.randint(0, 7, (5,), generator=g)
    x, y = logits.clone().requires_grad_(), labels.clone().requires_grad_()
    loss = xt.softmax_cross_entropy_with_logits(y, x)
    loss.sum().backward()
    if dtype != torch.bfloat16:  # numpy has no bfloat16
        want, want_gx, want_gy = xent.softmax_cross_entropy_with_logits_grad(labels=labels.numpy(),
                                                                             logits=logits.numpy())
        np.testing.assert_array_equal(loss.detach().numpy(), want)
        np.testing.assert_array_equal(x.grad.numpy(), want_gx)
        np.testing.assert_array_equal(y.grad.numpy(), want_gy)
    x = logits.clone().requires_grad_()
    sparse = xt.sparse_softmax_cross_entropy_with_logits(indices, x)
    sparse.sum().backward()
    ref = logits.double().clone().requires_grad_()
    F.cross_entropy(ref, indices, reduction="none").sum().backward()
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(sparse.double(), F.cross_entropy(logits.double(), indices, reduction="none"),
                               rtol=rtol, atol=atol)
    torch.testing.assert_close(x.grad.double(), ref.grad, rtol=rtol, atol=atol)
    if dtype == torch.float64:
        assert torch.autograd.gradgradcheck(lambda a, b: xt.softmax_cross_entropy_with_logits(b, a),
                                            (logits.clone().requires_grad_(), labels.clone().requires_grad_()))
    with pytest.raises(ValueError, match="outside the valid range"):
        xt.sparse_softmax_cross_entropy_with_logits(torch.full((5,), 7), logits)
