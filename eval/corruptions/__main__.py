"""Command line of the corruption benchmark: `python -m eval.corruptions --help`."""

from __future__ import annotations

import argparse
import json
import sys

from eval.corruptions.corrupt import CORRUPTION_SETS, corruption_names
from eval.corruptions.harness import parse_severities, run
from eval.corruptions.items import Serial
from eval.corruptions.prompts import PROMPTS
from eval.datasets import DATASETS, SPLITS
from sam_convex.projectors import PROJECTORS
from sam_convex.segmenters import SEGMENTERS
from sam_convex.validation import CommandLineParser


def build_parser() -> CommandLineParser:
    parser = CommandLineParser(
        prog="python -m eval.corruptions",
        description="Mean IoU of a segmenter (SAM, SAM 2, or GrabCut without a checkpoint) and of proj_S and "
        "baselines applied to its output, clean and under image corruptions, at one severity (a report in the "
        "paper's layout) or several (a sweep with robustness curves), serially or on a Ray cluster.",
    )
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_run_arguments(parser)
    return parser


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Which conditions, on which images."""
    parser.add_argument(
        "--severity",
        default="5",
        metavar="S",
        help="severity 1..5, a range such as 1-5 or a list such as 1,3,5 (default 5)",
    )
    parser.add_argument(
        "--corruptions",
        default="paper",
        metavar="SET|NAMES",
        help=f"a set ({', '.join(f'{k}: {len(v)}' for k, v in CORRUPTION_SETS.items())} "
        "corruptions) or comma-separated names (default paper: the poster's eight)",
    )
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
        help="dataset directory (convexitydb/folder/kvasir-seg/cvc-clinicdb); for scenes, where to cache it",
    )
    parser.add_argument(
        "--split",
        default=None,
        choices=SPLITS,
        help="kvasir-seg: train, val or test (default test; fixed by SHA-256 of the image names); "
        "cvc-clinicdb: test only (all 612 frames, a cross-dataset test set)",
    )
    parser.add_argument(
        "--max-side",
        type=int,
        default=None,
        metavar="PX",
        help="downscale images and masks so the longer side is at most PX before anything runs "
        "(the same input for every method; default: full resolution)",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The segmenter and its prompts."""
    parser.add_argument(
        "--model",
        default=None,
        choices=SEGMENTERS,
        help="default: sam if a SAM checkpoint is given or found in checkpoints/, else grabcut "
        "(a classical stand-in, not SAM); sam2 and promptnet need --checkpoint",
    )
    parser.add_argument(
        "--checkpoint", metavar="PATH", default=None, help="SAM (.pth), SAM 2 (.pt) or PromptNet (.pt) checkpoint"
    )
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
        help="points (default): K positive points on the foreground scribble, K negative on the "
        "background scribble; box: the ground truth's bounding box",
    )
    parser.add_argument(
        "--points",
        type=int,
        default=3,
        dest="num_points",
        metavar="K",
        help="points per class for point prompts (default 3)",
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Seeds, projector, where items run and where results go."""
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--device", default=None, help="torch device (default cuda if available)")
    parser.add_argument(
        "--projector",
        default="polygon",
        choices=PROJECTORS,
        help="polygon (default): ConvexProjector, the exact polygon fit; gradient: "
        "GradientProjector (Adam on the smooth objective)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const=True,
        default=None,
        metavar="ADDRESS",
        help="run the items on Ray: a local Ray without ADDRESS (or RAY_ADDRESS), else the cluster "
        'at ADDRESS (pip install -e ".[ray]")',
    )
    parser.add_argument(
        "--ray-gpus-per-worker",
        type=float,
        default=0.0,
        metavar="G",
        help="GPUs per Ray worker (default 0: one worker per CPU)",
    )
    parser.add_argument("--out", default="reports", metavar="DIR", help="output directory (default reports/)")
    parser.add_argument("--fresh", action="store_true", help="ignore cached per-item results")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        severities = parse_severities(args.severity)
        corruptions = corruption_names(args.corruptions)
    except ValueError as err:
        parser.error(str(err))
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if args.num_points < 1:
        parser.error(f"--points must be >= 1, got {args.num_points}")
    if not 0 <= args.ray_gpus_per_worker < float("inf"):
        parser.error(f"--ray-gpus-per-worker must be a number >= 0, got {args.ray_gpus_per_worker}")
    if args.ray_gpus_per_worker and not args.ray:
        parser.error("--ray-gpus-per-worker is for --ray")
    if args.max_side is not None and args.max_side < 32:
        parser.error(f"--max-side must be >= 32 (imagecorruptions' smallest side), got {args.max_side}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    try:
        paths = run(
            severity=severities,
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
            executor=executor(args),
            split=args.split,
            max_side=args.max_side,
        )
    except (OSError, ValueError, RuntimeError) as err:  # bad data, paths, devices, checkpoints, failed items
        parser.fail(err)
    print_summary(paths)
    return 0


def executor(args):
    """Where items are computed: on Ray with --ray (an optional extra, imported only
    then), else here."""
    if not args.ray:
        return Serial()
    from eval.corruptions import cluster

    return cluster.Ray(None if args.ray is True else args.ray, args.ray_gpus_per_worker)


def print_summary(paths: dict) -> None:
    meta = json.loads(paths["meta"].read_text())
    print(f"model: {meta['model']} (checkpoint: {meta['checkpoint']})")
    print(
        f"dataset: {meta['dataset']} ({meta['images']} images), severity {meta['severity']}, "
        f"prompt {meta['prompt']}, seed {meta['seed']}"
    )
    print(
        f"items: {meta['items']} ({meta['computed']} computed on {meta['executor']}, "
        f"{meta['items'] - meta['computed']} from cache), wall time {meta['wall_s']:.1f} s"
    )
    print(f"report: {paths['markdown']}")
    for key, path in paths.items():
        if key not in ("markdown", "meta"):
            print(f"        {path}")


if __name__ == "__main__":
    sys.exit(main())
