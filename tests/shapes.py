"""Test shapes and scenes: binary masks on a (H, W) grid (pixel centres at integer
coordinates), and a textured image with a known object."""

import numpy as np
from skimage.morphology import convex_hull_image


def _grid(h, w):
    return np.mgrid[:h, :w]


def disk(cx, cy, r, h=256, w=256):
    yy, xx = _grid(h, w)
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def ellipse(cx, cy, a, b, theta, h=256, w=256):
    yy, xx = _grid(h, w)
    c, s = np.cos(theta), np.sin(theta)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def polygon(vertices, h=256, w=256):
    """Convex polygon from counter-clockwise (x, y) vertices (image coordinates)."""
    yy, xx = _grid(h, w)
    inside = np.ones((h, w), bool)
    v = np.asarray(vertices, float)
    for (x0, y0), (x1, y1) in zip(v, np.roll(v, -1, axis=0)):
        inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
    return inside


def rotated_rectangle(cx, cy, half_w, half_h, theta, h=256, w=256):
    c, s = np.cos(theta), np.sin(theta)
    corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    return polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners], h, w)


def hull_gap(mask):
    """Pixels inside the convex hull of the mask's pixel centres but not in the mask:
    0 for a digital convex set."""
    if not mask.any():
        return 0
    rows, cols = np.nonzero(mask)
    if np.ptp(rows) == 0 or np.ptp(cols) == 0:  # a straight run: qhull needs 2-D input
        return int(max(np.ptp(rows), np.ptp(cols)) + 1 - mask.sum())
    return int((convex_hull_image(mask, offset_coordinates=False) & ~mask).sum())


def textured_scene(h=150, w=200, seed=0):
    """(h, w, 3) uint8 RGB: a checker-textured orange ellipse on a striped blue
    background, both noisy; returns (image, ground-truth mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    gt = ((xx - 115) / 55.0) ** 2 + ((yy - 85) / 38.0) ** 2 <= 1
    img = np.empty((h, w, 3), np.float32)
    img[:] = (70, 100, 150)
    img += (25 * np.sin(xx / 3.0))[..., None]
    checker = np.sign(np.sin(xx / 4.0) * np.sin(yy / 4.0))
    fg = np.array((190, 140, 70), np.float32) + (30 * checker)[..., None]
    img[gt] = fg[gt]
    img += rng.normal(0, 15, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), gt
