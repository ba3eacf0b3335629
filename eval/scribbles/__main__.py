"""Command line of the scribble experiment: `python -m eval.scribbles --help`."""

from __future__ import annotations

import argparse
import sys

from eval.datasets import DATASETS
from eval.scribbles.harness import FEATURE_SETS, NETS, PAPER_FEATURES, Settings, run
from eval.scribbles.nets import TrainConfig


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m eval.scribbles", description="Scribble-trained CNN/FCN, sequential vs joint convexity."
    )
    ap.add_argument(
        "--dataset", default="scenes", choices=DATASETS, help="benchmark (default: the embedded generated scenes)"
    )
    ap.add_argument("--data", default=None, help="dataset root (convexitydb/folder; scenes cache)")
    ap.add_argument(
        "--features",
        default=None,
        metavar="DIR",
        help="directory of per-image <name>.pt files holding {'embedmap': HxWxC}; "
        "without it (or for images without a file) an offline stand-in is used",
    )
    ap.add_argument(
        "--inputs",
        default=",".join(PAPER_FEATURES),
        help=f"comma-separated feature sets from {', '.join(FEATURE_SETS)}, or 'all'",
    )
    ap.add_argument(
        "--nets",
        "--models",
        default=",".join(NETS),
        dest="nets",
        help="comma-separated: cnn, fcn (--models: the 0.1 name)",
    )
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--seed", type=int, default=0, help="base seed (scenes generation, nets)")
    ap.add_argument("--out", default="reports", help="output directory (default reports/)")
    d = TrainConfig()
    ap.add_argument("--steps", type=int, default=d.steps, help="Adam steps per training")
    ap.add_argument(
        "--warmup", type=int, default=d.warmup, help="BCE-only steps before the regulariser joins (joint mode)"
    )
    ap.add_argument("--lam", type=float, default=d.lam, help="weight of dist(p, S) (joint)")
    ap.add_argument("--size", type=int, default=128, help="training resolution: longer side, px")
    ap.add_argument(
        "--projector-steps",
        type=int,
        default=None,
        help="ConvexProjector steps (sequential; default: the projector's own)",
    )
    ap.add_argument("--sem-channels", type=int, default=4, help="PCA channels of semantic features")
    ap.add_argument("--figure-images", type=int, default=3, help="images in the qualitative figure")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these small nets)")
    ap.add_argument("--fresh", action="store_true", help="ignore cached per-item results")
    return ap


def parse_settings(argv: list[str] | None = None) -> Settings:
    ap = build_parser()
    args = ap.parse_args(argv)
    inputs = list(FEATURE_SETS) if args.inputs == "all" else args.inputs.split(",")
    nets = args.nets.split(",")
    for f in inputs:
        if f not in FEATURE_SETS:
            ap.error(f"unknown feature set {f!r}; choose from {', '.join(FEATURE_SETS)} or 'all'")
    for n in nets:
        if n not in NETS:
            ap.error(f"unknown net {n!r}; choose from {', '.join(NETS)}")
    if args.steps < 1 or not 0 <= args.warmup < args.steps:
        ap.error("need steps >= 1 and 0 <= warmup < steps")
    return Settings(
        dataset=args.dataset,
        data=args.data,
        features_dir=args.features,
        inputs=tuple(inputs),
        nets=tuple(nets),
        limit=args.limit,
        seed=args.seed,
        out=args.out,
        train=TrainConfig(steps=args.steps, warmup=args.warmup, lam=args.lam),
        size=args.size,
        projector_steps=args.projector_steps,
        sem_channels=args.sem_channels,
        figure_images=args.figure_images,
        threads=args.threads,
        fresh=args.fresh,
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    command = "python -m eval.scribbles " + " ".join(argv if argv is not None else sys.argv[1:])
    run(settings, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
