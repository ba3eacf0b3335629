"""Rendering fitted ICNNs at pixel centres: masks at the cost of their boundary, logits
on request, memory bounded by the image.

Every net n lives in its window's coordinates: the window (x0, y0, x1, y1), in pixels of
an image of `image_size` (H, W), is mapped affinely to [-1, 1]^2, and a rendering of
(height, width) pixels samples the same extent at its own pixel centres. Outside its
window a net's mask is empty and its logit is `OUTSIDE_LOGIT`.

One evaluator decides both masks and logits (float64 arithmetic on the float32
weights), so `masks == (logits >= 0)` holds exactly:

* `render_masks`: G is evaluated at the corners of coarse blocks; a block whose corners
  all have G < 0 is inside (convexity: the set contains the hull of its corners), a
  block whose interval bound of G is > 0 is outside (valid because every weight on a
  hidden state is >= 0 and ReLU is non-decreasing); the rest are split 4x, down to
  pixels. Cost ~ boundary length x block size, not area; output 1 byte per pixel.
* `render_logits`: -G at every window pixel, evaluated in chunks of rows so that
  temporaries stay a few MB whatever the image size (output 4 bytes per pixel).
"""

from __future__ import annotations

import numpy as np
import torch

from sam_convex import validation
from sam_convex.icnn import ICNN

# Logit assigned outside a mask's window, where the projection is background.
OUTSIDE_LOGIT = -30.0
CHUNK_POINTS = 1 << 16  # points per evaluation chunk of `render_logits`


def layer_weights(
    w_x: np.ndarray, b: np.ndarray, w_z: np.ndarray, w_out_z: np.ndarray, w_out_x: np.ndarray, b_out: np.ndarray
) -> tuple:
    """One net's weights, in `ICNN.from_weights`' shapes without the batch axis (w_x
    (depth, 2, h), b (depth, 1, h), w_z (depth - 1, h, h), w_out_z (h, 1), w_out_x
    (2, 1), b_out (1, 1)), as `evaluate` takes them: rounded to float32 (what an ICNN
    holds), as float64 numpy: (w_x list of (2, h), b list of (h,), w_z list of (h, h),
    w_out_z (h,), w_out_x (2,), b_out float)."""

    def f(a):
        return np.asarray(a, np.float32).astype(np.float64)

    depth = len(w_x)
    return (
        [f(w_x[k]) for k in range(depth)],
        [f(b[k][0]) for k in range(depth)],
        [f(w_z[k]) for k in range(depth - 1)],
        f(w_out_z)[:, 0],
        f(w_out_x)[:, 0],
        float(f(b_out)[0, 0]),
    )


def net_weights(net: ICNN, i: int) -> tuple:
    """Net i's weights as `evaluate` takes them (`layer_weights`)."""
    arrays = (net.w_x[:, i], net.b[:, i], net.w_z[:, i], net.w_out_z[i], net.w_out_x[i], net.b_out[i])
    return layer_weights(*(t.detach().cpu().numpy() for t in arrays))


def evaluate(weights: tuple, u: np.ndarray) -> np.ndarray:
    """G at (P, 2) window coordinates, float64 (P,)."""
    w_x, b, w_z, w_out_z, w_out_x, b_out = weights
    z = np.maximum(u @ w_x[0] + b[0], 0)
    for k in range(1, len(w_x)):
        z = np.maximum(z @ w_z[k - 1] + u @ w_x[k] + b[k], 0)
    return z @ w_out_z + u @ w_out_x + b_out


