"""Convex masks in the formats annotation tools import: COCO, YOLO, labelme, Label Studio.

Every function takes a `ConvexFit` (its `polygons`) or bool masks ((H, W) or (N, H, W),
numpy or torch; each mask's polygon is its lattice polygon, `outlines.polygon_of_mask`,
with a `PolygonWarning` for a mask that is not convex on the pixel grid) and writes one
polygon per non-empty mask; empty masks are skipped. Coordinates are continuous image
pixel coordinates, as `ConvexFit.polygons` (pixel (col, row) covers [col, col + 1) x
[row, row + 1); the image spans [0, W] x [0, H]), scaled as each format wants:

    to_coco         {"segmentation": [[x1, y1, x2, y2, ...]], "bbox", "area", ...} per mask
                    (`coco_dataset` wraps images of them into a COCO dataset dict)
    to_yolo         "class x1 y1 x2 y2 ..." per line, coordinates / (W, H) in [0, 1]
    to_labelme      labelme's JSON: "shapes" of shape_type "polygon", "imagePath", ...
    to_labelstudio  a Label Studio prediction: "result" of "polygonlabels" regions with
                    points in percent of (W, H), as an ML backend's predict() returns

Pixel centres. COCO's pycocotools fills [0, 4] x [0, 4] with 4 x 4 pixels, as the
pixel-centre rule does, and Label Studio's percent coordinates map to COCO's in its own
converter. YOLO's (ultralytics) and labelme's readers fill polygons with OpenCV / PIL,
which put pixel centres at integer coordinates and include the boundary; shifting the
vertices by half a pixel for them does not read back closer (measured: it helps
ultralytics by < 0.001 IoU and costs PIL 0.002), so every format gets the same
coordinates. Those two readers differ from the pixel-centre rule by about half a pixel
along the outline: IoU about 1 - 1 / (object size in px) (docs/polygons.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sam_convex import outlines, validation

FORMATS = ("coco", "yolo", "labelme", "labelstudio")
LABELME_VERSION = "5.5.0"  # the labelme file format these dicts follow


def polygons_and_masks(masks_or_fit, polygons=None) -> tuple[list[np.ndarray], np.ndarray]:
    """Polygons ((K, 2) float64 (x, y) each) and (N, H, W) bool numpy masks of a
    `ConvexFit` or of bool masks ((H, W) or (N, H, W), numpy or torch). `polygons`, one
    per mask, are used as the masks' polygons where given (e.g. some of a fit's)."""
    if hasattr(masks_or_fit, "polygons") and hasattr(masks_or_fit, "masks"):
        return masks_or_fit.polygons, masks_or_fit.masks.cpu().numpy()
    masks = masks_or_fit.detach().cpu().numpy() if isinstance(masks_or_fit, torch.Tensor) else np.asarray(masks_or_fit)
    if masks.dtype != bool or masks.ndim not in (2, 3) or 0 in masks.shape[-2:]:
        raise ValueError(f"masks must be a ConvexFit or (H, W) / (N, H, W) bool masks, got {masks.dtype} {masks.shape}")
    masks = masks[None] if masks.ndim == 2 else masks
    if polygons is not None:
        if len(polygons) != len(masks):
            raise ValueError(f"polygons must be one per mask ({len(masks)}), got {len(polygons)}")
        return [outlines.check_polygon(f"polygons[{i}]", p) for i, p in enumerate(polygons)], masks
    return [outlines.polygon_of_mask(m, f"mask {i}") for i, m in enumerate(masks)], masks


def per_mask(name: str, value, n: int) -> list:
    """`value` repeated for n masks, or a sequence of n values (one per mask)."""
    if isinstance(value, (str, int, float)) or value is None:
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{name} must be one value or one per mask ({n}), got {len(values)}")
    return values


def box(mask: np.ndarray) -> list[float]:
    """[x, y, w, h] of the pixels of an (H, W) bool mask (pixel squares, as pycocotools'
    toBbox of its RLE)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])]


