"""Automatic mask generation (SAM's "segment everything") with convex masks.

    generator = SamConvexAutomaticMaskGenerator(sam)        # was: SamAutomaticMaskGenerator(sam)
    records = generator.generate(image)                     # same records, convex masks
    generator = Sam2ConvexAutomaticMaskGenerator(sam2)      # was: SAM2AutomaticMaskGenerator(sam2)

Each generator holds and runs the upstream one (segment-anything's
`SamAutomaticMaskGenerator`, sam2's `SAM2AutomaticMaskGenerator`) with the caller's
settings, then `project_records` projects the masks of the image in one batched
`ConvexProjector` fit. The upstream generators keep only thresholded masks (no logits),
so the fit target of each mask is SAM's binary mask.

Which masks are projected: an automatic run segments everything, non-convex things too
(rings, L-shaped objects, groups), and projecting those destroys them. The gate is the
major-component solidity (`major_solidity`): the solidity (mask area / area of its
convex hull) of the mask's components that have at least 10% of the largest one's
area. Small islands, which SAM's masks of convex objects often carry and which the
projection leaves out, are ignored; a second object of comparable size is not. Masks
whose major-component solidity is >= `min_solidity` are projected, the others keep
SAM's mask; 0 projects all. DEFAULT_MIN_SOLIDITY and the gate were chosen by
measurement (`python -m eval.bench_amg_gate`, reports/amg_gate.md; see its comment).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.utils.amg import batched_mask_to_box, box_xyxy_to_xywh, coco_encode_rle, mask_to_rle_pytorch

from sam_convex import baselines, outlines, validation
from sam_convex.loading import require_sam2
from sam_convex.projection import ConvexFit, ConvexProjector
from sam_convex.sam2_predictor import match_feature_sizes

# Project masks whose major-component solidity is at least this. Measured by `python -m
# eval.bench_amg_gate` (reports/amg_gate.md; 256x256 binary masks, ConvexProjector(), seed
# 0) on 50 convex objects of the embedded scenes damaged as in the projection benchmark
# and 60 non-convex masks (rings, L-shapes, two objects), all with ragged edges; mean IoU
# to the truth, convex damaged / non-convex: project all 0.934 / 0.686, none 0.894 /
# 0.992, this gate at 0.85 0.931 / 0.991 (balanced 0.961, the best of 0, 0.5, 0.6 ...
# 0.975; best or tied at 0.85 on seeds 1-3 too). Plain solidity is 0.015 worse at its
# best (0.85: 0.901 / 0.991): counting the islands keeps two thirds of the damaged
# convex masks from being projected. The highest non-convex value was 0.86 (one L of
# 60). Clean convex masks (0.95-0.99) are projected: IoU 0.990 projected, 0.993 raw.
DEFAULT_MIN_SOLIDITY = 0.85
# Upstream's three, and "coco_polygon": "segmentation" as a COCO polygon list (see `encode`).
OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle", "coco_polygon")
MAJOR_COMPONENT = 0.1  # major_solidity: components with >= this share of the largest one's area


def solidity(mask: np.ndarray) -> float:
    """Area of an (H, W) bool mask over the area of its convex hull, in (0, 1]; 0.0 for
    an empty mask. All components count (two blobs far apart have a low solidity).

    The hull is OpenCV's, of the mask's outer contour points, filled on the pixel grid,
    so a digitally convex mask scores about 1 (0.998 for a disk of radius 300).
    """
    area = int(mask.sum())
    if area == 0:
        return 0.0
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    hull = baselines.opencv_hull(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    return area / max(int(hull.sum()), area)


def major_solidity(mask: np.ndarray, keep: float = MAJOR_COMPONENT) -> float:
    """Solidity (see `solidity`) of the major components of an (H, W) bool mask: those
    with at least `keep` of the largest one's area (8-connected, as the contours that
    `solidity` traces). Small islands are ignored; two objects of comparable size are
    not, and score low. 0.0 for an empty mask."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:  # background + at most one component
        return solidity(mask)
    areas = stats[1:, cv2.CC_STAT_AREA]
    major = np.flatnonzero(areas >= keep * areas.max()) + 1
    return solidity(np.isin(labels, major))


