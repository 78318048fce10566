"""Adapters: jaxcnn's backward rules inside Flax NNX and Equinox models (optional extras).

* `conv_general_dilated` — ``lax.conv_general_dilated``'s signature and results, computed by
  `jaxcnn.conv` (Eq 7 forward; Eq 14 and Eq 22 backward) or, for ``lhs_dilation > 1``, by
  `jaxcnn.conv_transpose` (Eq 22 forward). Give it to Flax:
  ``nnx.Conv(..., conv_general_dilated=jaxcnn.interop.conv_general_dilated)``.
* `Conv` / `ConvTranspose` (and `Conv1d` ... `ConvTranspose3d`) — `equinox.nn.Conv` and
  `equinox.nn.ConvTranspose` whose ``__call__`` runs jaxcnn's rules; `swap_equinox_convs` swaps
  every Equinox conv of a model for them, weights kept.

The core library never imports this module, Flax or Equinox; this module imports Equinox only
when an Equinox adapter is used (`conv_general_dilated` needs neither framework).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxcnn
from jaxcnn import _eq22
from jaxcnn._checks import check_float, fail, is_int

__all__ = ["conv_general_dilated"]

_FN = "conv_general_dilated"


def _ints(name: str, value: Any, nd: int) -> tuple[int, ...]:
    if value is None:
        return (1,) * nd
    given = value
    try:
        value = (value,) * nd if is_int(value) else tuple(value)
    except TypeError:  # not iterable
        value = ()
    if len(value) != nd or not all(is_int(v) for v in value):
        raise fail(_FN, f"`{name}` must be {nd} ints (one per spatial dim), got {given!r}", TypeError)
    if min(value) < 1:
        raise fail(_FN, f"`{name}` must be positive (one per spatial dim), got {value!r}")
    return tuple(int(v) for v in value)


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


def _transpose(x: jax.Array, perm: tuple[int, ...]) -> jax.Array:
    return x if perm == tuple(range(x.ndim)) else jnp.transpose(x, perm)


def _is_default(value: Any) -> bool:
    """None, or a precision lax itself takes as DEFAULT (``"fastest"``, ``"bfloat16"``, ...)."""
    if value is None or value is lax.DotAlgorithmPreset.DEFAULT:
        return True
    try:
        return lax.Precision(value) == lax.Precision.DEFAULT
    except (TypeError, ValueError, KeyError):
        return False


def _check_precision(precision: Any) -> None:
    """jaxcnn's rules run at the default precision; any other request would be silently dropped."""
    values = precision if isinstance(precision, (tuple, list)) else (precision,)
    if not all(_is_default(v) for v in values):
        raise fail(
            _FN,
            f"`precision` {precision!r} cannot be honoured: jaxcnn's rules run at the default precision "
            "(pass precision=None, or use lax.conv_general_dilated)",
        )


