"""Binary test shapes on a (H, W) grid, pixel centres at integer coordinates."""
import numpy as np


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


def iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def hull_gap(mask):
    """Pixels inside the convex hull of the mask's pixel centres but not in the mask:
    0 for a digital convex set."""
    from skimage.morphology import convex_hull_image

    if not mask.any():
        return 0
    rows, cols = np.nonzero(mask)
    if np.ptp(rows) == 0 or np.ptp(cols) == 0:  # a straight run: qhull needs 2-D input
        return int(max(np.ptp(rows), np.ptp(cols)) + 1 - mask.sum())
    return int((convex_hull_image(mask, offset_coordinates=False) & ~mask).sum())
