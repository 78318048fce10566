"""The function table of the `python -m jaxcnn.gradcheck` sweep (private).

A `Family` is one row of the sweep's table: it draws *static* configurations (shapes and
options, JSON-serialisable) from a seeded generator and builds from one a `Case`: the custom
function and its reference twin with those options bound, and a `make_args(seed)` that draws the
argument *values* from a per-config seed. The sweep compiles one comparison per static
configuration and runs it on many value sets, so compilation does not dominate.

Row kinds:

* ``name`` — the custom VJP of the function against autodiff of `jaxcnn.reference`;
* ``d2:name`` — second order: the function ``(args, u) -> vjp(f, args)(u)`` compared the same way,
  i.e. the VJP of the VJP (the backward rules are differentiable JAX);
* ``vmap:name`` — per-example gradients, ``vmap`` over the batch of the VJP of one example;
* ``fd:name`` — central finite differences in float64 of the custom and of the reference function.

`default_registry(ops)` builds the table with ``ops`` (default: the `jaxcnn` module) as the
custom side; the reference side is always `jaxcnn.reference`. A namespace with a planted wrong
rule in place of ``ops.conv2d`` turns every row that uses conv2d (conv2d, d2:conv2d,
vmap:conv2d, fd:conv2d, the networks) into a test of the checker itself.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxcnn
from jaxcnn import reference as _ref

__all__ = ["Case", "Family", "default_registry"]

Options = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Case:
    """One static configuration, ready to check on many value sets.

    Attributes:
      custom: the function under test, options bound; positional array arguments only.
      reference: its autodiff twin, same signature.
      make_args: per-config seed -> the positional arguments (NumPy-generated values, so the
        same seed gives the same values on every backend).
      argnames: a name per positional argument.
      argnums: the differentiable positions (the rest, e.g. integer labels, are held fixed).
      batched: per argument, whether its leading axis is the batch (used by ``vmap:`` rows).
    """

    custom: Callable[..., Any]
    reference: Callable[..., Any]
    make_args: Callable[[int], tuple[Any, ...]]
    argnames: tuple[str, ...]
    argnums: tuple[int, ...]
    batched: tuple[bool, ...]


def _available() -> str | None:
    return None


@dataclasses.dataclass(frozen=True)
class Family:
    """One row of the sweep.

    Attributes:
      name: the row's name (``conv2d``, ``d2:conv2d``, ``vmap:dense``, ``fd:tanh``, ...).
      draw: ``(rng, i) -> options``, the i-th static configuration (JSON-serialisable values).
      build: ``(options, dtype_name) -> Case``; raises ValueError (via the library's own
        validation) for a configuration the library rejects: the sweep counts it as invalid.
      configs: number of configs in the default sweep (scaled by ``--configs``).
      values_per_shape: value sets drawn per static configuration (one compilation each).
      kind: ``"vjp"`` (`jaxcnn.gradcheck.vjp_checker`) or ``"fd"`` (`fd_checker`, float64).
      dtype: a dtype name forced for this row (``"float64"`` for ``fd:`` rows), else None.
      unavailable: ``() -> None`` or the reason the row cannot run (e.g. no `jaxcnn.models`).
    """

    name: str
    draw: Callable[[np.random.Generator, int], Options]
    build: Callable[[Options, str], Case]
    configs: int
    values_per_shape: int
    kind: str = "vjp"
    dtype: str | None = None
    unavailable: Callable[[], str | None] = _available


# ------------------------------------------------------------------------------- values
class _Arg(NamedTuple):
    """How to draw one argument.

    kind: ``normal`` (``scale`` * N(0, 1); with ``zeros`` about 1/8 of the entries exactly 0),
    ``quant`` (integers -2..2 times ``scale``: ties and zeros on purpose), ``labels`` (ints in
    ``[0, scale)``), ``onehot`` (rows of ``eye(shape[1])``), ``pm1`` (-1 with one +1 per row).
    """

    name: str
    shape: tuple[int, ...]
    kind: str = "normal"
    scale: float = 1.0
    zeros: bool = False


def _draw_value(rng: np.random.Generator, arg: _Arg, dtype: str) -> jax.Array:
    if arg.kind == "labels":
        return jnp.asarray(rng.integers(0, int(arg.scale), arg.shape).astype(np.int32))
    if arg.kind == "normal":
        v = rng.standard_normal(arg.shape) * arg.scale
        if arg.zeros:
            v = np.where(rng.random(arg.shape) < 0.125, 0.0, v)
    elif arg.kind == "quant":
        v = rng.integers(-2, 3, arg.shape) * arg.scale
    elif arg.kind in ("onehot", "pm1"):
        n, k = arg.shape
        v = np.eye(k)[rng.integers(0, k, n)]
        if arg.kind == "pm1":
            v = 2.0 * v - 1.0
    else:
        raise ValueError(f"unknown argument kind {arg.kind!r}")
    # Cast in NumPy first: no silent float64 -> float32 canonicalisation (and its warning).
    return jnp.asarray(np.asarray(v, dtype=jnp.dtype(dtype)))


def _values(args: tuple[_Arg, ...], dtype: str) -> Callable[[int], tuple[Any, ...]]:
    def make_args(seed: int) -> tuple[Any, ...]:
        rng = np.random.default_rng(seed)
        return tuple(_draw_value(rng, a, dtype) for a in args)

    return make_args


def _case(custom, reference, args: tuple[_Arg, ...], dtype: str, argnums=None, batched=None) -> Case:
    n = len(args)
    if argnums is None:
        argnums = tuple(i for i, a in enumerate(args) if a.kind != "labels")
    return Case(
        custom=custom,
        reference=reference,
        make_args=_values(args, dtype),
        argnames=tuple(a.name for a in args),
        argnums=tuple(argnums),
        batched=tuple(batched) if batched is not None else (True,) + (False,) * (n - 1),
    )


def _tup(value: Any) -> Any:
    """JSON lists back to the tuples the library's options use."""
    if isinstance(value, list):
        return tuple(_tup(v) for v in value)
    return value


