"""The article's illustrations, drawn from real jaxcnn computations.

    pip install -e ".[experiments]" && python experiments/figures.py [--out DIR] [--run DIR] [--quick]

Every number printed in a cell is computed here by the library (`jaxcnn.correlate2d`,
`jaxcnn.conv2d_weight_grad`, `jaxcnn.conv2d_input_grad`, ``jax.vjp`` of `jaxcnn.max_pool`, ...);
none is typed in, and each figure checks the identity it shows (Eq 3, Eq 14 against autodiff, Eq 22
against the custom VJP, ...) before drawing it. The PNGs, written under ``--out`` (default
``runs/figures``):

    a_correlation_vs_convolution.png   Eq 1-3: I (x) K, and I * K = I (x) rot180(K)
    b_forward_weight_sharing.png       Eq 7: the sliding window, one colour per shared weight
    c_weight_gradient_eq14.png         Eq 13-14: dE/dw = the input cross-correlated with the deltas
    d_deltas_eq22.png                  Eq 20-22: padded deltas (x) rot180(w), times f'(x) of tanh
    e_stride2_dilated_deltas.png       stride 2: the deltas dilated with zeros before Eq 14 and Eq 22
    f_max_pool_routing.png             max pooling: the winning unit of each block gets the delta
    g_avg_pool_spreading.png           average pooling: delta / (N*N) to every unit of the block
    h_lecun1989_h1.png                 the 12 learned 5x5 H1 kernels of lecun1989 and one digit's maps

Figure (h) needs trained parameters: with ``--run DIR`` they are read from the checkpoint that
``experiments/lecun1989.py --out DIR`` writes (``DIR/checkpoints/custom.npz``, else
``reference.npz``; a ``.npz`` path works too); otherwise the network is trained here for a few
passes of per-example SGD (`jaxcnn.train.make_sgd_epoch`, ``optax.sgd``) on
`jaxcnn.datasets.lecun1989_data` — with ``--quick`` on 30 digits for one pass (for the tests).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _report  # experiments/_report.py: this script's folder is on sys.path
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxcnn

FIGURES = (
    "a_correlation_vs_convolution.png",
    "b_forward_weight_sharing.png",
    "c_weight_gradient_eq14.png",
    "d_deltas_eq22.png",
    "e_stride2_dilated_deltas.png",
    "f_max_pool_routing.png",
    "g_avg_pool_spreading.png",
    "h_lecun1989_h1.png",
)

# The article's running example: a 3x3 input o^{l-1}, a 2x2 kernel w, the 2x2 deltas of the output.
O3 = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.float32)
W2 = np.array([[1, 2], [3, 4]], np.float32)
D2 = np.array([[1, -2], [3, 1]], np.float32)

# One colour per kernel position (the article's "weights of the same colour are identical").
TAP_COLORS = ("#f6a5a5", "#9fc5f8", "#b6e3a3", "#f9d98c", "#d5b3f0", "#f7c6a3", "#a8e0dc", "#e8e8a0",
              "#c9c9c9")
WINDOW_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22")
HIGHLIGHT = "#ffe14d"  # the article's yellow pixel
GREY = "#e4e4e4"  # padding and inserted zeros

UNIT = 0.52  # inches per grid cell
NUM_PT = 11.0  # cell numbers
LABEL_PT = 9.0  # labels under grids
TITLE_PT = 13.0
OP_PT = 20.0  # operators between grids
CHAR_UNITS = 0.6 * LABEL_PT / 72 / UNIT  # rough width of one label character, in cells


# ------------------------------------------------------------------------------ jax helpers
def nhwc(a: Any) -> jax.Array:
    """A 2-D array as a one-example, one-channel NHWC batch."""
    return jnp.asarray(a, jnp.float32)[None, :, :, None]


def hwio(k: Any) -> jax.Array:
    """A 2-D kernel as a one-in, one-out HWIO kernel."""
    return jnp.asarray(k, jnp.float32)[:, :, None, None]


def from_nhwc(a: jax.Array) -> np.ndarray:
    """A one-example, one-channel NHWC array back to a 2-D numpy array."""
    return np.asarray(a)[0, :, :, 0]


def from_hwio(k: jax.Array) -> np.ndarray:
    """A one-in, one-out HWIO kernel (or its gradient) back to a 2-D numpy array."""
    return np.asarray(k)[:, :, 0, 0]


def check(name: str, actual: Any, expected: Any, tol: float = 1e-5) -> None:
    """The identity a figure shows must hold, or the figure is not drawn."""
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if a.shape != e.shape or not np.allclose(a, e, rtol=tol, atol=tol):
        raise AssertionError(f"figures: {name} does not hold:\n{a}\n!=\n{e}")


# ----------------------------------------------------------------------------- drawing
@dataclasses.dataclass
class Grid:
    """A matrix drawn as cells with its numbers, and what to highlight in it.

    fill: cell -> face colour; edge: cell -> colour of a thick cell border; boxes: (i, j, h, w,
    colour) thick rectangles around blocks; grey: boolean mask of cells drawn grey (padding,
    inserted zeros); label: text under the grid (mathtext allowed, lines split on newlines).
    """

    values: np.ndarray
    label: str = ""
    fill: dict[tuple[int, int], str] = dataclasses.field(default_factory=dict)
    edge: dict[tuple[int, int], str] = dataclasses.field(default_factory=dict)
    boxes: list[tuple[int, int, int, int, str]] = dataclasses.field(default_factory=list)
    grey: np.ndarray | None = None
    decimals: int | None = None  # None: 0 if every value is an integer, else 2
    label_style: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, np.float64)
        if self.decimals is None:
            self.decimals = 0 if np.allclose(self.values, np.round(self.values), rtol=0, atol=1e-6) else 2

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]

    def label_width(self) -> float:
        lines = self.label.split("\n") if self.label else [""]
        return max(_visible_len(s) for s in lines) * CHAR_UNITS

    def label_lines(self) -> int:
        return len(self.label.split("\n")) if self.label else 0


def _visible_len(s: str) -> int:
    """Characters a label shows (mathtext commands count as one)."""
    if "$" not in s:
        return len(s)
    s = re.sub(r"\\[a-zA-Z]+", "x", s)
    return len(s.replace("$", "").replace("{", "").replace("}", "").replace("^", "").replace("_", ""))


def fmt(v: float, decimals: int | None) -> str:
    """A cell's number: an integer as such, else `decimals` places (no "-0.00")."""
    if decimals is None:
        decimals = 0 if abs(v - round(v)) < 1e-6 else 2
    s = f"{v:.{decimals}f}"
    if float(s) == 0.0:
        s = s.lstrip("-")
    return s.replace("-", "\u2212")


