"""Argument checks shared by every public entry point, with one message style:

    "<name> must be <what is allowed>, got <the value given>"

Every check raises ValueError (a bad value is a bad value, whatever its type), so
callers and commands need to catch one exception type.
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
import sys
from typing import Any, NamedTuple, NoReturn

import numpy as np
import torch

from sam_convex import loops


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
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the largest finite float32


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


def probabilities(
    targets: Any, logits: bool = False, keep_grad: bool = False, check_range: bool = True
) -> torch.Tensor:
    """Validate (H, W) or (N, H, W) masks and return foreground probabilities.

    Args:
        targets: numpy array or torch tensor: bool masks, or numbers: probabilities in
            [0, 1], or logits when `logits=True`.
        keep_grad: keep a torch input's autograd graph (for a training loss).
        check_range: False leaves probabilities unchecked (logits are always checked),
            for a caller that counts the values outside [0, 1] (NaN included) in a pass
            of its own and calls again with True when there are any.
    Returns:
        (H, W) or (N, H, W) float32 tensor in [0, 1] (as given, unchecked, with
        `check_range=False`), on the input's device.
    Raises:
        ValueError: wrong ndim, non-numeric dtype, empty, NaN/inf, or outside [0, 1]
            (the last two not for probabilities with `check_range=False`).
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
            arr = arr.astype(np.float32, copy=False)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.dim() not in (2, 3):
        raise ValueError(f"targets must have shape (H, W) or (N, H, W), got {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"targets must not be empty, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool:
        return t.float()
    t = t.float()
    if not (logits or check_range):
        return t
    # Both checks from the min and max (they propagate NaN, and an infinity is one of
    # them). On the CPU, first one compiled pass without a thread pool counts the values
    # outside the allowed range (torch.isfinite(...).all() took 5 ms per megapixel, 20x
    # a hull of the mask, and torch's threads stall when other work shares the cores);
    # numpy's min and max, two more passes, only when some value is outside (or the
    # values are not contiguous).
    values = t.detach()
    if values.device.type == "cpu":
        array = values.numpy()
        allowed = (-FLOAT32_MAX, FLOAT32_MAX) if logits else (0.0, 1.0)
        # A strided view (expanded, transposed) is not copied: numpy reads it in place.
        if array.flags.c_contiguous and loops.count_outside(array.reshape(-1), *allowed) == 0:
            return torch.sigmoid(t) if logits else t
        lo, hi = float(array.min()), float(array.max())
    else:
        lo, hi = (float(v) for v in torch.aminmax(values))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("targets contain NaN or infinite values")
    if logits:
        return torch.sigmoid(t)
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


class ImageNotSetError(ValueError, RuntimeError):
    """predict before set_image. A ValueError like every bad call here, and a
    RuntimeError as segment-anything's and sam2's predictors raise for it."""


def is_sam2(model: Any) -> bool:
    """True for a SAM 2 model or a predictor holding one (sam2's mask decoder is
    `sam_mask_decoder`; segment-anything's is `mask_decoder`)."""
    return hasattr(getattr(model, "model", model), "sam_mask_decoder")


def sam_model(model: Any, name: str = "sam_model") -> None:
    """ValueError unless `model` has segment-anything's `Sam` interface (duck-typed, so
    MobileSAM's and other variants' Sam classes pass); a SAM 2 model is named as such."""
    if is_sam2(model):
        raise ValueError(
            f"{name} is SAM 2 ({type(model).__name__}): use Sam2ConvexPredictor / Sam2ConvexAutomaticMaskGenerator"
        )
    needed = ("image_encoder", "prompt_encoder", "mask_decoder", "postprocess_masks")
    if not all(hasattr(model, n) for n in needed):
        raise ValueError(
            f"{name} must be a SAM model with segment-anything's Sam interface "
            f"(segment_anything.modeling.Sam), got {type(model).__name__}"
        )


def sam2_model(model: Any, name: str = "sam_model") -> None:
    """ValueError unless `model` looks like a SAM 2 model (what SAM2ImagePredictor uses)."""
    if not is_sam2(model) and all(hasattr(model, n) for n in ("prompt_encoder", "mask_decoder", "postprocess_masks")):
        raise ValueError(
            f"got a segment-anything (SAM 1) model ({type(model).__name__}); "
            "use SamConvexPredictor / SamConvexAutomaticMaskGenerator for it"
        )
    needed = ("forward_image", "_prepare_backbone_features", "sam_prompt_encoder", "sam_mask_decoder")
    if not all(hasattr(model, n) for n in (*needed, "image_size", "backbone_stride")):
        raise ValueError(
            f"{name} must be a SAM 2 model (sam2.modeling.sam2_base.SAM2Base, "
            f"e.g. from load_sam2 or sam2.build_sam.build_sam2), got {type(model).__name__}"
        )


# Point labels, as SAM's and SAM 2's prompt encoders read them. -1 marks a padding
# point (no position; the predictors' batched prompts use it); 2 and 3 are box corners,
# which the encoders add themselves from `box` and are refused from callers.
BACKGROUND, FOREGROUND, PADDING = 0, 1, -1
POINT_LABELS = (BACKGROUND, FOREGROUND)


class Prompts(NamedTuple):
    """Checked prompts, as numpy arrays (the caller's tensors are checked on a copy
    and passed on by the caller unchanged)."""

    points: np.ndarray | None  # (K, 2) or (B, K, 2) float64 (x, y)
    labels: np.ndarray | None  # (K,) or (B, K) int64
    box: np.ndarray | None  # (4,), (1, 4) or (B, 4) float64 (x0, y0, x1, y1)
    mask_input: np.ndarray | None  # (1, h, w) or (B, 1, h, w) float32 low-res logits


def _numbers(name: str, value: Any) -> np.ndarray:
    """`value` (array-like, or a tensor on any device) as a finite float64 numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numbers, got {type(value).__name__}") from err
    return arr


def _shape(name: str, arr: np.ndarray, shapes: list[tuple]) -> None:
    """ValueError unless `arr.shape` is one of `shapes` (a name such as "K", or None,
    stands for any size)."""
    for shape in shapes:
        if arr.ndim == len(shape) and all(not isinstance(n, int) or n == m for n, m in zip(shape, arr.shape)):
            return
    want = " or ".join("(" + ", ".join("*" if n is None else str(n) for n in s) + ")" for s in shapes)
    raise ValueError(f"{name} must have shape {want}, got {tuple(arr.shape)}")


def _finite(name: str, arr: np.ndarray) -> None:
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def prompts(
    point_coords: Any,
    point_labels: Any,
    box: Any,
    mask_input: Any = None,
    *,
    image_size: tuple[int, int] | None = None,
    mask_size: tuple[int | str, int | str] = ("h", "w"),
    batched: bool | None = False,
    padding: bool = False,
    normalized: bool = False,
    upstream: bool = False,
) -> Prompts:
    """The one check of point / box / mask prompts, for every predictor and command.

    Args:
        point_coords: (K, 2) (x, y) points; (B, K, 2) when batched. Coordinates are
            continuous image coordinates, as upstream SAM / SAM 2 take them: they scale
            x by (frame / W), so x == W is the image's right edge and is inside.
        point_labels: (K,) / (B, K): 1 foreground, 0 background (POINT_LABELS); with
            `padding`, also -1 for a padding point (no position; not range-checked).
        box: (4,) or (1, 4) (x0, y0, x1, y1); (B, 4) when batched.
        mask_input: (1, h, w) / (B, 1, h, w) low-res logits of an earlier call, with
            (h, w) = `mask_size` (None: any).
        image_size: (H, W): points must lie in [0, W] x [0, H] and boxes need
            0 <= x0 < x1 <= W, 0 <= y0 < y1 <= H (the closed frame upstream maps onto
            its model frame). None: no range check (upstream accepts such prompts; the
            drop-ins skip it with projection off to return upstream's answer exactly).
        batched: False: unbatched shapes; True: the batched shapes of predict_torch;
            None: either, as SAM2ImagePredictor.predict takes (batched points and boxes
            must then agree on B).
        padding: accept label -1.
        normalized: coordinates are normalised to [0, 1] (SAM 2's normalize_coords=False).
        upstream: accept what upstream SAM / SAM 2 answer (the drop-ins with projection
            off): labels without points are ignored (returned as None), any label value
            and an empty point list pass. Shapes upstream fails on and non-finite
            prompts (NaN masks out) are refused either way.
    Returns:
        `Prompts` of numpy arrays (None where not given).
    Raises:
        ValueError: naming the argument: shapes, NaN/inf, labels, points without labels,
            empty point lists, prompts outside the image.
    """
    lead = {False: [()], True: [("B",)], None: [(), ("B",)]}[batched]
    if upstream and point_coords is None:
        point_labels = None  # upstream reads labels only with points
    points, labels = _points(point_coords, point_labels, lead, padding, upstream)
    boxes = masks = None
    if box is not None:
        boxes = _array("box", box, [(4,), (1, 4)] if batched is False else [(*b, 4) for b in lead])
    if batched is None and points is not None and boxes is not None and points.ndim == 3 and boxes.ndim == 2:
        if points.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"batched point_coords and box must have the same B, got {points.shape[0]} and {boxes.shape[0]}"
            )
    if mask_input is not None:
        masks = _array("mask_input", mask_input, [(*b, 1, *mask_size) for b in lead])
    if image_size is not None:
        _check_extent(points, labels, boxes, image_size, normalized)
    return Prompts(points, labels, boxes, masks)


def _array(name: str, value: Any, shapes: list[tuple]) -> np.ndarray:
    """`value` as a float64 array of one of `shapes`, finite."""
    arr = _numbers(name, value)
    _shape(name, arr, shapes)
    _finite(name, arr)
    return arr


def _points(point_coords, point_labels, lead: list[tuple], padding: bool, upstream: bool = False):
    """(points, labels) checked as `prompts` describes, or (None, None); `upstream`: any
    label value and an empty point list pass."""
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords and point_labels must be given together")
    if point_coords is None:
        return None, None
    points = _array("point_coords", point_coords, [(*b, "K", 2) for b in lead])
    if points.shape[-2] == 0 and not upstream:
        raise ValueError("point_coords must hold at least one point (pass None for no points)")
    labels = _array("point_labels", point_labels, [points.shape[:-1]])
    allowed = (*POINT_LABELS, PADDING) if padding else POINT_LABELS
    if not upstream and not np.isin(labels, allowed).all():
        pad = " (-1 pads)" if padding else ""
        raise ValueError(f"point_labels must be 1 (object) or 0 (background){pad}, got {np.unique(labels).tolist()}")
    return points, labels.astype(np.int64)


def _check_extent(points, labels, boxes, image_size: tuple[int, int], normalized: bool) -> None:
    """ValueError for points outside the closed image frame, or an empty box or one
    leaving it (see `prompts`)."""
    h, w = image_size
    limit_x, limit_y = (1.0, 1.0) if normalized else (float(w), float(h))
    where = "[0, 1] (normalised coordinates)" if normalized else f"the {w}x{h} image (x in [0, {w}], y in [0, {h}])"
    if points is not None:
        real = labels != PADDING  # padding points carry no position
        x, y = points[..., 0][real], points[..., 1][real]
        outside = (x < 0) | (x > limit_x) | (y < 0) | (y > limit_y)
        if outside.any():
            bad = np.stack([x[outside], y[outside]], axis=1).tolist()
            raise ValueError(f"point(s) {bad} lie outside {where}")
    if boxes is not None:
        x0, y0, x1, y1 = boxes.reshape(-1, 4).T
        ok = (0 <= x0) & (x0 < x1) & (x1 <= limit_x) & (0 <= y0) & (y0 < y1) & (y1 <= limit_y)
        if not ok.all():
            raise ValueError(
                f"box(es) {boxes.reshape(-1, 4)[~ok].tolist()} are empty or lie outside {where}: "
                f"need 0 <= x0 < x1 <= {limit_x:g} and 0 <= y0 < y1 <= {limit_y:g}"
            )
