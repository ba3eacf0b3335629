"""Sam2ConvexPredictor: sam2's SAM2ImagePredictor with convex masks (loading SAM 2: `sam_convex.loading`).

    model = load_sam2("checkpoints/sam2.1_hiera_tiny.pt")   # config from the file name
    predictor = Sam2ConvexPredictor(model)                   # was: SAM2ImagePredictor(model)
    predictor.set_image(image)
    masks, scores, low_res_logits = predictor.predict(point_coords, point_labels)

Every call runs sam2's own `SAM2ImagePredictor` (held, not re-implemented), then projects
the masks it returns onto ICNN sublevel sets with one batched `ConvexProjector` fit.

What is fitted: SAM 2's full-resolution logits, i.e. what `SAM2ImagePredictor.predict`
returns with `return_logits=True`. SAM 2 resizes the image to its square frame without
padding, so these logits cover exactly the image; its own hole/sprinkle filling
(`max_hole_area`, `max_sprinkle_area`, which needs sam2's optional CUDA extension) has
already been applied to them. SAM 2's mask is `logits > mask_threshold`, so the target
of the fit is sigmoid(logits - mask_threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from sam_convex import validation
from sam_convex.loading import load_sam2, require_sam2
from sam_convex.projection import OUTSIDE_LOGIT, ConvexFit, ConvexProjector

if TYPE_CHECKING:  # sam2 is an optional extra, imported when a predictor is built
    from sam2.modeling.sam2_base import SAM2Base
    from sam2.sam2_image_predictor import SAM2ImagePredictor


def match_feature_sizes(predictor: SAM2ImagePredictor) -> None:
    """Set the predictor's backbone feature sizes from its model's image size.

    SAM2ImagePredictor hard-codes the sizes of a 1024 frame (256, 128, 64: strides 4, 8
    and 16); the same rule at the model's own `image_size` is identical for the official
    models and lets a model built at another size (e.g. a small test model) run.
    """
    s = predictor.model.image_size // predictor.model.backbone_stride
    predictor._bb_feat_sizes = [(4 * s, 4 * s), (2 * s, 2 * s), (s, s)]


# --------------------------------------------------------------------------- predictor


class Sam2ConvexPredictor:
    """Drop-in for `sam2.sam2_image_predictor.SAM2ImagePredictor` with convex masks.

    Args:
        sam_model: a SAM 2 model (`load_sam2`, or sam2's `build_sam2`).
        mask_threshold, max_hole_area, max_sprinkle_area: SAM2ImagePredictor's
            post-processing settings, passed to it unchanged.
        projector: the `ConvexProjector` used for every call; default `ConvexProjector()`.
        project: False makes every method return exactly what SAM2ImagePredictor returns.
        **kwargs: passed to SAM2ImagePredictor (which ignores them), as there.

    With `project=True`, `predict` / `predict_batch` return:
      * masks: the ICNN projection of each of SAM 2's masks, a convex set, as float32
        0/1 (SAM 2's dtype); with `return_logits=True`, the fitted -G at full
        resolution (float32; `>= 0` is the mask, whatever `mask_threshold` is);
      * scores: SAM 2's own predicted IoUs, unchanged (they rate SAM 2's masks);
      * low-res logits: SAM 2's own, unchanged, usable as `mask_input`.
    All masks of one call (C, B x C for batched prompts, or those of every image for
    predict_batch) are projected in one batched fit, kept as `last_fit` (`losses`: the
    per-mask projection distances); `last_sam_logits` holds SAM 2's logits of that call,
    shaped as the masks (a list for predict_batch).
    """

    def __init__(
        self,
        sam_model: SAM2Base,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
        *,
        projector: ConvexProjector | None = None,
        project: bool = True,
        **kwargs,
    ) -> None:
        upstream = require_sam2("sam2_image_predictor").SAM2ImagePredictor
        validation.sam2_model(sam_model)
        self.sam2_predictor = upstream(
            sam_model,
            mask_threshold=validation.number("mask_threshold", mask_threshold),
            max_hole_area=validation.number("max_hole_area", max_hole_area, minimum=0),
            max_sprinkle_area=validation.number("max_sprinkle_area", max_sprinkle_area, minimum=0),
            **kwargs,
        )
        match_feature_sizes(self.sam2_predictor)
        self.model = sam_model
        self.projector = validation.projector(projector) or ConvexProjector()
        self.project = validation.flag("project", project)
        self.last_fit: ConvexFit | None = None
        self.last_sam_logits = None
        self._image_sizes: list[tuple[int, int]] = []  # (H, W) of each set image
        self._is_batch = False  # set by set_image_batch, as in SAM2ImagePredictor

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path, config: str | None = None, device: str | torch.device | None = None, **kwargs
    ) -> Sam2ConvexPredictor:
        """Load SAM 2 with `load_sam2(checkpoint, config, device)` and wrap it; `kwargs`
        go to the constructor (mask_threshold, ..., projector, project)."""
        return cls(load_sam2(checkpoint, config, device), **kwargs)

    # ---- SAM2ImagePredictor's settings and state -------------------------------------

    @property
    def mask_threshold(self) -> float:
        return self.sam2_predictor.mask_threshold

    @property
    def max_hole_area(self) -> float:
        return self.sam2_predictor._transforms.max_hole_area

    @property
    def max_sprinkle_area(self) -> float:
        return self.sam2_predictor._transforms.max_sprinkle_area

    @property
    def device(self) -> torch.device:
        return self.sam2_predictor.device

    @property
    def is_image_set(self) -> bool:
        return bool(self._image_sizes)

    # ---- images ----------------------------------------------------------------------

    def set_image(self, image: np.ndarray | Image.Image, image_format: str = "RGB") -> None:
        """Compute the embedding of one image.

        Args:
            image: (H, W, 3) uint8 numpy array, or an RGB PIL image.
            image_format: "RGB" or "BGR", the channel order of a numpy image (an
                addition to SAM2ImagePredictor, which takes RGB only).
        """
        image = _as_rgb(image, image_format)
        self.reset_predictor()
        self.sam2_predictor.set_image(image)
        self._image_sizes = [_image_size(image)]

    def set_image_batch(self, image_list: list[np.ndarray]) -> None:
        """Compute the embeddings of a list of (H_i, W_i, 3) uint8 RGB numpy images."""
        if not isinstance(image_list, list) or not image_list:
            raise ValueError(
                f"image_list must be a non-empty list of (H, W, 3) uint8 RGB arrays, got {type(image_list).__name__}"
            )
        for i, image in enumerate(image_list):
            if not isinstance(image, np.ndarray):
                raise ValueError(
                    f"image_list[{i}] must be a numpy array (SAM 2 takes numpy "
                    f"images in a batch), got {type(image).__name__}"
                )
            try:
                validation.image(image)
            except ValueError as err:
                raise ValueError(f"image_list[{i}]: {err}") from None
        self.reset_predictor()
        self.sam2_predictor.set_image_batch(image_list)
        self._image_sizes = [_image_size(image) for image in image_list]
        self._is_batch = True

    def get_image_embedding(self) -> torch.Tensor:
        return self.sam2_predictor.get_image_embedding()

    def reset_predictor(self) -> None:
        self.sam2_predictor.reset_predictor()
        self._image_sizes = []
        self._is_batch = False
        self.last_fit = None
        self.last_sam_logits = None

    def reset_image(self) -> None:
        """reset_predictor under SamPredictor's name, so code written for either works."""
        self.reset_predictor()

    # ---- prediction ------------------------------------------------------------------

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """SAM2ImagePredictor.predict, with convex masks.

        Args (as SAM2ImagePredictor.predict):
            point_coords: (K, 2) float (x, y), or (B, K, 2) for B objects at once;
                point_labels: (K,) / (B, K), 1 object, 0 background (-1 padding).
            box: (4,) or (B, 4) float (x0, y0, x1, y1).
            mask_input: (1, h, w) or (B, 1, h, w) low-res logits from a previous call.
            multimask_output: three masks per prompt (C = 3) instead of one.
            return_logits: return float32 logits instead of 0/1 masks.
            normalize_coords: True: coordinates are pixels of the image; False: already
                normalised to [0, 1].
        Returns:
            masks: (C, H, W) float32 0/1 ((B, C, H, W) for batched prompts), or logits.
            scores: (C,) / (B, C) float32, SAM 2's predicted IoU of its own masks.
            low_res_logits: (C, h, w) / (B, C, h, w) float32, SAM 2's.
        Raises:
            ValueError: no image set, or prompts of the wrong shape or outside the image.
        """
        if not self.is_image_set:
            raise validation.ImageNotSetError("an image must be set with .set_image(...) before predict")
        # SAM2ImagePredictor.predict after set_image_batch uses the last image.
        self._check_prompts(point_coords, point_labels, box, mask_input, self._image_sizes[-1], normalize_coords)
        args = (point_coords, point_labels, box, mask_input, multimask_output)
        if not self.project:
            return self.sam2_predictor.predict(*args, return_logits=return_logits, normalize_coords=normalize_coords)
        sam_logits, scores, low_res = self.sam2_predictor.predict(
            *args, return_logits=True, normalize_coords=normalize_coords
        )
        shape = sam_logits.shape
        projected = self._project([sam_logits.reshape(-1, *shape[-2:])], return_logits)[0]
        self.last_sam_logits = sam_logits
        return projected.reshape(shape), scores, low_res

    def predict_batch(
        self,
        point_coords_batch: list[np.ndarray] | None = None,
        point_labels_batch: list[np.ndarray] | None = None,
        box_batch: list[np.ndarray] | None = None,
        mask_input_batch: list[np.ndarray] | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """SAM2ImagePredictor.predict_batch (after set_image_batch), with convex masks.

        Each `*_batch` list has one entry per image, as `predict` takes them. Returns
        lists over the images of masks (C, H_i, W_i) float32 0/1 (or logits), scores and
        low-res logits. The masks of all images go through one batched fit; images of
        different sizes are padded with background to the largest size for it (the
        projection of a mask lies inside its bounding box, so the padding changes only
        the fit lattice near a border, not what is projected), then cropped back.
        """
        n = len(self._image_sizes)
        if not self._is_batch:
            raise ValueError("predict_batch needs images set with .set_image_batch(...); after set_image use predict")
        batches = (point_coords_batch, point_labels_batch, box_batch, mask_input_batch)
        for name, batch in zip(("point_coords_batch", "point_labels_batch", "box_batch", "mask_input_batch"), batches):
            if batch is not None and (not isinstance(batch, (list, tuple)) or len(batch) != n):
                raise ValueError(f"{name} must be a list with one entry per image ({n})")
        for i, size in enumerate(self._image_sizes):
            coords, labels, box, mask_input = (b[i] if b is not None else None for b in batches)
            try:
                self._check_prompts(coords, labels, box, mask_input, size, normalize_coords)
            except ValueError as err:
                raise ValueError(f"image {i}: {err}") from None
        kwargs = dict(multimask_output=multimask_output, normalize_coords=normalize_coords)
        if not self.project:
            return self.sam2_predictor.predict_batch(*batches, return_logits=return_logits, **kwargs)
        sam_logits, scores, low_res = self.sam2_predictor.predict_batch(*batches, return_logits=True, **kwargs)
        shapes = [m.shape for m in sam_logits]
        projected = self._project([m.reshape(-1, *m.shape[-2:]) for m in sam_logits], return_logits)
        self.last_sam_logits = sam_logits
        return [p.reshape(s) for p, s in zip(projected, shapes)], scores, low_res

    def _check_prompts(self, point_coords, point_labels, box, mask_input, image_size, normalize_coords) -> None:
        """ValueError for prompts SAM 2 would only assert on (shapes, labels, NaN); with
        projection on, also for prompts beyond the image, which SAM 2 accepts (so the
        range check is off with projection off, to return exactly SAM2ImagePredictor's
        output)."""
        low_res = self.model.image_size // 4  # SAM 2's low-res logits: the model frame / 4
        validation.prompts(
            point_coords,
            point_labels,
            box,
            mask_input,
            image_size=image_size if self.project else None,
            mask_size=(low_res, low_res),
            batched=None,
            padding=True,
            normalized=not normalize_coords,
            upstream=not self.project,
        )

    def _project(self, sam_logits: Sequence[np.ndarray], return_logits: bool) -> list[np.ndarray]:
        """One batched fit of SAM 2's full-resolution logits.

        Args:
            sam_logits: per image, (N_i, H_i, W_i) float32 logits.
        Returns:
            per image, (N_i, H_i, W_i) float32: 0/1 masks, or the fitted -G.
        """
        h = max(m.shape[1] for m in sam_logits)
        w = max(m.shape[2] for m in sam_logits)
        # The target is the logits relative to mask_threshold; beyond an image's own size
        # it is background, OUTSIDE_LOGIT below the threshold whatever the threshold is
        # (finite: -inf would make NaN in the fit). Padding with a fixed logit became
        # foreground for a threshold below it.
        stack = np.full((sum(len(m) for m in sam_logits), h, w), OUTSIDE_LOGIT, np.float32)
        start = 0
        for m in sam_logits:
            stack[start : start + len(m), : m.shape[1], : m.shape[2]] = m - np.float32(self.mask_threshold)
            start += len(m)
        fit = self.projector.fit(torch.from_numpy(stack).to(self.device), logits=True)
        self.last_fit = fit
        out = (fit.logits if return_logits else fit.masks.float()).cpu().numpy()
        pieces, start = [], 0
        for m in sam_logits:
            pieces.append(out[start : start + len(m), : m.shape[1], : m.shape[2]])
            start += len(m)
        return pieces


# --------------------------------------------------------------------------- checks


def _as_rgb(image, image_format: str) -> np.ndarray | Image.Image:
    """The image as SAM2ImagePredictor takes it: an RGB uint8 array or an RGB PIL image."""
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            raise ValueError(f"a PIL image must have mode 'RGB', got {image.mode!r}; use image.convert('RGB')")
        if image_format != "RGB":
            raise ValueError("image_format applies to numpy images; a PIL image is RGB")
        return image
    validation.image(image, image_format)
    # A copy, not a view: torchvision's ToTensor cannot take negative strides.
    return np.ascontiguousarray(image[..., ::-1]) if image_format == "BGR" else image


def _image_size(image) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.size[1], image.size[0]
    return int(image.shape[0]), int(image.shape[1])
