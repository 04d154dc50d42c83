"""Trains a softmax-regression model on generated data with a given loss function (xent's or torch's).

    PYTHONPATH=build/python:. /usr/bin/python3 examples/train_softmax_regression.py
"""
import torch
import torch.nn.functional as F


def train(loss_fn, steps=200, seed=0):
    """Returns (weights, final loss). Same data and initialisation for every loss_fn."""
    g = torch.Generator().manual_seed(seed)
    n, d, classes = 2048, 20, 5
    true_w = torch.randn(d, classes, generator=g)
    x = torch.randn(n, d, generator=g)
    y = (x @ true_w + 0.5 * torch.randn(n, classes, generator=g)).argmax(1)
    w = torch.zeros(d, classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(x @ w + b, y, label_smoothing=0.05)
        loss.backward()
        opt.step()
    return w.detach(), float(loss)


if __name__ == "__main__":
    import xent.torch

    for name, fn in (("xent", xent.torch.cross_entropy), ("torch", F.cross_entropy)):
        w, loss = train(fn)
        print(f"{name:5s}: final loss {loss:.6f}, |w| = {float(w.norm()):.6f}")