def to_coco(
    masks_or_fit,
    image_id: int = 1,
    category_id: int | Sequence[int] = 1,
    first_id: int = 1,
    scores=None,
    polygons=None,
) -> list[dict[str, Any]]:
    """COCO annotations, one per non-empty mask.

    Args:
        image_id: the image's id; category_id: one id or one per mask; first_id: id of
            the first annotation (then consecutive); scores: None, or one float per mask
            (written as "score", as COCO results carry it); polygons: the masks'
            polygons where known (see `polygons_and_masks`).
    Returns:
        dicts with "id", "image_id", "category_id", "segmentation" ([[x1, y1, ...]], one
        polygon), "bbox" ([x, y, w, h] of the mask's pixels), "area" (pixel count of the
        mask), "iscrowd" (0) [, "score"].
    """
    polygons, masks = polygons_and_masks(masks_or_fit, polygons)
    categories = per_mask("category_id", category_id, len(masks))
    scores = per_mask("scores", scores, len(masks))
    out = []
    for poly, mask, category, score in zip(polygons, masks, categories, scores):
        if not len(poly):
            continue
        annotation = {
            "id": first_id + len(out),
            "image_id": int(image_id),
            "category_id": int(category),
            "segmentation": [poly.ravel().tolist()],
            "bbox": box(mask),
            "area": float(mask.sum()),
            "iscrowd": 0,
        }
        if score is not None:
            annotation["score"] = float(score)
        out.append(annotation)
    return out


def coco_dataset(
    images: Sequence[tuple[str, Any]],
    categories: Sequence[str] = ("object",),
    category_id: int | Sequence[int] = 1,
    polygons: Sequence | None = None,
) -> dict[str, Any]:
    """A COCO dataset dict (what pycocotools' COCO() loads, and CVAT's "COCO 1.0"
    import) from (file_name, masks_or_fit) pairs: "images" (ids 1, 2, ...),
    "annotations" (`to_coco`, ids consecutive over the images), "categories" (ids 1, 2,
    ... for `categories`); `polygons`: per image the masks' polygons, or None."""
    out: dict[str, Any] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": k + 1, "name": name, "supercategory": name} for k, name in enumerate(categories)],
    }
    per_image = per_mask("polygons", polygons, len(images)) if polygons is not None else [None] * len(images)
    for image_id, ((file_name, masks_or_fit), known) in enumerate(zip(images, per_image), start=1):
        annotations = to_coco(masks_or_fit, image_id, category_id, len(out["annotations"]) + 1, polygons=known)
        height, width = image_size(masks_or_fit)
        out["images"].append({"id": image_id, "file_name": str(file_name), "height": height, "width": width})
        out["annotations"] += annotations
    return out


def image_size(masks_or_fit) -> tuple[int, int]:
    """(H, W) of a `ConvexFit` or of (H, W) / (N, H, W) masks."""
    if hasattr(masks_or_fit, "image_size"):
        return tuple(int(v) for v in masks_or_fit.image_size)
    shape = np.shape(masks_or_fit)
    return int(shape[-2]), int(shape[-1])


def to_yolo(masks_or_fit, class_id: int | Sequence[int] = 0, polygons=None) -> str:
    """A YOLO segmentation label file: one line "class x1 y1 x2 y2 ..." per non-empty
    mask, coordinates divided by the image width / height (8 decimals)."""
    polygons, masks = polygons_and_masks(masks_or_fit, polygons)
    height, width = masks.shape[1:]
    lines = []
    for poly, cls in zip(polygons, per_mask("class_id", class_id, len(masks))):
        if len(poly):
            coords = (poly / [width, height]).ravel()
            lines.append(" ".join([str(validation.integer("class_id", cls, minimum=0))] + [f"{v:.8f}" for v in coords]))
    return "".join(line + "\n" for line in lines)