def conv_general_dilated(
    lhs: jax.Array, rhs: jax.Array, window_strides: Any, padding: Any, lhs_dilation: Any = None,
    rhs_dilation: Any = None, dimension_numbers: Any = None, feature_group_count: int = 1,
    batch_group_count: int = 1, precision: Any = None, preferred_element_type: Any = None,
    out_sharding: Any = None,
) -> jax.Array:
    """``lax.conv_general_dilated`` computed by jaxcnn's custom-VJP convolution.

    Same signature and results as ``jax.lax.conv_general_dilated``; the gradients are the article's
    rules (`jaxcnn.conv`: Eq 14 for the kernel, Eq 22 for the input). Any dimension numbers (they
    are mapped to channels-last by transposes, which are differentiated by JAX), 1-3 spatial dims,
    feature groups, kernel dilation, padding as ``(lo, hi)`` pairs of ints (negative amounts crop,
    as ``lax.pad``) or ``'SAME'``, ``'SAME_LOWER'``, ``'VALID'``; a window wider than the padded
    input gives lax's empty result; precisions lax reads as DEFAULT (``"fastest"``, ...) are taken.
    ``lhs_dilation > 1`` (a transposed convolution) runs `jaxcnn.conv_transpose` (negative padding
    crops; padding beyond ``d*(k-1)`` adds outputs that see no input, zeros), followed by a strided
    subsample when ``window_strides > 1``.

    Raises (the library's message format) for what jaxcnn cannot honour, rather than ignoring it:
    ``batch_group_count > 1``; a `precision` other than None/DEFAULT; a `preferred_element_type`
    other than the inputs' dtype; an `out_sharding`.

    Example (Flax NNX)::

        nnx.Conv(1, 8, (3, 3), conv_general_dilated=jaxcnn.interop.conv_general_dilated, rngs=rngs)
    """
    if batch_group_count != 1:
        raise fail(_FN, f"`batch_group_count` > 1 is not supported by jaxcnn's rules, "
                   f"got {batch_group_count!r}")
    _check_precision(precision)
    check_float(_FN, "lhs", lhs)
    check_float(_FN, "rhs", rhs)
    if out_sharding is not None:
        raise fail(_FN, f"`out_sharding` {out_sharding!r} cannot be honoured by jaxcnn's rules; pass None")
    dtype = jnp.result_type(lhs)
    try:
        preferred = (None if preferred_element_type is None  # as lax: float64 is float32 without x64
                     else jax.dtypes.canonicalize_dtype(jnp.dtype(preferred_element_type)))
    except TypeError:
        raise fail(_FN, f"`preferred_element_type` must be None or a dtype, got {preferred_element_type!r}",
                   TypeError) from None
    if preferred is not None and preferred != dtype:
        raise fail(
            _FN,
            f"`preferred_element_type` {preferred} differs from the inputs' dtype "
            f"{dtype}; jaxcnn's rules return the inputs' dtype",
            TypeError,
        )
    if jnp.ndim(lhs) not in (3, 4, 5) or jnp.ndim(rhs) != jnp.ndim(lhs):
        raise fail(_FN, f"`lhs` and `rhs` must have rank 3, 4 or 5 (1-3 spatial dims), got shapes "
                   f"{jnp.shape(lhs)} and {jnp.shape(rhs)}")
    if not is_int(feature_group_count) or feature_group_count < 1:
        raise fail(_FN, f"`feature_group_count` must be a positive int, got {feature_group_count!r}",
                   TypeError)
    try:
        dn = lax.conv_dimension_numbers(jnp.shape(lhs), jnp.shape(rhs), dimension_numbers)
    except (TypeError, ValueError) as err:
        raise fail(_FN, f"`dimension_numbers` {dimension_numbers!r} do not fit `lhs` {jnp.shape(lhs)} and "
                   f"`rhs` {jnp.shape(rhs)} ({err})", type(err)) from None
    nd = jnp.ndim(lhs) - 2
    lhs_perm = (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1])  # -> (N, *spatial, C)
    rhs_perm = (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0])  # -> (*k, C/groups, D)
    out_perm = (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1])
    x = _transpose(jnp.asarray(lhs), lhs_perm)
    w = _transpose(jnp.asarray(rhs), rhs_perm)
    c, c_g, d, groups = x.shape[-1], w.shape[-2], w.shape[-1], feature_group_count
    if c != c_g * groups or d % groups:
        raise fail(_FN, f"`lhs` has {c} feature(s) and `rhs` {c_g} input and {d} output feature(s): with "
                   f"`feature_group_count` {groups} they need lhs features = rhs input features * "
                   f"{groups} and rhs output features divisible by {groups}")
    strides = _ints("window_strides", window_strides, nd)
    base = _ints("lhs_dilation", lhs_dilation, nd)
    dilation = _ints("rhs_dilation", rhs_dilation, nd)
    extent = tuple(d * (k - 1) + 1 for k, d in zip(w.shape[:nd], dilation, strict=True))
    if isinstance(padding, str):
        if base != (1,) * nd:
            raise fail(_FN, f"string `padding` {padding!r} with `lhs_dilation` {base} is not defined "
                       "(as in lax): give (lo, hi) pairs")
        try:
            pads = lax.padtype_to_pads(x.shape[1:-1], extent, strides, padding)
        except (ValueError, RuntimeError, TypeError) as err:
            raise fail(_FN, f"`padding` {padding!r} is not 'SAME', 'SAME_LOWER' or 'VALID' ({err})") from None
    else:
        try:
            pads = [(lo, hi) for lo, hi in padding]
        except (TypeError, ValueError):
            pads = None
        if pads is None or not all(is_int(v) for pair in pads for v in pair):  # 1.7 is not 1
            raise fail(_FN, f"`padding` must be a string or {nd} (lo, hi) pairs of ints, got {padding!r}",
                       TypeError)
        if len(pads) != nd:
            raise fail(_FN, f"`padding` must have {nd} (lo, hi) pairs, got {padding!r}")
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)

    size = x.shape[1:-1]
    dilated = _dilated(size, base)  # lax's lhs
    padded = tuple(m + lo + hi for m, (lo, hi) in zip(dilated, pads, strict=True))
    if min(padded) < 0:
        where = "" if base == (1,) * nd else " dilated by `lhs_dilation`"
        raise fail(_FN, f"`padding` {pads} crops more than the input's spatial size {dilated}{where} (as in "
                   "lax, lo + size + hi must be >= 0 on every spatial dim)")
    out = tuple((p - e) // s + 1 if p >= e else 0 for p, e, s in zip(padded, extent, strides, strict=True))
    if 0 in out:  # a window wider than the padded input: lax's result is empty (jaxcnn refuses it)
        y = jnp.zeros((x.shape[0], *out, d), dtype)
    elif base != (1,) * nd:
        y = _transposed(x, w, base, strides, pads, dilation, extent, feature_group_count)
    else:
        if any(max(-lo, 0) + max(-hi, 0) > n for n, (lo, hi) in zip(size, pads, strict=True)):
            # a crop past the input's end on one side, padding on the other: lax.pad's own semantics
            x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)])
            pads = ((0, 0),) * nd
        else:  # negative padding crops: a slice (differentiated by JAX), then jaxcnn's non-negative padding
            crop = tuple(slice(max(-lo, 0), n - max(-hi, 0)) for n, (lo, hi) in zip(size, pads, strict=True))
            x = x[(slice(None), *crop, slice(None))]
            pads = tuple((max(lo, 0), max(hi, 0)) for lo, hi in pads)
        y = jaxcnn.conv(x, w, stride=strides, padding=pads, dilation=dilation, groups=feature_group_count)
    return _transpose(y, _inverse(out_perm))


