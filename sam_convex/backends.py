"""Where masks come from: SAM checkpoints, and a GrabCut stand-in for machines without one.

Both kinds of predictor share one surface (`Predictor` below), the one of
segment-anything's `SamPredictor`: `set_image(image)` once, then `predict(prompts)` as
often as needed, returning (masks, scores, logits) as numpy arrays.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

CHECKPOINT_URL = "https://github.com/facebookresearch/segment-anything#model-checkpoints"
# Official checkpoint file names, in the order `find_checkpoint` prefers them.
OFFICIAL_CHECKPOINTS = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}
# Output channels of image_encoder.patch_embed.proj (the ViT embedding width) per type.
EMBED_DIM_TO_TYPE = {1280: "vit_h", 1024: "vit_l", 768: "vit_b"}
MODEL_TYPES = ("vit_h", "vit_l", "vit_b")


class Predictor(Protocol):
    """What the evaluation harness and the command need from a predictor."""

    is_image_set: bool

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None: ...

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None,
                multimask_output: bool = True, return_logits: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def reset_image(self) -> None: ...


class ImageNotSetError(ValueError, RuntimeError):
    """predict() before set_image(). A RuntimeError too, as SamPredictor raises one."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------- SAM loading

def find_checkpoint(directory: str | Path = "checkpoints") -> Path | None:
    """A SAM checkpoint in `directory`, or None.

    Official file names win (vit_h, then vit_l, then vit_b); otherwise the first
    *.pth / *.pt file by name. A relative `directory` is looked up in the current
    working directory first, then next to the package (the repository's checkpoints/).
    """
    directory = Path(directory)
    candidates = [directory]
    if not directory.is_absolute():
        candidates.append(Path(__file__).resolve().parent.parent / directory)
    for folder in candidates:
        if not folder.is_dir():
            continue
        for name in OFFICIAL_CHECKPOINTS.values():
            if (folder / name).is_file():
                return folder / name
        files = sorted(p for p in folder.iterdir() if p.suffix in (".pth", ".pt") and p.is_file())
        if files:
            return files[0]
    return None


def model_type_from_name(path: str | Path) -> str | None:
    """'vit_h' / 'vit_l' / 'vit_b' when the file name says so (official names do)."""
    match = re.search(r"vit_([hlb])", Path(path).name)
    return f"vit_{match.group(1)}" if match else None