def _out_shape(fn: Callable[..., Any], shapes: list[tuple[int, ...]], dtype: str, **kw) -> tuple[int, ...]:
    """Output shape of the *reference* `fn`; its validation raises ValueError for a bad config."""
    structs = [jax.ShapeDtypeStruct(tuple(s), jnp.dtype(dtype)) for s in shapes]
    return tuple(jax.eval_shape(partial(fn, **kw), *structs).shape)


# ------------------------------------------------------------------------------ drawing
_PADDINGS = ("VALID", "SAME", "FULL", "int", "pair", "explicit")


def _int_or_pair(rng: np.random.Generator, lo: int, hi: int) -> int | list[int]:
    a, b = (int(v) for v in rng.integers(lo, hi + 1, 2))
    return a if rng.random() < 0.5 else [a, b]


def _padding(rng: np.random.Generator, form: str, max_pad: tuple[int, int]) -> Any:
    """One padding of the given form, amounts in ``[0, max_pad]`` per axis."""
    def amount(axis: int) -> int:
        return int(rng.integers(0, max_pad[axis] + 1))

    if form == "int":
        return int(rng.integers(0, min(max_pad) + 1))
    if form == "pair":
        return [amount(0), amount(1)]
    if form == "explicit":
        return [[amount(0), amount(0)], [amount(1), amount(1)]]
    return form


def _hw_near(rng: np.random.Generator, extent: int, below: int = 2, above: int = 7) -> int:
    """A size near a window extent: mostly larger, sometimes smaller (an invalid VALID config)."""
    return int(rng.integers(max(1, extent - below), extent + above))


