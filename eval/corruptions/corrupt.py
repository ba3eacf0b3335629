"""The image corruptions: imagecorruptions 1.1.2, seeded, fixed for current packages.

`corrupt(image, name, severity, seed)` is the one entry point; it accepts all 19 of
imagecorruptions' corruptions (`CORRUPTION_SETS["all"]`), and `corruption_names` turns a
command-line spec ("paper", "common", "all" or a comma list) into names. Why not call
imagecorruptions directly:

* imagecorruptions draws from numpy's *global* RNG, so `corrupt` seeds it (and restores
  the caller's RNG state afterwards) to make every corrupted image reproducible. That
  covers every random choice it makes, e.g. frost's pick of frost image and crop, the
  angle of motion_blur and snow, fog's plasma fractal.
* The released `glass_blur` calls `skimage.filters.gaussian(..., multichannel=True)`,
  which scikit-image >= 0.19 rejects. `glass_blur` below is the published definition with
  the same parameters, `multichannel=True` spelled `channel_axis=-1` (same meaning), and
  the slow pure-Python pixel loop replaced by
  `shuffle_pixels`, a vectorised equivalent that gives bit-identical output for the same
  RNG state (tests/test_corrupt.py checks it against the unmodified published
  function).
* The released `gaussian_blur` makes the same `multichannel=True` call; `gaussian_blur`
  below is the published definition with `channel_axis=-1`.
* The released `fog` builds its plasma fractal with `np.float_`, which numpy 2.0 removed.
  `fog` and `plasma_fractal` below are the published definitions with `np.float64` (the
  same type).
* The released `impulse_noise` calls `skimage.util.random_noise`, which since
  scikit-image 0.19 draws from its own fresh `default_rng()` and ignores numpy's global
  seed, so its output differed on every call. `impulse_noise` below is the same call
  with the same parameters, given a Generator seeded from the global RNG.
* imagecorruptions imports pkg_resources, which needs setuptools < 81 (frost also finds
  its frost images, shipped inside the package, through pkg_resources).

The other 15 run unchanged on numpy 2.4, scikit-image 0.26, scipy 1.17, opencv 5.0 and
Pillow 13 (motion_blur in 1.1.2 is numpy-only, no ImageMagick).
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image
from skimage.filters import gaussian
from skimage.util import random_noise

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources and scipy.ndimage.interpolation deprecation warnings
    from imagecorruptions import corrupt as _corrupt

# imagecorruptions' 15 "common" corruptions in its own order, then its 4 extra
# ("validation") ones; "paper" is the poster's eight, in the order of its figure.
_COMMON = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
CORRUPTION_SETS = {
    "paper": (
        "spatter",
        "contrast",
        "brightness",
        "impulse_noise",
        "shot_noise",
        "gaussian_noise",
        "defocus_blur",
        "glass_blur",
    ),
    "common": _COMMON,
    "all": _COMMON + ("speckle_noise", "gaussian_blur", "spatter", "saturate"),
}
CORRUPTIONS = CORRUPTION_SETS["paper"]  # the default set
ALL_CORRUPTIONS = CORRUPTION_SETS["all"]
SEVERITIES = (1, 2, 3, 4, 5)
# imagecorruptions' glass_blur parameters: (sigma, max_delta, iterations) per severity.
GLASS_BLUR = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)]
IMPULSE_NOISE = [0.03, 0.06, 0.09, 0.17, 0.27]  # salt-and-pepper amount per severity
GAUSSIAN_BLUR = [1, 2, 3, 4, 6]  # sigma per severity
FOG = [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)]  # (strength, wibble decay)


def corruption_names(spec: str) -> tuple[str, ...]:
    """Corruption names from a spec: a set name ("paper", "common", "all"), a corruption
    name, or a comma-separated list of either (e.g. "fog,snow" or "paper,fog").

    Duplicates are dropped, first occurrence kept. Raises ValueError naming unknown
    entries (with the valid names and sets), or when the spec names nothing.
    """
    items = [item.strip() for item in spec.split(",")]
    items = [item for item in items if item]
    if not items:
        raise ValueError(f"no corruptions given; use a set ({', '.join(CORRUPTION_SETS)}) or names")
    unknown = [item for item in items if item not in CORRUPTION_SETS and item not in ALL_CORRUPTIONS]
    if unknown:
        raise ValueError(
            f"unknown corruption(s) {', '.join(unknown)}; valid: {', '.join(ALL_CORRUPTIONS)}; "
            f"sets: {', '.join(CORRUPTION_SETS)}"
        )
    names = []
    for item in items:
        names += CORRUPTION_SETS.get(item, (item,))
    return tuple(dict.fromkeys(names))


def corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """Apply one imagecorruptions corruption, seeded.

    Args:
        image: (H, W, 3) uint8 RGB, H and W >= 32 (imagecorruptions' limit).
        name: one of `ALL_CORRUPTIONS` (the 19 of `CORRUPTION_SETS["all"]`).
        severity: 1..5.
        seed: seeds numpy's global RNG for this call (restored afterwards), 0 <= seed < 2**32.
    Returns:
        (H, W, 3) uint8, the corrupted image (float results truncated by np.uint8, as
        imagecorruptions' own `corrupt` does).
    """
    if name not in ALL_CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(ALL_CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of 1, 2, 3, 4, 5, got {severity!r}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if min(image.shape[:2]) < 32:
        raise ValueError(f"imagecorruptions needs H and W >= 32, got {image.shape[:2]}")
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        if name in FIXED:
            return np.uint8(FIXED[name](Image.fromarray(image), severity))
        return _corrupt(image, corruption_name=name, severity=severity)
    finally:
        np.random.set_state(state)


def glass_blur(x, severity: int = 1) -> np.ndarray:
    """imagecorruptions' glass_blur (PIL image or (H, W, 3) uint8 in, float64 [0, 255]
    out), with `channel_axis=-1` for the removed `multichannel=True` and the shuffle
    loop vectorised. Draws from numpy's global RNG exactly as the original does."""
    sigma, delta, iterations = GLASS_BLUR[severity - 1]
    x = np.uint8(gaussian(np.array(x) / 255.0, sigma=sigma, channel_axis=-1) * 255)
    for _ in range(iterations):
        x = shuffle_pixels(x, delta)
    return np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255


def gaussian_blur(x, severity: int = 1) -> np.ndarray:
    """imagecorruptions' gaussian_blur (PIL image or (H, W, 3) uint8 in, float64
    [0, 255] out), with `channel_axis=-1` for the removed `multichannel=True`."""
    x = gaussian(np.array(x) / 255.0, sigma=GAUSSIAN_BLUR[severity - 1], channel_axis=-1)
    return np.clip(x, 0, 1) * 255


def fog(x, severity: int = 1) -> np.ndarray:
    """imagecorruptions' fog for RGB input (PIL image or (H, W, 3) uint8 in, float64
    [0, 255] out): a plasma fractal on a power-of-two square covering the image, cropped
    to the image and added to every channel. Draws from numpy's global RNG exactly as
    the original does; only `plasma_fractal`'s `np.float_` (gone in numpy 2) changed."""
    strength, decay = FOG[severity - 1]
    shape = np.array(x).shape
    map_size = 1 << (int(max(shape)) - 1).bit_length()  # imagecorruptions' next_power_of_2
    x = np.array(x) / 255.0
    max_val = x.max()
    x += strength * plasma_fractal(mapsize=map_size, wibbledecay=decay)[: shape[0], : shape[1]][..., np.newaxis]
    return np.clip(x * max_val / (max_val + strength), 0, 1) * 255


def plasma_fractal(mapsize: int = 256, wibbledecay: float = 3) -> np.ndarray:
    """imagecorruptions' diamond-square heightmap, unchanged but for `np.float64` in
    place of `np.float_`. Returns (mapsize, mapsize) float64 in [0, 1]; mapsize must be
    a power of two. Draws from numpy's global RNG."""
    assert mapsize & (mapsize - 1) == 0
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100

    def wibbledmean(array):
        return array / 4 + wibble * np.random.uniform(-wibble, wibble, array.shape)

    def fillsquares():
        """Middle of each square of points stepsize apart: mean of its corners + wibble."""
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2 : mapsize : stepsize, stepsize // 2 : mapsize : stepsize] = wibbledmean(squareaccum)

    def filldiamonds():
        """Middle of each diamond of points stepsize apart: mean of its corners + wibble."""
        drgrid = maparray[stepsize // 2 : mapsize : stepsize, stepsize // 2 : mapsize : stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ldrsum = drgrid + np.roll(drgrid, 1, axis=0)
        lulsum = ulgrid + np.roll(ulgrid, -1, axis=1)
        maparray[0:mapsize:stepsize, stepsize // 2 : mapsize : stepsize] = wibbledmean(ldrsum + lulsum)
        tdrsum = drgrid + np.roll(drgrid, 1, axis=1)
        tulsum = ulgrid + np.roll(ulgrid, -1, axis=0)
        maparray[stepsize // 2 : mapsize : stepsize, 0:mapsize:stepsize] = wibbledmean(tdrsum + tulsum)

    while stepsize >= 2:
        fillsquares()
        filldiamonds()
        stepsize //= 2
        wibble /= wibbledecay

    maparray -= maparray.min()
    return maparray / maparray.max()


def impulse_noise(x, severity: int = 1) -> np.ndarray:
    """imagecorruptions' impulse_noise (PIL image or (H, W, 3) uint8 in, float64
    [0, 255] out), with random_noise's Generator seeded from numpy's global RNG."""
    rng = np.random.default_rng(np.random.randint(2**32, dtype=np.uint64))
    x = random_noise(np.array(x) / 255.0, mode="s&p", amount=IMPULSE_NOISE[severity - 1], rng=rng)
    return np.clip(x, 0, 1) * 255


# The corruptions `corrupt` runs from this module instead of from imagecorruptions.
FIXED = {"glass_blur": glass_blur, "gaussian_blur": gaussian_blur, "fog": fog, "impulse_noise": impulse_noise}


def shuffle_pixels(x: np.ndarray, delta: int) -> np.ndarray:
    """One pass of glass_blur's "local shuffle", vectorised.

    The published loop visits h = H-delta .. delta+1 and, inside, w = W-delta .. delta+1
    (both descending), draws (dx, dy) = np.random.randint(-delta, delta, size=2) and runs
    `x[h, w], x[h', w'] = x[h', w'], x[h, w]` with (h', w') = (h+dy, w+dx). Because
    `x[h', w']` and `x[h, w]` are views, that statement only copies: x[h, w] <- x[h', w'].
    So pixel p takes the value its source had at that moment: the source's own new value
    if the loop visited the source earlier, else its value before the pass. Following
    those "visited earlier" links to their end (pointer jumping, O(log chain) rounds)
    gives every pixel's final source at once. The offsets are drawn in one call, which
    yields the same numbers as the loop's per-pixel calls.

    Args:
        x: (H, W, C) uint8.
    Returns:
        (H, W, C) uint8, a new array.
    """
    h, w = x.shape[:2]
    rows = np.arange(h - delta, delta, -1)
    cols = np.arange(w - delta, delta, -1)
    if len(rows) == 0 or len(cols) == 0:
        return x.copy()
    offsets = np.random.randint(-delta, delta, size=(len(rows) * len(cols), 2))
    hh = np.repeat(rows, len(cols))
    ww = np.tile(cols, len(rows))
    src_h, src_w = hh + offsets[:, 1], ww + offsets[:, 0]
    # Visit order: later rows/cols first, so the source was visited earlier iff it is in
    # the visited region and comes after (h, w) in row-major order.
    in_region = (src_h > delta) & (src_h <= h - delta) & (src_w > delta) & (src_w <= w - delta)
    earlier = in_region & ((src_h > hh) | ((src_h == hh) & (src_w > ww)))
    pointer = np.arange(h * w)
    pending = np.zeros(h * w, bool)
    visited = hh * w + ww
    pointer[visited] = src_h * w + src_w
    pending[visited] = earlier
    while pending.any():
        idx = np.nonzero(pending)[0]
        nxt = pointer[idx]
        pointer[idx] = pointer[nxt]
        pending[idx] = pending[nxt]
    return x.reshape(h * w, -1)[pointer].reshape(x.shape)
