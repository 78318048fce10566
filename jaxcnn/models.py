r"""Networks as ``(init, apply)`` pairs whose layers are `jaxcnn` (or `jaxcnn.reference`) calls.

Each model is a `Model` named tuple::

    model = lecun1989()
    params = model.init(jax.random.key(0))           # a dict of arrays (a pytree)
    y = model.apply(params, x)                        # backward pass: the article's rules
    y_ref = model.apply(params, x, ops=jaxcnn.reference)   # the same network through autodiff

`apply` reaches every layer as ``ops.<name>`` (``ops.conv2d``, ``ops.tanh``, ``ops.max_pool``,
``ops.dense``, ``ops.flatten``) and does nothing else differentiable but fixed elementwise products
with constants, so ``jax.grad`` through ``ops=jaxcnn`` runs the custom VJP rules and through
``ops=jaxcnn.reference`` runs JAX's autodiff of the same forward computation: two independent
backward paths for one network. `apply` works under ``jax.jit`` and ``jax.vmap``; `init` takes a
``dtype`` (float32 by default, float64 with ``jax_enable_x64``). The constructors are cached: the
same arguments return the same `Model` (the same functions), so compiled steps are shared.

Models

- `lecun1989`: the network of LeCun et al. (1989), "Backpropagation applied to handwritten zip
  code recognition", Neural Computation 1(4), 541-551: 16x16 -> H1 8x8x12 -> H2 4x4x12 -> H3 30
  -> 10, squared error against +-1 targets.
- `lenet5`: LeNet-5 (LeCun et al. 1998) on 28x28 digits with a choice of activation and pooling,
  softmax cross-entropy on its 10 logits.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxcnn
from jaxcnn import registry
from jaxcnn._checks import fail

__all__ = [
    "LECUN1989_ACTIVATIONS",
    "LENET5_ACTIVATIONS",
    "LENET5_POOLINGS",
    "Model",
    "h2_connection_mask",
    "lecun1989",
    "lenet5",
]

Params = dict[str, dict[str, jax.Array]]


class Model(NamedTuple):
    """A network: ``init(key, dtype=float32) -> params`` and ``apply(params, x, *, ops=jaxcnn) -> y``.

    Attributes:
      init: draws the parameters from a ``jax.random`` key.
      apply: the forward pass; ``ops`` is the module whose functions make the layers, `jaxcnn`
        (custom VJPs, the article's formulas) or `jaxcnn.reference` (autodiff).
      input_shape: the per-example input ``(H, W, C)``.
      name: a short label (for logs and results).
    """

    init: Callable[..., Params]
    apply: Callable[..., jax.Array]
    input_shape: tuple[int, int, int]
    name: str


# ------------------------------------------------------------------------------------ helpers
def _check_input(fn: str, x: Any, shape: tuple[int, int, int]) -> None:
    """`x` must be a floating NHWC batch ``(N, *shape)``."""
    got = jnp.shape(x)
    if len(got) != 4 or tuple(got[1:]) != shape:
        raise fail(fn, f"`x` must have shape (N, {', '.join(map(str, shape))}) (NHWC), got {got}")
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise fail(fn, f"`x` must be a floating-point array, got dtype {dtype}", TypeError)


def _check_ops(fn: str, ops: Any, names: tuple[str, ...]) -> None:
    missing = [n for n in names if not callable(getattr(ops, n, None))]
    if missing:
        raise fail(
            fn,
            f"`ops` must provide {', '.join(names)} (jaxcnn or jaxcnn.reference); "
            f"{ops!r} lacks {', '.join(missing)}",
            TypeError,
        )


def _check_params(fn: str, params: Any, shapes: dict[str, dict[str, tuple[int, ...]]]) -> None:
    """`params` must be the dict of dicts that `init` returns: every layer's ``"w"`` and ``"b"``, of
    their shapes (a missing entry was a KeyError, a wrong shape an error of the layer's call)."""
    for layer, arrays in shapes.items():
        group = params.get(layer) if isinstance(params, Mapping) else None
        for name, shape in arrays.items():
            value = group.get(name) if isinstance(group, Mapping) else None
            if value is None:
                raise fail(fn, f"`params` must be the dict that init returns; it has no params[{layer!r}]"
                           f"[{name!r}] (expected shape {shape})", TypeError)
            if tuple(jnp.shape(value)) != shape:
                raise fail(fn, f"`params[{layer!r}][{name!r}]` has shape {tuple(jnp.shape(value))}; expected "
                           f"{shape} (the shape init gives)")


def _cached(build: Callable[..., Model]) -> Callable[..., Model]:
    """`functools.cache` of a model constructor whose arguments are checked before they are hashed:
    an unhashable one (a list) reaches the constructor's own check, not the cache's TypeError. The
    defaults are filled in first, so that ``lenet5()`` and ``lenet5(activation="relu")`` are one
    model (one compilation of the functions built on its ``apply``)."""
    cached, signature = functools.cache(build), inspect.signature(build)

    @functools.wraps(build)
    def constructor(**options: Any) -> Model:
        try:
            bound = signature.bind(**options)
            hash(tuple(options.values()))
        except TypeError:
            return build(**options)  # raises the library's (or Python's) error naming the argument
        bound.apply_defaults()
        return cached(**bound.kwargs)

    return constructor


def _check_dtype(fn: str, dtype: Any) -> jnp.dtype:
    """`init`'s dtype: a floating-point one; None is the default, float32 (NumPy reads None as
    float64)."""
    if dtype is None:
        return jnp.dtype(jnp.float32)
    try:
        d = jnp.dtype(dtype)
    except TypeError:
        raise fail(fn, f"`dtype` must be a floating-point dtype, got {dtype!r}", TypeError) from None
    if not jnp.issubdtype(d, jnp.floating):
        raise fail(fn, f"`dtype` must be a floating-point dtype, got {d}", TypeError)
    return d


def _check_key(fn: str, key: Any) -> None:
    """`key` is one PRNG key: ``jax.random.key(seed)``, or a legacy ``jax.random.PRNGKey(seed)``."""
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
        return
    if dtype == np.uint32 and shape == (2,):  # a raw key of jax.random.PRNGKey
        return
    got = f"{type(key).__name__} {key!r}" if dtype is None else f"an array of shape {shape} and dtype {dtype}"
    raise fail(fn, f"`key` must be one PRNG key, e.g. jax.random.key(0), got {got}", TypeError)


def _uniform(key: jax.Array, shape: tuple[int, ...], bound: float, dtype: jnp.dtype) -> jax.Array:
    """U[-bound, bound], drawn in `dtype`."""
    return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)


# ----------------------------------------------------------------------------------- lecun1989
_LECUN1989_SHAPES = {  # what init returns: untied biases for H1 and H2
    "H1": {"w": (5, 5, 1, 12), "b": (8, 8, 12)},
    "H2": {"w": (5, 5, 12, 12), "b": (4, 4, 12)},
    "H3": {"w": (192, 30), "b": (30,)},
    "out": {"w": (30, 10), "b": (10,)},
}


def h2_connection_mask() -> np.ndarray:
    """The 0/1 table of which H1 maps feed which H2 maps in `lecun1989`: ``(12, 12)``, [in, out].

    The paper says each H2 unit combines 8 of the 12 H1 maps but does not publish which. This is
    the pattern of Karpathy's 2022 reproduction: the H1 maps form three blocks
    ``A = 0-3, B = 4-7, C = 8-11``; H2 maps 0-3 read ``A+B``, maps 4-7 read ``B+C``, maps 8-11
    read ``A+C``. Every H2 map reads exactly 8 H1 maps and every H1 map feeds exactly 8 H2 maps
    (the table is balanced both ways), and it is deterministic.

    Returns:
      float64 numpy array ``mask[c, d] = 1`` if H1 map ``c`` feeds H2 map ``d``, else 0.
    """
    blocks = (range(0, 4), range(4, 8), range(8, 12))
    reads = ((0, 1), (1, 2), (0, 2))  # H2 block j reads these H1 blocks
    mask = np.zeros((12, 12))
    for out_block, in_blocks in enumerate(reads):
        for ib in in_blocks:
            for c in blocks[ib]:
                mask[c, blocks[out_block].start : blocks[out_block].stop] = 1.0
    return mask


LECUN1989_ACTIVATIONS = ("tanh", "scaled_tanh")
"""`lecun1989`'s ``activation`` choices: the paper's tanh family (its targets are +-1)."""


@_cached
def lecun1989(*, activation: str = "tanh") -> Model:
    r"""The zip-code network of LeCun et al. (1989), with the paper's connections and init.

    ====== ============================================================ ============ =========
    layer  computation                                                  output       fan-in F
    ====== ============================================================ ============ =========
    input  16x16 grey image in [-1, 1]                                  16x16x1
    H1     12 kernels 5x5, stride 2, input padded by 2 with -1,         8x8x12       25
           one bias per unit (untied, ``b (8, 8, 12)``)
    H2     12 kernels 5x5x12 times a fixed 0/1 mask (each H2 map reads  4x4x12       200
           8 of the 12 H1 maps, `h2_connection_mask`), stride 2,
           H1 padded by 2 with -1, untied bias ``(4, 4, 12)``
    H3     dense 192 -> 30                                              30           192
    out    dense 30 -> 10                                               10           30
    ====== ============================================================ ============ =========

    Every layer, output included, is followed by the activation. Trained with the squared error
    (Eq 9) against +-1 targets (`jaxcnn.datasets.one_hot_pm1`). Weights are drawn from
    ``U[-2.4/sqrt(F), 2.4/sqrt(F)]`` with ``F`` the fan-in (for H2, ``8 * 25 = 200``: masked
    connections do not count); biases start at 0. The masked H2 weights are stored as 0 and,
    because `apply` multiplies the kernel by the mask, always get zero gradient.

    The activation: ``"tanh"`` (default) is the plain hyperbolic tangent that DESIGN names (and
    Karpathy's 2022 reproduction used); the +-1 targets are then its asymptotes. The paper itself
    used "a scaled hyperbolic tangent" with the targets inside its quasi-linear range, which
    ``"scaled_tanh"`` (LeCun's ``1.7159 tanh(2x/3)``, ``f(+-1) = +-1``) reproduces. Measured on the
    embedded 3,000/2,000 digits with per-example SGD for 23 passes, the best three-seed mean test
    error of a learning-rate sweep was 4.8% with plain tanh and 5.5% with the scaled tanh, so plain
    tanh is the default.

    Args:
      activation: ``"tanh"`` or ``"scaled_tanh"``.

    Returns:
      `Model`; ``apply(params, x, *, ops=jaxcnn)`` maps ``x (N, 16, 16, 1)`` to ``(N, 10)``.
    """
    fn = "lecun1989"
    registry.choose(fn, "activation", activation, LECUN1989_ACTIVATIONS)
    mask_np = h2_connection_mask()

    def init(key: jax.Array, dtype: Any = jnp.float32) -> Params:
        _check_key(f"{fn}.init", key)
        d = _check_dtype(f"{fn}.init", dtype)
        k1, k2, k3, k4 = jax.random.split(key, 4)
        shapes = _LECUN1989_SHAPES
        kernel_mask = jnp.asarray(np.broadcast_to(mask_np, shapes["H2"]["w"]), d)
        fan_in = {"H1": 25, "H2": 8 * 25, "H3": 192, "out": 30}  # H2: 8 of the 12 H1 maps feed each map
        params = {name: {"w": _uniform(k, shapes[name]["w"], 2.4 / np.sqrt(fan_in[name]), d),
                         "b": jnp.zeros(shapes[name]["b"], d)}
                  for k, name in zip((k1, k2, k3, k4), shapes, strict=True)}
        params["H2"]["w"] = params["H2"]["w"] * kernel_mask
        return params

    def apply(params: Params, x: jax.Array, *, ops: ModuleType = jaxcnn) -> jax.Array:
        _check_input(f"{fn}.apply", x, (16, 16, 1))
        _check_params(f"{fn}.apply", params, _LECUN1989_SHAPES)
        _check_ops(f"{fn}.apply", ops, ("conv2d", "dense", "flatten", activation))
        f = getattr(ops, activation)
        w2 = params["H2"]["w"]
        kernel_mask = jnp.asarray(np.broadcast_to(mask_np, (5, 5, 12, 12)), w2.dtype)
        h = f(ops.conv2d(x, params["H1"]["w"], params["H1"]["b"], stride=2, padding=2, pad_value=-1.0))
        h = f(ops.conv2d(h, w2 * kernel_mask, params["H2"]["b"], stride=2, padding=2, pad_value=-1.0))
        h = f(ops.dense(ops.flatten(h), params["H3"]["w"], params["H3"]["b"]))
        return f(ops.dense(h, params["out"]["w"], params["out"]["b"]))

    return Model(init=init, apply=apply, input_shape=(16, 16, 1), name=f"lecun1989-{activation}")


# -------------------------------------------------------------------------------------- lenet5
LENET5_ACTIVATIONS = registry.ACTIVATIONS
"""`lenet5`'s ``activation`` choices: every activation of the op table (`jaxcnn.registry`)."""

LENET5_POOLINGS = tuple(name.removesuffix("_pool") for name in registry.POOLS)
"""`lenet5`'s ``pooling`` choices: every pool of the op table, ``"max"`` for `jaxcnn.max_pool`, ..."""

_LENET5_SHAPES = {  # layer: (the kernel's shape, its fan-in)
    "C1": ((5, 5, 1, 6), 25),
    "C3": ((5, 5, 6, 16), 150),
    "C5": ((400, 120), 400),
    "F6": ((120, 84), 120),
    "out": ((84, 10), 84),
}
_LENET5_PARAMS = {name: {"w": shape, "b": shape[-1:]} for name, (shape, _) in _LENET5_SHAPES.items()}
"""What `lenet5`'s init returns, the shapes its apply checks."""

# Variance-scaling init (uniform, fan-in): He's gain 2 for the rectifiers, LeCun's 1 otherwise.
_RECTIFIER_GAIN = {"relu": 2.0, "leaky_relu": 2.0}


@_cached
def lenet5(*, activation: str = "relu", pooling: str = "max") -> Model:
    r"""LeNet-5 (LeCun et al. 1998) for 28x28 digits, with a choice of activation and pooling.

    ============ =================================================== ==========
    layer        computation                                         output
    ============ =================================================== ==========
    input        28x28 grey image                                    28x28x1
    C1           6 kernels 5x5, padding 2 (the 32x32 of the paper),  28x28x6
                 tied bias, activation
    S2           pooling 2x2, stride 2                               14x14x6
    C3           16 kernels 5x5x6 (fully connected), tied bias,      10x10x16
                 activation
    S4           pooling 2x2, stride 2                               5x5x16
    C5           flatten, dense 400 -> 120, activation               120
    F6           dense 120 -> 84, activation                         84
    out          dense 84 -> 10 (logits, for softmax cross-entropy)  10
    ============ =================================================== ==========

    Weights: ``U[-sqrt(3 g / F), sqrt(3 g / F)]``, ``F`` the fan-in, gain ``g = 2`` for relu and
    leaky_relu (He), ``1`` otherwise (LeCun); biases 0.

    Args:
      activation: one of `LENET5_ACTIVATIONS` (``"relu"``, ``"leaky_relu"``, ``"tanh"``,
        ``"scaled_tanh"``, ``"sigmoid"``, ...: the activations of `jaxcnn.registry`).
      pooling: one of `LENET5_POOLINGS` (``"max"``, ``"avg"``, ``"l2"``, ...): ``pooling + "_pool"``
        is the function.

    Returns:
      `Model`; ``apply(params, x, *, ops=jaxcnn)`` maps ``x (N, 28, 28, 1)`` to logits ``(N, 10)``.
    """
    fn = "lenet5"
    registry.choose(fn, "activation", activation, LENET5_ACTIVATIONS)
    pool_name = registry.choose(fn, "pooling", pooling, LENET5_POOLINGS) + "_pool"
    gain = _RECTIFIER_GAIN.get(activation, 1.0)

    def init(key: jax.Array, dtype: Any = jnp.float32) -> Params:
        _check_key(f"{fn}.init", key)
        d = _check_dtype(f"{fn}.init", dtype)
        keys = jax.random.split(key, len(_LENET5_SHAPES))
        params = {}
        for k, (name, (shape, fan_in)) in zip(keys, _LENET5_SHAPES.items(), strict=True):
            bound = float(np.sqrt(3.0 * (1.0 if name == "out" else gain) / fan_in))
            params[name] = {"w": _uniform(k, shape, bound, d), "b": jnp.zeros((shape[-1],), d)}
        return params

    def apply(params: Params, x: jax.Array, *, ops: ModuleType = jaxcnn) -> jax.Array:
        _check_input(f"{fn}.apply", x, (28, 28, 1))
        _check_params(f"{fn}.apply", params, _LENET5_PARAMS)
        _check_ops(f"{fn}.apply", ops, ("conv2d", "dense", "flatten", activation, pool_name))
        f = registry.lookup(ops, activation, registry.ACTIVATIONS, fn=f"{fn}.apply", arg="activation")
        pool = registry.lookup(ops, pool_name, registry.POOLS, fn=f"{fn}.apply", arg="pooling")
        h = pool(f(ops.conv2d(x, params["C1"]["w"], params["C1"]["b"], padding=2)), 2)
        h = pool(f(ops.conv2d(h, params["C3"]["w"], params["C3"]["b"])), 2)
        h = f(ops.dense(ops.flatten(h), params["C5"]["w"], params["C5"]["b"]))
        h = f(ops.dense(h, params["F6"]["w"], params["F6"]["b"]))
        return ops.dense(h, params["out"]["w"], params["out"]["b"])

    return Model(
        init=init, apply=apply, input_shape=(28, 28, 1), name=f"lenet5-{activation}-{pooling}"
    )