def _dilated(size: tuple[int, ...], base: tuple[int, ...]) -> tuple[int, ...]:
    """The spatial size of the input with ``base - 1`` zeros inserted between its units (lax's
    ``lhs_dilation``); an empty axis stays empty."""
    return tuple((n - 1) * b + 1 if n else 0 for n, b in zip(size, base, strict=True))


def _transposed(x, w, base, strides, pads, dilation, extent, groups) -> jax.Array:
    """``lhs_dilation`` = the stride of a transposed convolution: lax correlates the zero-inserted input,
    padded by ``(PL, PH)``, with ``w``; `jaxcnn.conv_transpose` with stride `base`, padding
    ``(e-1-PL, e-1-PH)`` and the kernel rotated and its channels swapped per group is the same sum.
    Padding beyond ``e-1`` on a side only adds outputs whose windows hold no input: zeros, put in
    place after (the padding is clipped to ``e-1`` first); where the clipped sum has no output at all
    (no input, or a crop on the other side took it all), every output is such a zero."""
    nd = len(base)
    clipped = tuple((min(lo, e - 1), min(hi, e - 1)) for (lo, hi), e in zip(pads, extent, strict=True))
    dilated = _dilated(x.shape[1:-1], base)
    span = tuple(m + lo + hi - e + 1 for m, (lo, hi), e in zip(dilated, clipped, extent, strict=True))
    if min(span) <= 0 or 0 in dilated:
        full = tuple(m + lo + hi - e + 1 for m, (lo, hi), e in zip(dilated, pads, extent, strict=True))
        y = jnp.zeros((x.shape[0], *full, w.shape[-1]), x.dtype)
    else:
        kernel = _eq22.swap_io(w[(slice(None, None, -1),) * nd], groups)
        y = jaxcnn.conv_transpose(x, kernel, stride=base, dilation=dilation, groups=groups,
                                  padding=tuple((e - 1 - lo, e - 1 - hi) for (lo, hi), e in zip(
                                      clipped, extent, strict=True)))
        zeros = [(0, 0, 0), *((lo - a, hi - b, 0) for (lo, hi), (a, b) in zip(pads, clipped, strict=True)),
                 (0, 0, 0)]
        if any(z != (0, 0, 0) for z in zeros):
            y = lax.pad(y, jnp.zeros((), y.dtype), zeros)
    if strides != (1,) * nd:  # a strided correlation is the stride-1 one, subsampled
        y = y[(slice(None), *(slice(None, None, s) for s in strides), slice(None))]
    return y


