"""What the page's server computes: images held by id, prompted and automatic segmentation.

The web layer (`sam_convex.serve.app`) only parses requests and encodes answers; this
module owns the state and the model calls, so it can be tested and timed without HTTP.

* Images: decoded once into (H, W, 3) uint8 RGB and kept by a random id (the newest
  `max_images`; older ones are forgotten, and a request for them is an unknown id).
* One drop-in predictor per image (`Segmenter.convex_predictor`), `set_image` called once
  when the image is first segmented: SAM's and SAM 2's image embedding is computed once per
  image and reused by every later click.
* Results (masks, polygons) are kept by id (the newest `max_results`) for the downloads.
* One lock around the model calls: torch models and OpenCV's global RNG seed (GrabCut) are
  not safe to share between threads, and on a small CPU parallel calls would not be faster.
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from skimage.segmentation import felzenszwalb

from sam_convex import outlines, validation
from sam_convex.amg import DEFAULT_MIN_SOLIDITY, project_records
from sam_convex.projection import ConvexFit, ConvexProjector
from sam_convex.segmenters import Segmenter

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # larger uploads are refused (413)
MAX_IMAGE_SIDE = 4096  # images with a longer side are refused (413), not downscaled
GRABCUT_MAX_SIDE = 320  # GrabCut runs on a copy this size (see GrabCutPredictor.max_side)
# "Segment everything" without SAM: Felzenszwalb's graph regions (skimage), at least this
# share of the image each; the same solidity gate as the convex AMGs decides what is projected.
REGION_MIN_SHARE = 0.005
AMG_SEGMENTERS = ("sam", "sam2")  # segmenters with an automatic mask generator


class RequestError(ValueError):
    """A request the server refuses: `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TimedProjector:
    """A projector that remembers how long its fits took (`elapsed_ms`, summed since
    `reset()`), so a predictor's call splits into segmenter time and projection time."""

    def __init__(self, projector: ConvexProjector) -> None:
        self.projector = projector
        self.elapsed_ms = 0.0

    def reset(self) -> None:
        self.elapsed_ms = 0.0

    def fit(self, *args, **kwargs) -> ConvexFit:
        start = time.perf_counter()
        try:
            return self.projector.fit(*args, **kwargs)
        finally:
            self.elapsed_ms += 1000 * (time.perf_counter() - start)


@dataclass
class StoredImage:
    """An image the page opened. rgb: (H, W, 3) uint8."""

    id: str
    name: str
    rgb: np.ndarray
    predictor: Any = None  # the drop-in with set_image done, made on the first click
    png: bytes | None = None  # the image as the page shows it, encoded on first request

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]


@dataclass
class Result:
    """One answer, kept for the downloads.

    Attributes:
        masks: (N, H, W) bool, what is exported (the convex mask of a click; every
            record's mask of "segment everything").
        convex: (N,) bool, whether each mask is a projection (a convex polygon).
        polygons: N lists of (K, 2) float64 (x, y) outlines in image pixels (pixel (i, j)
            covers [j, j+1) x [i, i+1); `sam_convex.outlines`): one convex polygon for
            projected masks, exact for the pixel-centre rule (`outlines.rasterize`); the
            outer contours (`outlines.contours`) for the others.
        raw: (H, W) bool, the segmenter's own mask (a click only; None otherwise).
    """

    id: str
    image: StoredImage
    kind: str  # "segment" or "everything"
    masks: np.ndarray
    convex: np.ndarray
    polygons: list[list[np.ndarray]]
    raw: np.ndarray | None = None
    info: dict = field(default_factory=dict)


class Engine:
    """The server's state and model calls (see the module docstring).

    Args:
        segmenter: from `sam_convex.segmenters.choose_segmenter`.
        projector: the projection (default `ConvexProjector(threads=1)`: one thread is
            fastest on a busy CPU).
        grabcut_max_side: GrabCut's working size (None: full resolution).
        max_images, max_results: how many images and results are kept.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        projector: ConvexProjector | None = None,
        grabcut_max_side: int | None = GRABCUT_MAX_SIDE,
        max_images: int = 16,
        max_results: int = 64,
    ) -> None:
        self.segmenter = segmenter
        self.projector = TimedProjector(projector or ConvexProjector(threads=1))
        self.grabcut_max_side = grabcut_max_side
        self.max_images = validation.integer("max_images", max_images, minimum=1)
        self.max_results = validation.integer("max_results", max_results, minimum=1)
        self.images: OrderedDict[str, StoredImage] = OrderedDict()
        self.results: OrderedDict[str, Result] = OrderedDict()
        self.lock = threading.Lock()

    # ---- images ----------------------------------------------------------------------

    def add_image(self, rgb: np.ndarray, name: str) -> StoredImage:
        validation.image(rgb)
        stored = StoredImage(secrets.token_hex(8), name, np.ascontiguousarray(rgb))
        with self.lock:
            self.images[stored.id] = stored
            while len(self.images) > self.max_images:
                self.images.popitem(last=False)
        return stored

    def add_upload(self, data: bytes, name: str) -> StoredImage:
        """Decode an uploaded file (any format Pillow reads; EXIF orientation applied,
        alpha dropped, grey replicated). RequestError 413 when too large, 415 when not an
        image, 400 when empty or damaged."""
        if len(data) == 0:
            raise RequestError(400, "the uploaded file is empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise RequestError(413, f"the upload is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise RequestError(
                415, f"{name or 'the upload'} is not an image Pillow can read (PNG, JPEG, ...)"
            ) from None
        # Checked from the header, before decoding: a small file can declare a huge image.
        if max(image.size) > MAX_IMAGE_SIDE:
            w, h = image.size
            raise RequestError(413, f"the image is {w}x{h}; the page takes images up to {MAX_IMAGE_SIDE} px a side")
        try:
            rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise RequestError(400, f"{name or 'the upload'} could not be decoded ({err})") from None
        return self.add_image(rgb, name)

    def image(self, image_id: str) -> StoredImage:
        with self.lock:
            stored = self.images.get(image_id)
            if stored is not None:
                self.images.move_to_end(image_id)
        if stored is None:
            raise RequestError(404, f"unknown image id {image_id!r} (open the image again)")
        return stored

    def image_png(self, image_id: str) -> bytes:
        stored = self.image(image_id)
        if stored.png is None:
            buffer = io.BytesIO()
            Image.fromarray(stored.rgb).save(buffer, format="PNG", compress_level=1)
            stored.png = buffer.getvalue()
        return stored.png

    def result(self, result_id: str) -> Result:
        with self.lock:
            found = self.results.get(result_id)
        if found is None:
            raise RequestError(404, f"unknown result id {result_id!r} (segment again)")
        return found

    # ---- segmentation ----------------------------------------------------------------

    def segment(self, image_id: str, points: list, box: list | None) -> tuple[Result, dict]:
        """One object from prompts.

        Args:
            points: [[x, y, label], ...] in image pixels, label 1 object / 0 background.
            box: [x0, y0, x1, y1] or None.
        Returns:
            the Result and the timings {segmenter_ms, projection_ms} of the prompt's model
            call and set_image_ms, the embedding's (0 once the image has one).
        Raises:
            RequestError: 404 unknown image, 422 bad prompts (outside the image, labels
                other than 0/1, an inverted box, no positive point and no box).
        """
        stored = self.image(image_id)
        coords = np.array([p[:2] for p in points], np.float64).reshape(-1, 2) if points else None
        labels = np.array([p[2] for p in points]) if points else None
        try:
            coords, labels, box = validation.prompts(coords, labels, box, image_size=stored.size)[:3]
        except ValueError as err:
            raise RequestError(422, str(err)) from None
        if box is None and (labels is None or not (labels == 1).any()):
            raise RequestError(422, "give a positive point (label 1) or a box: background points alone name no object")
        # One point is ambiguous (part or whole?): ask for three masks, keep the best scored,
        # as `python -m sam_convex` does.
        multimask = box is None and len(coords) == 1
        with self.lock:
            set_image_ms = 0.0  # the embedding (SAM, SAM 2): on the image's first click only
            if stored.predictor is None:
                start = time.perf_counter()
                stored.predictor = self.segmenter.convex_predictor(
                    self.projector, grabcut_max_side=self.grabcut_max_side
                )
                stored.predictor.set_image(stored.rgb)
                set_image_ms = 1000 * (time.perf_counter() - start)
            predictor = stored.predictor
            self.projector.reset()
            start = time.perf_counter()
            masks, scores, _ = predictor.predict(coords, labels, box, multimask_output=multimask)
            polygon_start = time.perf_counter()
            best = int(np.argmax(scores))
            fit = predictor.last_fit
            polygon = fit.polygons[best]  # exact: outlines.rasterize gives the mask back
            # The projection's time includes reading its polygon.
            total_ms = 1000 * (time.perf_counter() - start)
            projection_ms = self.projector.elapsed_ms + (total_ms - 1000 * (polygon_start - start))
            raw = np.asarray(torch.as_tensor(predictor.last_sam_logits[best]).cpu()) > 0
        convex = np.asarray(masks[best]) > 0
        result = self._keep(
            stored,
            "segment",
            convex[None],
            np.array([True]),
            [[polygon] if len(polygon) else []],
            raw=raw,
            info={"score": float(scores[best]), "distance": float(fit.losses[best])},
        )
        timings = {
            "segmenter_ms": total_ms - projection_ms,
            "projection_ms": projection_ms,
            "set_image_ms": set_image_ms,
        }
        return result, timings

    def everything(self, image_id: str) -> tuple[Result, dict]:
        """Every object: SAM's / SAM 2's convex automatic mask generator, or for the
        segmenters without one (GrabCut, ...) Felzenszwalb's regions through the same
        solidity gate (`project_records`).
        Returns the Result (convex[i]: record i projected) and the timings."""
        stored = self.image(image_id)
        with self.lock:
            self.projector.reset()
            start = time.perf_counter()
            if self.segmenter.kind in AMG_SEGMENTERS:
                generator = self.segmenter.mask_generator(self.projector, output_mode="binary_mask")
                records = generator.generate(stored.rgb)
            else:
                regions = region_records(stored.rgb)
                records, _ = project_records(regions, self.projector, DEFAULT_MIN_SOLIDITY, polygons=True)
            total_ms = 1000 * (time.perf_counter() - start)
            projection_ms = self.projector.elapsed_ms
        h, w = stored.size
        masks = np.array([r["segmentation"] for r in records], bool).reshape(-1, h, w)
        convex = np.array([r["convex_distance"] is not None for r in records], bool)
        # Projected records: their convex polygon (the fit's where the records carry it, else
        # the mask's lattice polygon, as exact); the others: their outlines (holes left out).
        polygons = [
            [r["polygon"] if "polygon" in r else outlines.polygon_of_mask(m)] if c else outlines.contours(m)
            for r, m, c in zip(records, masks, convex)
        ]
        result = self._keep(stored, "everything", masks, convex, polygons)
        return result, {"segmenter_ms": total_ms - projection_ms, "projection_ms": projection_ms}

    def _keep(self, stored: StoredImage, kind: str, masks, convex, polygons, raw=None, info=None) -> Result:
        result = Result(secrets.token_hex(8), stored, kind, masks, convex, polygons, raw, info or {})
        with self.lock:
            self.results[result.id] = result
            while len(self.results) > self.max_results:
                self.results.popitem(last=False)
        return result


def region_records(rgb: np.ndarray) -> list[dict[str, Any]]:
    """Felzenszwalb's graph-based regions of an (H, W, 3) uint8 image as AMG-style
    records ("segmentation": (H, W) bool), regions of at least REGION_MIN_SHARE of the
    image, largest first. A classical stand-in for SAM's "segment everything"."""
    h, w = rgb.shape[:2]
    min_size = max(16, int(REGION_MIN_SHARE * h * w))
    labels = felzenszwalb(rgb, scale=max(h, w), sigma=0.8, min_size=min_size)
    areas = np.bincount(labels.ravel())
    order = [i for i in np.argsort(-areas, kind="stable") if areas[i] >= min_size]
    return [{"segmentation": labels == i, "area": int(areas[i])} for i in order]
