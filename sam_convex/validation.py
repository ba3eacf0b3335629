"""Argument checks shared by every public entry point, with one message style:

    "<name> must be <what is allowed>, got <the value given>"

Every check raises ValueError (a bad value is a bad value, whatever its type), so
callers and commands need to catch one exception type.
"""

from __future__ import annotations

import argparse
import numbers
import os
import sys
from typing import Any, NoReturn

import numpy as np
import torch


class CommandLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument ends in one line on stderr and exit code 2 (the
    usage block is for --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def fail(self, err: Exception) -> NoReturn:
        """Exit 2 with `err` as one line: for bad input found after parsing."""
        text = " ".join(str(err).split()) or type(err).__name__
        print(f"{self.prog}: error: {text}", file=sys.stderr)
        sys.exit(2)


# Probabilities that stray this far outside [0, 1] are float rounding (from resizing,
# softmax, ...), not a caller's mistake; they are clipped instead of refused.
PROBABILITY_SLACK = 1e-5


def integer(
    name: str, value: Any, minimum: int | None = None, allow_none: bool = False, maximum: int | None = None
) -> int | None:
    """`value` as an int; bool and non-integral numbers are refused."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if not ok or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = [f">= {minimum}" if minimum is not None else "", f"<= {maximum}" if maximum is not None else ""]
        what = " ".join(["an integer", " and ".join(b for b in bounds if b)]).strip()
        raise ValueError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def flag(name: str, value: Any) -> bool:
    """`value` if it is a bool (a string such as 'no' is not)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def number(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    allow_none: bool = False,
) -> float | None:
    """`value` as a finite float with `minimum <= value <= maximum` and `value > above`."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    ok = ok and bool(np.isfinite(value))
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    ok = ok and (above is None or value > above)
    if not ok:
        bounds = [f">= {minimum:g}" if minimum is not None else "", f"> {above:g}" if above is not None else ""]
        bounds += [f"<= {maximum:g}" if maximum is not None else ""]
        what = " and ".join(b for b in bounds if b)
        what = f"a finite number {what}".rstrip()
        raise ValueError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value!r}")
    return float(value)


def choice(name: str, value: Any, allowed: tuple) -> Any:
    """`value` if it is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    return value


def checkpoint_path(name: str, value: Any) -> None:
    """ValueError unless `value` is a path (str or os.PathLike)."""
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise ValueError(f"{name} must be the path of a checkpoint file, got {value!r}")


def projector(value: Any) -> Any:
    """`value` if it can project (has `fit(targets, logits=...)`); None passes."""
    if value is not None and not callable(getattr(value, "fit", None)):
        raise ValueError(f"projector must be a ConvexProjector or GradientProjector, got {value!r}")
    return value


def device(name: str, value: Any) -> torch.device | None:
    """A usable torch device (None passes through): parsed, not 'meta', CUDA present."""
    if value is None:
        return None
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{name} must be a torch device such as 'cpu' or 'cuda', got {value!r}") from err
    if dev.type == "meta":
        raise ValueError(f"{name} must hold real data ('cpu', 'cuda', ...), got {value!r}")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name} {value!r} requested but torch sees no CUDA device; use 'cpu'")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"{name} {value!r} requested but torch sees {count} CUDA device(s)")
    return dev


