"""The image corruptions: imagecorruptions 1.1.2, seeded, fixed for current packages.

`corrupt(image, name, severity, seed)` is the one entry point. Why not call
imagecorruptions directly:

* imagecorruptions draws from numpy's *global* RNG, so `corrupt` seeds it (and restores
  the caller's RNG state afterwards) to make every corrupted image reproducible.
* The released `glass_blur` calls `skimage.filters.gaussian(..., multichannel=True)`,
  which scikit-image >= 0.19 rejects. `glass_blur` below is the published definition with
  the same parameters, `multichannel=True` spelled `channel_axis=-1` (same meaning), and
  the slow pure-Python pixel loop replaced by
  `shuffle_pixels`, a vectorised equivalent that gives bit-identical output for the same
  RNG state (tests/test_corruptions.py checks it against the unmodified published
  function).
* The released `impulse_noise` calls `skimage.util.random_noise`, which since
  scikit-image 0.19 draws from its own fresh `default_rng()` and ignores numpy's global
  seed, so its output differed on every call. `impulse_noise` below is the same call
  with the same parameters, given a Generator seeded from the global RNG.
* imagecorruptions imports pkg_resources, which needs setuptools < 81.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image
from skimage.filters import gaussian
from skimage.util import random_noise

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources deprecation warning on import
    from imagecorruptions import corrupt as _corrupt

CORRUPTIONS = (
    "spatter",
    "contrast",
    "brightness",
    "impulse_noise",
    "shot_noise",
    "gaussian_noise",
    "defocus_blur",
    "glass_blur",
)
SEVERITIES = (1, 2, 3, 4, 5)
# imagecorruptions' glass_blur parameters: (sigma, max_delta, iterations) per severity.
GLASS_BLUR = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)]
IMPULSE_NOISE = [0.03, 0.06, 0.09, 0.17, 0.27]  # salt-and-pepper amount per severity


def corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """Apply one imagecorruptions corruption, seeded.

    Args:
        image: (H, W, 3) uint8 RGB, H and W >= 32 (imagecorruptions' limit).
        name: one of `CORRUPTIONS`.
        severity: 1..5.
        seed: seeds numpy's global RNG for this call (restored afterwards), 0 <= seed < 2**32.
    Returns:
        (H, W, 3) uint8, the corrupted image.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
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
        if name == "glass_blur":
            return np.uint8(glass_blur(Image.fromarray(image), severity))
        if name == "impulse_noise":
            return np.uint8(impulse_noise(Image.fromarray(image), severity))
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


def impulse_noise(x, severity: int = 1) -> np.ndarray:
    """imagecorruptions' impulse_noise (PIL image or (H, W, 3) uint8 in, float64
    [0, 255] out), with random_noise's Generator seeded from numpy's global RNG."""
    rng = np.random.default_rng(np.random.randint(2**32, dtype=np.uint64))
    x = random_noise(np.array(x) / 255.0, mode="s&p", amount=IMPULSE_NOISE[severity - 1], rng=rng)
    return np.clip(x, 0, 1) * 255


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
