"""Semantic feature channels for the scribble experiment.

Two sources, and every caller gets told which one it got:

* ``"embedmap"``: the authors' precomputed per-image features, one ``<name>.pt`` per
  image (``torch.save`` of a dict whose key ``'embedmap'`` holds an H x W x C array or
  tensor; a C x H x W one is recognised by the image's shape and transposed with a
  warning, `orient_embedmap`), reduced to a few channels by PCA and resized to the
  requested size.
* ``"standin"``: an offline substitute computed from the image alone (Lab colour,
  smoothed colour, local colour variance and gradient magnitude at a few scales),
  reduced the same way. It is *not* a learned semantic embedding; reports label it.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.color import rgb2lab

EMBEDMAP = "embedmap"
STANDIN = "standin"


def pca_reduce(feats: np.ndarray, k: int) -> np.ndarray:
    """Project per-pixel features onto their top-k principal components.

    Args:
        feats: (H, W, C) float features.
        k: number of components kept (clipped to C).
    Returns:
        (H, W, min(k, C)) float32, components in decreasing variance, each with its
        sign fixed (largest loading positive) so the result is deterministic.
    """
    if feats.ndim != 3 or feats.shape[2] < 1:
        raise ValueError(f"features must have shape (H, W, C), got {feats.shape}")
    h, w, c = feats.shape
    x = feats.reshape(-1, c).astype(np.float64)
    x = x - x.mean(axis=0)
    # Eigenvectors of the C x C covariance: cheap for any pixel count.
    evals, evecs = np.linalg.eigh(x.T @ x / len(x))
    top = evecs[:, np.argsort(evals)[::-1][: min(k, c)]]
    signs = np.sign(top[np.abs(top).argmax(axis=0), np.arange(top.shape[1])])
    top = top * np.where(signs == 0, 1, signs)
    return (x @ top).reshape(h, w, -1).astype(np.float32)


def resize_channels(feats: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, C) float -> (height, width, C) float32, bilinear (area when shrinking)."""
    if feats.shape[:2] == (height, width):
        return feats.astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).permute(2, 0, 1)[None]
    shrink = height < feats.shape[0] and width < feats.shape[1]
    t = F.interpolate(
        t, size=(height, width), mode="area" if shrink else "bilinear", **({} if shrink else {"align_corners": False})
    )
    return t[0].permute(1, 2, 0).numpy()


