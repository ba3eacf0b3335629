"""The embedded default benchmark: convex objects pasted into scikit-image photos.

Each scene is deterministic from (seed, index): a background cropped from one photo that
ships inside scikit-image, one convex object (ellipse, convex polygon, rounded polygon or
superellipse) textured with a crop of a *different* photo, with varied size, aspect,
position and contrast, soft (anti-aliased) edges and mild shading. Every second scene has
thin occluding bars crossing the object (the ground truth stays the whole convex
object), and every second scene has look-alike distractor blobs with the object's texture
nearby (index % 4: 0 plain, 1 occluders, 2 distractors, 3 both).

Scribbles are drawn from the ground truth like a user would: one foreground stroke along
the object's major axis inside the eroded object, and background strokes (an arc around
the object and two free strokes) outside the dilated object.

Written in the convexity dataset's layout (see `eval.datasets`), plus scenes.csv (one row
per scene: shape, photos, contrast, occluders, distractors), written last as the
completion marker.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import skimage.data
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull
from skimage import draw
from skimage.morphology import convex_hull_image

from eval.runs import atomic_directory, default_cache_dir

VERSION = "v2"
NUM_SCENES = 50
IMAGE_SIZE = (300, 400)
COLOR_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
GREY_PHOTOS = ("coins", "camera", "grass", "gravel", "brick", "moon", "clock", "cell")
PHOTOS = COLOR_PHOTOS + GREY_PHOTOS
SHAPES = ("ellipse", "polygon", "rounded", "superellipse")
KINDS = ("plain", "occluders", "distractors", "occluders+distractors")
SCRIBBLE_GREY = (0, 128, 255)  # unlabelled, background, foreground


def default_scenes_dir(seed: int = 0, size: tuple[int, int] = IMAGE_SIZE) -> Path:
    """Where the generated benchmark is cached: `default_cache_dir()/scenes-<VERSION>-seed<seed>`
    (with the size appended when it is not the default 300x400)."""
    suffix = "" if tuple(size) == IMAGE_SIZE else f"-{size[0]}x{size[1]}"
    return default_cache_dir() / f"scenes-{VERSION}-seed{seed}{suffix}"


def ensure_scenes(
    root: str | os.PathLike | None = None, seed: int = 0, n: int = NUM_SCENES, size: tuple[int, int] = IMAGE_SIZE
) -> Path:
    """Generate the benchmark into `root` unless it is already there; return `root`.

    Args:
        root: target directory; default `default_cache_dir()/scenes-<VERSION>-seed<seed>`
            (with the size appended when it is not the default 300x400).
        seed: base seed; scene i uses SeedSequence([seed, i]).
        n: number of scenes.
        size: (H, W) of every image.
    Generation writes to a temporary sibling directory and renames it, so a killed or
    concurrent run never leaves a half-written benchmark behind.
    """
    if root is None:
        root = default_scenes_dir(seed, size)
    root = Path(root)
    if (root / "scenes.csv").exists():
        return root
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"{root} exists but holds no complete benchmark (no scenes.csv); remove it or choose another directory"
        )
    atomic_directory(root, lambda tmp: write_scenes(tmp, seed, n, size), done="scenes.csv")
    return root


def write_scenes(root: Path, seed: int, n: int, size: tuple[int, int]) -> None:
    """Write n scenes in the convexity layout under `root` (see module docstring)."""
    for sub in ("img", "ground_truth", "user_scribbles"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        image, gt, scribbles, info = make_scene(seed, i, size)
        Image.fromarray(image).save(root / "img" / f"img_{i}.png")
        Image.fromarray(np.where(gt, 255, 0).astype(np.uint8)).save(root / "ground_truth" / f"GT_{i}.png")
        grey = np.asarray(SCRIBBLE_GREY, dtype=np.uint8)[scribbles]
        Image.fromarray(grey).save(root / "user_scribbles" / f"scribbleMask_{i}.png")
        rows.append({"name": f"img_{i}", **info})
    pd.DataFrame(rows).to_csv(root / "scenes.csv", index=False)


def make_scene(seed: int, index: int, size: tuple[int, int] = IMAGE_SIZE):
    """One scene.

    Returns:
        image (H, W, 3) uint8 RGB, gt (H, W) bool (convex), scribbles (H, W) uint8
        (0 unlabelled, 1 background, 2 foreground), info dict for scenes.csv.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    h, w = size
    bg_name, obj_name = rng.choice(PHOTOS, size=2, replace=False)
    background = texture(bg_name, rng, size)
    obj = texture(obj_name, rng, size)
    shape = SHAPES[rng.integers(len(SHAPES))]
    gt, centre, radius, angle = convex_object(shape, rng, size)

    # Object colour: the background's mean plus a random offset scaled by `contrast`.
    contrast = float(rng.uniform(0.15, 1.0))
    direction = rng.normal(size=3)
    offset = direction / np.linalg.norm(direction) * rng.uniform(50, 110)
    obj = obj - obj.mean(axis=(0, 1)) + background.mean(axis=(0, 1)) + contrast * offset
    yy, xx = np.mgrid[0:h, 0:w]
    phi = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - centre[1]) * np.cos(phi) + (yy - centre[0]) * np.sin(phi)) / radius
    obj = obj * np.clip(1 + 0.15 * ramp, 0.7, 1.3)[..., None]

    kind = KINDS[index % len(KINDS)]
    distractors = 0
    if "distractors" in kind:
        blobs = distractor_blobs(gt, radius, rng, size)
        distractors = int(ndimage.label(blobs)[1])
    else:
        blobs = np.zeros(size, bool)
    sigma = rng.uniform(0.5, 1.5)
    alpha = ndimage.gaussian_filter((gt | blobs).astype(np.float64), sigma)[..., None]
    image = alpha * obj + (1 - alpha) * background

    occluders = 0
    if "occluders" in kind:
        occluders = int(rng.integers(1, 4))
        image = draw_occluders(image, gt, occluders, rng, background)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    scribbles = draw_scribbles(gt, angle, rng)
    info = {
        "shape": shape,
        "background": str(bg_name),
        "texture": str(obj_name),
        "contrast": round(contrast, 3),
        "occluders": occluders,
        "distractors": distractors,
        "area_fraction": round(float(gt.mean()), 4),
    }
    return image, gt, scribbles, info


