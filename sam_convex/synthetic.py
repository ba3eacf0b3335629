"""Synthetic masks and scenes with known truths, for the tests and the benchmarks.

    disk, ellipse, polygon, rotated_rectangle   convex (H, W) bool masks
    line_mask, rectangle_mask (THIN_SHAPES)      thin convex objects at any angle and thickness
    textured_scene                               an RGB image with one known object
    edge_field, ragged                           a segmenter's ragged edges
    damaged_objects                              convex objects damaged like a segmenter's
                                                 output (bite, hole, islands, ragged soft edges)
    nonconvex_shapes                             rings, L-shapes and two-object masks

Masks are (H, W) bool on a pixel grid whose pixel centres are the integer coordinates;
(x, y) is (column, row). Everything random takes a seed or a numpy Generator.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.transform import resize

MASK_SIZE = 256
EDGE_SHARPNESS = 12.0  # a soft target is sigmoid(EDGE_SHARPNESS * edge_field)

# ---------------------------------------------------------------------------- convex shapes


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[:h, :w]


def disk(cx: float, cy: float, r: float, h: int = MASK_SIZE, w: int = MASK_SIZE) -> np.ndarray:
    yy, xx = _grid(h, w)
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def ellipse(cx: float, cy: float, a: float, b: float, theta: float, h: int = MASK_SIZE, w: int = MASK_SIZE):
    """Half axes a (along angle theta) and b."""
    yy, xx = _grid(h, w)
    c, s = np.cos(theta), np.sin(theta)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def polygon(vertices, h: int = MASK_SIZE, w: int = MASK_SIZE) -> np.ndarray:
    """Convex polygon from counter-clockwise (x, y) vertices (image coordinates)."""
    yy, xx = _grid(h, w)
    inside = np.ones((h, w), bool)
    v = np.asarray(vertices, float)
    for (x0, y0), (x1, y1) in zip(v, np.roll(v, -1, axis=0)):
        inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
    return inside


def rotated_rectangle(cx, cy, half_w, half_h, theta, h: int = MASK_SIZE, w: int = MASK_SIZE) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    return polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners], h, w)


def textured_scene(h: int = 150, w: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
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


# ---------------------------------------------------------------------------- thin objects

THIN_LENGTH = 160  # px, the long side of `line_mask` / `rectangle_mask`


def line_mask(thickness: int, angle: float, size: int = MASK_SIZE, length: float = THIN_LENGTH) -> np.ndarray:
    """(size, size) bool: `cv2.line` of `thickness` px between the integer points
    length / 2 either side of the frame's centre along `angle` degrees."""
    a, c = np.deg2rad(angle), size / 2
    p0 = (round(c - length / 2 * np.cos(a)), round(c - length / 2 * np.sin(a)))
    p1 = (round(c + length / 2 * np.cos(a)), round(c + length / 2 * np.sin(a)))
    img = np.zeros((size, size), np.uint8)
    cv2.line(img, p0, p1, 1, thickness)
    return img > 0


def rectangle_mask(thickness: float, angle: float, size: int = MASK_SIZE, length: float = THIN_LENGTH) -> np.ndarray:
    """(size, size) bool: a filled length x thickness rectangle centred in the frame,
    its long side along `angle` degrees (`cv2.fillConvexPoly`, 1/16-px corners)."""
    box = cv2.boxPoints(((size / 2, size / 2), (length, thickness), angle))
    img = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(img, np.round(box * 16).astype(np.int32), 1, cv2.LINE_8, 4)
    return img > 0


THIN_SHAPES = {"line": line_mask, "rectangle": rectangle_mask}


# ---------------------------------------------------------------------------- a segmenter's damage


def edge_field(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W) float64, > 0 inside: `mask` blurred and perturbed by smooth noise, the
    ragged edges of a segmenter's output. sigmoid(EDGE_SHARPNESS * field) is its soft
    target; field > 0 its binary mask (`ragged`)."""
    field = gaussian_filter(mask.astype(float) - 0.5, 2.0)
    field += gaussian_filter(rng.normal(0, 1, mask.shape), 3.0) * 0.4
    return field


def ragged(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W) bool -> (H, W) bool with ragged edges (`edge_field` > 0)."""
    return edge_field(mask, rng) > 0


def _blob(yy: np.ndarray, xx: np.ndarray, y: float, x: float, r: float) -> np.ndarray:
    return (yy - y) ** 2 + (xx - x) ** 2 <= r**2


