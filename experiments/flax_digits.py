"""A Flax NNX CNN trained on the embedded MNIST digits with the article's backward rules.

The two `nnx.Conv` layers get ``conv_general_dilated=jaxcnn.interop.conv_general_dilated`` (their
gradients are Eq 14 and Eq 22), pooling is `jaxcnn.max_pool` (winner routing); the rest is plain Flax
and optax. ``--conv lax`` builds the same network with Flax's stock convolution, for comparison.

    python experiments/flax_digits.py                # ~30 s on 2 CPU cores
    python experiments/flax_digits.py --conv lax
"""

from __future__ import annotations

import argparse
import sys
import time

import _report  # experiments/_report.py: this script's folder is on sys.path
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

import jaxcnn
from jaxcnn import datasets, interop


class DigitsCNN(nnx.Module):
    """28x28x1 -> conv 5x5 (8) -> relu -> max pool 2 -> conv 5x5 (16) -> relu -> max pool 2 -> dense 10."""

    def __init__(self, conv, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 8, (5, 5), padding="SAME", conv_general_dilated=conv, rngs=rngs)
        self.conv2 = nnx.Conv(8, 16, (5, 5), padding="SAME", conv_general_dilated=conv, rngs=rngs)
        self.head = nnx.Linear(16 * 7 * 7, 10, rngs=rngs)

    def __call__(self, x):
        x = jaxcnn.max_pool(jaxcnn.relu(self.conv1(x)), 2)
        x = jaxcnn.max_pool(jaxcnn.relu(self.conv2(x)), 2)
        return self.head(x.reshape(x.shape[0], -1))


def loss_fn(model, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def predict(model, x):
    return jnp.argmax(model(x), axis=-1)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--test-per-class", type=int, default=200)
    p.add_argument("--conv", choices=("jaxcnn", "lax"), default="jaxcnn")
    args = p.parse_args(argv)
    _report.check_args(p, args, counts=("epochs", "batch_size", "train_per_class", "test_per_class"),
                       positive=("lr",), nonnegative=("seed",),
                       per_class=("train_per_class", "test_per_class"))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    x_tr, y_tr, x_te, y_te = datasets.mnist28_data(train_per_class=args.train_per_class,
                                                   test_per_class=args.test_per_class)
    conv = interop.conv_general_dilated if args.conv == "jaxcnn" else lax.conv_general_dilated
    model = DigitsCNN(conv, nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)
    rng = np.random.default_rng(args.seed)
    n = len(y_tr)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(n)
        losses = []
        for i in range(0, n - args.batch_size + 1 if n >= args.batch_size else 1, args.batch_size):
            idx = order[i:i + args.batch_size]
            losses.append(train_step(model, optimizer, jnp.asarray(x_tr[idx]), jnp.asarray(y_tr[idx])))
        loss = float(jnp.mean(jnp.stack(losses)))
        print(f"epoch {epoch}: mean train loss {loss:.4f}", flush=True)
        if not np.isfinite(loss):
            print(f"error: the training loss became {loss} in epoch {epoch}; lower --lr", file=sys.stderr)
            return 1
    train_seconds = time.perf_counter() - start
    correct = sum(int(jnp.sum(predict(model, jnp.asarray(x_te[i:i + 500])) == jnp.asarray(y_te[i:i + 500])))
                  for i in range(0, len(y_te), 500))
    print(f"conv: {args.conv} ({jax.default_backend()}); {n} train / {len(y_te)} test digits")
    print(f"test accuracy: {correct / len(y_te):.4f}; training time: {train_seconds:.1f} s "
          f"({args.epochs} epochs, incl. compilation)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