@functools.cache
def photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as (H, W, 3) float64 in [0, 255] (grey replicated)."""
    img = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


def texture(name: str, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A random crop of photo `name`, rescaled to cover `size`, randomly flipped; grey
    photos get a random tint. Returns (H, W, 3) float64 in [0, 255]."""
    img = photo(name)
    h, w = size
    scale = max(h / img.shape[0], w / img.shape[1]) * rng.uniform(1.0, 1.6)
    new = (max(w, round(img.shape[1] * scale)), max(h, round(img.shape[0] * scale)))
    img = cv2.resize(img, new, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y0 = int(rng.integers(0, img.shape[0] - h + 1))
    x0 = int(rng.integers(0, img.shape[1] - w + 1))
    img = img[y0 : y0 + h, x0 : x0 + w]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if name in GREY_PHOTOS:
        img = img * rng.uniform(0.6, 1.2, size=3)
    return np.ascontiguousarray(img)


def convex_object(shape: str, rng: np.random.Generator, size: tuple[int, int]):
    """Rasterise a random convex shape fully inside the image.

    Returns:
        gt (H, W) bool, centre (cy, cx), mean radius in pixels, major-axis angle (rad).
    """
    h, w = size
    side = min(h, w)
    for _ in range(100):
        radius = rng.uniform(0.12, 0.36) * side
        aspect = rng.uniform(1.0, 2.5)
        a, b = radius * np.sqrt(aspect), radius / np.sqrt(aspect)  # semi-axes, a >= b
        angle = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
        gt = np.zeros(size, bool)
        if shape == "ellipse":
            rr, cc = draw.ellipse(cy, cx, b, a, shape=size, rotation=-angle)
            gt[rr, cc] = True
        elif shape in ("polygon", "rounded"):
            k = int(rng.integers(3, 9))
            t = np.sort(rng.uniform(0, 2 * np.pi, k))
            shrink = 0.75 if shape == "rounded" else 1.0
            px, py = shrink * a * np.cos(t), shrink * b * np.sin(t)
            ys = cy + px * np.sin(angle) + py * np.cos(angle)
            xs = cx + px * np.cos(angle) - py * np.sin(angle)
            pts = np.stack([ys, xs], 1)
            hull = pts[ConvexHull(pts).vertices] if k > 3 else pts
            rr, cc = draw.polygon(hull[:, 0], hull[:, 1], shape=size)
            gt[rr, cc] = True
            if shape == "rounded":  # Minkowski sum with a disk: still convex
                gt = ndimage.distance_transform_edt(~gt) <= 0.25 * b
        else:  # superellipse |u/a|^p + |v/b|^p <= 1, convex for p >= 1
            p = rng.uniform(1.2, 4.0)
            yy, xx = np.mgrid[0:h, 0:w] + 0.0
            u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
            v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
            gt = np.abs(u / a) ** p + np.abs(v / b) ** p <= 1
        margin = max(2, round(0.02 * side))
        rows, cols = np.nonzero(gt)
        if (
            gt.sum() < 0.004 * h * w
            or rows.min() < margin
            or cols.min() < margin
            or rows.max() >= h - margin
            or cols.max() >= w - margin
        ):
            continue
        # The pixels whose centres lie in the convex hull of the drawn pixels' centres:
        # digitally convex, whatever rounding the drawing did.
        return convex_hull_image(gt, offset_coordinates=False), (cy, cx), radius, angle
    raise RuntimeError("could not place a convex object; image too small?")


def distractor_blobs(gt: np.ndarray, radius: float, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """1-2 look-alike blobs (an ellipse or a non-convex pair of ellipses) near, but not
    touching, the object: at least 4% of the image side away from it."""
    side = min(size)
    far = ndimage.distance_transform_edt(~gt)
    blobs = np.zeros(size, bool)
    for _ in range(int(rng.integers(1, 3))):
        for _ in range(50):
            r = radius * rng.uniform(0.25, 0.55)
            gap = rng.uniform(0.04, 0.12) * side
            ys, xs = np.nonzero((far > gap + r) & (far < gap + 2 * r))
            if len(ys) == 0:
                break
            j = int(rng.integers(len(ys)))
            blob = np.zeros(size, bool)
            for _ in range(int(rng.integers(1, 3))):
                oy, ox = rng.normal(scale=0.4 * r, size=2)
                rr, cc = draw.ellipse(
                    ys[j] + oy,
                    xs[j] + ox,
                    r * rng.uniform(0.5, 1),
                    r * rng.uniform(0.5, 1),
                    shape=size,
                    rotation=rng.uniform(0, np.pi),
                )
                blob[rr, cc] = True
            if blob.any() and far[blob].min() > 0.04 * side:
                blobs |= blob
                break
    return blobs


def draw_occluders(
    image: np.ndarray, gt: np.ndarray, count: int, rng: np.random.Generator, background: np.ndarray
) -> np.ndarray:
    """Paint `count` thin bars through random object pixels, across the whole image,
    coloured either with a solid colour or with the background texture."""
    h, w = gt.shape
    ys, xs = np.nonzero(gt)
    out = image.copy()
    length = 2 * (h + w)
    for _ in range(count):
        j = int(rng.integers(len(ys)))
        theta = rng.uniform(0, np.pi)
        half = max(1.0, rng.uniform(0.005, 0.015) * min(h, w))
        d = np.array([np.sin(theta), np.cos(theta)]) * length
        nrm = np.array([np.cos(theta), -np.sin(theta)]) * half
        c = np.array([ys[j], xs[j]], float)
        corners = np.array([c - d - nrm, c + d - nrm, c + d + nrm, c - d + nrm])
        rr, cc = draw.polygon(corners[:, 0], corners[:, 1], shape=(h, w))
        if rng.random() < 0.5:
            out[rr, cc] = rng.uniform(0, 255, size=3)
        else:
            out[rr, cc] = background[rr, cc]
    return out


def draw_scribbles(gt: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """User-like scribbles from the ground truth.

    Returns:
        (H, W) uint8: 2 on a foreground stroke along the major axis inside the eroded
        object, 1 on background strokes outside the dilated object, else 0.
    """
    h, w = gt.shape
    side = min(h, w)
    thick = max(1, round(0.006 * side))
    inside = ndimage.distance_transform_edt(gt)
    inner = inside >= max(thick + 1, 0.35 * inside.max())
    cy, cx = np.argwhere(inner).mean(axis=0)
    length = 2 * side
    t = np.linspace(-1, 1, 2)
    fg = stroke(cy + t * length * np.sin(angle), cx + t * length * np.cos(angle), thick, gt.shape)
    fg &= inner
    if not fg.any():
        fg = inside == inside.max()

    outside = ndimage.distance_transform_edt(~gt) >= max(3 * thick, 0.05 * side)
    rows, cols = np.nonzero(gt)
    ry = (rows.max() - rows.min()) / 2 + 0.12 * side
    rx = (cols.max() - cols.min()) / 2 + 0.12 * side
    start = rng.uniform(0, 2 * np.pi)
    arc = np.linspace(start, start + rng.uniform(np.pi, 1.7 * np.pi), 64)
    bg = stroke(
        (rows.max() + rows.min()) / 2 + ry * np.sin(arc),
        (cols.max() + cols.min()) / 2 + rx * np.cos(arc),
        thick,
        gt.shape,
    )
    for _ in range(2):
        ys, xs = rng.uniform(0, h, 3), rng.uniform(0, w, 3)
        bg |= stroke(ys, xs, thick, gt.shape)
    bg &= outside
    if not bg.any():
        bg = outside & ~ndimage.binary_erosion(np.ones_like(gt), iterations=thick)
    labels = np.zeros(gt.shape, np.uint8)
    labels[bg] = 1
    labels[fg] = 2
    return labels


def stroke(ys: np.ndarray, xs: np.ndarray, thickness: int, size: tuple[int, int]) -> np.ndarray:
    """Rasterise the polyline through (ys, xs) with a round brush of radius `thickness`;
    parts outside the image are dropped. Returns (H, W) bool."""
    h, w = size
    mask = np.zeros((h, w), bool)
    ys, xs = np.rint(ys).astype(int), np.rint(xs).astype(int)
    for k in range(len(ys) - 1):
        rr, cc = draw.line(ys[k], xs[k], ys[k + 1], xs[k + 1])
        keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        mask[rr[keep], cc[keep]] = True
    return ndimage.binary_dilation(mask, structure=draw_disk(thickness))


def draw_disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return yy**2 + xx**2 <= radius**2
