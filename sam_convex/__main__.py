"""Single-image command: segment one object from prompts and make the mask convex.

    python -m sam_convex photo.jpg --point 320 240 --out mask.png --overlay overlay.png
    python -m sam_convex photo.jpg --auto --out masks.json --overlay all.png
    python -m sam_convex photo.jpg --box 10 20 300 240 --out photo.json --format labelme
    python -m sam_convex photo.jpg --auto --out photo.txt            # YOLO labels

Uses SAM when a checkpoint is given (--checkpoint) or found in checkpoints/, SAM 2 with
--model sam2, otherwise OpenCV GrabCut (a classical segmenter, not SAM), and says which.
Writes the convex mask (0/255 PNG) and optionally an overlay with the raw mask's contour
in red and the convex mask's in green. With --auto (SAM or SAM 2), the automatic mask
generator segments everything: the records go to a JSON file (masks as uncompressed RLE)
and the overlay shows every mask, convex ones filled.

Polygons for annotation tools (`sam_convex.exports`): `--format coco|yolo|labelme|
labelstudio` writes the convex mask's polygon (with --auto: one polygon per projected
record) instead of a mask image. The format follows from --out where that is
unambiguous: .txt is YOLO; a .json is a COCO dataset without --auto, the generator's
records with --auto, unless --format says otherwise. Every input is checked before a
model runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from segment_anything.utils.amg import rle_to_mask

from sam_convex import exports, images, outlines, validation
from sam_convex.projection import ConvexProjector
from sam_convex.projectors import PROJECTORS, make_projector
from sam_convex.segmenters import SEGMENTERS, choose_segmenter

RAW_COLOUR, CONVEX_COLOUR = (0, 0, 255), (0, 255, 0)  # BGR: red, green
# Masks must survive a round trip exactly: lossless formats only (JPEG would add grey levels).
MASK_FORMATS = (".png", ".bmp", ".tif", ".tiff", ".pgm")
OVERLAY_FORMATS = (*MASK_FORMATS, ".jpg", ".jpeg", ".webp")


def build_parser() -> validation.CommandLineParser:
    parser = validation.CommandLineParser(
        prog="python -m sam_convex",
        description="Segment one object in IMAGE from point/box prompts (SAM, SAM 2, or GrabCut "
        "without a checkpoint) and project the mask onto a convex shape.",
    )
    parser.add_argument("image", metavar="IMAGE", help="image file (PNG, JPEG, ...)")
    add_prompt_arguments(parser)
    add_model_arguments(parser)
    add_output_arguments(parser)
    return parser


def add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    """What to segment: points, a box, or everything (--auto)."""
    parser.add_argument(
        "--point",
        nargs=2,
        type=float,
        action="append",
        default=[],
        metavar=("X", "Y"),
        help="a point on the object, in pixels (repeatable)",
    )
    parser.add_argument(
        "--neg-point",
        nargs=2,
        type=float,
        action="append",
        default=[],
        metavar=("X", "Y"),
        help="a point on the background (repeatable)",
    )
    parser.add_argument(
        "--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"), help="a box around the object, in pixels"
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="segment everything with the automatic mask generator (SAM / SAM 2) instead of one prompted "
        "object; --out is then a .json of the records",
    )
    parser.add_argument(
        "--min-solidity",
        type=float,
        default=None,
        help="with --auto: project the masks whose major components are at least this solid (0: all; "
        "default: the generator's, see README)",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Which segmenter, from which checkpoint."""
    parser.add_argument(
        "--model",
        choices=SEGMENTERS,
        help="default: SAM if a SAM checkpoint is given or found in --checkpoint-dir, else "
        "GrabCut (not SAM); sam2 and promptnet (trained by python -m eval.train) need --checkpoint",
    )
    parser.add_argument(
        "--checkpoint", type=Path, metavar="PATH", help="SAM (.pth), SAM 2 (.pt) or PromptNet (.pt) checkpoint"
    )
    parser.add_argument(
        "--config", metavar="NAME", help="SAM 2 config, e.g. sam2.1_hiera_t (default: inferred from the checkpoint)"
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path("checkpoints"),
        metavar="DIR",
        help="where to look for a SAM checkpoint (default: %(default)s)",
    )
    parser.add_argument(
        "--model-type",
        choices=["vit_h", "vit_l", "vit_b"],
        help="SAM model type; default: inferred from the checkpoint",
    )


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Where results go, and how the mask is projected."""
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="MASK.png",
        help=f"where to write the convex mask (0/255; {', '.join(MASK_FORMATS)}), or with --auto the records "
        "(.json), or polygons (.json, .txt: see --format)",
    )
    parser.add_argument(
        "--format",
        choices=exports.FORMATS,
        help="write polygons for an annotation tool: coco (a COCO dataset, .json), yolo (a label file, .txt), "
        "labelme (.json), labelstudio (a Label Studio import file with predictions, .json). Default: yolo for "
        "a .txt --out, coco for a .json --out without --auto; with --auto a .json gets the records",
    )
    parser.add_argument("--label", default="object", help="the polygons' label / category name (default: %(default)s)")
    parser.add_argument(
        "--overlay",
        type=Path,
        metavar="OVERLAY.png",
        help="also write the image with raw (red) and convex (green) contours",
    )
    parser.add_argument(
        "--projector",
        choices=tuple(PROJECTORS),
        default="polygon",
        help="polygon (default): the exact polygon fit (ConvexProjector); gradient: Adam on the smooth objective "
        "(GradientProjector)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of GrabCut (and of the gradient projector)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (OSError, ValueError) as err:  # bad files, prompts, checkpoints, devices
        parser.fail(err)


def polygon_format(args) -> str | None:
    """The export format --out and --format ask for (None: a mask image, or the
    records with --auto); ValueError for a format the --out suffix does not fit."""
    suffix = args.out.suffix.lower()
    if args.format is not None:
        wanted = ".txt" if args.format == "yolo" else ".json"
        if suffix != wanted:
            raise ValueError(f"--format {args.format} writes a {wanted} file, got --out {args.out}")
        return args.format
    if suffix == ".txt":
        return "yolo"
    return "coco" if suffix == ".json" and not args.auto else None


def run(args) -> int:
    check_output(args.out, "--out", (".json", ".txt") if args.auto else (*MASK_FORMATS, ".json", ".txt"))
    args.format = polygon_format(args)
    if args.overlay is not None:
        check_output(args.overlay, "--overlay", OVERLAY_FORMATS)
        if args.overlay.resolve() == args.out.resolve():
            raise ValueError(f"--overlay {args.overlay} is the --out file; give them different names")
    bgr = read_image(args.image)
    prompt = None if args.auto else prompts_from_args(args, bgr.shape[:2])
    if args.min_solidity is not None and not args.auto:
        raise ValueError("--min-solidity is for --auto")
    # The polygon fit runs on the CPU, where one thread is fastest.
    threads = 1 if args.projector == "polygon" else None
    projector = make_projector(args.projector, seed=args.seed, device=args.device, threads=threads)
    segmenter = choose_segmenter(
        args.model, args.checkpoint, args.config, args.checkpoint_dir, args.model_type, args.device
    )
    print(f"model: {segmenter.description}")
    if args.auto:
        return segment_everything(args, segmenter, projector, bgr)
    return segment_one(args, segmenter, projector, bgr, *prompt)


def segment_one(args, segmenter, projector: ConvexProjector, bgr: np.ndarray, coords, labels, box) -> int:
    """One prompted object: the convex mask (and the overlay)."""
    predictor = segmenter.convex_predictor(projector, seed=args.seed)
    predictor.set_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    # One point is ambiguous (part or whole?): ask for three masks, keep the best scored.
    multimask = box is None and coords is not None and len(coords) == 1
    masks, scores, _ = predictor.predict(coords, labels, box, multimask_output=multimask)
    best = int(np.argmax(scores))
    convex = np.asarray(masks[best]) > 0
    raw = np.asarray(torch.as_tensor(predictor.last_sam_logits[best]).cpu()) > 0
    fit = predictor.last_fit
    print(
        f"raw mask: {int(raw.sum())} px, convex mask: {int(convex.sum())} px, "
        f"projection distance {float(fit.losses[best]):.4g}"
    )
    if args.format is None:
        write_image(args.out, convex.astype(np.uint8) * 255)
        print(f"wrote {args.out}")
    else:
        fitted = fit.masks[best].cpu().numpy()
        polygons = [fit.polygons[best]] if np.array_equal(fitted, convex) else None
        count = exports.write(args.out, args.format, convex[None], args.image, args.label, polygons=polygons)
        vertices = len(fit.polygons[best]) if polygons else len(outlines.lattice_polygon(convex))
        print(f"wrote {args.out} ({args.format}, {count} polygon of {vertices} vertices)")
    if args.overlay is not None:
        write_image(args.overlay, overlay(bgr, raw, convex))
        print(f"wrote {args.overlay}")
    return 0


def segment_everything(args, segmenter, projector: ConvexProjector, bgr: np.ndarray) -> int:
    """Every object the automatic mask generator finds: records (JSON) and overlay."""
    settings = {} if args.min_solidity is None else {"min_solidity": args.min_solidity}
    mode = "uncompressed_rle" if args.format is None else "coco_polygon"
    generator = segmenter.mask_generator(projector, output_mode=mode, **settings)
    records = generator.generate(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    projected = [r for r in records if r.get("convex_distance") is not None]
    print(f"{len(records)} masks, {len(projected)} projected (major-component solidity >= {generator.min_solidity:g})")
    if args.format is None:
        args.out.write_text(json.dumps(records, default=float))
        print(f"wrote {args.out}")
    else:  # one polygon per projected record: its convex polygon, exact for its mask
        polygons = [np.reshape(r["segmentation"][0], (-1, 2)) for r in projected]
        masks = outlines.rasterize(polygons, *bgr.shape[:2])
        scores = [r["predicted_iou"] for r in projected]
        exports.write(args.out, args.format, masks, args.image, args.label, scores, polygons)
        print(f"wrote {args.out} ({args.format}, {len(polygons)} polygons; unprojected masks left out)")
    if args.overlay is not None:
        write_image(args.overlay, records_overlay(bgr, records))
        print(f"wrote {args.overlay}")
    return 0


def check_output(path: Path, option: str, formats: tuple[str, ...]) -> None:
    """ValueError unless `path` names a file of a known format in a writable folder."""
    if str(path) in ("", "."):
        raise ValueError(f"{option} must name a file, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"{option} {path} is a directory; name a file such as {path / ('mask' + formats[0])}")
    if path.suffix.lower() not in formats:
        lossy = " (lossy formats would add grey levels to the mask)" if ".png" in formats and option == "--out" else ""
        raise ValueError(f"{option} {path}: use one of {', '.join(formats)}{lossy}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ValueError(f"{option} {path}: its folder is not writable ({err.strerror or err})") from err


def read_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR (OpenCV's order, for drawing and writing), read by
    `sam_convex.images.read_image` as every loader reads; ValueError naming the file."""
    try:
        rgb = images.read_image(path)
    except ValueError as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return np.ascontiguousarray(rgb[..., ::-1])