def project_records(
    records: list[dict[str, Any]], projector: ConvexProjector, min_solidity: float, polygons: bool = False
) -> tuple[list[dict[str, Any]], ConvexFit | None]:
    """Project the masks of one image's AMG records in one batched fit.

    Args:
        records: the upstream generator's records with output_mode="binary_mask"
            ("segmentation": (H, W) bool numpy mask).
        projector: the `ConvexProjector` for the fit.
        min_solidity: masks whose major-component solidity (`major_solidity`) is >= this
            are projected; the others keep SAM's.
    Returns:
        new records, same order, each with two more keys:
          * "solidity": float, the plain solidity of SAM's mask (before projection; all
            components count, so a projected mask with islands may score below
            min_solidity);
          * "convex_distance": float, the projection's fit distance (ConvexFit.losses),
            or None where the segmentation is SAM's own (major-component solidity below
            min_solidity, or a projection that came out empty: the nearest convex set is
            nothing).
        Projected records get the convex mask as "segmentation" and its "area" and
        "bbox" (XYWH); "predicted_iou", "stability_score", "point_coords" and
        "crop_box" stay SAM's (they rate and locate SAM's mask). With `polygons=True`
        they also get "polygon": the mask's convex polygon (`ConvexFit.polygons`, (K, 2)
        float64 (x, y)), which `encode` turns into the "coco_polygon" segmentation.
        And the fit (None when no mask was projected).
    """
    out = [dict(r, solidity=solidity(r["segmentation"]), convex_distance=None) for r in records]
    chosen = [i for i, r in enumerate(out) if major_solidity(r["segmentation"]) >= min_solidity]
    if not chosen:
        return out, None
    masks = torch.from_numpy(np.stack([out[i]["segmentation"] for i in chosen]))
    fit = projector.fit(masks)
    projected = fit.masks.cpu()
    boxes = batched_mask_to_box(projected)  # (N, 4) XYXY, as the upstream records'
    areas = projected.flatten(1).sum(dim=1).tolist()
    for k, i in enumerate(chosen):
        if areas[k] == 0:
            continue
        out[i].update(
            segmentation=projected[k].numpy(),
            area=int(areas[k]),
            bbox=box_xyxy_to_xywh(boxes[k]).tolist(),
            convex_distance=float(fit.losses[k]),
        )
        if polygons:
            out[i]["polygon"] = fit.polygons[k]
    return out, fit


def encode(records: list[dict[str, Any]], output_mode: str) -> list[dict[str, Any]]:
    """Records with binary masks -> the upstream generators' `output_mode` encoding, or
    "coco_polygon": "segmentation" a COCO polygon list [[x1, y1, x2, y2, ...], ...] in
    continuous pixel coordinates (see `sam_convex.outlines`). A projected record's list
    holds its convex polygon (from "polygon", which is removed), exact for the
    pixel-centre rule; a record that kept SAM's mask gets the mask's outer contours
    (`outlines.contours`: an outline, not exact, holes left out)."""
    if output_mode == "binary_mask":
        return records
    out = []
    for record in records:
        record = dict(record)
        if output_mode == "coco_polygon":
            poly = record.pop("polygon", None)
            found = [poly] if poly is not None else outlines.contours(record["segmentation"])
            out.append(dict(record, segmentation=[p.ravel().tolist() for p in found]))
            continue
        rle = mask_to_rle_pytorch(torch.from_numpy(record["segmentation"])[None])[0]
        out.append(dict(record, segmentation=coco_encode_rle(rle) if output_mode == "coco_rle" else rle))
    return out


def check_upstream(points_per_side, points_per_batch, crop_n_layers, downscale, **numbers) -> None:
    """ValueError for generator settings the upstream generators would only fail on
    later (a division by zero) or take silently (NaN thresholds, 2.5 points per side)."""
    validation.integer("points_per_side", points_per_side, minimum=1, allow_none=True)
    validation.integer("points_per_batch", points_per_batch, minimum=1)
    validation.integer("crop_n_layers", crop_n_layers, minimum=0)
    validation.integer("crop_n_points_downscale_factor", downscale, minimum=1)
    for name, value in numbers.items():
        validation.number(name, value)


