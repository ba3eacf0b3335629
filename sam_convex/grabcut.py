"""OpenCV GrabCut behind segment-anything's SamPredictor surface, for machines
without SAM weights: `set_image(image)` once, then `predict(prompts)` as often as needed,
returning (masks, scores, logits) as numpy arrays. A classical segmenter, not SAM.
"""

from __future__ import annotations

import cv2
import numpy as np

from sam_convex import validation
from sam_convex.validation import ImageNotSetError


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
        max_side: None segments at full resolution; an int runs GrabCut on a copy whose
            longer side is at most `max_side` pixels (area-averaged) and resizes the
            signed distance back (bilinear), so masks and logits still cover the whole
            image. GrabCut's time grows with the pixel count (about 1 s at 640x480 on a
            2-core CPU), so the interactive page uses this.
    """

    def __init__(
        self, iterations: int = 5, seed: int = 0, temperature: float = 2.0, max_side: int | None = None
    ) -> None:
        self.iterations = validation.integer("iterations", iterations, minimum=1)
        self.seed = validation.integer("seed", seed)
        self.temperature = validation.number("temperature", temperature, above=0)
        self.max_side = validation.integer("max_side", max_side, minimum=8, allow_none=True)
        self.reset_image()

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Store the image to segment.

        Args:
            image: (H, W, 3) uint8 array.
            image_format: "RGB" or "BGR", the channel order of `image`.
        """
        validation.image(image, image_format)
        # GrabCut's colour models do not care about channel order; keep BGR, cv2's own.
        bgr = image[..., ::-1] if image_format == "RGB" else image
        h, w = image.shape[:2]
        # scale: working pixels per image pixel (1 unless max_side shrinks the image).
        self.scale = 1.0 if self.max_side is None else min(1.0, self.max_side / max(h, w))
        if self.scale < 1.0:
            size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        self.image = np.ascontiguousarray(bgr)
        self.original_size = (h, w)
        self.is_image_set = True

    def reset_image(self) -> None:
        self.image = None
        self.original_size = None
        self.scale = 1.0
        self.is_image_set = False

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
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
        points, labels, box = validation.prompts(point_coords, point_labels, box, image_size=(h, w))[:3]
        has_positive = points is not None and bool((labels == 1).any())
        if box is None and not has_positive and mask_input is None:
            raise ValueError("GrabCut needs a box, a positive point (label 1) or a mask_input")

        if self.scale < 1.0:  # prompts in the working copy's pixels
            points = None if points is None else points * self.scale
            box = None if box is None else box * self.scale
        seeds = self._seed_mask(points, labels, box, mask_input)
        if not np.isin(seeds, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():
            # GrabCut cannot build a background model from nothing: lend it the border,
            # except where the prompts say "certainly object".
            border = np.zeros(seeds.shape, bool)
            border[[0, -1], :] = border[:, [0, -1]] = True
            seeds[border & (seeds != cv2.GC_FGD)] = cv2.GC_PR_BGD
        has_fg = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).any()
        has_bg = np.isin(seeds, (cv2.GC_BGD, cv2.GC_PR_BGD)).any()
        if not (has_fg and has_bg):  # nothing to separate: the prompts decide alone
            fg = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD))
        else:
            cv2.setRNGSeed(self.seed % 2**31)  # OpenCV takes a signed 32-bit int
            bgd_model = np.zeros((1, 65), np.float64)
            fgd_model = np.zeros((1, 65), np.float64)
            cv2.grabCut(self.image, seeds, None, bgd_model, fgd_model, self.iterations, cv2.GC_INIT_WITH_MASK)
            fg = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)

        distance = signed_distance(fg)
        if self.scale < 1.0:  # back to image pixels: resize, and distances in image pixels
            distance = cv2.resize(distance / self.scale, (w, h), interpolation=cv2.INTER_LINEAR)
            fg = distance > 0
        logits = distance / self.temperature
        logits = np.clip(logits, -20.0, 20.0).astype(np.float32)[None]
        scores = np.array([1.0 if fg.any() else 0.0], np.float32)
        masks = logits if return_logits else fg[None]
        return masks, scores, logits

    def _seed_mask(self, points, labels, box, mask_input) -> np.ndarray:
        """GrabCut's (h, w) uint8 seed mask of the working copy from prompts in its pixels
        (see the class docstring)."""
        h, w = self.image.shape[:2]
        seeds = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
        if mask_input is not None:
            m = np.asarray(mask_input, dtype=np.float32)
            if m.ndim == 3 and m.shape[0] == 1:
                m = m[0]
            if m.ndim != 2 or m.size == 0 or not np.isfinite(m).all():
                raise ValueError(f"mask_input must be finite, non-empty (1, h, w) or (h, w) logits, got {m.shape}")
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