def _draw_conv(rng: np.random.Generator, i: int, *, bias: bool = True, pad_value: bool = True) -> Options:
    groups = int(rng.choice([1, 1, 1, 2, 3, 4]))
    c_g = int(rng.integers(1, 8 // groups + 1))
    d_g = int(rng.integers(1, 8 // groups + 1))
    k = [int(v) for v in rng.integers(1, 8, 2)]  # 1..7, non-square as often as not
    stride = _int_or_pair(rng, 1, 3)
    dilation = _int_or_pair(rng, 1, 2)
    dil = dilation if isinstance(dilation, list) else [dilation, dilation]
    extent = [d * (kk - 1) + 1 for d, kk in zip(dil, k, strict=True)]
    options: Options = {
        "x_shape": [int(rng.integers(1, 5)), _hw_near(rng, extent[0]), _hw_near(rng, extent[1]),
                    groups * c_g],
        "w_shape": [k[0], k[1], c_g, groups * d_g],
        "stride": stride,
        "padding": _padding(rng, _PADDINGS[i % 6], (3, 3)),
        "dilation": dilation,
        "groups": groups,
        "flip": bool(rng.integers(2)),
    }
    if pad_value:
        options["pad_value"] = float(rng.choice([0.0, -1.0]))
    if bias:
        options["bias"] = ("none", "tied", "untied")[(i + i // 6) % 3]  # all 18 with the padding
    lowerings = _lowerings()
    if len(lowerings) > 1:  # every lowering of the custom conv (the reference has one)
        options["lowering"] = lowerings[i % len(lowerings)]
    return options


def _lowerings() -> tuple[str, ...]:
    """The conv lowerings `jaxcnn._lowering.force` can select ("auto" alone when it cannot)."""
    try:
        module = importlib.import_module("jaxcnn._lowering")
    except ImportError:
        return ("auto",)
    names = tuple(getattr(module, "LOWERINGS", ("auto",)))
    return names if callable(getattr(module, "force", None)) else ("auto",)


def _with_lowering(fn: Callable[..., Any], o: Options) -> Callable[..., Any]:
    """`fn` traced under ``jaxcnn._lowering.force(o["lowering"])`` (the choice is baked into the
    conv's static configuration at trace time, so its backward uses the same lowering)."""
    name = o.get("lowering", "auto")
    if name == "auto":
        return fn
    force = importlib.import_module("jaxcnn._lowering").force

    def lowered(*args: Any) -> Any:
        with force(name):
            return fn(*args)

    return lowered


def _conv_kw(o: Options, *, pad_value: bool = True) -> dict[str, Any]:
    kw = {
        "stride": _tup(o["stride"]),
        "padding": _tup(o["padding"]),
        "dilation": _tup(o["dilation"]),
        "groups": int(o["groups"]),
        "flip": bool(o["flip"]),
    }
    if pad_value:
        kw["pad_value"] = float(o["pad_value"])
    return kw


def _draw_plain_2d(rng: np.random.Generator, i: int) -> Options:
    k = [int(v) for v in rng.integers(1, 8, 2)]
    return {"I_shape": [_hw_near(rng, k[0], 1, 8), _hw_near(rng, k[1], 1, 8)], "K_shape": k}


def _draw_pool(rng: np.random.Generator, i: int, *, avg: bool = False, tie_name: str = "ties") -> Options:
    window = _int_or_pair(rng, 1, 4)
    win = window if isinstance(window, list) else [window, window]
    stride = None if i % 3 == 0 else _int_or_pair(rng, 1, 3)  # None: the window (the article's case)
    options: Options = {
        "x_shape": [int(rng.integers(1, 5)), _hw_near(rng, win[0], 1, 8), _hw_near(rng, win[1], 1, 8),
                    int(rng.integers(1, 9))],
        "window": window,
        "stride": stride,
        "padding": _padding(rng, _PADDINGS[(i // 2) % 6], (win[0] - 1, win[1] - 1)),
        tie_name: i % 2 == 0,  # max pool: inputs quantised to 5 values, deliberate ties
    }
    if avg:
        options["count_include_pad"] = (i // 2) % 4 < 2
    return options


def _draw_activation(rng: np.random.Generator, i: int, *, slope: bool = False) -> Options:
    if i % 2 == 0:
        shape = [int(rng.integers(1, 5)), int(rng.integers(1, 9)), int(rng.integers(1, 9)),
                 int(rng.integers(1, 9))]
    else:
        shape = [int(rng.integers(1, 5)), int(rng.integers(1, 33))]
    options: Options = {"x_shape": shape, "scale": float(rng.choice([1.0, 3.0])), "zeros": True}
    if slope:
        options["negative_slope"] = float(rng.choice([0.01, 0.1, 0.3]))
    return options


def _smooth(o: Options) -> bool:
    """``fd:`` rows set ``smooth``: no deliberate ties or exact zeros (kinks break differences)."""
    return bool(o.get("smooth", False))


# ---------------------------------------------------------------------------- builders
def _build_conv2d(ops: Any, o: Options, dtype: str) -> Case:
    kw = _conv_kw(o)
    x_shape, w_shape = tuple(o["x_shape"]), tuple(o["w_shape"])
    out = _out_shape(_ref.conv2d, [x_shape, w_shape], dtype, **kw)
    args = [_Arg("x", x_shape), _Arg("w", w_shape)]
    if o["bias"] == "tied":
        args.append(_Arg("b", (w_shape[3],)))
    elif o["bias"] == "untied":
        args.append(_Arg("b", (out[1], out[2], w_shape[3])))
    return _case(_with_lowering(partial(ops.conv2d, **kw), o), partial(_ref.conv2d, **kw), tuple(args), dtype)


def _build_input_grad(ops: Any, o: Options, dtype: str) -> Case:
    kw = _conv_kw(o, pad_value=False)
    x_shape, w_shape = tuple(o["x_shape"]), tuple(o["w_shape"])
    out = _out_shape(_ref.conv2d, [x_shape, w_shape], dtype, **kw)
    args = (_Arg("delta", out), _Arg("w", w_shape))

    def custom(delta, w):
        return ops.conv2d_input_grad(delta, w, x_shape, **kw)

    def reference(delta, w):
        return _ref.conv2d_input_grad(delta, w, x_shape, **kw)

    return _case(_with_lowering(custom, o), reference, args, dtype)


def _build_weight_grad(ops: Any, o: Options, dtype: str) -> Case:
    kw = _conv_kw(o)
    x_shape, w_shape = tuple(o["x_shape"]), tuple(o["w_shape"])
    out = _out_shape(_ref.conv2d, [x_shape, w_shape], dtype, **kw)
    args = (_Arg("x", x_shape), _Arg("delta", out))

    def custom(x, delta):
        return ops.conv2d_weight_grad(x, delta, w_shape, **kw)

    def reference(x, delta):
        return _ref.conv2d_weight_grad(x, delta, w_shape, **kw)

    return _case(_with_lowering(custom, o), reference, args, dtype, batched=(True, True))


def _build_plain_2d(name: str, ops: Any, o: Options, dtype: str) -> Case:
    args = (_Arg("I", tuple(o["I_shape"])), _Arg("K", tuple(o["K_shape"])))
    return _case(getattr(ops, name), getattr(_ref, name), args, dtype, batched=(False, False))


def _build_activation(name: str, ops: Any, o: Options, dtype: str) -> Case:
    x = _Arg("x", tuple(o["x_shape"]), scale=float(o["scale"]), zeros=bool(o["zeros"]) and not _smooth(o))
    custom, reference = getattr(ops, name), getattr(_ref, name)
    if "negative_slope" in o:
        custom = partial(custom, negative_slope=o["negative_slope"])
        reference = partial(reference, negative_slope=o["negative_slope"])
    return _case(custom, reference, (x,), dtype)


def _build_pool(name: str, ops: Any, o: Options, dtype: str) -> Case:
    kw: dict[str, Any] = {"window": _tup(o["window"]), "stride": _tup(o["stride"]),
                          "padding": _tup(o["padding"])}
    if "count_include_pad" in o:
        kw["count_include_pad"] = bool(o["count_include_pad"])
    x_shape = tuple(o["x_shape"])
    _out_shape(getattr(_ref, name), [x_shape], dtype, **kw)
    quantised = bool(o.get("ties", False) or o.get("zeros", False)) and not _smooth(o)
    x = _Arg("x", x_shape, kind="quant" if quantised else "normal", scale=0.5 if quantised else 1.0)
    return _case(partial(getattr(ops, name), **kw), partial(getattr(_ref, name), **kw), (x,), dtype)


def _draw_dense(rng: np.random.Generator, i: int) -> Options:
    return {"n": int(rng.integers(1, 5)), "features": int(rng.integers(1, 25)),
            "units": int(rng.integers(1, 11)), "bias": i % 2 == 0}


def _build_dense(ops: Any, o: Options, dtype: str) -> Case:
    args = [_Arg("x", (o["n"], o["features"])), _Arg("w", (o["features"], o["units"]))]
    if o["bias"]:
        args.append(_Arg("b", (o["units"],)))
    return _case(ops.dense, _ref.dense, tuple(args), dtype)


def _draw_flatten(rng: np.random.Generator, i: int) -> Options:
    rank = (4, 2, 3, 5)[i % 4]
    return {"x_shape": [int(rng.integers(1, 5))] + [int(v) for v in rng.integers(1, 6, rank - 1)]}


def _build_flatten(ops: Any, o: Options, dtype: str) -> Case:
    return _case(ops.flatten, _ref.flatten, (_Arg("x", tuple(o["x_shape"])),), dtype)


def _draw_squared_error(rng: np.random.Generator, i: int) -> Options:
    n = int(rng.integers(1, 5))
    shape = [n, int(rng.integers(1, 11))] if i % 4 < 2 else [n, 3, 3, int(rng.integers(1, 5))]
    return {"shape": shape, "reduction": ("sum", "mean")[i % 2]}


def _build_squared_error(ops: Any, o: Options, dtype: str) -> Case:
    kw = {"reduction": o["reduction"]}
    shape = tuple(o["shape"])
    args = (_Arg("y", shape), _Arg("t", shape))
    return _case(partial(ops.squared_error, **kw), partial(_ref.squared_error, **kw), args, dtype,
                 batched=(True, True))


def _draw_cross_entropy(rng: np.random.Generator, i: int) -> Options:
    return {"n": int(rng.integers(1, 5)), "classes": int(rng.integers(2, 11)),
            "labels": ("int", "onehot")[i % 2], "scale": float(rng.choice([1.0, 4.0]))}


def _build_cross_entropy(ops: Any, o: Options, dtype: str) -> Case:
    n, k = int(o["n"]), int(o["classes"])
    logits = _Arg("logits", (n, k), scale=float(o["scale"]))
    labels = _Arg("labels", (n,), kind="labels", scale=k) if o["labels"] == "int" else \
        _Arg("labels", (n, k), kind="onehot")
    return _case(ops.softmax_cross_entropy, _ref.softmax_cross_entropy, (logits, labels), dtype,
                 batched=(True, True))


# ------------------------------------------------------------------------------ networks
_MODEL_INPUTS = {"lecun1989": ((16, 16, 1),), "lenet5": ((28, 28, 1), (32, 32, 1))}


def _models_unavailable(name: str) -> str | None:
    try:
        models = importlib.import_module("jaxcnn.models")
    except Exception as err:  # noqa: BLE001 (any import failure: the row is skipped with the reason)
        return f"jaxcnn.models is not importable ({type(err).__name__}: {err})"
    if not callable(getattr(models, name, None)):
        return f"jaxcnn.models has no {name}()"
    return None


# Keyword options of the model factories, drawn per static config (a keyword the factory does
# not take is not passed; a value it rejects with ValueError makes the config invalid).
_MODEL_OPTIONS = {
    "lecun1989": {"activation": ("scaled_tanh", "tanh")},
    "lenet5": {"activation": ("relu", "tanh", "leaky_relu", "sigmoid", "scaled_tanh"),
               "pooling": ("max", "avg", "l2")},
}


def _draw_model(name: str, rng: np.random.Generator, i: int) -> Options:
    kwargs = {k: str(rng.choice(values)) for k, values in _MODEL_OPTIONS[name].items()}
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
    models = importlib.import_module("jaxcnn.models")
    factory = getattr(models, name)
    accepted = inspect.signature(factory).parameters
    init = factory(**{k: v for k, v in kwargs if k in accepted})[0]
    return jax.jit(lambda key: _cast_floats(init(key), dtype))


def _build_model(name: str, ops: Any, o: Options, dtype: str) -> Case:
    """The loss of a whole network w.r.t. its parameters and input, through ``ops=ops`` (the
    custom rules) vs ``ops=jaxcnn.reference``: squared error against +-1 targets (lecun1989),
    softmax cross-entropy against integer labels (lenet5)."""
    models = importlib.import_module("jaxcnn.models")
    factory = getattr(models, name)
    accepted = inspect.signature(factory).parameters
    model = factory(**{k: v for k, v in o.get("model", {}).items() if k in accepted})
    init, apply = model[0], model[1]  # (init, apply, ...): a pair or jaxcnn.models.Model
    n = int(o["n"])
    params_struct = jax.eval_shape(lambda: _cast_floats(init(jax.random.key(0)), dtype))
    errors = []
    input_shape = getattr(model, "input_shape", None)
    for hw in (tuple(input_shape),) if input_shape is not None else _MODEL_INPUTS[name]:
        x_struct = jax.ShapeDtypeStruct((n, *hw), jnp.dtype(dtype))
        try:
            y = jax.eval_shape(lambda p, x: apply(p, x, ops=_ref), params_struct, x_struct)
            break
        except (ValueError, TypeError) as err:
            errors.append(f"{hw}: {err}")
    else:
        raise TypeError(f"{name}: no input shape accepted: {'; '.join(errors)}")
    classes = int(y.shape[-1])
    loss_name = "squared_error" if name == "lecun1989" else "softmax_cross_entropy"

    def network(module: Any) -> Callable[..., Any]:
        def loss(params, x, target):
            return getattr(module, loss_name)(apply(params, x, ops=module), target)

        return loss

    target = _Arg("t", (n, classes), kind="pm1") if name == "lecun1989" else \
        _Arg("labels", (n,), kind="labels", scale=classes)
    data = _values((_Arg("x", (n, *hw)), target), dtype)

    init_cast = _jitted_init(name, tuple(sorted(o.get("model", {}).items())), dtype)

    def make_args(seed: int) -> tuple[Any, ...]:
        return (init_cast(jax.random.key(seed)), *data(seed))

    return Case(network(ops), network(_ref), make_args, ("params", "x", target.name), (0, 1),
                (False, True, True))


# ------------------------------------------------------------------------ derived rows
def _vjp_at(fn: Callable[..., Any], args: tuple[Any, ...], argnums: tuple[int, ...], u: Any) -> tuple:
    def restricted(*diff):
        full = list(args)
        for i, d in zip(argnums, diff, strict=True):
            full[i] = d
        return fn(*full)

    _, vjp = jax.vjp(restricted, *(args[i] for i in argnums))
    return vjp(u)


def _random_like(struct: Any, rng: np.random.Generator) -> Any:
    def leaf(s):
        return jnp.asarray(np.asarray(rng.standard_normal(s.shape), dtype=s.dtype))

    return jax.tree_util.tree_map(leaf, struct)


def _structs(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), args)


def _second_order(case: Case) -> Case:
    """``(args, u) -> vjp(f, args)(u)`` as a function: its VJP is the VJP of the VJP."""
    n = len(case.argnames)
    out = jax.eval_shape(case.reference, *_structs(case.make_args(0)))

    def first_order(fn):
        def grads(*a):
            g = _vjp_at(fn, a[:n], case.argnums, a[n])
            return {"d" + case.argnames[i]: gi for i, gi in zip(case.argnums, g, strict=True)}

        return grads

    def make_args(seed: int) -> tuple[Any, ...]:
        return (*case.make_args(seed), _random_like(out, np.random.default_rng([seed, 3])))

    return Case(first_order(case.custom), first_order(case.reference), make_args,
                (*case.argnames, "u"), (*case.argnums, n), (*case.batched, True))


def _per_example(case: Case, *, second_order: bool = True) -> Case:
    """Per-example gradients: ``vmap`` over the batch of one example's VJP (cotangent ``u_i``).

    With `second_order` the VJP of the per-example gradients is compared too; without, only the
    per-example gradients themselves (the networks: their second order under vmap would dominate
    the sweep's compile time)."""
    n = len(case.argnames)
    example = case.make_args(0)
    batch = next(jnp.shape(a)[0] for a, b in zip(example, case.batched, strict=True) if b)
    one = tuple(
        jax.ShapeDtypeStruct((1, *jnp.shape(a)[1:]), jnp.result_type(a)) if b else s
        for a, b, s in zip(example, case.batched, _structs(example), strict=True)
    )
    out = jax.eval_shape(case.reference, *one)  # one example's output
    in_axes = tuple(0 if b else None for b in case.batched) + (0,)

    def per_example(fn):
        def grads_one(*a):
            ex = tuple(ai[None] if b else ai for ai, b in zip(a[:n], case.batched, strict=True))
            g = _vjp_at(fn, ex, case.argnums, a[n])
            return {
                "d" + case.argnames[i]: jax.tree_util.tree_map(lambda t: t[0], gi) if case.batched[i] else gi
                for i, gi in zip(case.argnums, g, strict=True)
            }

        def grads(*a):
            return jax.vmap(grads_one, in_axes=in_axes)(*a)

        return grads

    def make_args(seed: int) -> tuple[Any, ...]:
        rng = np.random.default_rng([seed, 4])
        u = jax.tree_util.tree_map(
            lambda s: jnp.asarray(np.asarray(rng.standard_normal((batch, *s.shape)), dtype=s.dtype)), out
        )
        return (*case.make_args(seed), u)

    return Case(per_example(case.custom), per_example(case.reference), make_args,
                (*case.argnames, "u"), case.argnums if second_order else (), (*case.batched, True))


def _derived(prefix: str, base: Family, transform: Callable[[Case], Case], configs: int,
             values_per_shape: int, fixed: Options | None = None) -> Family:
    """A row checking ``transform(case)`` on `base`'s configurations (with `fixed` options)."""
    def draw(rng: np.random.Generator, i: int) -> Options:
        return {**base.draw(rng, i), **(fixed or {})}

    def build(o: Options, dtype: str) -> Case:
        return transform(base.build(o, dtype))

    return dataclasses.replace(base, name=prefix + base.name, draw=draw, build=build, configs=configs,
                               values_per_shape=values_per_shape)


def _finite_differences(base: Family, configs: int, values_per_shape: int,
                        argnums: tuple[int, ...] | None = None) -> Family:
    def draw(rng: np.random.Generator, i: int) -> Options:
        return {**base.draw(rng, i), "smooth": True}

    def build(o: Options, dtype: str) -> Case:
        case = base.build(o, dtype)
        return case if argnums is None else dataclasses.replace(case, argnums=argnums)

    return dataclasses.replace(base, name="fd:" + base.name, draw=draw, build=build, configs=configs,
                               values_per_shape=values_per_shape, kind="fd", dtype="float64")


# ------------------------------------------------------------------------------- table
_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "scaled_tanh", "sigmoid")
_POOLS = ("max_pool", "avg_pool", "l2_pool")


def default_registry(ops: Any = None) -> dict[str, Family]:
    """The sweep's rows, in table order, keyed by name.

    Args:
      ops: the custom side, any namespace with jaxcnn's public function names (default: the
        `jaxcnn` module). The reference side is always `jaxcnn.reference`.

    Returns:
      ``{name: Family}``: every public differentiable function, its second-order (``d2:``),
      per-example (``vmap:``) and finite-difference (``fd:``) rows, and the networks of
      `jaxcnn.models` (rows that report themselves unavailable when the module is missing).
    """
    ops = jaxcnn if ops is None else ops
    base: dict[str, Family] = {}

    def add(name: str, draw, build, configs: int, values: int, **kw: Any) -> None:
        base[name] = Family(name, draw, partial(build, ops), configs, values, **kw)

    add("conv2d", _draw_conv, _build_conv2d, 240, 15)
    add("conv2d_input_grad", partial(_draw_conv, bias=False, pad_value=False), _build_input_grad, 60, 15)
    add("conv2d_weight_grad", partial(_draw_conv, bias=False), _build_weight_grad, 60, 15)
    for name in ("correlate2d", "convolve2d"):
        add(name, _draw_plain_2d, partial(_build_plain_2d, name), 30, 10)
    for name in _ACTIVATIONS:
        draw = partial(_draw_activation, slope=name == "leaky_relu")
        add(name, draw, partial(_build_activation, name), 24, 12)
    add("max_pool", _draw_pool, partial(_build_pool, "max_pool"), 100, 10)
    add("avg_pool", partial(_draw_pool, avg=True), partial(_build_pool, "avg_pool"), 60, 10)
    add("l2_pool", partial(_draw_pool, tie_name="zeros"), partial(_build_pool, "l2_pool"), 60, 10)
    add("dense", _draw_dense, _build_dense, 40, 10)
    add("flatten", _draw_flatten, _build_flatten, 20, 10)
    add("squared_error", _draw_squared_error, _build_squared_error, 40, 10)
    add("softmax_cross_entropy", _draw_cross_entropy, _build_cross_entropy, 40, 10)
    for name in ("lecun1989", "lenet5"):
        add(name, partial(_draw_model, name), partial(_build_model, name), 20, 10,
            unavailable=partial(_models_unavailable, name))

    rows = list(base.values())
    second = {"conv2d": 40, **dict.fromkeys(_ACTIVATIONS, 12), **dict.fromkeys(_POOLS, 24),
              "dense": 18, "squared_error": 18, "softmax_cross_entropy": 18}
    # d2:max_pool draws no deliberate ties: there the oracle is not self-consistent. JAX's JVP of
    # lax.reduce_window(max) (select_and_gather_add), which is also the transpose of its VJP, can
    # pick a different tied unit than the VJP (select_and_scatter_add) does, so autodiff's VJP of
    # the VJP is not the transpose of its own VJP (e.g. x = [[0, 1], [1, 1]], 2x2 windows, stride
    # (2, 1), right padding 1). jaxcnn's rule is consistent: first-order ties are checked by the
    # max_pool row, and its second order at ties equals the exact transpose (tests/test_gradcheck.py).
    rows += [_derived("d2:", base[k], _second_order, n, 8 if k == "conv2d" else 6,
                      {"ties": False} if k == "max_pool" else None)
             for k, n in second.items()]
    per_example = {"conv2d": 30, **dict.fromkeys(_POOLS, 12), "dense": 12, "tanh": 12, "relu": 12,
                   "squared_error": 12, "softmax_cross_entropy": 12, "lecun1989": 10, "lenet5": 10}
    for k, n in per_example.items():
        model = k in _MODEL_OPTIONS
        transform = partial(_per_example, second_order=not model)
        rows.append(_derived("vmap:", base[k], transform, n, 8 if k == "conv2d" else 5 if model else 6))
    for k in base:
        twice = k in ("conv2d", "max_pool")
        # networks: differences along the parameters only (each direction is two forward passes)
        argnums = (0,) if k in _MODEL_OPTIONS else None
        rows.append(_finite_differences(base[k], 4 if twice else 3, 2 if twice else 3, argnums))
    return {row.name: row for row in rows}


def default_configs(registry: dict[str, Family]) -> int:
    """Configs of the default sweep: the sum of the rows' defaults."""
    return sum(f.configs for f in registry.values())


def allocate(family: Family, scale: float) -> list[int]:
    """Value sets per static configuration for ``round(configs * scale)`` (at least 1) configs."""
    total = max(1, round(family.configs * scale))
    shapes = math.ceil(total / family.values_per_shape)
    return [total // shapes + (1 if j < total % shapes else 0) for j in range(shapes)]
