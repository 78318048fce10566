"""The table of the ``python -m jaxcnn.gradcheck`` sweep: one `Entry` per function.

Adding a function to the sweep is one row of `ENTRIES`: its name, how to draw a static
configuration, how to build the `Case` (the custom function and its `jaxcnn.reference` twin with
those options bound, and its arguments), its default configs and value sets per configuration, and
which derived rows (``d2:``, ``gn:``, ``vmap:``, ``fd:``) it gets; a ``gn:`` row draws with
``small=True`` (shapes whose full Jacobian, the oracle of the second-order rule, stays small).
Activations and pools come from the op table (`jaxcnn.registry`): one row each, their float/bool
options (``negative_slope``, ``count_include_pad``) found from the function's signature, so a new
activation needs no row here.

`default_registry(ops)` expands the table with ``ops`` (default: the `jaxcnn` module) as the
custom side; the reference side is always `jaxcnn.reference`. A namespace with a planted wrong
rule in place of ``ops.conv2d`` turns every row that uses conv2d (conv2d, d2:conv2d,
vmap:conv2d, fd:conv2d, the networks) into a test of the checker itself.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxcnn
from jaxcnn import _curvature_cases, _lowering, models, registry
from jaxcnn import reference as _ref
from jaxcnn.gradcheck.cases import (
    Arg,
    Case,
    Entry,
    Family,
    Options,
    as_tuples,
    draw_values,
    expand,
    make_case,
    out_shape,
)

__all__ = ["ENTRIES", "default_registry"]

# Pools whose quantised inputs are named for what they test: all-zero windows (y = 0) for l2 pool;
# any other pool calls them "ties" (deliberate ties: the max pool's first-maximum rule).
_QUANTISED_OPTION = {"l2_pool": "zeros"}
# Activations that also get a per-example (vmap:) row: one smooth, one rectifier.
_VMAP_ACTIVATIONS = ("tanh", "relu")


# ------------------------------------------------------------------------------ drawing
_PADDINGS = ("VALID", "SAME", "FULL", "int", "pair", "explicit")


def _int_or_pair(rng: np.random.Generator, lo: int, hi: int, nd: int = 2) -> int | list[int]:
    """An int or one value per spatial dim (`nd`), each in ``[lo, hi]``."""
    values = [int(v) for v in rng.integers(lo, hi + 1, nd)]
    return values[0] if rng.random() < 0.5 else values


def _per_dim(value: int | list[int], nd: int) -> list[int]:
    return value if isinstance(value, list) else [value] * nd


def _padding(rng: np.random.Generator, form: str, max_pad: tuple[int, ...]) -> Any:
    """One padding of the given form, amounts in ``[0, max_pad]`` per spatial dim."""
    def amount(axis: int) -> int:
        return int(rng.integers(0, max_pad[axis] + 1))

    if form == "int":
        return int(rng.integers(0, min(max_pad) + 1))
    if form == "pair":  # one int per spatial dim
        return [amount(axis) for axis in range(len(max_pad))]
    if form == "explicit":
        return [[amount(axis), amount(axis)] for axis in range(len(max_pad))]
    return form


def _hw_near(rng: np.random.Generator, extent: int, below: int = 2, above: int = 7) -> int:
    """A size near a window extent: mostly larger, sometimes smaller (an invalid VALID config)."""
    return int(rng.integers(max(1, extent - below), extent + above))


# Kernel taps and input sizes per number of spatial dims: 3-D configs stay small (each compiles);
# `small` (gn: rows, whose oracle is a full Jacobian): smaller still, batch 1-2, channels 1-4.
_MAX_K = {1: 9, 2: 7, 3: 3}
_ABOVE = {1: 9, 2: 7, 3: 3}
_SMALL_K = {1: 5, 2: 4, 3: 2}
_SMALL_ABOVE = {1: 5, 2: 4, 3: 3}


def _draw_conv(rng: np.random.Generator, i: int, *, bias: bool = True, pad_value: bool = True,
               nd: int = 2, small: bool = False) -> Options:
    max_k, above, chans, batch = (_SMALL_K, _SMALL_ABOVE, 4, 2) if small else (_MAX_K, _ABOVE, 8, 4)
    groups = int(rng.choice([1, 1, 1, 2, 3, 4]))
    c_g = int(rng.integers(1, max(1, chans // groups) + 1))
    d_g = int(rng.integers(1, max(1, chans // groups) + 1))
    k = [int(v) for v in rng.integers(1, max_k[nd] + 1, nd)]  # non-square as often as not
    lowerings = _lowerings()
    reused = (not small and len(lowerings) > 1 and lowerings[i % len(lowerings)] == "taps"
              and (i // len(lowerings)) % 3 == 0)
    if reused:  # one input channel, 16 taps or more, a batch in one piece: the broadcast taps go
        # through a scan of two steps or more (`jaxcnn._lowering._REUSED_TAPS`)
        groups, c_g = 1, 1
        k = [max(kk, least) for kk, least in zip(k, {1: (16,), 2: (4, 4), 3: (3, 3, 2)}[nd], strict=True)]
    stride = _int_or_pair(rng, 1, 3, nd)
    dilation = _int_or_pair(rng, 1, 2, nd)
    extent = [d * (kk - 1) + 1 for d, kk in zip(_per_dim(dilation, nd), k, strict=True)]
    options: Options = {
        "x_shape": [int(rng.integers(1, batch + 1)), *(_hw_near(rng, e, above=above[nd]) for e in extent),
                    groups * c_g],
        "w_shape": [*k, c_g, groups * d_g],
        "stride": stride,
        "padding": _padding(rng, _PADDINGS[i % 6], (3,) * nd),
        "dilation": dilation,
        "groups": groups,
        "flip": bool(rng.integers(2)),
    }
    if reused:
        options["x_shape"][0] = max(options["x_shape"][0], 2)
    if pad_value:
        options["pad_value"] = float(rng.choice([0.0, -1.0]))
    if not small and (i // 6) % 2 == 1:  # > 16 output channels and inputs no smaller than the window,
        # in every padding form and lowering: the CPU's widened XLA convolution (`_choice.widen`)
        options["w_shape"][-1] = groups * -(-17 // groups)
        options["x_shape"][1:-1] = [max(n, e) for n, e in zip(options["x_shape"][1:-1], extent, strict=True)]
    if bias:
        options["bias"] = ("none", "tied", "untied")[(i + i // 6) % 3]  # all 18 with the padding
    if len(lowerings) > 1:  # every lowering of the custom conv (the reference has one)
        options["lowering"] = lowerings[i % len(lowerings)]
        # a third of the matmul lowerings scan in tiny pieces: batch chunks, or blocks of rows
        options["chunks"] = ("whole", "batch", "rows")[(i // len(lowerings)) % 3]
    return options


def _draw_conv_nd(rng: np.random.Generator, i: int, **kw: Any) -> Options:
    """`_draw_conv` in 1, 2 and 3 spatial dims in turn (the N-d functions' rows)."""
    return _draw_conv(rng, i, nd=(1, 2, 3)[i % 3], **kw)


_PADDING_MODES = ("reflect", "replicate", "circular")


def _draw_padding_mode(rng: np.random.Generator, i: int, small: bool = False) -> Options:
    """A `conv` configuration in 1-3 dims whose border copies input units (``padding_mode``);
    `small` (gn: rows, tiny kernels): 1-2 copied units on every side, whatever the kernel."""
    options = _draw_conv_nd(rng, i, small=small)
    options.update(pad_value=0.0, padding_mode=_PADDING_MODES[((i + i // 3) if small else i // 3) % 3])
    if small:  # few configs: every mode within the first three
        options["padding"] = [[int(v) for v in rng.integers(1, 3, 2)] for _ in options["w_shape"][:-2]]
    return options


def _draw_transpose(rng: np.random.Generator, i: int, small: bool = False) -> Options:
    """A `conv_transpose` configuration in 1, 2 or 3 spatial dims: the padding of the convolution
    being transposed (at most its kernel's extent less one), an output_padding below the stride
    or the dilation, tied/untied/no bias, every lowering."""
    nd = (1, 2, 3)[i % 3]
    sizes, chans, batch = ((4, 3, 2), 4, 2) if small else ((6, 5, 3), 8, 3)
    groups = int(rng.choice([1, 1, 2, 3]))
    c_g = int(rng.integers(1, max(1, chans // groups) + 1))
    d_g = int(rng.integers(1, max(1, chans // groups) + 1))
    k = [int(v) for v in rng.integers(1, sizes[nd - 1] + 1, nd)]
    stride = _int_or_pair(rng, 1, 3, nd)
    dilation = _int_or_pair(rng, 1, 2, nd)
    strides, dilations = _per_dim(stride, nd), _per_dim(dilation, nd)
    max_pad = tuple(d * (kk - 1) for d, kk in zip(dilations, k, strict=True))
    form = ("int", "pair", "explicit")[(i // 3) % 3]
    options: Options = {
        "x_shape": [int(rng.integers(1, batch + 1)),
                    *(int(v) for v in rng.integers(1, sizes[nd - 1] + 1, nd)), groups * d_g],
        "w_shape": [*k, c_g, groups * d_g],
        "stride": stride,
        "padding": _padding(rng, form, max_pad),
        "output_padding": [int(rng.integers(0, max(s, d))) for s, d in zip(strides, dilations, strict=True)],
        "dilation": dilation,
        "groups": groups,
        "bias": ("none", "tied", "untied")[(i // 9) % 3],
    }
    lowerings = _lowerings()
    if len(lowerings) > 1:  # one per configuration: the row's few (9) reach every lowering
        options["lowering"] = lowerings[i % len(lowerings)]
    return options


def _lowerings() -> tuple[str, ...]:
    """The conv lowerings `jaxcnn._lowering.force` can select ("auto" alone when it cannot)."""
    names = tuple(getattr(_lowering, "LOWERINGS", ("auto",)))
    return names if callable(getattr(_lowering, "force", None)) else ("auto",)


def _with_lowering(fn: Callable[..., Any], o: Options) -> Callable[..., Any]:
    """`fn` traced under ``jaxcnn._lowering.force(o["lowering"], pool=o["pool"])`` (the choice is
    baked into the conv's or pool's static configuration at trace time, so its backward uses the
    same lowering)."""
    name, chunks, pool = o.get("lowering", "auto"), o.get("chunks", "whole"), o.get("pool", "auto")
    if name == "auto" and chunks == "whole" and pool == "auto":
        return fn
    options: dict[str, Any] = {} if chunks == "whole" else {"chunk_bytes": 1, "rows": chunks == "rows"}
    if pool != "auto":
        options["pool"] = pool

    def lowered(*args: Any) -> Any:
        with _lowering.force(name, **options):
            return fn(*args)

    return lowered


def _conv_kw(o: Options, *, pad_value: bool = True, flip: bool = True) -> dict[str, Any]:
    kw = {
        "stride": as_tuples(o["stride"]),
        "padding": as_tuples(o["padding"]),
        "dilation": as_tuples(o["dilation"]),
        "groups": int(o["groups"]),
    }
    if flip:
        kw["flip"] = bool(o["flip"])
    if pad_value:
        kw["pad_value"] = float(o["pad_value"])
    return kw


def _draw_plain_2d(rng: np.random.Generator, i: int) -> Options:
    k = [int(v) for v in rng.integers(1, 8, 2)]
    return {"I_shape": [_hw_near(rng, k[0], 1, 8), _hw_near(rng, k[1], 1, 8)], "K_shape": k}


# Keys the draws below use themselves; a function option of the same name is stored as "kw_<name>".
_DRAW_KEYS = frozenset({"x_shape", "scale", "zeros", "smooth", "ties", "window", "stride", "padding"})


def _keywords(name: str, kind: type) -> dict[str, tuple[str, Any]]:
    """The options of the reference function `name` with a default of type `kind` (float: an
    activation's ``negative_slope``; bool: avg_pool's ``count_include_pad``): ``{key in the
    drawn options: (parameter, default)}``."""
    params = inspect.signature(getattr(_ref, name)).parameters.values()
    return {(f"kw_{p.name}" if p.name in _DRAW_KEYS else p.name): (p.name, p.default)
            for p in params if type(p.default) is kind}


def _draw_pool(name: str, rng: np.random.Generator, i: int, nd: int = 2, small: bool = False) -> Options:
    """A pooling configuration in `nd` spatial dims; inputs quantised to 5 values every other config
    (``ties`` of max pool; for l2 pool all-zero windows, ``zeros``); every bool option of `name`
    both ways. `small`: 1, 2 and 3 spatial dims in turn (`nd` ignored), batch 1-2, channels 1-3."""
    if small:
        nd = (2, 3, 1)[(i + i // 3) % 3]  # not in step with the stride's i % 3
    quantised = _QUANTISED_OPTION.get(name, "ties")
    window = _int_or_pair(rng, 1, 4 if nd < 3 else 3, nd)
    win = _per_dim(window, nd)
    stride = None if i % 3 == 0 else _int_or_pair(rng, 1, 3, nd)  # None: the window (the article's case)
    above = (4 if nd < 3 else 2) if small else (8 if nd < 3 else 3)
    options: Options = {
        "x_shape": [int(rng.integers(1, 3 if small else 5)), *(_hw_near(rng, w, 1, above) for w in win),
                    int(rng.integers(1, 4 if small else 9))],
        "window": window,
        "stride": stride,
        "padding": _padding(rng, _PADDINGS[(i // 2) % 6], tuple(w - 1 for w in win)),
        quantised: i % 2 == 0,
    }
    for k, key in enumerate(_keywords(name, bool)):  # count_include_pad, ceil_mode: bit k of i // 2, so
        options[key] = (i // (2 << k)) % 2 == 0  # that every combination comes within eight configs
    for key in _keywords(name, int):  # the window's dilation (max_pool)
        options[key] = int(rng.integers(1, 3))
    pools = tuple(getattr(_lowering, "POOL_LOWERINGS", ("auto",)))
    if len(pools) > 1:  # every pooling lowering (the reshape or strided slices; sliced or stacked taps;
        # deltas routed by dim) within ten configs, each with and without the window as the stride
        options["pool"] = pools[(i + i // 3) % len(pools)]
    return options


def _draw_activation(name: str, rng: np.random.Generator, i: int, small: bool = False) -> Options:
    """An activation's input shape (rank 4 or 2; rank 3 and large in every third config), scale, exact
    zeros (the kinks), and every float option of `name` (``negative_slope``) drawn from 1, 10 and 30
    times its default."""
    n, m = (3, 5) if small else (5, 9)
    if not small and i % 3 == 2:  # over two million units: relu's and leaky_relu's masks kept as bits
        shape = [4, 725, 725]  # (`jaxcnn.activations._PACK_UNITS`), rows not a multiple of 8 units
    elif i % 2 == 0:
        shape = [int(rng.integers(1, n)), int(rng.integers(1, m)), int(rng.integers(1, m)),
                 int(rng.integers(1, m))]
    else:
        shape = [int(rng.integers(1, n)), int(rng.integers(1, 4 * m - 3))]
    options: Options = {"x_shape": shape, "scale": float(rng.choice([1.0, 3.0])), "zeros": True}
    for key, (_, default) in _keywords(name, float).items():
        options[key] = float(rng.choice([default, 10 * default, 30 * default]))
    return options


def _smooth(o: Options) -> bool:
    """``fd:`` rows set ``smooth``: no deliberate ties or exact zeros (kinks break differences)."""
    return bool(o.get("smooth", False))


# ---------------------------------------------------------------------------- builders
def _bias_arg(o: Options, out: tuple[int, ...], channels: int) -> list[Arg]:
    """No bias, a tied ``(channels,)`` or an untied ``(*out_spatial, channels)`` bias."""
    if o["bias"] == "tied":
        return [Arg("b", (channels,))]
    if o["bias"] == "untied":
        return [Arg("b", (*out[1:-1], channels))]
    return []


def _build_conv(name: str, ops: Any, o: Options, dtype: str) -> Case:
    kw = _conv_kw(o)
    if "padding_mode" in o:
        kw["padding_mode"] = str(o["padding_mode"])
    x_shape, w_shape = tuple(o["x_shape"]), tuple(o["w_shape"])
    out = out_shape(getattr(_ref, name), [x_shape, w_shape], dtype, **kw)
    args = [Arg("x", x_shape), Arg("w", w_shape), *_bias_arg(o, out, w_shape[-1])]
    custom = _with_lowering(partial(getattr(ops, name), **kw), o)
    chain = None  # a copy-padded conv: the gn: row's oracle goes through the pad (_curvature_cases)
    if kw.get("padding_mode", "zeros") != "zeros":
        chain = _curvature_cases.padding_mode_chain(
            x_shape, w_shape, **{k: v for k, v in kw.items() if k != "pad_value"})
    return make_case(custom, partial(getattr(_ref, name), **kw), tuple(args), dtype, chain=chain)


def _build_input_grad(name: str, ops: Any, o: Options, dtype: str) -> Case:
    kw = _conv_kw(o, pad_value=False)
    x_shape, w_shape = tuple(o["x_shape"]), tuple(o["w_shape"])
    out = out_shape(_ref.conv, [x_shape, w_shape], dtype, **kw)
    args = (Arg("delta", out), Arg("w", w_shape))

    def custom(delta, w):
        return getattr(ops, name)(delta, w, x_shape, **kw)

    def reference(delta, w):
        return getattr(_ref, name)(delta, w, x_shape, **kw)

    return make_case(_with_lowering(custom, o), reference, args, dtype)


def _build_weight_grad(name: str, ops: Any, o: Options, dtype: str) -> Case:
    kw = _conv_kw(o)
    x_shape, w_shape = tuple(o["x_shape"]), tuple(o["w_shape"])
    out = out_shape(_ref.conv, [x_shape, w_shape], dtype, **kw)
    args = (Arg("x", x_shape), Arg("delta", out))

    def custom(x, delta):
        return getattr(ops, name)(x, delta, w_shape, **kw)

    def reference(x, delta):
        return getattr(_ref, name)(x, delta, w_shape, **kw)

    return make_case(_with_lowering(custom, o), reference, args, dtype, batched=(True, True))


def _build_transpose(ops: Any, o: Options, dtype: str) -> Case:
    kw = {**_conv_kw(o, pad_value=False, flip=False), "output_padding": as_tuples(o["output_padding"])}
    x_shape, w_shape = tuple(o["x_shape"]), tuple(o["w_shape"])
    out = out_shape(_ref.conv_transpose, [x_shape, w_shape], dtype, **kw)
    args = [Arg("x", x_shape), Arg("w", w_shape), *_bias_arg(o, out, w_shape[-2] * int(o["groups"]))]
    custom = _with_lowering(partial(ops.conv_transpose, **kw), o)
    return make_case(custom, partial(_ref.conv_transpose, **kw), tuple(args), dtype)


def _build_plain_2d(name: str, ops: Any, o: Options, dtype: str) -> Case:
    args = (Arg("I", tuple(o["I_shape"])), Arg("K", tuple(o["K_shape"])))
    return make_case(getattr(ops, name), getattr(_ref, name), args, dtype, batched=(False, False))


def _build_activation(name: str, ops: Any, o: Options, dtype: str) -> Case:
    x = Arg("x", tuple(o["x_shape"]), scale=float(o["scale"]), zeros=bool(o["zeros"]) and not _smooth(o))
    kw = {param: float(o[key]) for key, (param, _) in _keywords(name, float).items()}
    return make_case(partial(getattr(ops, name), **kw), partial(getattr(_ref, name), **kw), (x,), dtype)


def _build_pool(name: str, ops: Any, o: Options, dtype: str) -> Case:
    kw: dict[str, Any] = {"window": as_tuples(o["window"]), "stride": as_tuples(o["stride"]),
                          "padding": as_tuples(o["padding"])}
    kw.update({param: bool(o[key]) for key, (param, _) in _keywords(name, bool).items()})
    kw.update({param: as_tuples(o[key]) for key, (param, _) in _keywords(name, int).items() if key in o})
    x_shape = tuple(o["x_shape"])
    out_shape(getattr(_ref, name), [x_shape], dtype, **kw)
    quantised = bool(o.get(_QUANTISED_OPTION.get(name, "ties"), False)) and not _smooth(o)
    x = Arg("x", x_shape, kind="quant" if quantised else "normal", scale=0.5 if quantised else 1.0)
    return make_case(_with_lowering(partial(getattr(ops, name), **kw), o), partial(getattr(_ref, name), **kw),
                     (x,), dtype)


def _draw_dense(rng: np.random.Generator, i: int) -> Options:
    return {"n": int(rng.integers(1, 5)), "features": int(rng.integers(1, 25)),
            "units": int(rng.integers(1, 11)), "bias": i % 2 == 0}


def _build_dense(ops: Any, o: Options, dtype: str) -> Case:
    args = [Arg("x", (o["n"], o["features"])), Arg("w", (o["features"], o["units"]))]
    if o["bias"]:
        args.append(Arg("b", (o["units"],)))
    return make_case(ops.dense, _ref.dense, tuple(args), dtype)


def _draw_flatten(rng: np.random.Generator, i: int, small: bool = False) -> Options:
    rank = (4, 2, 3, 5)[i % 4]
    return {"x_shape": [int(rng.integers(1, 3 if small else 5))] +
            [int(v) for v in rng.integers(1, 4 if small else 6, rank - 1)]}


def _build_flatten(ops: Any, o: Options, dtype: str) -> Case:
    return make_case(ops.flatten, _ref.flatten, (Arg("x", tuple(o["x_shape"])),), dtype)


def _draw_squared_error(rng: np.random.Generator, i: int) -> Options:
    n = int(rng.integers(1, 5))
    shape = [n, int(rng.integers(1, 11))] if i % 4 < 2 else [n, 3, 3, int(rng.integers(1, 5))]
    return {"shape": shape, "reduction": ("sum", "mean")[i % 2]}


def _build_squared_error(ops: Any, o: Options, dtype: str) -> Case:
    kw = {"reduction": o["reduction"]}
    shape = tuple(o["shape"])
    args = (Arg("y", shape), Arg("t", shape))
    return make_case(partial(ops.squared_error, **kw), partial(_ref.squared_error, **kw), args, dtype,
                     batched=(True, True), loss=True)


def _draw_cross_entropy(rng: np.random.Generator, i: int) -> Options:
    return {"n": int(rng.integers(1, 5)), "classes": int(rng.integers(2, 11)),
            "labels": ("int", "onehot")[i % 2], "scale": float(rng.choice([1.0, 4.0]))}


def _build_cross_entropy(ops: Any, o: Options, dtype: str) -> Case:
    n, k = int(o["n"]), int(o["classes"])
    logits = Arg("logits", (n, k), scale=float(o["scale"]))
    labels = Arg("labels", (n,), kind="labels", scale=k) if o["labels"] == "int" else \
        Arg("labels", (n, k), kind="onehot")
    return make_case(ops.softmax_cross_entropy, _ref.softmax_cross_entropy, (logits, labels), dtype,
                     batched=(True, True), loss=True)



# ------------------------------------------------------------------------------ networks
class _Network(NamedTuple):
    """A model of `jaxcnn.models` as a row: its keyword choices (one drawn per static config) and
    its training loss (squared error against +-1 targets, or cross-entropy against labels)."""

    choices: dict[str, tuple[str, ...]]
    loss: str


_NETWORKS = {
    "lecun1989": _Network({"activation": models.LECUN1989_ACTIVATIONS}, "squared_error"),
    "lenet5": _Network({"activation": models.LENET5_ACTIVATIONS, "pooling": models.LENET5_POOLINGS},
                       "softmax_cross_entropy"),
}


def _draw_model(name: str, rng: np.random.Generator, i: int) -> Options:
    kwargs = {k: str(rng.choice(values)) for k, values in _NETWORKS[name].choices.items()}
    return {"n": int(rng.integers(1, 5)), "model": kwargs}


def _cast_floats(tree: Any, dtype: str) -> Any:
    def cast(leaf):
        leaf = jnp.asarray(leaf)
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree_util.tree_map(cast, tree)


@functools.lru_cache(maxsize=32)
def _jitted_init(name: str, kwargs: tuple[tuple[str, Any], ...], dtype: str) -> Callable[[jax.Array], Any]:
    """The model's ``init`` cast to `dtype`, compiled once per model configuration (rows and
    shapes share it)."""
    init = getattr(models, name)(**dict(kwargs)).init
    return jax.jit(lambda key: _cast_floats(init(key), dtype))


def _build_model(name: str, ops: Any, o: Options, dtype: str) -> Case:
    """The loss of a whole network w.r.t. its parameters and input, through ``ops=ops`` (the
    custom rules) vs ``ops=jaxcnn.reference``: squared error against +-1 targets (lecun1989),
    softmax cross-entropy against integer labels (lenet5)."""
    model = getattr(models, name)(**o.get("model", {}))
    n = int(o["n"])
    params_struct = jax.eval_shape(lambda: _cast_floats(model.init(jax.random.key(0)), dtype))
    x_struct = jax.ShapeDtypeStruct((n, *model.input_shape), jnp.dtype(dtype))
    classes = int(jax.eval_shape(partial(model.apply, ops=_ref), params_struct, x_struct).shape[-1])
    loss_name = _NETWORKS[name].loss

    def network(module: Any) -> Callable[..., Any]:
        def loss(params, x, target):
            return getattr(module, loss_name)(model.apply(params, x, ops=module), target)

        return loss

    target = Arg("t", (n, classes), kind="pm1") if loss_name == "squared_error" else \
        Arg("labels", (n,), kind="labels", scale=classes)
    data = draw_values((Arg("x", x_struct.shape), target), dtype)
    init_cast = _jitted_init(name, tuple(sorted(o.get("model", {}).items())), dtype)

    def make_args(seed: int) -> tuple[Any, ...]:
        return (init_cast(jax.random.key(seed)), *data(seed))

    return Case(network(ops), network(_ref), make_args, ("params", "x", target.name), (0, 1),
                (False, True, True))


# ---------------------------------------------------------------------------------- table
# d2:max_pool draws no deliberate ties: there the oracle is not self-consistent. JAX's JVP of
# lax.reduce_window(max) (select_and_gather_add), which is also the transpose of its VJP, can
# pick a different tied unit than the VJP (select_and_scatter_add) does, so autodiff's VJP of
# the VJP is not the transpose of its own VJP (e.g. x = [[0, 1], [1, 1]], 2x2 windows, stride
# (2, 1), right padding 1). jaxcnn's rule is consistent: first-order ties are checked by the
# max_pool row, and its second order at ties equals the exact transpose (tests/test_gradcheck.py).
#
# gn: rows (the second-order rules of jaxcnn.curvature against the squared Jacobian) draw with
# small=True: the oracle materialises each argument's Jacobian.
ENTRIES: tuple[Entry, ...] = (
    Entry("conv2d", _draw_conv, partial(_build_conv, "conv2d"), 240, 15, d2=(40, 8), vmap=(30, 8),
          fd=(4, 2), gn=(12, 3), gn_draw=partial(_draw_conv, small=True)),
    Entry("conv1d", partial(_draw_conv, nd=1), partial(_build_conv, "conv1d"), 60, 10, d2=(12, 6),
          vmap=(9, 6), fd=(3, 2), gn=(6, 3), gn_draw=partial(_draw_conv, nd=1, small=True)),
    Entry("conv3d", partial(_draw_conv, nd=3), partial(_build_conv, "conv3d"), 40, 8, d2=(8, 4), fd=(2, 2),
          gn=(4, 2), gn_draw=partial(_draw_conv, nd=3, small=True)),
    Entry("conv_padding_mode", _draw_padding_mode, partial(_build_conv, "conv"), 30, 8, d2=(6, 4), fd=(2, 2),
          gn=(8, 2), gn_draw=partial(_draw_padding_mode, small=True)),
    Entry("conv_transpose", _draw_transpose, _build_transpose, 90, 10, d2=(18, 6), vmap=(9, 6), fd=(3, 2),
          gn=(6, 2), gn_draw=partial(_draw_transpose, small=True)),
    Entry("conv2d_input_grad", partial(_draw_conv, bias=False, pad_value=False),
          partial(_build_input_grad, "conv2d_input_grad"), 60, 15),
    Entry("conv2d_weight_grad", partial(_draw_conv, bias=False),
          partial(_build_weight_grad, "conv2d_weight_grad"), 60, 15),
    Entry("conv_input_grad", partial(_draw_conv_nd, bias=False, pad_value=False),
          partial(_build_input_grad, "conv_input_grad"), 30, 10),
    Entry("conv_weight_grad", partial(_draw_conv_nd, bias=False),
          partial(_build_weight_grad, "conv_weight_grad"), 30, 10),
    Entry("correlate2d", _draw_plain_2d, partial(_build_plain_2d, "correlate2d"), 30, 10),
    Entry("convolve2d", _draw_plain_2d, partial(_build_plain_2d, "convolve2d"), 30, 10),
    *(Entry(name, partial(_draw_activation, name), partial(_build_activation, name), 24, 8, d2=(12, 4),
            vmap=(12, 4) if name in _VMAP_ACTIVATIONS else None, gn=(4, 2),
            gn_draw=partial(_draw_activation, name, small=True))
      for name in registry.ACTIVATIONS),
    *(Entry(name, partial(_draw_pool, name), partial(_build_pool, name), 100 if name == "max_pool" else 60,
            10, d2=(24, 6), vmap=(12, 6), fd=(4, 2) if name == "max_pool" else (3, 3),
            d2_options={"ties": False} if name == "max_pool" else None,
            gn=(8, 2), gn_draw=partial(_draw_pool, name, small=True))  # 1-3 spatial dims
      for name in registry.POOLS),
    # the same pools over 1 and 3 spatial dims (rows `max_pool_1d`, `max_pool_3d`, ...)
    *(Entry(f"{name}_{nd}d", partial(_draw_pool, name, nd=nd), partial(_build_pool, name),
            30 if nd == 1 else 20, 10, d2=(6, 3), fd=(2, 2),
            d2_options={"ties": False} if name == "max_pool" else None)
      for name in registry.POOLS for nd in (1, 3)),
    Entry("dense", _draw_dense, _build_dense, 40, 10, d2=(18, 6), vmap=(12, 6), gn=(6, 3)),
    Entry("flatten", _draw_flatten, _build_flatten, 20, 10, gn=(4, 2),
          gn_draw=partial(_draw_flatten, small=True)),
    Entry("squared_error", _draw_squared_error, _build_squared_error, 40, 10, d2=(18, 6), vmap=(12, 6),
          gn=(4, 2)),
    Entry("softmax_cross_entropy", _draw_cross_entropy, _build_cross_entropy, 40, 10, d2=(18, 6),
          vmap=(12, 6), gn=(4, 2)),
    *(Entry(name, partial(_draw_model, name), partial(_build_model, name), 20, 10, vmap=(10, 5),
            network=True) for name in _NETWORKS),
)
"""The functions of the sweep, in table order (see `jaxcnn.gradcheck.cases.Entry`)."""


def default_registry(ops: Any = None) -> dict[str, Family]:
    """The sweep's rows, in table order, keyed by name.

    Args:
      ops: the custom side, any namespace with jaxcnn's public function names (default: the
        `jaxcnn` module). The reference side is always `jaxcnn.reference`.

    Returns:
      ``{name: Family}``: every public differentiable function, then the second-order (``d2:``),
      Gauss-Newton rule (``gn:``), per-example (``vmap:``) and finite-difference (``fd:``) rows,
      and the networks of `jaxcnn.models` (`ENTRIES` expanded by `jaxcnn.gradcheck.cases.expand`).
    """
    return expand(ENTRIES, jaxcnn if ops is None else ops)