class Board:
    """A drawing in cell units (y downwards), sized to its content when saved."""

    def __init__(self) -> None:
        self._draw: list[Callable[[Any], None]] = []
        self.x0 = self.y0 = np.inf
        self.x1 = self.y1 = -np.inf

    def _extend(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.x0, self.y0 = min(self.x0, x0), min(self.y0, y0)
        self.x1, self.y1 = max(self.x1, x1), max(self.y1, y1)

    def text(self, x: float, y: float, s: str, *, size: float = LABEL_PT, ha: str = "center",
             va: str = "center", width: float = 0.0, **kw: Any) -> None:
        self._extend(x - width / 2, y - 0.3, x + width / 2, y + 0.3)
        self._draw.append(lambda ax: ax.text(x, y, s, fontsize=size, ha=ha, va=va, **kw))

    def grid(self, x: float, y: float, g: Grid) -> None:
        from matplotlib.patches import Rectangle

        h, w = g.shape
        self._extend(x, y, x + w, y + h)

        def draw(ax: Any) -> None:
            for i in range(h):
                for j in range(w):
                    grey = g.grey is not None and bool(g.grey[i, j])
                    face = g.fill.get((i, j), GREY if grey else "white")
                    ax.add_patch(Rectangle((x + j, y + i), 1, 1, facecolor=face, edgecolor="#555555",
                                           lw=0.8))
                    s = fmt(float(g.values[i, j]), g.decimals)
                    size = NUM_PT * min(1.0, 4.5 / max(len(s), 1))
                    ax.text(x + j + 0.5, y + i + 0.52, s, fontsize=size, ha="center", va="center",
                            color="#888888" if grey else "black")
            for (i, j), color in g.edge.items():
                ax.add_patch(Rectangle((x + j + 0.06, y + i + 0.06), 0.88, 0.88, fill=False,
                                       edgecolor=color, lw=2.6))
            for i, j, bh, bw, color in g.boxes:
                ax.add_patch(Rectangle((x + j, y + i), bw, bh, fill=False, edgecolor=color, lw=2.4))

        self._draw.append(draw)

    def row(self, y: float, items: list[Grid | str], *, x: float = 0.0, gap: float = 1.3,
            min_slot: float = 0.0, center: float | None = None) -> list[tuple[float, float]]:
        """Grids and operators left to right, grids centred on one horizontal line, each grid
        centred in a slot as wide as its label (at least `min_slot`); the row starts at `x`, or
        is centred on `center`. Returns each grid's top-left corner."""
        height = max(it.shape[0] for it in items if isinstance(it, Grid))
        mid = y + height / 2
        widths = [gap if isinstance(it, str) else max(it.shape[1], it.label_width() + 0.3, min_slot)
                  for it in items]
        cx = x if center is None else center - sum(widths) / 2
        corners = []
        for it, slot in zip(items, widths, strict=True):
            if isinstance(it, str):
                size = OP_PT if _visible_len(it) <= 1 else LABEL_PT + 1
                self.text(cx + gap / 2, mid, it, size=size, width=gap)
                cx += gap
                continue
            h, w = it.shape
            gx, gy = cx + (slot - w) / 2, mid - h / 2
            self.grid(gx, gy, it)
            if it.label:
                lines = it.label_lines()
                self.text(gx + w / 2, gy + h + 0.2 + 0.2 * lines, it.label, va="center",
                          width=it.label_width(), linespacing=1.25, **it.label_style)
                self._extend(gx, gy, gx + w, gy + h + 0.25 + 0.4 * lines)
            corners.append((gx, gy))
            cx += slot
        return corners

    def save(self, path: Path, title: str, subtitle: str = "") -> None:
        import matplotlib.pyplot as plt

        top = self.y0 - (1.6 if subtitle else 1.0)
        cx = (self.x0 + self.x1) / 2
        self.text(cx, top, title, size=TITLE_PT, weight="bold", va="top")
        if subtitle:
            self.text(cx, top + 0.75, subtitle, size=LABEL_PT, va="top", color="#333333")
        pad = 0.3
        x0, x1, y0, y1 = self.x0 - pad, self.x1 + pad, self.y0 - pad, self.y1 + pad
        fig = plt.figure(figsize=((x1 - x0) * UNIT, (y1 - y0) * UNIT))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
        ax.set_aspect("equal")
        ax.axis("off")
        for draw in self._draw:
            draw(ax)
        _report.save_png(fig, path, dpi=130, bbox_inches="tight", pad_inches=0.15, facecolor="white")
        plt.close(fig)


def row_height(items: list[Grid | str]) -> float:
    """The height `Board.row` gives a row of `items`, labels included."""
    grids = [it for it in items if isinstance(it, Grid)]
    return max(g.shape[0] for g in grids) + 0.25 + 0.4 * max(g.label_lines() for g in grids)


def tap_fill(k1: int, k2: int, at: tuple[int, int] = (0, 0), order: np.ndarray | None = None) -> dict:
    """Cells of a window at `at` coloured by the kernel position they meet (`order[m, n]` is the
    colour index; by default row-major)."""
    order = np.arange(k1 * k2).reshape(k1, k2) if order is None else order
    return {(at[0] + m, at[1] + n): TAP_COLORS[int(order[m, n])] for m in range(k1) for n in range(k2)}


def products(a: np.ndarray, b: np.ndarray) -> str:
    """``a00·b00 + a01·b01 + ...`` with the numbers of two equal-shape arrays."""
    def num(v: float) -> str:
        s = fmt(v, None)
        return f"({s})" if s.startswith("\u2212") else s

    return " + ".join(f"{num(u)}\u00b7{num(v)}" for u, v in zip(a.ravel(), b.ravel(), strict=True))


# ------------------------------------------------------------------------------ (a) Eq 1-3
def fig_correlation_vs_convolution(out: Path) -> str:
    image = np.array([[1, 0, 2, 1], [0, 3, 1, 2], [2, 1, 0, 1], [1, 2, 3, 0]], np.float32)
    k = jnp.asarray(W2)
    i = jnp.asarray(image)
    corr = jaxcnn.correlate2d(i, k)  # Eq 1
    conv = jaxcnn.convolve2d(i, k)  # Eq 2
    rot = jaxcnn.rot180(k)
    check("Eq 3: convolve2d(I, K) == correlate2d(I, rot180(K))", conv, jaxcnn.correlate2d(i, rot))
    check("Eq 1 at (0, 0)", corr[0, 0], np.sum(image[:2, :2] * W2))

    rot_order = np.arange(4).reshape(2, 2)[::-1, ::-1]  # the colour of K(m, n) moves with it
    b = Board()
    b.row(0, [
        Grid(image, "$I$", fill=tap_fill(2, 2)),
        r"$\otimes$",
        Grid(np.asarray(k), "$K$", fill=tap_fill(2, 2)),
        "=",
        Grid(np.asarray(corr), "$I \\otimes K$\ncorrelate2d(I, K)", edge={(0, 0): "black"}),
    ])
    b.text(-0.2, 2.0, "Eq 1\ncross-correlation", ha="right", size=LABEL_PT + 1, width=3.2)
    y = b.y1 + 1.0
    b.row(y, [
        Grid(image, "$I$", fill=tap_fill(2, 2, order=rot_order)),
        "$*$",
        Grid(np.asarray(k), "$K$", fill=tap_fill(2, 2)),
        "=",
        Grid(image, "$I$", fill=tap_fill(2, 2, order=rot_order)),
        r"$\otimes$",
        Grid(np.asarray(rot), "rot180(K)", fill=tap_fill(2, 2, order=rot_order)),
        "=",
        Grid(np.asarray(conv), "$I * K$\nconvolve2d(I, K)", edge={(0, 0): "black"}),
    ])
    b.text(-0.2, y + 2.0, "Eq 2-3\nconvolution", ha="right", size=LABEL_PT + 1, width=3.2)
    c00, v00 = products(image[:2, :2], W2), fmt(float(corr[0, 0]), None)
    r00, w00 = products(image[:2, :2], np.asarray(rot)), fmt(float(conv[0, 0]), None)
    b.text(0, b.y1 + 0.7, f"corner cell, Eq 1: {c00} = {v00}      Eq 3: {r00} = {w00}", ha="left",
           size=LABEL_PT)
    b.save(out, "Eq 1-3: cross-correlation vs convolution (the kernel rotated by 180\u00b0)",
           "colours: the kernel entry each input cell of the first window meets; "
           "jaxcnn.correlate2d / jaxcnn.convolve2d / jaxcnn.rot180")
    return f"correlate2d corner {v00}, convolve2d corner {w00}"


# ----------------------------------------------------------------------------- (b) Eq 7
def fig_forward_weight_sharing(out: Path) -> str:
    y = from_nhwc(jaxcnn.conv2d(nhwc(O3), hwio(W2)))  # Eq 7
    top: list[Grid | str] = [
        Grid(O3, "$o^{l-1}$ (input 3x3)"),
        r"$\otimes$",
        Grid(W2, "$w^l$ (kernel 2x2)\none colour per weight", fill=tap_fill(2, 2)),
        "=",
        Grid(y, "$x^l$ = conv2d(o, w)", edge={(i, j): WINDOW_COLORS[2 * i + j]
                                                for i in range(2) for j in range(2)}),
    ]
    panels: list[Grid | str] = []
    for i in range(2):
        for j in range(2):
            window = O3[i:i + 2, j:j + 2]
            check(f"Eq 7 at ({i}, {j})", np.sum(window * W2), y[i, j])
            panels.append(Grid(O3, f"$x_{{{i}{j}}}$ = {products(W2, window)}\n= {fmt(float(y[i, j]), None)}",
                               fill=tap_fill(2, 2, (i, j)),
                               boxes=[(i, j, 2, 2, WINDOW_COLORS[2 * i + j])]))
            panels.append("")
    b = Board()
    b.row(row_height(top) + 0.8, panels[:-1], gap=0.6)
    b.row(0, top, center=(b.x0 + b.x1) / 2)
    b.save(out, "Eq 7: the forward pass slides one shared kernel over the input",
           "each output unit sees a 2x2 window (boxed, same colour as its output cell); cells of the "
           "same colour meet the same weight $w_{mn}$; values from jaxcnn.conv2d")
    return f"outputs {y.astype(int).tolist()}"


# ----------------------------------------------------------------------------- (c) Eq 14
def fig_weight_gradient(out: Path) -> str:
    dw = from_hwio(jaxcnn.conv2d_weight_grad(nhwc(O3), nhwc(D2), (2, 2, 1, 1)))  # Eq 14

    def energy(conv2d: Callable) -> Callable:
        return lambda w: jnp.sum(conv2d(nhwc(O3), w) * nhwc(D2))  # dE/dy = D2

    dw_custom = from_hwio(jax.grad(energy(jaxcnn.conv2d))(hwio(W2)))
    dw_autodiff = from_hwio(jax.grad(energy(jaxcnn.reference.conv2d))(hwio(W2)))
    check("Eq 14 == jax.grad through the custom VJP", dw_custom, dw)
    check("Eq 14 == jax.grad through autodiff (jaxcnn.reference)", dw_autodiff, dw)
    check("Eq 13 == correlate2d(o, delta)", jaxcnn.correlate2d(jnp.asarray(O3), jnp.asarray(D2)), dw)

    pick = (0, 1)  # the entry whose products are shown (the article's yellow w_{m',n'})
    top: list[Grid | str] = [
        Grid(O3, "$o^{l-1}$ (input)"),
        r"$\otimes$",
        Grid(D2, "$\\delta^l$ (deltas of\nthe 2x2 output)", fill=tap_fill(2, 2)),
        "=",
        Grid(dw, "$\\partial E/\\partial w$\nconv2d_weight_grad", fill={pick: HIGHLIGHT}),
        "=",
        Grid(dw_autodiff, "jax.grad of\nreference.conv2d", fill={pick: HIGHLIGHT}),
    ]
    panels: list[Grid | str] = []
    for m in range(2):
        for n in range(2):
            window = O3[m:m + 2, n:n + 2]
            label = (f"$\\partial E/\\partial w_{{{m}{n}}}$ = {products(D2, window)}\n"
                     f"= {fmt(float(dw[m, n]), None)}")
            chosen = (m, n) == pick
            style = {"bbox": {"facecolor": HIGHLIGHT, "edgecolor": "none", "pad": 2}} if chosen else {}
            panels.append(Grid(O3, label, fill=tap_fill(2, 2, (m, n)), label_style=style,
                               boxes=[(m, n, 2, 2, "black" if chosen else "#999999")]))
            panels.append("")
    b = Board()
    b.row(row_height(top) + 0.8, panels[:-1], gap=0.6)
    b.row(0, top, center=(b.x0 + b.x1) / 2)
    m, n = pick
    b.save(out, "Eq 13-14: the weight gradient is the input cross-correlated with the deltas",
           f"yellow: $\\partial E/\\partial w_{{{m}{n}}} = "
           f"\\Sigma_{{i,j}}\\, \\delta_{{i,j}}\\, o_{{i+{m},j+{n}}}$"
           " — the deltas slide over the input like a kernel (cell colour = the delta it meets); "
           "conv2d_weight_grad == jax.grad")
    return f"dE/dw {dw.astype(int).tolist()} (== jax.grad, custom and autodiff)"


# ----------------------------------------------------------------------------- (d) Eq 22
def fig_deltas_eq22(out: Path) -> str:
    x_l = np.array([[0.5, -1.0, 0.0], [1.0, -0.5, 2.0], [0.0, 1.5, -2.0]], np.float32)  # pre-activations
    d_up = D2  # delta^{l+1} of the 2x2 output of the next layer
    w_up = W2  # w^{l+1}
    do = from_nhwc(jaxcnn.conv2d_input_grad(nhwc(d_up), hwio(w_up), (1, 3, 3, 1)))  # Eq 22 without f'
    padded = np.pad(d_up, 1)
    rot = np.asarray(jaxcnn.rot180(jnp.asarray(w_up)))
    check("Eq 22: conv2d_input_grad == correlate2d(pad(delta), rot180(w))", do,
          jaxcnn.correlate2d(jnp.asarray(padded), jnp.asarray(rot)))
    # f'(x^l): the activation's own backward rule, delta * tanh'(x) with delta = 1.
    _, tanh_vjp = jax.vjp(jaxcnn.tanh, jnp.asarray(x_l))
    fprime = np.asarray(tanh_vjp(jnp.ones((3, 3), jnp.float32))[0])
    check("tanh' = 1 - tanh^2", fprime, 1 - np.tanh(x_l.astype(np.float64)) ** 2)
    # The whole Eq 20-22 through the custom VJPs: x^l -> tanh -> conv2d -> x^{l+1}.
    _, layer_vjp = jax.vjp(lambda x: jaxcnn.conv2d(jaxcnn.tanh(x), hwio(w_up)), nhwc(x_l))
    delta_l = from_nhwc(layer_vjp(nhwc(d_up))[0])
    check("delta^l == (delta^{l+1} * rot180(w)) f'(x^l)", delta_l, do * fprime)

    pick = (1, 1)
    grey = np.ones_like(padded, bool)
    grey[1:3, 1:3] = False
    b = Board()
    b.row(0, [
        Grid(padded, "$\\delta^{l+1}$ zero-padded\n(full convolution)", grey=grey,
             boxes=[(pick[0], pick[1], 2, 2, "black")]),
        r"$\otimes$",
        Grid(rot, "rot180($w^{l+1}$)", fill=tap_fill(2, 2, order=np.arange(4).reshape(2, 2)[::-1, ::-1])),
        "=",
        Grid(do, "$\\partial E/\\partial o^l$\nconv2d_input_grad", fill={pick: HIGHLIGHT}),
    ], x=1.0)
    b.row(b.y1 + 1.1, [
        Grid(x_l, "$x^l$ (forward\npre-activations)", decimals=1),
        "tanh' \u2192",
        Grid(fprime, "$f'(x^l) = 1 - \\tanh^2 x^l$\n(jaxcnn.tanh's rule)", decimals=2),
    ], x=1.0, gap=1.8)
    b.row(b.y1 + 1.1, [
        Grid(do, "$\\partial E/\\partial o^l$", fill={pick: HIGHLIGHT}),
        r"$\odot$",
        Grid(fprime, "$f'(x^l)$", decimals=2),
        "=",
        Grid(delta_l, "$\\delta^l$ (jax.vjp through\njaxcnn.tanh + conv2d)", fill={pick: HIGHLIGHT},
             decimals=2),
    ], x=1.0)
    window = padded[pick[0]:pick[0] + 2, pick[1]:pick[1] + 2]
    b.save(out, "Eq 20-22: deltas of the layer below = padded deltas \u2297 rot180(w), times f'(x)",
           f"yellow cell: {products(window, rot)} = {fmt(float(do[pick]), None)}; "
           f"then \u00d7 f'({fmt(float(x_l[pick]), 1)}) = {fmt(float(delta_l[pick]), 2)}"
           "  (grey: zero padding)")
    return f"dE/do {do.astype(int).tolist()}, delta^l[1,1] = {delta_l[pick]:.3f}"


# ----------------------------------------------------------------------------- (e) stride 2
def fig_stride2(out: Path) -> str:
    x = np.arange(25, dtype=np.float32).reshape(5, 5)
    w = np.array([[1, 2, 0], [0, 1, -1], [3, 0, 1]], np.float32)
    delta = np.array([[1, 2], [3, 4]], np.float32)
    y = from_nhwc(jaxcnn.conv2d(nhwc(x), hwio(w), stride=2))
    dw = from_hwio(jaxcnn.conv2d_weight_grad(nhwc(x), nhwc(delta), (3, 3, 1, 1), stride=2))
    dx = from_nhwc(jaxcnn.conv2d_input_grad(nhwc(delta), hwio(w), (1, 5, 5, 1), stride=2))
    dilated = np.zeros((3, 3), np.float32)
    dilated[::2, ::2] = delta  # s - 1 = 1 zero between neighbours
    padded = np.pad(dilated, 2)
    rot = np.asarray(jaxcnn.rot180(jnp.asarray(w)))
    check("stride 2, Eq 14: conv2d_weight_grad == correlate2d(x, dilated delta)", dw,
          jaxcnn.correlate2d(jnp.asarray(x), jnp.asarray(dilated)))
    check("stride 2, Eq 22: conv2d_input_grad == correlate2d(pad(dilated), rot180(w))", dx,
          jaxcnn.correlate2d(jnp.asarray(padded), jnp.asarray(rot)))
    _, vjp = jax.vjp(lambda x_, w_: jaxcnn.reference.conv2d(x_, w_, stride=2), nhwc(x), hwio(w))
    dx_ref, dw_ref = vjp(nhwc(delta))
    check("stride 2, dE/dx against autodiff", dx, from_nhwc(dx_ref))
    check("stride 2, dE/dw against autodiff", dw, from_hwio(dw_ref))

    dilated_grey = np.ones((3, 3), bool)
    dilated_grey[::2, ::2] = False
    padded_grey = np.pad(dilated_grey, 2, constant_values=True)
    delta_fill = {(2 * i, 2 * j): TAP_COLORS[2 * i + j] for i in range(2) for j in range(2)}
    b = Board()
    b.row(0, [
        Grid(x, "$x$ (5x5)"),
        r"$\otimes_{s=2}$",
        Grid(w, "$w$ (3x3)"),
        "=",
        Grid(y, "$y$ (2x2)"),
        "",
        Grid(delta, "$\\delta = \\partial E/\\partial y$", fill=tap_fill(2, 2)),
        "dilate \u2192",
        Grid(dilated, "$\\tilde\\delta$: s\u22121 = 1 zero\nbetween deltas", grey=dilated_grey,
             fill=delta_fill),
    ], gap=1.5)
    b.text(-0.3, 2.5, "forward,\nstride 2", ha="right", size=LABEL_PT + 1, width=2.5)
    y1 = b.y1 + 1.1
    b.row(y1, [
        Grid(x, "$x$"),
        r"$\otimes$",
        Grid(dilated, "$\\tilde\\delta$", grey=dilated_grey, fill=delta_fill),
        "=",
        Grid(dw, "$\\partial E/\\partial w$\nconv2d_weight_grad(stride=2)"),
    ], gap=1.5)
    b.text(-0.3, y1 + 2.5, "Eq 14", ha="right", size=LABEL_PT + 1, width=2.5)
    y2 = b.y1 + 1.1
    b.row(y2, [
        Grid(padded, "$\\tilde\\delta$ zero-padded by k\u22121 = 2", grey=padded_grey,
             fill={(2 + i, 2 + j): c for (i, j), c in delta_fill.items()}),
        r"$\otimes$",
        Grid(rot, "rot180($w$)"),
        "=",
        Grid(dx, "$\\partial E/\\partial x$\nconv2d_input_grad(stride=2)"),
    ], gap=1.5)
    b.text(-0.3, y2 + 3.5, "Eq 22", ha="right", size=LABEL_PT + 1, width=2.5)
    b.save(out, "Stride 2: the deltas are dilated with zeros before Eq 14 and Eq 22",
           "then both are the stride-1 formulas; grey: inserted zeros and padding; "
           "values from jaxcnn (checked against autodiff)")
    return f"dE/dw {dw.astype(int).tolist()}"


# ------------------------------------------------------------------------------ (f) max pool
BLOCK_COLORS = ("#fde2e2", "#dceafe", "#def5d6", "#fdf0cf")
BLOCK_STRONG = ("#f28b8b", "#7fb2f5", "#8fd67a", "#f7c948")


def _blocks(n: int, p: int, colors: tuple[str, ...]) -> dict[tuple[int, int], str]:
    return {(r, c): colors[(r // p) * (n // p) + c // p] for r in range(n) for c in range(n)}


def fig_max_pool(out: Path) -> str:
    x = np.array([[1, 3, 2, 0], [4, 2, 1, 5], [0, 6, 3, 7], [2, 1, 8, 1]], np.float32)
    delta = np.array([[10, 20], [30, 40]], np.float32)
    y, vjp = jax.vjp(lambda x_: jaxcnn.max_pool(x_, 2), nhwc(x))
    routed = from_nhwc(vjp(nhwc(delta))[0])
    y = from_nhwc(y)
    # The winners noted in the forward pass: the first maximum of each block in row-major order.
    winners = []
    for i in range(2):
        for j in range(2):
            block = x[2 * i:2 * i + 2, 2 * j:2 * j + 2]
            a, c = np.unravel_index(int(np.argmax(block)), block.shape)
            winners.append((2 * i + int(a), 2 * j + int(c)))
    expected = np.zeros_like(x)
    for k, (r, c) in enumerate(winners):
        expected[r, c] = delta[k // 2, k % 2]
    check("max-pool backward routes each delta to its winner", routed, expected)
    check("max-pool forward takes the winners", y, np.array([x[r, c] for r, c in winners]).reshape(2, 2))

    fill = _blocks(4, 2, BLOCK_COLORS)
    for k, cell in enumerate(winners):
        fill[cell] = BLOCK_STRONG[k]
    boxes = [(2 * i, 2 * j, 2, 2, "black") for i in range(2) for j in range(2)]
    edges = dict.fromkeys(winners, "black")
    grey = np.ones((4, 4), bool)
    for cell in winners:
        grey[cell] = False
    small = {(i, j): BLOCK_STRONG[2 * i + j] for i in range(2) for j in range(2)}
    b = Board()
    b.row(0, [
        Grid(x, "$o^l$ (4x4), 2x2 blocks;\nwinner of each block outlined", fill=fill, boxes=boxes,
             edge=edges),
        "max \u2192",
        Grid(y, "max_pool(o, 2)", fill=small),
    ], gap=1.6, min_slot=5.0)
    b.text(-0.3, 2.0, "forward", ha="right", size=LABEL_PT + 1, width=2)
    yb = b.y1 + 1.1
    b.row(yb, [
        Grid(routed, "$\\partial E/\\partial o^l$ = jax.vjp of\njaxcnn.max_pool", fill=fill,
             boxes=boxes, edge=edges, grey=grey),
        "\u2190 route",
        Grid(delta, "$\\delta$ (2x2)", fill=small),
    ], gap=1.6, min_slot=5.0)
    b.text(-0.3, yb + 2.0, "backward", ha="right", size=LABEL_PT + 1, width=2)
    b.save(out, "Max pooling: each delta goes to the winning unit of its block",
           "winner indices noted in the forward pass; the other units get 0 (grey); no f' and no "
           "activation factor here")
    return f"winners {winners}, routed deltas {routed.astype(int).tolist()}"


# ------------------------------------------------------------------------------ (g) avg pool
def fig_avg_pool(out: Path) -> str:
    x = np.array([[1, 3, 2, 0], [4, 2, 1, 5], [0, 6, 3, 7], [2, 1, 8, 1]], np.float32)
    delta = np.array([[1, 2], [3, 4]], np.float32)
    y, vjp = jax.vjp(lambda x_: jaxcnn.avg_pool(x_, 2), nhwc(x))
    spread = from_nhwc(vjp(nhwc(delta))[0])
    y = from_nhwc(y)
    check("avg-pool backward spreads delta / (2*2)", spread, np.kron(delta, np.ones((2, 2))) / 4)
    check("avg-pool forward", y, x.reshape(2, 2, 2, 2).mean(axis=(1, 3)))

    fill = _blocks(4, 2, BLOCK_COLORS)
    boxes = [(2 * i, 2 * j, 2, 2, "black") for i in range(2) for j in range(2)]
    small = {(i, j): BLOCK_COLORS[2 * i + j] for i in range(2) for j in range(2)}
    b = Board()
    b.row(0, [
        Grid(x, "$o^l$ (4x4), 2x2 blocks", fill=fill, boxes=boxes),
        "mean \u2192",
        Grid(y, "avg_pool(o, 2)", fill=small),
    ], gap=1.6, min_slot=5.0)
    b.text(-0.3, 2.0, "forward", ha="right", size=LABEL_PT + 1, width=2)
    yb = b.y1 + 1.1
    b.row(yb, [
        Grid(spread, "$\\partial E/\\partial o^l$ = jax.vjp of\njaxcnn.avg_pool", fill=fill, boxes=boxes),
        "\u2190 \u00f7 (2\u00b72)",
        Grid(delta, "$\\delta$ (2x2)", fill=small),
    ], gap=1.8, min_slot=5.0)
    b.text(-0.3, yb + 2.0, "backward", ha="right", size=LABEL_PT + 1, width=2)
    b.save(out, "Average pooling: each delta is multiplied by 1/(N\u00b7N) and given to its whole block",
           "N = 2: every unit of a block gets delta/4")
    return f"spread {spread.tolist()}"


# --------------------------------------------------------------------------- (h) lecun1989
def _load_run(run: Path) -> tuple[Any, str, str]:
    """Parameters from a checkpoint of experiments/lecun1989.py: ``(params, activation, note)``."""
    from jaxcnn import models, sdlm, train

    if run.suffix == ".npz":
        candidates = [run]
    else:
        candidates = [run / "checkpoints" / "custom.npz", run / "checkpoints" / "reference.npz"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise SystemExit(f"figures: --run {run}: no checkpoint found (looked for "
                         f"{', '.join(str(p) for p in candidates)})")
    params = models.lecun1989().init(jax.random.key(0))
    # The optimizer state is stored beside the params: constant-rate SGD keeps none, a schedule a count;
    # `--optimizer sdlm` its curvature, and a count with a schedule.
    schedule = optax.linear_schedule(0.1, 0.0, 1)
    templates = [make(rate).init(params) for make in (optax.sgd, sdlm.sdlm) for rate in (0.1, schedule)]
    error: Exception | None = None
    for opt_state in templates:
        try:
            state, meta = train.load_checkpoint(path, {"params": params, "opt_state": opt_state})
        except ValueError as err:
            error = err
            continue
        model_name = str(meta.get("config", {}).get("model", "lecun1989-tanh"))
        activation = model_name.split("-", 1)[1] if "-" in model_name else "tanh"
        return state["params"], activation, f"loaded from {path} (pass {meta.get('epoch', '?')})"
    raise SystemExit(f"figures: --run {run}: {error}")


def _train(quick: bool, seed: int = 0) -> tuple[Any, str, str, np.ndarray]:
    """A briefly trained lecun1989 (per-example SGD through the custom VJPs)."""
    from jaxcnn import datasets, models, train

    per_class, passes, lr = (3, 1, 0.01) if quick else (300, 4, 0.005)
    x_tr, y_tr, x_te, y_te = datasets.lecun1989_data(train_per_class=per_class,
                                                      test_per_class=1 if quick else 200, seed=seed)
    model = models.lecun1989(activation="tanh")
    params = model.init(jax.random.key(seed))
    optimizer = optax.sgd(lr)
    opt_state = optimizer.init(params)
    epoch = train.make_sgd_epoch(model.apply, jaxcnn.squared_error, optimizer)
    x, t = jnp.asarray(x_tr), datasets.one_hot_pm1(y_tr)
    for e in range(passes):
        params, opt_state, _ = epoch(params, opt_state, x, t, train.epoch_permutation(seed, e, len(y_tr)))
    pred = np.asarray(jnp.argmax(jax.jit(model.apply)(params, jnp.asarray(x_te)), axis=1))
    err = float(np.mean(pred != y_te))
    note = (f"trained here: {passes} pass{'es' if passes > 1 else ''} of per-example SGD (lr {lr}) "
            f"on {len(y_tr)} digits, test error {err:.1%} on {len(y_te)}")
    return params, "tanh", note, x_te


def fig_lecun1989(out: Path, run: Path | None, quick: bool) -> str:
    import matplotlib.pyplot as plt
    from matplotlib import gridspec

    from jaxcnn import datasets

    if run is not None:
        params, activation, note = _load_run(run)
        _, _, x_te, _ = datasets.lecun1989_data(train_per_class=1, test_per_class=1)
    else:
        params, activation, note, x_te = _train(quick)
    digit = jnp.asarray(x_te[:1])
    f = getattr(jaxcnn, activation)
    w1, b1 = params["H1"]["w"], params["H1"]["b"]
    # H1 of lecun1989: 5x5 kernels, stride 2, the input padded by 2 with -1, untied biases.
    maps = np.asarray(f(jaxcnn.conv2d(digit, w1, b1, stride=2, padding=2, pad_value=-1.0)))[0]
    kernels = np.asarray(w1)[:, :, 0, :]
    check("H1 maps shape", maps.shape, (8, 8, 12))

    fig = plt.figure(figsize=(15.5, 3.4))
    gs = gridspec.GridSpec(2, 14, figure=fig, width_ratios=[2.2, 0.25] + [1] * 12, wspace=0.12,
                           hspace=0.3)
    ax = fig.add_subplot(gs[:, 0])
    ax.imshow(np.asarray(digit)[0, :, :, 0], cmap="gray_r", vmin=-1, vmax=1)
    ax.set_title("input digit\n16x16 in [-1, 1]", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    lim = float(np.max(np.abs(kernels)))
    for k in range(12):
        ax_k = fig.add_subplot(gs[0, 2 + k])
        im = ax_k.imshow(kernels[:, :, k], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax_k.set_title(f"kernel {k}", fontsize=9)
        ax_m = fig.add_subplot(gs[1, 2 + k])
        ax_m.imshow(maps[:, :, k], cmap="gray_r", vmin=-1, vmax=1)
        ax_m.set_title(f"map {k}", fontsize=9)
        for a in (ax_k, ax_m):
            a.set_xticks([])
            a.set_yticks([])
    cbar = fig.colorbar(im, ax=fig.axes[1:], shrink=0.6, pad=0.01, location="right")
    cbar.set_label("weight", fontsize=9)
    fig.suptitle("lecun1989 H1 (Eq 7-8): the 12 learned 5x5 kernels (top) and their 8x8 feature maps "
                 f"{activation}(conv2d(digit, w, b, stride 2, pad -1)) (bottom)", fontsize=12,
                 fontweight="bold", y=1.0)
    fig.text(0.5, 0.005, note, ha="center", fontsize=9, color="#333333")
    _report.save_png(fig, out, dpi=110, bbox_inches="tight", pad_inches=0.15, facecolor="white")
    plt.close(fig)
    return note


# ------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/figures"), help="output folder")
    p.add_argument("--run", type=Path, default=None,
                   help="a saved experiments/lecun1989.py --out folder (or checkpoint .npz) for figure (h)")
    p.add_argument("--quick", action="store_true", help="figure (h) from 30 digits, one pass (tests)")
    args = p.parse_args(argv)
    _report.check_args(p, args, folders=("out",))
    return args


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    args = parse_args(argv)
    makers: list[Callable[[Path], str]] = [
        fig_correlation_vs_convolution,
        fig_forward_weight_sharing,
        fig_weight_gradient,
        fig_deltas_eq22,
        fig_stride2,
        fig_max_pool,
        fig_avg_pool,
        lambda path: fig_lecun1989(path, args.run, args.quick),
    ]
    for name, make in zip(FIGURES, makers, strict=True):
        t0 = time.perf_counter()
        summary = make(args.out / name)
        print(f"{args.out / name}  ({time.perf_counter() - t0:.1f} s)  {summary}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
