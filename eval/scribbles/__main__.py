"""Command line of the scribble experiment: `python -m eval.scribbles --help`.

Bad arguments and bad data end with one line on stderr and exit code 2, never a
traceback; the output directory is checked before anything is computed.
"""

from __future__ import annotations

import argparse
import sys

from eval.scribbles import cpu

if __name__ == "__main__":
    cpu.pin()  # before torch loads (see eval.scribbles.cpu)

from eval.datasets import DATASETS
from eval.scribbles.harness import (
    FEATURE_SETS,
    GRADIENT_STEPS,
    NETS,
    PAPER_FEATURES,
    SCENES_SPLITS,
    SPLITS,
    Settings,
    run,
)
from eval.scribbles.nets import TrainConfig
from sam_convex.projectors import PROJECTORS

PROG = "python -m eval.scribbles"


class UsageError(Exception):
    """A bad command line (raised instead of argparse's exit, see `Parser.error`)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print the usage and exit
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    d, dev, test = TrainConfig(), SCENES_SPLITS["dev"], SCENES_SPLITS["test"]
    ap = Parser(
        prog=PROG,
        description="Scribble-trained CNN/FCN, sequential (train, then proj_S) vs joint (train with the "
        "convexity regulariser): IoU of predictor and convex output, paired differences with bootstrap CIs "
        "over images and K seeds per item.",
        epilog=f"Splits of the scenes benchmark: dev = {dev[1]} scenes generated with seed {dev[0]} (settings "
        f"were chosen there, see python -m eval.scribbles.tune), test = {test[1]} scenes generated with seed "
        f"{test[0]} (the reported table). Other datasets: dev = the first 20 images, test = the rest.",
    )
    ap.add_argument(
        "--dataset", default="scenes", choices=DATASETS, help="benchmark (default: the embedded generated scenes)"
    )
    ap.add_argument("--data", default=None, help="dataset root (convexitydb/folder); for scenes: where to cache them")
    ap.add_argument(
        "--split",
        default=None,
        choices=SPLITS,
        help="dev, test or all images (default: test for scenes, all for convexitydb/folder)",
    )
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
        help=f"comma-separated feature sets from {', '.join(FEATURE_SETS)}, or 'all' (default: %(default)s)",
    )
    ap.add_argument(
        "--nets",
        "--models",
        default=",".join(NETS),
        dest="nets",
        help="comma-separated: cnn, fcn (--models: the 0.1 name)",
    )
    ap.add_argument("--limit", type=int, default=None, help="first N images of the split only")
    ap.add_argument("--seed", type=int, default=0, help="base training seed (default 0)")
    ap.add_argument("--seeds", type=int, default=3, help="trainings per (image, net, features), K (default 3)")
    ap.add_argument("--out", default="reports", help="output directory (default reports/)")
    ap.add_argument("--steps", type=int, default=d.steps, help="Adam steps per training (default %(default)s)")
    ap.add_argument(
        "--warmup",
        type=int,
        default=d.warmup,
        help="BCE-only steps before the regulariser joins (joint; default %(default)s)",
    )
    ap.add_argument("--lam", type=float, default=d.lam, help="weight of dist(p, S), >= 0 (joint; default %(default)s)")
    ap.add_argument(
        "--prefit", type=int, default=d.reg_prefit, help="ICNN-only steps before coupling (joint; default %(default)s)"
    )
    ap.add_argument("--size", type=int, default=128, help="training resolution: longer side, px (default 128)")
    ap.add_argument(
        "--projector",
        default=Settings.projector,
        choices=PROJECTORS,
        help="proj_S of sequential and of the joint predictor: polygon = ConvexProjector (exact polygon fit), "
        "gradient = GradientProjector (Adam) (default: %(default)s, chosen on the dev split)",
    )
    ap.add_argument(
        "--projector-steps",
        type=int,
        default=None,
        help=f"GradientProjector's Adam steps (with --projector gradient; default {GRADIENT_STEPS})",
    )
    ap.add_argument("--sem-channels", type=int, default=4, help="PCA channels of semantic features (default 4)")
    ap.add_argument("--figure-images", type=int, default=3, help="images in the qualitative figure (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1; results depend on it)")
    ap.add_argument("--fresh", action="store_true", help="ignore cached per-item results")
    return ap


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Parse the command line; raise UsageError for anything `check_settings` would refuse."""
    args = build_parser().parse_args(argv)
    inputs = list(FEATURE_SETS) if args.inputs == "all" else args.inputs.split(",")
    for f in inputs:
        if f not in FEATURE_SETS:
            raise UsageError(f"--inputs: unknown feature set {f!r}; choose from {', '.join(FEATURE_SETS)} or 'all'")
    nets = args.nets.split(",")
    for n in nets:
        if n not in NETS:
            raise UsageError(f"--nets: unknown net {n!r}; choose from {', '.join(NETS)}")
    return Settings(
        dataset=args.dataset,
        data=args.data,
        features_dir=args.features,
        split=args.split,
        inputs=tuple(inputs),
        nets=tuple(nets),
        limit=args.limit,
        seed=args.seed,
        seeds=args.seeds,
        out=args.out,
        train=TrainConfig(steps=args.steps, warmup=args.warmup, lam=args.lam, reg_prefit=args.prefit),
        size=args.size,
        projector=args.projector,
        projector_steps=args.projector_steps,
        sem_channels=args.sem_channels,
        figure_images=args.figure_images,
        threads=args.threads,
        fresh=args.fresh,
    )


def one_line(err: BaseException) -> str:
    """An error message on one line (dataset errors carry a multi-line layout)."""
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (2 for bad arguments or data)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        run(parse_settings(argv), f"{PROG} " + " ".join(argv))
    except (UsageError, ValueError, OSError) as err:  # bad arguments, bad data, unwritable output
        print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
