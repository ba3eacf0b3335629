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

from sam_convex import exports
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
    """A COCO dataset for the image, category "object": the convex masks as their polygon
    (`sam_convex.exports.to_coco`), the others (from "segment everything") as RLE, exact
    where a polygon list could not hold holes; "convex" on every annotation says which."""
    h, w = result.masks.shape[1:]
    convex = np.flatnonzero(result.convex)
    annotations = [
        dict(a, convex=True)
        for a in exports.to_coco(result.masks[convex], polygons=[result.polygons[i][0] for i in convex])
    ]
    for i in np.flatnonzero(~result.convex):
        encoded = mask_utils.encode(np.asfortranarray(result.masks[i].astype(np.uint8)))
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": rle(result.masks[i]),
                "bbox": exports.box(result.masks[i]),
                "area": float(mask_utils.area(encoded)),
                "iscrowd": 0,
                "convex": False,
            }
        )
    coco = {
        "images": [{"id": 1, "file_name": result.image.name, "height": int(h), "width": int(w)}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
    }
    return json.dumps(coco).encode()


def labelme_json(result: Result) -> bytes:
    """A labelme file (`sam_convex.exports.to_labelme`): a polygon shape per convex mask,
    label "convex"; from "segment everything" also the other masks' outlines
    (`sam_convex.outlines.contours`, holes left out), label "object"."""
    convex = np.flatnonzero(result.convex)
    labelme = exports.to_labelme(
        result.masks[convex], result.image.name, "convex", polygons=[result.polygons[i][0] for i in convex]
    )
    for i in np.flatnonzero(~result.convex):
        shape = {"label": "object", "group_id": int(i), "description": "", "shape_type": "polygon", "flags": {}}
        labelme["shapes"] += [dict(shape, points=outline.tolist(), mask=None) for outline in result.polygons[i]]
    return json.dumps(labelme).encode()


DOWNLOADS: dict[str, tuple[Callable[[Result], bytes], str]] = {
    "mask.png": (mask_png, "image/png"),
    "coco.json": (coco_json, "application/json"),
    "labelme.json": (labelme_json, "application/json"),
}