def probabilities(targets: Any, logits: bool = False, keep_grad: bool = False) -> torch.Tensor:
    """Validate (H, W) or (N, H, W) masks and return foreground probabilities.

    Args:
        targets: numpy array or torch tensor: bool masks, or numbers: probabilities in
            [0, 1], or logits when `logits=True`.
        keep_grad: keep a torch input's autograd graph (for a training loss).
    Returns:
        (H, W) or (N, H, W) float32 tensor in [0, 1], on the input's device.
    Raises:
        ValueError: wrong ndim, non-numeric dtype, empty, NaN/inf, or outside [0, 1].
    """
    flag("logits", logits)
    if isinstance(targets, torch.Tensor):
        t = targets if keep_grad else targets.detach()
        if t.is_complex():
            raise ValueError(f"targets must be real numbers or bool, got dtype {t.dtype}")
        if t.device.type == "meta":
            raise ValueError("targets must hold data, got a tensor on the 'meta' device")
    else:
        arr = np.asarray(targets)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"targets must be a numeric or bool array, got dtype {arr.dtype}")
        if arr.dtype.kind != "b":
            # float128 and big-endian arrays have no torch dtype: convert first.
            arr = arr.astype(np.float32)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.dim() not in (2, 3):
        raise ValueError(f"targets must have shape (H, W) or (N, H, W), got {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"targets must not be empty, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool:
        return t.float()
    t = t.float()
    values = t.detach()
    if not torch.isfinite(values).all():
        raise ValueError("targets contain NaN or infinite values")
    if logits:
        return torch.sigmoid(t)
    lo, hi = float(values.min()), float(values.max())
    if lo < -PROBABILITY_SLACK or hi > 1 + PROBABILITY_SLACK:
        raise ValueError(
            f"targets must be probabilities in [0, 1], got values in [{lo:.7g}, {hi:.7g}]; "
            "pass logits=True for logits, or a bool mask"
        )
    return t.clamp(0, 1) if lo < 0 or hi > 1 else t


def image(value: Any, image_format: str = "RGB") -> None:
    """ValueError unless `value` is an (H, W, 3) uint8 numpy array, H, W >= 1."""
    choice("image_format", image_format, ("RGB", "BGR"))
    if not isinstance(value, np.ndarray) or value.ndim != 3 or value.shape[2] != 3:
        shape = getattr(value, "shape", None)
        raise ValueError(f"image must be an (H, W, 3) numpy array, got shape {shape}")
    if value.dtype != np.uint8:
        raise ValueError(f"image must be uint8 with values in [0, 255], got dtype {value.dtype}")
    if value.shape[0] < 1 or value.shape[1] < 1:
        raise ValueError(f"image must not be empty, got shape {value.shape}")


def prompts(point_coords, point_labels, box, image_size: tuple[int, int]):
    """Validate prompts against an (H, W) image.

    Returns:
        (points (K, 2) float64 or None, labels (K,) int64 or None, box (4,) float64 or None).
    Raises:
        ValueError: bad shapes, labels other than 0/1, no prompt, or a prompt outside the
            image (points need 0 <= x < W, 0 <= y < H; a box 0 <= x0 < x1 <= W, same in y).
    """
    h, w = image_size
    points = labels = None
    if point_coords is not None or point_labels is not None:
        if point_coords is None or point_labels is None:
            raise ValueError("point_coords and point_labels must be given together")
        points = np.asarray(point_coords, dtype=np.float64)
        labels = np.asarray(point_labels)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"point_coords must have shape (K, 2) as (x, y), got {points.shape}")
        if labels.shape != (points.shape[0],):
            raise ValueError(f"point_labels must have shape ({points.shape[0]},), got {labels.shape}")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"point_labels must be 1 (foreground) or 0 (background), got {labels}")
        labels = labels.astype(np.int64)
        if not np.isfinite(points).all():
            raise ValueError("point_coords contain NaN or infinite values")
        x, y = points[:, 0], points[:, 1]
        outside = (x < 0) | (x >= w) | (y < 0) | (y >= h)
        if outside.any():
            raise ValueError(
                f"point(s) {points[outside].tolist()} lie outside the {w}x{h} image "
                f"(x must be in [0, {w}), y in [0, {h}))"
            )
    if box is not None:
        box = np.asarray(box, dtype=np.float64).reshape(-1)
        if box.shape != (4,):
            raise ValueError(f"box must have 4 values (x0, y0, x1, y1), got {box.size}")
        x0, y0, x1, y1 = box
        if not np.isfinite(box).all() or not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise ValueError(f"box {box.tolist()} must satisfy 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}")
    return points, labels, box
