"""SamConvexPredictor: segment-anything's SamPredictor with convex masks.

    predictor = SamConvexPredictor(sam)      # was: SamPredictor(sam)
    predictor.set_image(image)
    masks, scores, low_res_logits = predictor.predict(point_coords, point_labels)

Every call runs segment-anything's own `SamPredictor` (held, not re-implemented), then
projects the masks it returns onto ICNN sublevel sets with a `ConvexProjector`.

What is fitted: SAM's full-resolution logits, i.e. `model.postprocess_masks` output,
which has already removed the padding of the square model frame and resized to the
original image. Fitting the raw 256x256 low-res logits instead would stretch the padding
(background) over the image whenever it is not square. The fit window and coarse grid of
`ConvexProjector` make the fit cost independent of the image resolution; only the final
rendering is per pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from sam_convex import validation
from sam_convex.loading import load_sam
from sam_convex.projection import ConvexFit, ConvexProjector


class SamConvexPredictor:
    """Drop-in for `segment_anything.SamPredictor` that returns convex masks.

    Args:
        sam_model: a `Sam` model (e.g. from `load_sam` or segment-anything's registry).
        projector: the `ConvexProjector` used for every call; default
            `ConvexProjector()` (its own defaults).
        project: False makes every method return exactly what `SamPredictor` returns.

    With `project=True`, `predict` / `predict_torch` return:
      * masks: the ICNN projection of each of SAM's masks, {G <= 0}, a convex set;
        with `return_logits=True`, the fitted -G at full resolution (float32; `>= 0`
        is the mask, `sam_convex.projection.OUTSIDE_LOGIT` far outside the object);
      * scores: SAM's own predicted IoUs, unchanged (they rate SAM's masks, not the
        projections);
      * low-res logits: SAM's own, unchanged, so they can still be fed back as
        `mask_input` (the fitted nets live in image coordinates, not SAM's frame).
    All masks of one call (C, or B x C for predict_torch) are projected in one batched
    fit, kept as `last_fit` (its `losses` are the per-mask projection distances), with
    the SAM logits it was fitted on in `last_sam_logits`.
    """

    def __init__(self, sam_model: Sam, projector: ConvexProjector | None = None, project: bool = True) -> None:
        # Duck-typed like SamPredictor, so SAM variants with their own Sam class work too.
        needed = ("image_encoder", "prompt_encoder", "mask_decoder", "postprocess_masks")
        if not all(hasattr(sam_model, name) for name in needed):
            raise ValueError(
                f"sam_model must be a SAM model (segment_anything.modeling.Sam), got {type(sam_model).__name__}"
            )
        self.sam_predictor = SamPredictor(sam_model)
        self.model = sam_model
        self.transform = self.sam_predictor.transform
        self.projector = projector if projector is not None else ConvexProjector()
        self.project = bool(project)
        self.last_fit: ConvexFit | None = None
        self.last_sam_logits: torch.Tensor | None = None

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        model_type: str | None = None,
        device: str | torch.device | None = None,
        projector: ConvexProjector | None = None,
        project: bool = True,
    ) -> SamConvexPredictor:
        """Load SAM with `load_sam(checkpoint, model_type, device)` and wrap it."""
        return cls(load_sam(checkpoint, model_type, device), projector, project)

    # ---- image: SamPredictor's, unchanged --------------------------------------------

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Compute the embedding of an (H, W, 3) uint8 image in RGB or BGR order."""
        validation.image(image, image_format)
        self.sam_predictor.set_image(image, image_format)

    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """As SamPredictor.set_torch_image: a 1x3xHxW image already resized with
        `self.transform` (long side = model frame), and the (H, W) before resizing."""
        self.sam_predictor.set_torch_image(transformed_image, original_image_size)

    def get_image_embedding(self) -> torch.Tensor:
        return self.sam_predictor.get_image_embedding()

    def reset_image(self) -> None:
        self.sam_predictor.reset_image()
        self.last_fit = None
        self.last_sam_logits = None

    @property
    def device(self) -> torch.device:
        return self.sam_predictor.device

    @property
    def is_image_set(self) -> bool:
        return self.sam_predictor.is_image_set

    @property
    def features(self) -> torch.Tensor | None:
        return self.sam_predictor.features

    @property
    def original_size(self) -> tuple[int, ...]:
        return self.sam_predictor.original_size

    @property
    def input_size(self) -> tuple[int, ...]:
        return self.sam_predictor.input_size

    # ---- prediction ------------------------------------------------------------------

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """SamPredictor.predict, with convex masks.

        Args (as SamPredictor.predict, in original-image pixels):
            point_coords: (K, 2) float (x, y); point_labels: (K,) 1 object / 0 background.
            box: (4,) float (x0, y0, x1, y1).
            mask_input: (1, 256, 256) float32 low-res logits from a previous call.
            multimask_output: three masks (C = 3) instead of one (C = 1).
            return_logits: return float32 logits instead of bool masks.
        Returns:
            masks: (C, H, W) bool, or float32 logits (the fitted -G when projecting).
            scores: (C,) float32, SAM's predicted IoU of its own masks.
            low_res_logits: (C, 256, 256) float32, SAM's, usable as `mask_input`.
        """
        if point_coords is not None:
            _check_points(point_coords, point_labels, batched=False)
        if not self.project:
            return self.sam_predictor.predict(
                point_coords, point_labels, box, mask_input, multimask_output, return_logits
            )
        sam_logits, scores, low_res = self.sam_predictor.predict(
            point_coords, point_labels, box, mask_input, multimask_output, return_logits=True
        )
        masks, logits = self._project(torch.from_numpy(sam_logits).to(self.device))
        out = logits if return_logits else masks
        return out.cpu().numpy(), scores, low_res

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SamPredictor.predict_torch, with convex masks.

        Prompts are batched tensors already in the model frame (`self.transform`):
        point_coords (B, K, 2), point_labels (B, K), boxes (B, 4), mask_input
        (B, 1, 256, 256).
        Returns:
            masks: (B, C, H, W) bool, or float32 logits (the fitted -G when projecting).
            scores: (B, C) float32, SAM's.
            low_res_logits: (B, C, 256, 256) float32, SAM's.
        """
        if point_coords is not None:
            _check_points(point_coords, point_labels, batched=True)
        if not self.project:
            return self.sam_predictor.predict_torch(
                point_coords, point_labels, boxes, mask_input, multimask_output, return_logits
            )
        sam_logits, scores, low_res = self.sam_predictor.predict_torch(
            point_coords, point_labels, boxes, mask_input, multimask_output, return_logits=True
        )
        b, c, h, w = sam_logits.shape
        masks, logits = self._project(sam_logits.reshape(b * c, h, w))
        out = logits if return_logits else masks
        return out.reshape(b, c, h, w), scores, low_res

    def _project(self, sam_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One batched fit of (N, H, W) full-resolution SAM logits (padding already
        removed by postprocess_masks); returns (N, H, W) bool masks and float32 -G."""
        fit = self.projector.fit(sam_logits.float(), logits=True)
        self.last_fit, self.last_sam_logits = fit, sam_logits
        return fit.masks, fit.logits


def _check_points(point_coords, point_labels, batched: bool) -> None:
    """ValueError for point prompts SamPredictor would only assert on."""
    want = "(B, K, 2)" if batched else "(K, 2)"
    ndim = 3 if batched else 2
    if point_labels is None:
        raise ValueError("point_labels must be supplied if point_coords is supplied")
    coords_shape, labels_shape = tuple(np.shape(point_coords)), tuple(np.shape(point_labels))
    if len(coords_shape) != ndim or coords_shape[-1] != 2:
        raise ValueError(f"point_coords must have shape {want} as (x, y), got {coords_shape}")
    if labels_shape != coords_shape[:-1]:
        raise ValueError(f"point_labels must have shape {coords_shape[:-1]}, got {labels_shape}")
