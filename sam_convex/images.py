"""Read images and masks from files: the one reader every loader and command uses.

`read_image(path)` -> (H, W, 3) uint8 RGB and `read_mask(path)` -> (H, W) bool, with one
rule for each of the ways real files differ from "8-bit RGB PNG":

* **Orientation**: a JPEG's EXIF orientation is applied (as viewers and OpenCV do), to
  images and masks alike, so they stay aligned.
* **Bit depth**: more than 8 bits per channel (16-bit PNG/TIFF, 12-bit data in a 16-bit
  container) is scaled to 8 bits by the image's own range: values up to the smallest
  2**b − 1 that holds its maximum (b >= 8) map to 0..255, so a 12-bit image fills the 8-bit
  range and a full-range 16-bit one is divided by 257. Float images in [0, 1] map to 0..255;
  other floats by their min..max.
* **Channels**: grey is replicated; an alpha channel is dropped (images); a channel-first
  TIFF (3, H, W) is transposed.
* **TIFF** (CVC-ClinicDB ships .tif frames PIL cannot decode) is read with tifffile.

Masks: object = level >= half of the mask's maximum level (for 8-bit masks: >= 128), on
the level of the mask's one meaningful channel:

* palette masks by **index** (index 0 is background, any other index object), not by
  colour (a palette whose index 0 is white must not turn the background into object);
* {0, 1} masks (maximum level 1) read as their object;
* a mask whose colour channels are constant and whose alpha varies: the object is in the
  alpha channel;
* coloured masks (e.g. drawn in red): the level is the largest channel, so a pure red
  object (255, 0, 0) is object, not luma 76;
* lossy masks (JPEG: Kvasir-SEG ships them) have compression noise around 0 and 255; "any
  non-zero value" would count that noise as object. Many grey levels away from 0 and the
  maximum give one `LossyMaskWarning` naming the file;
* an all-background mask gives an `EmptyMaskWarning` naming the file (every method would
  score IoU 1.0 against it).

Unreadable files raise ValueError naming the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm")
# A mask is lossy (or soft-edged) when it has more distinct levels than this, or any pixel
# near but not at 0 or its maximum (within NOISE_BAND of it): compression noise. A clean
# binary mask has 2 levels and no such pixel; Kvasir-SEG's JPEG masks have 3 to 200
# levels (median 16), with noise around both 0 and 255.
LOSSY_LEVELS = 16
NOISE_BAND = 0.1
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


class LossyMaskWarning(UserWarning):
    """A mask with many grey levels (lossy compression or soft edges), read by threshold."""


class EmptyMaskWarning(UserWarning):
    """A ground-truth mask with no object pixel."""


def _decode(path: Path) -> tuple[np.ndarray, str | None, Image.Image | None]:
    """(array, PIL mode or None, PIL image or None) of the file, EXIF orientation applied.
    TIFF goes through tifffile (PIL cannot read many scientific TIFFs), the rest
    through PIL."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile  # only TIFF needs it

            arr = np.asarray(tifffile.imread(path))
            if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
                arr = np.moveaxis(arr, 0, -1)  # channel-first TIFF
            return arr, None, None
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)  # a copy with the orientation applied
    except (OSError, SyntaxError, ValueError, KeyError, Image.DecompressionBombError) as err:  # damaged files
        raise ValueError(f"{path}: not a readable image ({err}); replace or remove the file") from err
    return np.asarray(im), im.mode, im


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale an image array of any numeric dtype to uint8 (see the module docstring)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        a = np.nan_to_num(arr.astype(np.float64))
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0 and hi <= 1:
            return np.round(a * 255).astype(np.uint8)
        scaled = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        return np.round(scaled * 255).astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"unsupported pixel type {arr.dtype}")
    a = arr.astype(np.int64)
    a = np.clip(a, 0, None)
    top = int(a.max()) if a.size else 0
    if top <= 255:
        return a.astype(np.uint8)
    full = 2 ** int(np.ceil(np.log2(top + 1))) - 1  # 4095 for 12-bit data, 65535 for 16-bit
    return np.round(a * (255.0 / full)).astype(np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The image at `path` as (H, W, 3) uint8 RGB (EXIF orientation applied, > 8 bits
    scaled by the image's own range, grey replicated, alpha dropped).

    Raises:
        ValueError: the file is missing, unreadable, or not an image of 2 or 3 dims.
    """
    arr, mode, im = _decode(Path(path))
    if im is not None and mode not in (*HIGH_DEPTH_MODES, "L", "RGB"):
        arr = np.asarray(im.convert("RGBA" if "A" in mode or mode == "P" else "RGB"))
    arr = to_uint8(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"{path}: expected an (H, W) or (H, W, C<=4) image, got shape {arr.shape}")
    if arr.shape[2] in (1, 2):  # grey (+ alpha)
        arr = np.repeat(arr[..., :1], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


def mask_levels(path: str | os.PathLike) -> np.ndarray:
    """(H, W) levels of the mask's meaningful channel (see the module docstring):
    palette index, the alpha channel of an otherwise constant image, the largest colour
    channel, or the grey level. Integer or float, as stored."""
    arr, mode, im = _decode(Path(path))
    if mode == "P":
        return np.asarray(im)  # palette indices, not colours
    if mode == "1":
        return np.asarray(im).astype(np.uint8)
    if mode is not None and mode not in (*HIGH_DEPTH_MODES, "L", "RGB", "RGBA", "LA"):
        arr = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        if arr.shape[2] in (2, 4):  # with alpha
            colour, alpha = arr[..., :-1], arr[..., -1]
            if colour.min() == colour.max() and alpha.min() != alpha.max():
                return alpha  # the object is drawn in the alpha channel only
            arr = colour
        arr = arr.max(axis=2)  # red-drawn (255, 0, 0) is as much object as white
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected an (H, W) or (H, W, C<=4) mask, got shape {arr.shape}")
    return arr


def read_mask(path: str | os.PathLike, warn_empty: bool = True) -> np.ndarray:
    """The object mask at `path` as (H, W) bool: level >= half of the maximum level.

    Warns (`LossyMaskWarning`, naming the file) when the mask has many grey levels, and
    (`EmptyMaskWarning`) when it holds no object and `warn_empty`.

    Raises:
        ValueError: the file is missing or unreadable.
    """
    levels = mask_levels(path)
    if np.issubdtype(levels.dtype, np.floating):
        levels = np.nan_to_num(levels)
    top = levels.max() if levels.size else 0
    if top <= 0:
        if warn_empty:
            warnings.warn(f"{path}: the mask has no object pixel (empty ground truth)", EmptyMaskWarning, stacklevel=2)
        return np.zeros(levels.shape, bool)
    mask = levels >= top / 2
    distinct = np.unique(levels)
    noisy = (distinct > 0) & (distinct < top) & ((distinct < NOISE_BAND * top) | (distinct > (1 - NOISE_BAND) * top))
    if len(distinct) > LOSSY_LEVELS or noisy.any():
        changed = int((mask != (levels > 0)).sum())
        warnings.warn(
            f"{path}: {len(distinct)} grey levels (lossy compression such as JPEG, or soft edges); "
            f"object = level >= {top / 2:g}, which leaves out {changed} low non-zero pixel(s)",
            LossyMaskWarning,
            stacklevel=2,
        )
    return mask


def files_by_stem(directory: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """Image files of `directory` keyed by stem, suffixes matched case-insensitively
    (masks/A.PNG is the mask of images/A.jpg); {} when the directory is missing. Where
    several files share a stem, the first in `suffixes` order wins."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    rank = {s: i for i, s in enumerate(suffixes)}
    found: dict[str, Path] = {}
    for p in sorted(directory.iterdir()):
        suffix = p.suffix.lower()
        if suffix in rank and p.is_file():
            if p.stem not in found or rank[suffix] < rank[found[p.stem].suffix.lower()]:
                found[p.stem] = p
    return found