class _ConvexMaskGenerator:
    """What the SAM and SAM 2 generators share: generate() around the upstream one."""

    generator: Any
    output_mode: str

    def _setup(
        self,
        projector: ConvexProjector | None,
        min_solidity: float,
        project: bool,
        output_mode: str,
        points_per_side,
        point_grids,
    ) -> None:
        validation.choice("output_mode", output_mode, OUTPUT_MODES)
        if output_mode == "coco_rle":
            try:
                import pycocotools  # noqa: F401  (the upstream encoder needs it)
            except ImportError as err:
                raise ImportError("output_mode='coco_rle' needs pycocotools: pip install pycocotools") from err
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        self.projector = validation.projector(projector) or ConvexProjector()
        self.min_solidity = validation.number("min_solidity", min_solidity, minimum=0.0, maximum=1.0)
        self.project = validation.flag("project", project)
        self.output_mode = output_mode
        self.last_fit: ConvexFit | None = None

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Masks for the whole image.

        Args:
            image: (H, W, 3) uint8 RGB numpy array.
        Returns:
            one record per mask, as the upstream generator's: "segmentation" ((H, W)
            bool, an RLE dict for the RLE output modes, a COCO polygon list for
            "coco_polygon", see `encode`), "area" (int), "bbox"
            (XYWH), "predicted_iou", "point_coords", "stability_score", "crop_box"; with
            `project=True` also "solidity" and "convex_distance" (see
            `project_records`). With `project=False`: exactly the upstream records.
        """
        validation.image(image)
        records = self.generator.generate(image)
        self.last_fit = None
        if self.project:
            polygons = self.output_mode == "coco_polygon"
            records, self.last_fit = project_records(records, self.projector, self.min_solidity, polygons)
        return encode(records, self.output_mode)


class SamConvexAutomaticMaskGenerator(_ConvexMaskGenerator):
    """segment-anything's SamAutomaticMaskGenerator with convex masks.

    Arguments up to `output_mode` are SamAutomaticMaskGenerator's, same order and
    defaults, passed to it unchanged (it runs with output_mode="binary_mask"; the
    records are encoded as asked after projection). Then:
        projector: the `ConvexProjector`; default `ConvexProjector()`.
        min_solidity: project masks whose major-component solidity (`major_solidity`)
            is at least this (0: all); default DEFAULT_MIN_SOLIDITY.
        project: False returns exactly what SamAutomaticMaskGenerator returns.
    After `generate`, `last_fit` is the image's batched fit (None if nothing projected).
    """

    def __init__(
        self,
        model,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        *,
        projector: ConvexProjector | None = None,
        min_solidity: float = DEFAULT_MIN_SOLIDITY,
        project: bool = True,
    ) -> None:
        validation.sam_model(model, "model")
        self._setup(projector, min_solidity, project, output_mode, points_per_side, point_grids)
        check_upstream(
            points_per_side,
            points_per_batch,
            crop_n_layers,
            crop_n_points_downscale_factor,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset,
            box_nms_thresh=box_nms_thresh,
            crop_nms_thresh=crop_nms_thresh,
            crop_overlap_ratio=crop_overlap_ratio,
            min_mask_region_area=min_mask_region_area,
        )
        self.generator = SamAutomaticMaskGenerator(
            model,
            points_per_side,
            points_per_batch,
            pred_iou_thresh,
            stability_score_thresh,
            stability_score_offset,
            box_nms_thresh,
            crop_n_layers,
            crop_nms_thresh,
            crop_overlap_ratio,
            crop_n_points_downscale_factor,
            point_grids,
            min_mask_region_area,
            output_mode="binary_mask",
        )


class Sam2ConvexAutomaticMaskGenerator(_ConvexMaskGenerator):
    """sam2's SAM2AutomaticMaskGenerator with convex masks.

    Arguments up to `multimask_output` are SAM2AutomaticMaskGenerator's, same order
    and defaults, passed to it unchanged (it runs with output_mode="binary_mask"; the
    records are encoded as asked after projection); `projector`, `min_solidity`,
    `project` as in `SamConvexAutomaticMaskGenerator`.
    """

    def __init__(
        self,
        model,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
        *,
        projector: ConvexProjector | None = None,
        min_solidity: float = DEFAULT_MIN_SOLIDITY,
        project: bool = True,
        **kwargs,
    ) -> None:
        upstream = require_sam2("automatic_mask_generator").SAM2AutomaticMaskGenerator
        validation.sam2_model(model, "model")
        self._setup(projector, min_solidity, project, output_mode, points_per_side, point_grids)
        check_upstream(
            points_per_side,
            points_per_batch,
            crop_n_layers,
            crop_n_points_downscale_factor,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset,
            mask_threshold=mask_threshold,
            box_nms_thresh=box_nms_thresh,
            crop_nms_thresh=crop_nms_thresh,
            crop_overlap_ratio=crop_overlap_ratio,
            min_mask_region_area=min_mask_region_area,
        )
        self.generator = upstream(
            model,
            points_per_side,
            points_per_batch,
            pred_iou_thresh,
            stability_score_thresh,
            stability_score_offset,
            mask_threshold,
            box_nms_thresh,
            crop_n_layers,
            crop_nms_thresh,
            crop_overlap_ratio,
            crop_n_points_downscale_factor,
            point_grids,
            min_mask_region_area,
            output_mode="binary_mask",
            use_m2m=use_m2m,
            multimask_output=multimask_output,
            **kwargs,
        )
        # SAM2ImagePredictor hard-codes a 1024 frame's feature sizes (no-op at 1024).
        match_feature_sizes(self.generator.predictor)