def load_embedmap(path: str | Path) -> np.ndarray:
    """Read one feature file in the authors' format.

    Args:
        path: a ``.pt`` file holding a dict with key ``'embedmap'`` (H x W x C numpy
            array or torch tensor).
    Returns:
        (H, W, C) float32 numpy array.
    Raises:
        FileNotFoundError: no such file.
        ValueError: not a dict with an (H, W, C) 'embedmap' of finite numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature file {path} not found")
    # The authors' files are dicts of numpy arrays: allow exactly numpy's array
    # reconstruction on top of torch's weights-only unpickler (never full pickle: a
    # feature file must not be able to run code). numpy 1.x pickles name the module
    # numpy.core, numpy 2.x numpy._core.
    reconstruct = np._core.multiarray._reconstruct
    allowed = [np.ndarray, np.dtype, bytes, reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct")]
    allowed += [type(np.dtype(t)) for t in "?bhilqBHILQefdg"]
    try:
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: not a torch file of tensors and numpy arrays (refused by torch's weights-only loader; "
            "feature files are never unpickled in full, which could run code)"
        ) from err
    except Exception as err:  # torch raises RuntimeError, EOFError, ... for damaged files
        raise ValueError(f"{path}: not a readable torch file ({type(err).__name__})") from err
    if not isinstance(obj, dict) or EMBEDMAP not in obj:
        keys = list(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: expected a dict with key 'embedmap', got {keys}")
    emb = obj[EMBEDMAP]
    emb = emb.detach().cpu().float().numpy() if isinstance(emb, torch.Tensor) else np.asarray(emb)
    if emb.ndim != 3 or min(emb.shape) < 1 or emb.dtype.kind not in "biuf":
        raise ValueError(
            f"{path}: 'embedmap' must be a numeric H x W x C array with C >= 1 channels, got shape {emb.shape} "
            f"dtype {emb.dtype}"
        )
    emb = emb.astype(np.float32)
    if not np.isfinite(emb).all():
        raise ValueError(f"{path}: 'embedmap' contains NaN or infinite values")
    return emb


def orient_embedmap(emb: np.ndarray, image_size: tuple[int, int], path: str | Path) -> np.ndarray:
    """An embedmap as (H', W', C) for an image of `image_size` (H, W): the authors' H x W x
    C as it is, a C x H x W array (a channel-first dump) transposed with a warning.

    Which one it is follows from the image: the two spatial sides keep the image's
    aspect ratio (to a pixel or 5%, for features at a lower resolution). Read the wrong
    way, a C x H x W array would be stretched over the image as a meaningless map.

    Raises:
        ValueError: neither reading fits the image's shape, or both do (a cube: the
            layout cannot be told; save it as H x W x C with C != H).
    """
    height, width = image_size

    def fits(rows: int, cols: int) -> bool:
        return abs(rows - cols * height / width) <= max(1.0, 0.05 * rows)

    a, b, c = emb.shape
    hwc, chw = fits(a, b), fits(b, c)
    if hwc and chw:
        raise ValueError(
            f"{path}: 'embedmap' of shape {emb.shape} could be H x W x C or C x H x W for the {width}x{height} "
            "image; save it as H x W x C with a channel count unlike its sides"
        )
    if hwc:
        return emb
    if chw:
        warnings.warn(
            f"{path}: 'embedmap' of shape {emb.shape} read as C x H x W (its last two sides fit the {width}x{height} "
            "image, its first two do not) and transposed to H x W x C",
            stacklevel=2,
        )
        return np.ascontiguousarray(emb.transpose(1, 2, 0))
    raise ValueError(
        f"{path}: 'embedmap' of shape {emb.shape} fits neither H x W x C nor C x H x W of the {width}x{height} image "
        "(the spatial sides must keep its aspect ratio); is it this image's feature file?"
    )


def standin_features(image: np.ndarray, k: int = 4) -> np.ndarray:
    """Offline stand-in for semantic features, computed from the image alone.

    Per pixel: Lab colour, Lab smoothed at sigma 4 (regional colour), local standard
    deviation of each Lab channel at sigma 2 and 4 (texture), gradient magnitude of L
    at sigma 1, 2, 4 (edges / texture scale); each channel standardised, then PCA.

    Args:
        image: (H, W, 3) uint8 RGB.
    Returns:
        (H, W, k) float32.
    """
    lab = rgb2lab(image).astype(np.float64)  # (H, W, 3)
    chans = [lab[..., i] for i in range(3)]
    for i in range(3):
        chans.append(ndimage.gaussian_filter(lab[..., i], 4))
        for s in (2, 4):
            mean = ndimage.gaussian_filter(lab[..., i], s)
            sq = ndimage.gaussian_filter(lab[..., i] ** 2, s)
            chans.append(np.sqrt(np.maximum(sq - mean**2, 0)))
    for s in (1, 2, 4):
        chans.append(ndimage.gaussian_gradient_magnitude(lab[..., 0], s))
    feats = np.stack(chans, axis=-1)
    feats = (feats - feats.mean(axis=(0, 1))) / (feats.std(axis=(0, 1)) + 1e-6)
    return pca_reduce(feats, k)


def feature_file(name: str, features_dir: str | Path | None) -> Path | None:
    """The feature file of the sample `name`: ``features_dir/<name>.pt`` when it exists,
    else None. The whole name: "scan.v1" never falls back to scan.pt, another image's."""
    if features_dir is None:
        return None
    path = Path(features_dir) / f"{name}.pt"
    return path if path.is_file() else None


def semantic_features(
    image: np.ndarray, name: str, height: int, width: int, features_dir: str | Path | None = None, k: int = 4
) -> tuple[np.ndarray, str]:
    """Semantic channels for one image at (height, width), and where they came from.

    Looks for ``features_dir/<name>.pt`` (`feature_file`); when there is no directory or
    no file for this image, falls back to the stand-in.

    Args:
        image: (H, W, 3) uint8 RGB at full resolution.
        name: the sample's name (file stem used to find its feature file).
        height, width: output size.
        features_dir: directory of ``.pt`` files in the authors' format, or None.
        k: channels kept after PCA.
    Returns:
        ((height, width, k) float32 features, ``"embedmap"`` or ``"standin"``).
    Raises:
        FileNotFoundError: features_dir given but not a directory.
    """
    if features_dir is not None:
        features_dir = Path(features_dir)
        if not features_dir.is_dir():
            raise FileNotFoundError(
                f"--features {features_dir} is not a directory; pass a directory of "
                "<image name>.pt files with an 'embedmap' entry, or omit it for the stand-in"
            )
        path = feature_file(name, features_dir)
        if path is not None:
            emb = orient_embedmap(load_embedmap(path), image.shape[:2], path)
            return resize_channels(pca_reduce(emb, k), height, width), EMBEDMAP
    small = resize_channels(image.astype(np.float32), height, width)
    small = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    return standin_features(small, k), STANDIN
