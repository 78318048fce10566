"""The one table of op names (activations, pools, losses) that models, gradcheck and experiments read.

Each tuple is its module's ``__all__``, in that order, so a new activation written in
`jaxcnn.activations` (with its twin in `jaxcnn.reference`) is at once a choice of
`jaxcnn.models.lenet5`, a family of ``python -m jaxcnn.gradcheck`` and a ``--activation`` of
``experiments/lenet5.py``; nothing else spells the names.

>>> import jaxcnn
>>> from jaxcnn import registry
>>> registry.lookup(jaxcnn.reference, "tanh", registry.ACTIVATIONS, fn="demo", arg="activation").__name__
'tanh'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from jaxcnn import activations, losses, pooling
from jaxcnn._checks import fail

__all__ = ["ACTIVATIONS", "LOSSES", "POOLS", "choose", "lookup"]

ACTIVATIONS: tuple[str, ...] = tuple(activations.__all__)
"""Elementwise activations ``f(x, ...)`` (`jaxcnn.activations`)."""

POOLS: tuple[str, ...] = tuple(pooling.__all__)
"""Pooling functions ``pool(x, window, *, stride, padding, ...)`` (`jaxcnn.pooling`)."""

LOSSES: tuple[str, ...] = tuple(losses.__all__)
"""Losses ``loss(y, target, ...)`` (`jaxcnn.losses`)."""


def choose(fn: str, arg: str, name: Any, names: Sequence[str]) -> str:
    """`name` when it is one of `names`, else the library's ValueError.

    Args:
      fn: the calling function, for the message (e.g. ``"lenet5"``).
      arg: the argument that holds `name` (e.g. ``"activation"``).
      name: the given name.
      names: the accepted names, e.g. `ACTIVATIONS`.

    Raises:
      ValueError: ```fn`: `arg` must be one of ('relu', ...), got 'x'``.
    """
    if not isinstance(name, str) or name not in names:
        raise fail(fn, f"`{arg}` must be one of {tuple(names)}, got {name!r}")
    return name


def lookup(ops: Any, name: Any, names: Sequence[str], *, fn: str, arg: str) -> Callable[..., Any]:
    """``getattr(ops, name)`` for `ops` = `jaxcnn` (custom rules) or `jaxcnn.reference` (autodiff).

    Args:
      ops: the namespace of the layers.
      name: an op name, checked against `names` first (see `choose`).
      names: the table it must come from (`ACTIVATIONS`, `POOLS` or `LOSSES`).
      fn, arg: the caller and its argument, for the messages.

    Raises:
      ValueError: `name` is not in `names`.
      TypeError: `ops` lacks the function.
    """
    choose(fn, arg, name, names)
    op = getattr(ops, name, None)
    if not callable(op):
        raise fail(fn, f"`ops` must provide {name} (jaxcnn or jaxcnn.reference); {ops!r} lacks it", TypeError)
    return op