def to_labelme(masks_or_fit, image_path: str, label: str | Sequence[str] = "object", polygons=None) -> dict[str, Any]:
    """labelme's JSON for one image: a "polygon" shape per non-empty mask, "imagePath"
    (relative to the JSON file, as labelme writes it), "imageData": None (labelme then
    reads the image from imagePath), "imageHeight", "imageWidth"."""
    polygons, masks = polygons_and_masks(masks_or_fit, polygons)
    height, width = masks.shape[1:]
    shapes = [
        {
            "label": str(name),
            "points": poly.tolist(),
            "group_id": None,
            "description": "",
            "shape_type": "polygon",
            "flags": {},
            "mask": None,
        }
        for poly, name in zip(polygons, per_mask("label", label, len(masks)))
        if len(poly)
    ]
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": str(image_path),
        "imageData": None,
        "imageHeight": int(height),
        "imageWidth": int(width),
    }


def to_labelstudio(
    masks_or_fit,
    label: str | Sequence[str] = "object",
    from_name: str = "label",
    to_name: str = "image",
    scores=None,
    model_version: str = "sam-convex",
    polygons=None,
) -> dict[str, Any]:
    """A Label Studio prediction for one task, as an ML backend's predict() returns it
    (one per task): {"result": [...], "score", "model_version"}. Each result is a
    "polygonlabels" region: "from_name" / "to_name" name the labeling config's
    <PolygonLabels name=...> and <Image name=...> tags; "value": {"points": [[x%, y%],
    ...] in percent of the image width / height, "polygonlabels": [label], "closed":
    True}; "original_width", "original_height", "image_rotation" (0); "score" where
    scores are given (the prediction's score is their mean, else absent)."""
    polygons, masks = polygons_and_masks(masks_or_fit, polygons)
    height, width = masks.shape[1:]
    names, scores = per_mask("label", label, len(masks)), per_mask("scores", scores, len(masks))
    result, kept = [], []
    for poly, name, score in zip(polygons, names, scores):
        if not len(poly):
            continue
        region = {
            "id": f"convex{len(result)}",  # unique within the task, deterministic
            "type": "polygonlabels",
            "from_name": from_name,
            "to_name": to_name,
            "original_width": int(width),
            "original_height": int(height),
            "image_rotation": 0,
            "value": {"points": (poly / [width, height] * 100).tolist(), "polygonlabels": [str(name)], "closed": True},
        }
        if score is not None:
            region["score"] = float(score)
            kept.append(float(score))
        result.append(region)
    prediction: dict[str, Any] = {"result": result, "model_version": model_version}
    if kept:
        prediction["score"] = float(np.mean(kept))
    return prediction


def write(
    path: str | Path,
    fmt: str,
    masks_or_fit,
    image_path: str | Path,
    label: str = "object",
    scores=None,
    polygons=None,
) -> int:
    """Write one image's polygons to `path` in format `fmt` (one of FORMATS):

        coco         a COCO dataset (`coco_dataset`) of the one image, category `label`
        yolo         the label file (`to_yolo`), class 0
        labelme      labelme's JSON (`to_labelme`), imagePath relative to the file's folder
        labelstudio  a Label Studio import file: [{"data": {"image": image_path},
                     "predictions": [`to_labelstudio`]}] (pre-annotations)

    Returns the number of polygons written (empty masks are skipped)."""
    fmt = validation.choice("format", fmt, FORMATS)
    path, image_path = Path(path), Path(image_path)
    if fmt == "coco":
        data = coco_dataset([(image_path.name, masks_or_fit)], [label], polygons=[polygons])
        count, text = len(data["annotations"]), json.dumps(data)
    elif fmt == "yolo":
        text = to_yolo(masks_or_fit, polygons=polygons)
        count = text.count("\n")
    elif fmt == "labelme":
        relative = os.path.relpath(image_path.resolve(), path.resolve().parent)
        data = to_labelme(masks_or_fit, relative, label, polygons=polygons)
        count, text = len(data["shapes"]), json.dumps(data, indent=1)
    else:
        prediction = to_labelstudio(masks_or_fit, label, scores=scores, polygons=polygons)
        count = len(prediction["result"])
        text = json.dumps([{"data": {"image": str(image_path)}, "predictions": [prediction]}])
    path.write_text(text)
    return count
