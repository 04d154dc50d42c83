"""A small character-level language model trained on the text of the GNU GPL that every Debian system ships
(/usr/share/common-licenses/GPL-3), twice from the same initial weights: once with PyTorch's F.linear +
F.cross_entropy as the head and its loss, once with xent.torch.linear_cross_entropy, which never holds the logits.
Prints both loss curves side by side; they are the same curve up to float32 rounding.

    PYTHONPATH=build/python /usr/bin/python3 examples/train_char_lm.py [--steps 300] [--text FILE]

The swap in a training loop is one line:

    logits = F.linear(hidden, head.weight, head.bias)                    # [batch, vocabulary]: held in memory
    loss = F.cross_entropy(logits, target)
becomes
    loss = xent.torch.linear_cross_entropy(hidden, head.weight, target, linear_bias=head.bias)
"""
import argparse

import torch
import torch.nn.functional as F

import xent.torch

CONTEXT = 8


class CharModel(torch.nn.Module):
    def __init__(self, vocabulary, embedding=16, hidden=128):
        super().__init__()
        self.embed = torch.nn.Embedding(vocabulary, embedding)
        self.body = torch.nn.Linear(CONTEXT * embedding, hidden)
        self.head = torch.nn.Linear(hidden, vocabulary)

    def hidden(self, context):
        return torch.tanh(self.body(self.embed(context).flatten(1)))


def loss_pytorch(model, context, target):
    logits = F.linear(model.hidden(context), model.head.weight, model.head.bias)
    return F.cross_entropy(logits, target)


def loss_xent(model, context, target):
    return xent.torch.linear_cross_entropy(model.hidden(context), model.head.weight, target,
                                           linear_bias=model.head.bias)


def train(text, loss_of, steps, batch=256, seed=0):
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text])
    torch.manual_seed(seed)
    model = CharModel(len(chars))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    curve = []
    for _ in range(steps):
        starts = torch.randint(0, len(data) - CONTEXT - 1, (batch,), generator=generator)
        context = torch.stack([data[s:s + CONTEXT] for s in starts.tolist()])
        target = data[starts + CONTEXT]
        loss = loss_of(model, context, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        curve.append(loss.item())
    return curve


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--text", default="/usr/share/common-licenses/GPL-3")
    args = parser.parse_args(argv)
    text = open(args.text, encoding="utf-8").read()
    torch.set_num_threads(2)
    reference = train(text, loss_pytorch, args.steps)
    fused = train(text, loss_xent, args.steps)
    print("step  F.linear+F.cross_entropy  xent.torch.linear_cross_entropy")
    for step in range(0, args.steps, max(1, args.steps // 10)):
        print(f"{step:4d}  {reference[step]:24.6f}  {fused[step]:31.6f}")
    print(f"last  {reference[-1]:24.6f}  {fused[-1]:31.6f}")
    return reference, fused


if __name__ == "__main__":
    main()
