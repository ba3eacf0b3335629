"""The page's downloads of a result: PNG mask, COCO JSON, labelme JSON.

Each takes an `engine.Result` and returns the file's bytes; `DOWNLOADS` maps the name in
the URL (/api/results/{id}/{name}) to (function, media type).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from sam_convex.serve.engine import Result


def mask_png(result: Result) -> bytes:
    """One object: its convex mask, 0/255 8-bit grey. Several: a label image, 0 for
    background and i + 1 for mask i (later masks drawn over earlier ones), 8-bit up to 255
    masks, else 16-bit."""
    n, h, w = result.masks.shape
    if result.kind == "segment":
        array = result.masks[0].astype(np.uint8) * 255
    else:
        array = np.zeros((h, w), np.uint8 if n < 256 else np.uint16)
        for i, mask in enumerate(result.masks):
            array[mask] = i + 1
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def rle(mask: np.ndarray) -> dict:
    """COCO's compressed RLE of an (H, W) bool mask: {"size": [H, W], "counts": str}."""
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def coco_json(result: Result) -> bytes:
    """A COCO instance file for the image: one annotation per mask, category "object";
    convex masks as their polygon, the others as RLE; "convex" says which."""
    h, w = result.masks.shape[1:]
    annotations = []
    for i, (mask, convex, outlines) in enumerate(zip(result.masks, result.convex, result.polygons), start=1):
        if convex and outlines:
            segmentation = [outlines[0].ravel().round(2).tolist()]
        else:
            segmentation = rle(mask)
        encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        annotations.append(
            {
                "id": i,
                "image_id": 1,
                "category_id": 1,
                "segmentation": segmentation,
                "area": float(mask_utils.area(encoded)),
                "bbox": [float(v) for v in mask_utils.toBbox(encoded)],
                "iscrowd": 0,
                "convex": bool(convex),
            }
        )
    coco = {
        "images": [{"id": 1, "file_name": result.image.name, "width": int(w), "height": int(h)}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object"}],
    }
    return json.dumps(coco).encode()


def labelme_json(result: Result) -> bytes:
    """A labelme annotation: one polygon shape per outline, label "convex" for projected
    masks and "object" for the others, group_id tying a mask's outlines together."""
    h, w = result.masks.shape[1:]
    shapes = [
        {
            "label": "convex" if convex else "object",
            "points": outline.round(2).tolist(),
            "group_id": i,
            "description": "",
            "shape_type": "polygon",
            "flags": {},
            "mask": None,
        }
        for i, (convex, outlines) in enumerate(zip(result.convex, result.polygons))
        for outline in outlines
    ]
    labelme = {
        "version": "5.5.0",
        "flags": {},
        "shapes": shapes,
        "imagePath": result.image.name,
        "imageData": None,
        "imageHeight": int(h),
        "imageWidth": int(w),
    }
    return json.dumps(labelme).encode()


DOWNLOADS: dict[str, tuple[Callable[[Result], bytes], str]] = {
    "mask.png": (mask_png, "image/png"),
    "coco.json": (coco_json, "application/json"),
    "labelme.json": (labelme_json, "application/json"),
}