def damage(obj: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An (H, W) bool object with a bite from its edge, a hole and 1-3 islands, sized
    by the object's radius."""
    size = obj.shape[0]
    yy, xx = _grid(*obj.shape)
    r_obj = np.sqrt(obj.sum() / np.pi)
    ys, xs = np.nonzero(obj)
    edge = obj & ~np.roll(obj, 3, axis=int(rng.integers(2)))
    ey, ex = np.nonzero(edge) if edge.any() else (ys, xs)
    k = rng.integers(len(ey))
    damaged = obj & ~_blob(yy, xx, ey[k], ex[k], r_obj * rng.uniform(0.25, 0.5))  # bite
    k = rng.integers(len(ys))
    damaged &= ~_blob(yy, xx, ys[k], xs[k], r_obj * rng.uniform(0.05, 0.15))  # hole
    for _ in range(rng.integers(1, 4)):  # islands
        damaged |= _blob(yy, xx, rng.uniform(0, size), rng.uniform(0, size), r_obj * rng.uniform(0.05, 0.2))
    return damaged


def damaged_objects(
    objects: list[np.ndarray], count: int, seed: int = 0, size: int = MASK_SIZE, damaged: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Convex objects, damaged like a segmenter's output.

    Args:
        objects: (H, W) bool masks of whole objects (e.g. the embedded scenes' truths),
            used in turn.
        count: how many to make.
        damaged: False: the same objects with the same ragged soft edges only (the same
            random draws, so the same crops and edge noise).
    Returns:
        targets (count, size, size) float32 probabilities: each object cropped and
        scaled to the square, with a bite, a hole, 1-3 islands (`damage`) and ragged
        soft edges (`edge_field`);
        truths (count, size, size) bool: the undamaged objects.
    """
    rng = np.random.default_rng(seed)
    targets, truths = [], []
    for i in range(count):
        gt = objects[i % len(objects)]
        rows, cols = np.nonzero(gt)
        cy, cx = (rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2
        half = max(np.ptp(rows), np.ptp(cols)) * rng.uniform(0.6, 0.9) + 4
        y0, x0 = int(max(0, cy - half)), int(max(0, cx - half))
        crop = gt[y0 : int(cy + half) + 1, x0 : int(cx + half) + 1]
        obj = resize(crop.astype(float), (size, size), order=0) > 0.5
        hurt = damage(obj, rng)
        field = edge_field(hurt if damaged else obj, rng)
        targets.append(1 / (1 + np.exp(-EDGE_SHARPNESS * field)))
        truths.append(obj)
    return np.stack(targets).astype(np.float32), np.stack(truths)


# ---------------------------------------------------------------------------- non-convex shapes

NONCONVEX_KINDS = ("ring", "L", "two_objects")


def nonconvex_shapes(per_kind: int, seed: int, size: int = MASK_SIZE) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Rings, L-shapes and two separate disks, `per_kind` of each, random sizes and poses.

    Returns:
        kinds: one of NONCONVEX_KINDS per mask;
        raw (N, size, size) bool: the shapes with ragged edges (`ragged`);
        truths (N, size, size) bool: the clean shapes.
    """
    rng = np.random.default_rng([seed, 1])  # a stream of its own, apart from the scenes'
    yy, xx = np.mgrid[:size, :size].astype(float)
    mid = size / 2

    def ring() -> np.ndarray:
        cy, cx, outer = mid + rng.uniform(-38, 38), mid + rng.uniform(-38, 38), rng.uniform(45, 85)
        return _blob(yy, xx, cy, cx, outer) & ~_blob(yy, xx, cy, cx, outer * rng.uniform(0.4, 0.7))

    def rect(cx, cy, half_w, half_h, theta) -> np.ndarray:
        c, s = np.cos(theta), np.sin(theta)
        u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
        return (np.abs(u) <= half_w) & (np.abs(v) <= half_h)

    def l_shape() -> np.ndarray:
        theta, t = rng.uniform(0, 2 * np.pi), rng.uniform(12, 24)  # pose, half thickness
        a, b = rng.uniform(45, 80), rng.uniform(45, 80)  # half arm lengths
        c, s = np.cos(theta), np.sin(theta)
        cx, cy = mid + rng.uniform(-20, 20), mid + rng.uniform(-20, 20)
        # Two arms sharing the corner square at (cx, cy): one along u, one along v.
        return rect(cx + (a - t) * c, cy + (a - t) * s, a, t, theta) | rect(
            cx - (b - t) * s, cy + (b - t) * c, t, b, theta
        )

    def two_objects() -> np.ndarray:
        r1, r2, gap, theta = rng.uniform(20, 50), rng.uniform(20, 50), rng.uniform(10, 60), rng.uniform(0, np.pi)
        d = (r1 + r2 + gap) / 2  # centre to centre / 2: the disks are gap px apart
        return _blob(yy, xx, mid - d * np.sin(theta), mid - d * np.cos(theta), r1) | _blob(
            yy, xx, mid + d * np.sin(theta), mid + d * np.cos(theta), r2
        )

    kinds, truths = [], []
    for kind, make in zip(NONCONVEX_KINDS, (ring, l_shape, two_objects)):
        for _ in range(per_kind):
            kinds.append(kind)
            truths.append(make())
    raw = np.stack([ragged(m, rng) for m in truths])
    return kinds, raw, np.stack(truths)
