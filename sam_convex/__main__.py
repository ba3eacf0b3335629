"""Single-image command: segment one object from prompts and make the mask convex.

    python -m sam_convex photo.jpg --point 320 240 --out mask.png --overlay overlay.png

Uses SAM when a checkpoint is given (--checkpoint) or found in checkpoints/, otherwise
OpenCV GrabCut (a classical segmenter, not SAM), and says which. Writes the convex mask
(0/255 PNG) and optionally an overlay with the raw mask's contour in red and the convex
mask's in green.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from segment_anything import SamPredictor

from sam_convex import validation
from sam_convex.grabcut import GrabCutPredictor
from sam_convex.loading import CHECKPOINT_URL, EMBED_DIM_TO_TYPE, find_checkpoint, load_sam
from sam_convex.projection import ConvexProjector

RAW_COLOUR, CONVEX_COLOUR = (0, 0, 255), (0, 255, 0)  # BGR: red, green


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sam_convex",
        description="Segment one object in IMAGE from point/box prompts (SAM, or GrabCut "
        "without a checkpoint) and project the mask onto a convex shape.",
    )
    parser.add_argument("image", metavar="IMAGE", help="image file (PNG, JPEG, ...)")
    parser.add_argument(
        "--point",
        nargs=2,
        type=float,
        action="append",
        default=[],
        metavar=("X", "Y"),
        help="a point on the object (repeatable)",
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
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="SAM checkpoint (.pth); default: the one found in --checkpoint-dir",
    )
    source.add_argument(
        "--model",
        choices=["sam", "grabcut"],
        help="force SAM (needs a checkpoint) or GrabCut; default: SAM if a checkpoint is found, else GrabCut",
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
    parser.add_argument(
        "--out", type=Path, required=True, metavar="MASK.png", help="where to write the convex mask (0/255 PNG)"
    )
    parser.add_argument(
        "--overlay",
        type=Path,
        metavar="OVERLAY.png",
        help="also write the image with raw (red) and convex (green) contours",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="projection optimiser steps (default: ConvexProjector's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the projection and GrabCut")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, OSError) as err:
        parser.error(str(err))  # exit code 2, message, no traceback
    return 2


def run(args: argparse.Namespace) -> int:
    bgr = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {args.image} (missing, or not an image OpenCV can decode)")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]

    points = args.point + args.neg_point
    coords = np.array(points, dtype=np.float64) if points else None
    labels = np.array([1] * len(args.point) + [0] * len(args.neg_point)) if points else None
    box = np.array(args.box, dtype=np.float64) if args.box else None
    if coords is None and box is None:
        raise ValueError("give a prompt: --point X Y and/or --box X0 Y0 X1 Y1")
    if box is None and not args.point:
        raise ValueError("negative points alone do not say which object: add --point or --box")
    validation.prompts(coords, labels, box, (h, w))
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")

    predictor, description = choose_predictor(args)
    print(f"model: {description}")
    predictor.set_image(image)
    # One point is ambiguous (part or whole?): ask SAM for three masks, keep its best.
    multimask = box is None and len(points) == 1
    logits, scores, _ = predictor.predict(coords, labels, box, multimask_output=multimask, return_logits=True)
    best = int(np.argmax(scores))
    raw_logits = np.asarray(logits[best], dtype=np.float32)
    raw = raw_logits > 0

    kwargs = {} if args.steps is None else {"steps": args.steps}
    fit = ConvexProjector(seed=args.seed, **kwargs).fit(raw_logits, logits=True)
    convex = fit.masks[0].cpu().numpy()

    write_png(args.out, convex.astype(np.uint8) * 255)
    print(
        f"raw mask: {int(raw.sum())} px, convex mask: {int(convex.sum())} px, "
        f"projection loss {float(fit.losses[0]):.4g} ({fit.steps} steps)"
    )
    print(f"wrote {args.out}")
    if args.overlay is not None:
        write_png(args.overlay, overlay(bgr, raw, convex))
        print(f"wrote {args.overlay}")
    return 0


def choose_predictor(args: argparse.Namespace):
    """(predictor, description) for --checkpoint / --model / what checkpoints/ holds."""
    if args.model == "grabcut":
        return GrabCutPredictor(seed=args.seed), "GrabCut (OpenCV; a classical segmenter, not SAM)"
    checkpoint = args.checkpoint or find_checkpoint(args.checkpoint_dir)
    if checkpoint is None:
        if args.model == "sam":
            raise FileNotFoundError(
                f"--model sam: no SAM checkpoint in {args.checkpoint_dir}/; download one from "
                f"{CHECKPOINT_URL} or pass --checkpoint PATH"
            )
        return (
            GrabCutPredictor(seed=args.seed),
            f"GrabCut (OpenCV; a classical segmenter, not SAM): no SAM checkpoint in {args.checkpoint_dir}/",
        )
    sam = load_sam(checkpoint, args.model_type)
    width = sam.image_encoder.patch_embed.proj.out_channels
    kind = args.model_type or EMBED_DIM_TO_TYPE.get(width, f"custom ViT width {width}")
    return SamPredictor(sam), f"SAM {kind} from {checkpoint} on {sam.device}"


def overlay(bgr: np.ndarray, raw: np.ndarray, convex: np.ndarray) -> np.ndarray:
    """The image with the raw mask's contour in red and the convex mask's in green."""
    out = bgr.copy()
    thickness = max(1, min(bgr.shape[:2]) // 250)
    for mask, colour in ((raw, RAW_COLOUR), (convex, CONVEX_COLOUR)):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, colour, thickness)
    return out


def write_png(path: Path, array: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise ValueError(f"cannot write {path} (use a .png name in a writable folder)")


if __name__ == "__main__":
    sys.exit(main())