def prompts_from_args(args, image_size: tuple[int, int]):
    """(points (K, 2) or None, labels (K,) or None, box (4,) or None), checked against
    the image (points inside it, a box with x0 < x1 and y0 < y1)."""
    points = args.point + args.neg_point
    coords = np.array(points, dtype=np.float64) if points else None
    labels = np.array([1] * len(args.point) + [0] * len(args.neg_point)) if points else None
    box = np.array(args.box, dtype=np.float64) if args.box else None
    if coords is None and box is None:
        raise ValueError("give a prompt: --point X Y and/or --box X0 Y0 X1 Y1 (or --auto for every object)")
    if box is None and not args.point:
        raise ValueError("negative points alone do not say which object: add --point or --box")
    return validation.prompts(coords, labels, box, image_size=image_size)[:3]


def overlay(bgr: np.ndarray, raw: np.ndarray, convex: np.ndarray) -> np.ndarray:
    """The image with the raw mask's contour in red and the convex mask's in green."""
    out = bgr.copy()
    thickness = max(1, min(bgr.shape[:2]) // 250)
    for mask, colour in ((raw, RAW_COLOUR), (convex, CONVEX_COLOUR)):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, colour, thickness)
    return out


def records_overlay(bgr: np.ndarray, records: list[dict]) -> np.ndarray:
    """The image with every record's mask outlined, projected (convex) ones also filled."""
    out = bgr.copy()
    colours = np.random.default_rng(0).integers(64, 256, (max(1, len(records)), 3))
    for record, colour in zip(records, colours):
        mask = record_mask(record, bgr.shape[:2])
        if record.get("convex_distance") is not None:
            out[mask] = (0.5 * out[mask] + 0.5 * colour).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in colour), 1)
    return out


def record_mask(record: dict, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool mask of an AMG record in uncompressed-RLE or coco_polygon form (a
    projected record's convex polygon exactly; SAM's own outlines filled approximately,
    for drawing)."""
    segmentation = record["segmentation"]
    if isinstance(segmentation, dict):
        return rle_to_mask(segmentation)
    polygons = [np.reshape(p, (-1, 2)) for p in segmentation]
    if record.get("convex_distance") is not None:
        return outlines.rasterize(polygons, *shape)[0]
    filled = np.zeros(shape, np.uint8)
    cv2.fillPoly(filled, [np.round((p - 0.5) * 16).astype(np.int32) for p in polygons], 1, cv2.LINE_8, 4)
    return filled > 0


def write_image(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise ValueError(f"cannot write {path}")


if __name__ == "__main__":
    sys.exit(main())