def lower_bound(weights: tuple, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A lower bound of G over each box [lo, hi] ((B, 2) window coordinates), by
    interval arithmetic through the layers."""
    w_x, b, w_z, w_out_z, w_out_x, b_out = weights
    c, r = (lo + hi) / 2, (hi - lo) / 2

    def affine_lower(w, bias):
        return c @ w - r @ np.abs(w) + bias

    z = np.maximum(affine_lower(w_x[0], b[0]), 0)
    for k in range(1, len(w_x)):
        z = np.maximum(z @ w_z[k - 1] + affine_lower(w_x[k], b[k]), 0)
    return z @ w_out_z + affine_lower(w_out_x, b_out)


def decide(g: np.ndarray) -> np.ndarray:
    """Foreground where the float32 logit -G is >= 0 (what `render_logits` returns)."""
    return (-g).astype(np.float32) >= 0


def window_pixels(window, image_size: tuple[int, int], height: int, width: int):
    """The pixels of a (height, width) rendering whose centres lie in the window.

    Returns (r0, r1, c0, c1, u, v): rows r0:r1 and cols c0:c1, and functions mapping
    pixel cols / rows to window coordinates in [-1, 1].
    """
    x0, y0, x1, y1 = (float(t) for t in window)
    sx, sy = width / image_size[1], height / image_size[0]
    x0, x1, y0, y1 = x0 * sx, x1 * sx, y0 * sy, y1 * sy
    # Pixel j has centre j + 0.5; keep the pixels whose centres lie in [x0, x1).
    c0, c1 = max(0, int(np.ceil(x0 - 0.5))), min(width, int(np.ceil(x1 - 0.5)))
    r0, r1 = max(0, int(np.ceil(y0 - 0.5))), min(height, int(np.ceil(y1 - 0.5)))
    ax, ay = 2 / (x1 - x0), 2 / (y1 - y0)
    return r0, r1, c0, c1, (lambda col: (col + 0.5 - x0) * ax - 1), (lambda row: (row + 0.5 - y0) * ay - 1)


def check_size(height: int, width: int) -> tuple[int, int]:
    return validation.integer("height", height, minimum=1), validation.integer("width", width, minimum=1)


def render_masks(net: ICNN, windows: torch.Tensor, image_size: tuple[int, int], height: int, width: int) -> np.ndarray:
    """(N, height, width) bool numpy: {G_n <= 0} inside each window, hierarchically."""
    height, width = check_size(height, width)
    masks = np.zeros((net.num_nets, height, width), bool)
    for i in range(net.num_nets):
        r0, r1, c0, c1, u, v = window_pixels(windows[i], image_size, height, width)
        if r1 > r0 and c1 > c0:
            block = 16 if max(r1 - r0, c1 - c0) <= 512 else 64
            masks[i, r0:r1, c0:c1] = _render_window(net_weights(net, i), r1 - r0, c1 - c0, r0, c0, u, v, block)
    return masks


def render_logits(net: ICNN, windows: torch.Tensor, image_size: tuple[int, int], height: int, width: int) -> np.ndarray:
    """(N, height, width) float32 numpy: -G_n at every pixel centre inside each window,
    `OUTSIDE_LOGIT` outside; evaluated in row chunks (bounded temporaries)."""
    height, width = check_size(height, width)
    logits = np.full((net.num_nets, height, width), OUTSIDE_LOGIT, np.float32)
    for i in range(net.num_nets):
        r0, r1, c0, c1, u, v = window_pixels(windows[i], image_size, height, width)
        if r1 <= r0 or c1 <= c0:
            continue
        weights = net_weights(net, i)
        cols = u(np.arange(c0, c1))
        step = max(1, CHUNK_POINTS // (c1 - c0))
        for top in range(r0, r1, step):
            rows = v(np.arange(top, min(top + step, r1)))
            vv, uu = np.meshgrid(rows, cols, indexing="ij")
            g = evaluate(weights, np.stack([uu.ravel(), vv.ravel()], 1))
            logits[i, top : top + rows.size, c0:c1] = (-g).astype(np.float32).reshape(rows.size, c1 - c0)
    return logits


def _render_window(weights: tuple, hh: int, ww: int, r0: int, c0: int, u, v, block: int) -> np.ndarray:
    """Hierarchical {G <= 0} on an (hh, ww) pixel window whose top-left pixel is (r0, c0)."""
    out = np.zeros((hh, ww), bool)
    size = block
    while size > 1 and size >= max(hh, ww):
        size //= 2
    # Work items: blocks (top row, left col) of `size` x `size` pixels, clipped to the window.
    rs, cs = np.meshgrid(np.arange(0, hh, size), np.arange(0, ww, size), indexing="ij")
    rs, cs = rs.ravel(), cs.ravel()
    while rs.size:
        if size <= 2:  # evaluate the remaining pixels one by one
            oy, ox = np.mgrid[:size, :size]
            pr = (rs[:, None] + oy.ravel()[None]).ravel()
            pc = (cs[:, None] + ox.ravel()[None]).ravel()
            ok = (pr < hh) & (pc < ww)
            pr, pc = pr[ok], pc[ok]
            out[pr, pc] = decide(evaluate(weights, np.stack([u(pc + c0), v(pr + r0)], 1)))
            break
        re, ce = np.minimum(rs + size, hh) - 1, np.minimum(cs + size, ww) - 1  # last row / col
        u0, u1, v0, v1 = u(cs + c0), u(ce + c0), v(rs + r0), v(re + r0)
        corners = np.stack([np.stack([a, b], 1) for a, b in ((u0, v0), (u1, v0), (u0, v1), (u1, v1))])
        g = evaluate(weights, corners.reshape(-1, 2)).reshape(4, -1)
        margin = 1e-9 * (1.0 + np.abs(g).max(0))  # decided blocks stay clear of G ~ 0
        inside = g.max(0) <= -margin
        lo = np.stack([np.minimum(u0, u1), np.minimum(v0, v1)], 1)
        hi = np.stack([np.maximum(u0, u1), np.maximum(v0, v1)], 1)
        outside = ~inside & (lower_bound(weights, lo, hi) > margin)
        for k in np.flatnonzero(inside):
            out[rs[k] : re[k] + 1, cs[k] : ce[k] + 1] = True
        todo = ~inside & ~outside
        half = size // 2
        rs = (rs[todo][:, None] + np.array([0, 0, half, half])[None]).ravel()
        cs = (cs[todo][:, None] + np.array([0, half, 0, half])[None]).ravel()
        keep = (rs < hh) & (cs < ww)
        rs, cs, size = rs[keep], cs[keep], half
    return out