def model_type_from_state_dict(state_dict: dict) -> str | None:
    """Model type from the ViT embedding width, or None when it is not a known one."""
    weight = state_dict.get("image_encoder.patch_embed.proj.weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        return None
    return EMBED_DIM_TO_TYPE.get(int(weight.shape[0]))


def load_sam(checkpoint: str | Path, model_type: str | None = None,
             device: str | torch.device | None = None) -> Sam:
    """Build a SAM model and load its weights.

    Args:
        checkpoint: path to a SAM state dict (.pth), e.g. checkpoints/sam_vit_b_01ec64.pth.
        model_type: "vit_h", "vit_l", "vit_b" (or "default" = vit_h). None: inferred from
            the weights' shapes (ViT width 1280/1024/768), else from the file name.
        device: where to put the model; default cuda if available, else cpu.
    Returns:
        the `Sam` model in eval mode on `device`.
    Raises:
        FileNotFoundError: no such file (the message says where to get checkpoints).
        ValueError: unknown model_type, unreadable file, or weights that do not fit the
            model type(s) tried.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"SAM checkpoint not found: {path}. Download an official checkpoint "
            f"(sam_vit_b_01ec64.pth is the smallest) from {CHECKPOINT_URL} "
            "and put it in checkpoints/."
        )
    if model_type is not None and model_type not in sam_model_registry:
        raise ValueError(
            f"unknown model_type {model_type!r}; use one of {sorted(sam_model_registry)} "
            "or None to infer it"
        )
    try:
        # weights_only: a checkpoint is data, never code to run.
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged file
        raise ValueError(
            f"cannot read SAM checkpoint {path} ({type(err).__name__}: {err}); "
            "the file may be truncated or not a checkpoint; download it again from "
            f"{CHECKPOINT_URL}"
        ) from err
    if isinstance(state_dict, dict) and isinstance(state_dict.get("model"), dict):
        state_dict = state_dict["model"]  # some training scripts wrap the weights
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state_dict).__name__})")

    if model_type is not None:
        tried = [model_type]
    else:
        # The weights' shapes are the stronger evidence; the file name may be renamed.
        guesses = (model_type_from_state_dict(state_dict), model_type_from_name(path))
        tried = list(dict.fromkeys(t for t in guesses if t))  # unique, keep order
        if not tried:
            raise ValueError(
                f"cannot tell the model type of {path}: neither the file name nor the weights "
                f"match {', '.join(MODEL_TYPES)}; pass model_type explicitly"
            )
    errors = []
    for name in tried:
        sam = sam_model_registry[name]()
        try:
            sam.load_state_dict(state_dict)
        except RuntimeError as err:
            errors.append(f"{name}: {str(err).splitlines()[0]}")
            continue
        sam.eval()
        return sam.to(torch.device(device) if device is not None else default_device())
    raise ValueError(
        f"weights in {path} do not fit SAM model type(s) tried: {', '.join(tried)} "
        f"({'; '.join(errors)})"
    )


# --------------------------------------------------------------------------- prompts

def check_image(image: np.ndarray, image_format: str = "RGB") -> None:
    """ValueError unless `image` is an HWC uint8 array with 3 channels."""
    if image_format not in ("RGB", "BGR"):
        raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"image must be an (H, W, 3) numpy array, got shape {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 with values in [0, 255], got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must not be empty, got shape {image.shape}")


def check_prompts(point_coords, point_labels, box, image_size: tuple[int, int]):
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
            raise ValueError(
                f"point_labels must have shape ({points.shape[0]},), got {labels.shape}"
            )
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
            raise ValueError(
                f"box {box.tolist()} must satisfy 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}"
            )
    return points, labels, box


# --------------------------------------------------------------------------- GrabCut

class GrabCutPredictor:
    """OpenCV GrabCut behind SamPredictor's set_image / predict surface.

    A classical segmenter (colour GMMs + graph cut), not SAM: no learned features,
    one mask per call, and the score is not a quality estimate. It lets the command and
    the harness run where no SAM checkpoint is available.

    Prompts become GrabCut's seed mask:
      * box: definite background outside, probable foreground inside (what
        GC_INIT_WITH_RECT does);
      * positive points: small disks of definite foreground; without a box, the image
        starts as probable background with a probable-foreground disk around each
        positive point (radius 1/8 of the short image side), so a single click works;
      * negative points: small disks of definite background;
      * mask_input: (1, h, w) or (h, w) logits covering the image (e.g. this
        predictor's own logits), resized to the image: > 0 probable foreground, else
        probable background; box and points are painted over it.

    Soft logits: the signed distance to the GrabCut boundary in pixels (positive
    inside, +-0.5 at the pixels next to it) divided by `temperature` and clipped to
    +-20, so sigmoid(logits) is a mask smoothed over about two pixels; logits > 0 is
    exactly the GrabCut mask.

    Args:
        iterations: GrabCut iterations per predict call.
        seed: seeds OpenCV's RNG (GMM initialisation) before every call, so the same
            image and prompt give the same mask.
        temperature: pixels per logit unit of the soft output.
    """

    def __init__(self, iterations: int = 5, seed: int = 0, temperature: float = 2.0) -> None:
        if not isinstance(iterations, (int, np.integer)) or iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.iterations, self.seed = int(iterations), int(seed)
        self.temperature = float(temperature)
        self.reset_image()

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Store the image to segment.

        Args:
            image: (H, W, 3) uint8 array.
            image_format: "RGB" or "BGR", the channel order of `image`.
        """
        check_image(image, image_format)
        # GrabCut's colour models do not care about channel order; keep BGR, cv2's own.
        bgr = image[..., ::-1] if image_format == "RGB" else image
        self.image = np.ascontiguousarray(bgr)
        self.original_size = image.shape[:2]
        self.is_image_set = True

    def reset_image(self) -> None:
        self.image = None
        self.original_size = None
        self.is_image_set = False

    def predict(self, point_coords: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, box: np.ndarray | None = None,
                mask_input: np.ndarray | None = None,
                multimask_output: bool = True, return_logits: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segment the set image from prompts (pixel coordinates of the original image).

        Args:
            point_coords: (K, 2) float (x, y) points, with `point_labels` (K,) 1 = object,
                0 = background.
            box: (4,) float (x0, y0, x1, y1).
            mask_input: optional (1, h, w) or (h, w) float logits covering the image.
            multimask_output: ignored; GrabCut gives one mask.
            return_logits: return the soft logits in place of the bool masks.
        Returns:
            masks: (1, H, W) bool (float32 logits if `return_logits`).
            scores: (1,) float32, 1.0 if the mask is non-empty else 0.0 (not a quality
                estimate).
            logits: (1, H, W) float32 soft logits (see the class docstring).
        Raises:
            ValueError: no image set, no box / positive point / mask_input, or a prompt
                outside the image.
        """
        if not self.is_image_set:
            raise ImageNotSetError("an image must be set with .set_image(...) before predict")
        h, w = self.original_size
        points, labels, box = check_prompts(point_coords, point_labels, box, (h, w))
        has_positive = points is not None and bool((labels == 1).any())
        if box is None and not has_positive and mask_input is None:
            raise ValueError("GrabCut needs a box, a positive point (label 1) or a mask_input")

        seeds = self._seed_mask(points, labels, box, mask_input)
        if not np.isin(seeds, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():
            # GrabCut cannot build a background model from nothing: lend it the border.
            seeds[[0, -1], :] = cv2.GC_PR_BGD
            seeds[:, [0, -1]] = cv2.GC_PR_BGD
        if not np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).any():
            fg = np.zeros((h, w), bool)
        else:
            cv2.setRNGSeed(self.seed % 2**31)  # OpenCV takes a signed 32-bit int
            bgd_model = np.zeros((1, 65), np.float64)
            fgd_model = np.zeros((1, 65), np.float64)
            cv2.grabCut(self.image, seeds, None, bgd_model, fgd_model, self.iterations,
                        cv2.GC_INIT_WITH_MASK)
            fg = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)

        logits = signed_distance(fg) / self.temperature
        logits = np.clip(logits, -20.0, 20.0).astype(np.float32)[None]
        scores = np.array([1.0 if fg.any() else 0.0], np.float32)
        masks = logits if return_logits else fg[None]
        return masks, scores, logits

    def _seed_mask(self, points, labels, box, mask_input) -> np.ndarray:
        """GrabCut's (H, W) uint8 seed mask from the prompts (see the class docstring)."""
        h, w = self.original_size
        seeds = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
        if mask_input is not None:
            m = np.asarray(mask_input, dtype=np.float32)
            if m.ndim == 3 and m.shape[0] == 1:
                m = m[0]
            if m.ndim != 2 or not np.isfinite(m).all():
                raise ValueError(
                    f"mask_input must be finite (1, h, w) or (h, w) logits, got {m.shape}")
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
            seeds[m > 0] = cv2.GC_PR_FGD
        if box is not None:
            x0, y0, x1, y1 = box
            c0, r0 = int(np.floor(x0)), int(np.floor(y0))
            c1, r1 = int(np.ceil(x1)), int(np.ceil(y1))
            inside = np.zeros((h, w), bool)
            inside[r0:r1, c0:c1] = True
            seeds[~inside] = cv2.GC_BGD
            if mask_input is None:
                seeds[inside] = cv2.GC_PR_FGD
        short = min(h, w)
        if points is not None:
            if box is None and mask_input is None:
                for x, y in points[labels == 1]:
                    cv2.circle(seeds, (int(x), int(y)), max(3, short // 8), int(cv2.GC_PR_FGD), -1)
            sure = max(1, short // 100)
            for (x, y), label in zip(points, labels):
                value = cv2.GC_FGD if label == 1 else cv2.GC_BGD
                cv2.circle(seeds, (int(x), int(y)), sure, int(value), -1)
        return seeds


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """(H, W) float32 signed distance: >= +0.5 inside `mask`, <= -0.5 outside.

    Inside, the Euclidean distance to the nearest outside pixel minus 0.5; outside, minus
    the distance to the nearest inside pixel plus 0.5 (the boundary lies between pixels).
    An empty mask gives -(H + W) everywhere, a full one +(H + W).
    """
    mask = mask.astype(bool)
    h, w = mask.shape
    if not mask.any():
        return np.full((h, w), -float(h + w), np.float32)
    if mask.all():
        return np.full((h, w), float(h + w), np.float32)
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    return np.where(mask, inside - 0.5, -(outside - 0.5)).astype(np.float32)