# ------------------------------------------------------------------------------------ Equinox
def _equinox():
    try:
        import equinox
    except ImportError as err:  # pragma: no cover - the optional extra
        raise ImportError("jaxcnn.interop's Equinox adapters need equinox: "
                          "pip install 'jaxcnn[equinox]'") from err
    return equinox


def _channels_last(x: jax.Array, nd: int, name: str, fn: str) -> jax.Array:
    """Equinox's unbatched ``(C, *spatial)`` -> jaxcnn's ``(1, *spatial, C)``."""
    if jnp.ndim(x) != nd + 1:
        raise fail(fn, f"`{name}` must have rank {nd + 1} (C, *spatial) for {nd} spatial dims, got shape "
                   f"{jnp.shape(x)}")
    return jnp.moveaxis(x, 0, -1)[None]


def _eqx_pads(padding: Any, size: tuple[int, ...], extent: tuple[int, ...], stride: tuple[int, ...]):
    if isinstance(padding, str):
        return tuple(lax.padtype_to_pads(size, extent, stride, padding))
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def _conv_call(m, x: jax.Array) -> jax.Array:
    """`equinox.nn.Conv.__call__` by `jaxcnn.conv`: weight ``(O, I/g, *k)`` -> ``(*k, I/g, O)``.
    Zero padding goes through `conv_general_dilated`, which reads what Equinox (lax) accepts as lax
    does: negative padding crops, a window wider than the padded input gives an empty result."""
    nd = m.num_spatial_dims
    xl = _channels_last(x, nd, "x", "Conv")
    extent = tuple(d * (k - 1) + 1 for k, d in zip(m.kernel_size, m.dilation, strict=True))
    pads = _eqx_pads(m.padding, xl.shape[1:-1], extent, m.stride)
    if m.padding_mode == "ZEROS":
        y = conv_general_dilated(x[None], m.weight, m.stride, pads, rhs_dilation=m.dilation,
                                 feature_group_count=m.groups)[0]
        return y if m.bias is None else y + jnp.broadcast_to(m.bias, y.shape)
    w = jnp.transpose(m.weight, (*range(2, nd + 2), 1, 0))
    b = None if m.bias is None else m.bias.reshape(m.out_channels)
    y = jaxcnn.conv(xl, w, b, stride=m.stride, padding=pads, dilation=m.dilation, groups=m.groups,
                    padding_mode=m.padding_mode.lower())
    return jnp.moveaxis(y[0], -1, 0)


