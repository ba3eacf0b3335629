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
        sam_model: a SAM-family model with segment-anything's `Sam` interface
            (`image_encoder` with `img_size`, `prompt_encoder`, `mask_decoder`,
            `preprocess`, `postprocess_masks`, ...: segment-anything's `Sam`, MobileSAM's),
            wrapped in segment-anything's own `SamPredictor`; or a ready predictor with
            SamPredictor's `set_image` / `predict` surface (HQ-SAM's or EdgeSAM's
            predictor, `GrabCutPredictor`), used as it is.
        projector: the `ConvexProjector` used for every call; default
            `ConvexProjector()` (its own defaults).
        project: False makes every method return exactly what the wrapped predictor
            returns.

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

    def __init__(self, sam_model: Sam | object, projector: ConvexProjector | None = None, project: bool = True) -> None:
        if validation.is_sam2(sam_model):
            raise ValueError("sam_model is SAM 2 (model or predictor): use Sam2ConvexPredictor")
        if hasattr(sam_model, "set_image") and hasattr(sam_model, "predict"):
            self.sam_predictor = sam_model
            self.model = getattr(sam_model, "model", None)
        else:
            # Duck-typed like SamPredictor, so SAM variants with their own Sam class work too.
            validation.sam_model(sam_model, "sam_model (or a predictor with set_image/predict)")
            self.sam_predictor = SamPredictor(sam_model)
            self.model = sam_model
        self.transform = getattr(self.sam_predictor, "transform", None)
        self.projector = validation.projector(projector) or ConvexProjector()
        self.project = validation.flag("project", project)
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
        frame = getattr(getattr(self.model, "image_encoder", None), "img_size", None)
        shape = tuple(getattr(transformed_image, "shape", ()))
        if len(shape) != 4 or shape[:2] != (1, 3) or (frame is not None and max(shape[2:]) != frame):
            raise ValueError(
                f"transformed_image must be a (1, 3, H, W) tensor whose long side is the model frame ({frame}), "
                f"as predictor.transform.apply_image_torch makes it; got shape {shape}"
            )
        self.sam_predictor.set_torch_image(transformed_image, original_image_size)

    def get_image_embedding(self) -> torch.Tensor:
        return self.sam_predictor.get_image_embedding()

    def reset_image(self) -> None:
        self.sam_predictor.reset_image()
        self.last_fit = None
        self.last_sam_logits = None

    @property
    def device(self) -> torch.device:
        return getattr(self.sam_predictor, "device", torch.device("cpu"))

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
        # A point off the image or an inverted box is a mistake the projection would
        # silently turn into a confident convex mask; SamPredictor itself (project=False)
        # accepts them, and so does this wrapper then.
        size = getattr(self.sam_predictor, "original_size", None) if self.project else None
        point_coords, point_labels, box, mask_input = validation.prompts(
            point_coords,
            point_labels,
            box,
            mask_input,
            image_size=size,
            mask_size=self._mask_input_size(),
            padding=True,
            upstream=not self.project,
        )
        if not self.project:
            return self.sam_predictor.predict(
                point_coords, point_labels, box, mask_input, multimask_output, return_logits
            )
        sam_logits, scores, low_res = self.sam_predictor.predict(
            point_coords, point_labels, box, mask_input, multimask_output, return_logits=True
        )
        out = self._project(torch.from_numpy(sam_logits).to(self.device), return_logits)
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
        # Checked on a copy; the tensors go on as they are (in the model frame: no range check).
        validation.prompts(
            point_coords,
            point_labels,
            boxes,
            mask_input,
            mask_size=self._mask_input_size(),
            batched=True,
            padding=True,
            upstream=not self.project,
        )
        if not self.project:
            return self.sam_predictor.predict_torch(
                point_coords, point_labels, boxes, mask_input, multimask_output, return_logits
            )
        sam_logits, scores, low_res = self.sam_predictor.predict_torch(
            point_coords, point_labels, boxes, mask_input, multimask_output, return_logits=True
        )
        b, c, h, w = sam_logits.shape
        out = self._project(sam_logits.reshape(b * c, h, w), return_logits)
        return out.reshape(b, c, h, w), scores, low_res

    def _mask_input_size(self) -> tuple[int | str, int | str]:
        """(h, w) of SAM's low-res mask_input; any size for predictors without a SAM model."""
        encoder = getattr(self.model, "prompt_encoder", None)
        return tuple(encoder.mask_input_size) if encoder is not None else ("h", "w")

    def _project(self, sam_logits: torch.Tensor, return_logits: bool) -> torch.Tensor:
        """One batched fit of (N, H, W) full-resolution SAM logits (padding already
        removed by postprocess_masks); returns (N, H, W) bool masks, or the float32 -G
        (rendered only then: 4 bytes per pixel)."""
        fit = self.projector.fit(sam_logits.float(), logits=True)
        self.last_fit, self.last_sam_logits = fit, sam_logits
        return fit.logits if return_logits else fit.masks
