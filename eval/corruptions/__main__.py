"""Command line of the corruption benchmark: `python -m eval.corruptions --help`."""

from __future__ import annotations

import json
import sys

from eval.corruptions.corrupt import CORRUPTIONS, SEVERITIES
from eval.corruptions.harness import PROJECTORS, run
from eval.corruptions.prompts import PROMPTS
from eval.datasets import DATASETS
from sam_convex.segmenters import SEGMENTERS
from sam_convex.validation import CommandLineParser


def build_parser() -> CommandLineParser:
    parser = CommandLineParser(
        prog="python -m eval.corruptions",
        description="Mean IoU of a predictor (SAM, or GrabCut without a checkpoint) and of "
        "proj_S and baselines applied to its output, clean and under the paper's "
        "eight image corruptions at one severity.",
    )
    parser.add_argument("--severity", type=int, default=5, choices=SEVERITIES, help="corruption severity (default 5)")
    parser.add_argument(
        "--dataset",
        default="scenes",
        choices=DATASETS,
        help="benchmark (default scenes, the embedded benchmark generated from scikit-image photos)",
    )
    parser.add_argument(
        "--data",
        metavar="ROOT",
        default=None,
        help="dataset directory (convexitydb/folder); for scenes, where to cache it",
    )
    parser.add_argument(
        "--model",
        default=None,
        choices=SEGMENTERS,
        help="default: sam if a SAM checkpoint is given or found in checkpoints/, else grabcut "
        "(a classical stand-in, not SAM); sam2 needs --checkpoint",
    )
    parser.add_argument("--checkpoint", metavar="PATH", default=None, help="SAM (.pth) or SAM 2 (.pt) checkpoint")
    parser.add_argument(
        "--config",
        metavar="NAME",
        default=None,
        help="SAM 2 config, e.g. sam2.1_hiera_t (default: inferred from the checkpoint)",
    )
    parser.add_argument(
        "--prompt",
        default="points",
        choices=PROMPTS,
        help="points (default): K positive points on the foreground scribble, K "
        "negative on the background scribble; box: the ground truth's bounding box",
    )
    parser.add_argument(
        "--points",
        type=int,
        default=3,
        dest="num_points",
        metavar="K",
        help="points per class for point prompts (default 3)",
    )
    parser.add_argument(
        "--corruptions",
        default=",".join(CORRUPTIONS),
        metavar="NAMES",
        help=f"comma-separated subset of {','.join(CORRUPTIONS)} (default all)",
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--device", default=None, help="torch device (default cuda if available)")
    parser.add_argument(
        "--projector",
        default="polygon",
        choices=PROJECTORS,
        help="polygon (default): ConvexProjector, the exact polygon fit; gradient: GradientProjector (Adam on "
        "the smooth objective)",
    )
    parser.add_argument("--out", default="reports", metavar="DIR", help="output directory (default reports/)")
    parser.add_argument("--fresh", action="store_true", help="ignore cached per-item results")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    corruptions = [c.strip() for c in args.corruptions.split(",") if c.strip()]
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown or not corruptions:
        parser.error(f"unknown corruption(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(CORRUPTIONS)}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    try:
        paths = run(
            severity=args.severity,
            dataset=args.dataset,
            data=args.data,
            model=args.model,
            checkpoint=args.checkpoint,
            config=args.config,
            prompt=args.prompt,
            corruptions=corruptions,
            limit=args.limit,
            seed=args.seed,
            device=args.device,
            out=args.out,
            fresh=args.fresh,
            num_points=args.num_points,
            projector=args.projector,
        )
    except (OSError, ValueError) as err:  # bad data, paths, devices, checkpoints
        parser.fail(err)
    print_summary(paths)
    return 0


def print_summary(paths: dict) -> None:
    meta = json.loads(paths["meta"].read_text())
    print(f"model: {meta['model']} (checkpoint: {meta['checkpoint']})")
    print(
        f"dataset: {meta['dataset']} ({meta['images']} images), severity {meta['severity']}, "
        f"prompt {meta['prompt']}, seed {meta['seed']}"
    )
    print(
        f"items: {meta['items']} ({meta['computed']} computed, {meta['items'] - meta['computed']} "
        f"from cache), wall time {meta['wall_s']:.1f} s"
    )
    print(f"report: {paths['markdown']}")
    for key in ("csv", "bars", "deltas", "grid"):
        print(f"        {paths[key]}")


if __name__ == "__main__":
    sys.exit(main())