def _conv_transpose_call(m, x: jax.Array) -> jax.Array:
    """`equinox.nn.ConvTranspose.__call__` by `jaxcnn.conv_transpose`. Equinox correlates the
    zero-inserted input with ``weight (O, I/g, *k)`` padded by ``d*(k-1) - p``; jaxcnn's kernel is that
    of the convolution being transposed, ``(*k, O/g, I)``: the weight rotated, channels swapped per group."""
    if m.padding_mode != "ZEROS":
        raise fail("ConvTranspose", f"`padding_mode` {m.padding_mode!r} is not supported by jaxcnn's "
                   "ConvTranspose; use 'ZEROS' (or equinox.nn.ConvTranspose)", NotImplementedError)
    nd = m.num_spatial_dims
    xl = _channels_last(x, nd, "x", "ConvTranspose")
    pads_t = m._padding_transpose()  # Equinox's own (lo, hi) of the dilated-input correlation
    extent = tuple(d * (k - 1) + 1 for k, d in zip(m.kernel_size, m.dilation, strict=True))
    hwio = jnp.transpose(m.weight, (*range(2, nd + 2), 1, 0))  # (*k, I/g, O)
    y = _transposed(xl, hwio, tuple(m.stride), (1,) * nd, pads_t, tuple(m.dilation), extent, m.groups)
    if m.bias is not None:
        y = y + jnp.broadcast_to(m.bias.reshape(m.out_channels), y.shape)
    return jnp.moveaxis(y[0], -1, 0)


def _equinox_classes() -> dict[type, type]:
    """Equinox's conv classes -> jaxcnn's drop-ins (built once, on first use)."""
    if _CLASSES:
        return _CLASSES
    eqx = _equinox()

    def make(base, call, doc):
        cls = type(base.__name__, (base,), {
            "__call__": lambda self, x, *, key=None: call(self, x),
            "__doc__": f"`equinox.nn.{base.__name__}` {doc}",
            "__module__": __name__,
        })
        cls.__call__.__doc__ = base.__call__.__doc__
        return cls

    for base in (eqx.nn.Conv, eqx.nn.Conv1d, eqx.nn.Conv2d, eqx.nn.Conv3d):
        _CLASSES[base] = make(base, _conv_call, "whose call runs `jaxcnn.conv` (Eq 7; Eq 14, Eq 22 back).")
    nn = eqx.nn
    for base in (nn.ConvTranspose, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
        _CLASSES[base] = make(base, _conv_transpose_call,
                              "whose call runs `jaxcnn.conv_transpose` (Eq 22; Eq 7, Eq 14 backward).")
    return _CLASSES


_CLASSES: dict[type, type] = {}


def _converted(module):
    """The same module (every field, the weights included) as an instance of the jaxcnn class."""
    cls = _equinox_classes()[type(module)]
    new = object.__new__(cls)
    for name, value in vars(module).items():
        object.__setattr__(new, name, value)
    return new


def swap_equinox_convs(model):
    """`model` with every ``equinox.nn.Conv*`` and ``equinox.nn.ConvTranspose*`` replaced (``eqx.tree_at``)
    by jaxcnn's drop-in of the same class name, weights and configuration kept: the forward values are
    Equinox's, the backward the article's rules. Subclasses of Equinox's convs are left alone (their
    ``__call__`` may differ), and so is a ``ConvTranspose*`` whose ``padding_mode`` is not "ZEROS"
    (jaxcnn's drop-in would refuse every call: `conv_transpose` has no such padding)."""
    eqx = _equinox()
    classes = _equinox_classes()
    swappable = tuple(classes)
    transposed = tuple(base for base in classes if issubclass(base, eqx.nn.ConvTranspose))

    def is_conv(node):
        return type(node) in classes and not (type(node) in transposed and node.padding_mode != "ZEROS")

    found = [node for node in jax.tree_util.tree_leaves(model, is_leaf=lambda n: isinstance(n, swappable))
             if is_conv(node)]
    if not found:
        return model
    if is_conv(model):
        return _converted(model)

    def where(m):
        return [node for node in jax.tree_util.tree_leaves(m, is_leaf=lambda n: isinstance(n, swappable))
                if is_conv(node)]

    return eqx.tree_at(where, model, [_converted(node) for node in found])


def __getattr__(name: str):
    """`Conv`, `Conv1d`, ..., `ConvTranspose3d`: jaxcnn's Equinox drop-ins (Equinox imported on use)."""
    eqx_names = ("Conv", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose", "ConvTranspose1d", "ConvTranspose2d",
                 "ConvTranspose3d")
    if name in eqx_names:
        eqx = _equinox()
        return _equinox_classes()[getattr(eqx.nn, name)]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
