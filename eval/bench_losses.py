"""`python -m eval.bench_losses`: what a shape loss costs per training batch.

On the same batch of damaged masks (`eval.bench_projection.scene_targets`, resized
to each --sizes value and given as logits), side by side in one run:

* ``projector.fit``: the projector alone, one batched call on the probabilities (the
  floor: `ConvexityLoss` cannot cost less);
* ``ConvexityLoss``: forward (sigmoid, the same fit, the distance) and backward;
* ``StarShapeLoss``: forward and backward against the undamaged objects;
* ``BCEWithLogitsLoss``: forward and backward, the plain loss, for scale.

Two kinds of batch (`KINDS`): damaged objects (a trained segmenter's output) and the
same objects drowned in smooth noise (an untrained network's output, where the exact
fit has the most to do).

Every repeat runs the four back to back on the same batch, so load from other work
hits them alike; the medians' ratios to ``projector.fit`` are what to compare (the
issue's target: `ConvexityLoss` at most 1.5x the projector). Writes
<out>/bench_losses.{md,json}.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from eval import runs
from eval.bench_projection import scene_targets
from sam_convex import ConvexityLoss, ConvexProjector, StarShapeLoss, validation
from sam_convex.projection import limit_threads

METHODS = ("projector.fit", "ConvexityLoss", "StarShapeLoss", "BCEWithLogitsLoss")
KINDS = ("damaged", "untrained")


def batch(size: int, count: int, seed: int, kind: str = "damaged") -> tuple[torch.Tensor, torch.Tensor]:
    """(count, size, size) float32 logits and (count, size, size) float32 0/1 truths.

    kind "damaged": damaged objects (a trained segmenter's kind of output) and the
    undamaged objects; "untrained": the objects blurred into smooth noise around 0.5
    (an untrained network's kind of output, the first epochs of training)."""
    probs, truths = scene_targets(count, seed, size=size)
    if kind == "untrained":
        rng = np.random.default_rng(seed)
        noise = gaussian_filter(rng.normal(0, 1, probs.shape), (0, size / 16, size / 16))
        probs = 1 / (1 + np.exp(-(0.6 * (probs - 0.5) + noise / noise.std())))
    probs = np.clip(probs, 1e-4, 1 - 1e-4).astype(np.float32)
    return torch.logit(torch.from_numpy(probs)), torch.from_numpy(truths.astype(np.float32))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_batch(logits: torch.Tensor, truths: torch.Tensor, projector, repeats: int) -> dict[str, list[float]]:
    """Seconds per repeat of each method on one batch, the methods back to back."""
    convexity, star = ConvexityLoss(projector), StarShapeLoss()

    def loss_step(loss_fn) -> None:
        x = logits.clone().requires_grad_(True)
        loss_fn(x).backward()
        if x.is_cuda:
            torch.cuda.synchronize()

    calls = {
        "projector.fit": lambda: projector.fit(torch.sigmoid(logits).cpu().numpy()),
        "ConvexityLoss": lambda: loss_step(convexity),
        "StarShapeLoss": lambda: loss_step(lambda x: star(x, truths)),
        "BCEWithLogitsLoss": lambda: loss_step(lambda x: F.binary_cross_entropy_with_logits(x, truths)),
    }
    for fn in calls.values():  # warm-up: first calls allocate
        fn()
    seconds = {name: [] for name in METHODS}
    for _ in tqdm(range(repeats), desc=f"{len(logits)} x {logits.shape[-1]} px", leave=False):
        for name in METHODS:
            seconds[name].append(timed(calls[name]))
    return seconds


def run(sizes: list[int], count: int, repeats: int, threads: int, seed: int, device: str) -> dict:
    projector = ConvexProjector()
    rows = []
    started = time.time()
    with limit_threads(threads):
        for kind in KINDS:
            for size in sizes:
                logits, truths = batch(size, count, seed, kind)
                seconds = time_batch(logits.to(device), truths.to(device), projector, repeats)
                floor = statistics.median(seconds["projector.fit"])
                for name in METHODS:
                    med = statistics.median(seconds[name])
                    rows.append({"kind": kind, "size": size, "method": name, "ms": 1000 * med, "ratio": med / floor})
    return {
        "command": "python -m eval.bench_losses " + " ".join(sys.argv[1:]),
        "batch": count,
        "sizes": sizes,
        "repeats": repeats,
        "threads": threads,
        "seed": seed,
        "projector": repr(projector),
        "device": runs.machine(device),
        "versions": runs.versions(),
        "wall_s": time.time() - started,
        "rows": rows,
    }


def markdown(r: dict) -> str:
    lines = [
        "# Cost of a shape loss per training batch",
        "",
        f"Produced by `{r['command']}`: a batch of {r['batch']} damaged masks (bench_projection's "
        f"`damaged_objects`, seed {r['seed']}) as logits, median of {r['repeats']} back-to-back repeats, "
        f"{r['threads']} thread(s). Loss times include the backward pass. Ratio: to `projector.fit` on the "
        "same batch (target for ConvexityLoss: <= 1.5x). Predictions: *damaged* objects (bites, holes, "
        "islands, ragged soft edges: a trained segmenter's kind of output) and *untrained* (the same "
        "objects drowned in smooth noise around 0.5: what a network outputs in its first epochs).",
        "",
        "| predictions | size | " + " | ".join(METHODS) + " |",
        "|---|---|" + "---|" * len(METHODS),
    ]
    for kind, size in ((k, s) for k in KINDS for s in r["sizes"]):
        cells = {row["method"]: row for row in r["rows"] if row["size"] == size and row["kind"] == kind}
        lines.append(
            f"| {kind} | {size}x{size} | "
            + " | ".join(f"{cells[m]['ms']:.1f} ms ({cells[m]['ratio']:.2f}x)" for m in METHODS)
            + " |"
        )
    lines += [
        "",
        f"Projector: `{r['projector']}`. Device: {r['device']}. Wall time {r['wall_s']:.0f} s.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


def build_parser() -> validation.CommandLineParser:
    parser = validation.CommandLineParser(prog="python -m eval.bench_losses", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,128,256", help="comma-separated mask sizes (default 64,128,256)")
    parser.add_argument("--batch", type=int, default=16, help="masks per batch (default 16)")
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the masks (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device of the predictions (default cpu)")
    parser.add_argument("--out", default="reports", help="output directory (default reports/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if min(sizes) < 8:
        parser.error(f"--sizes must be >= 8, got {args.sizes}")
    for name in ("batch", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    try:
        validation.device("--device", args.device)
        out = runs.check_writable(args.out)
        r = run(sizes, args.batch, args.repeats, args.threads, args.seed, args.device)
    except (OSError, ValueError) as err:
        parser.fail(err)
    (out / "bench_losses.json").write_text(json.dumps(r, indent=1) + "\n")
    (out / "bench_losses.md").write_text(markdown(r))
    worst = max(row["ratio"] for row in r["rows"] if row["method"] == "ConvexityLoss")
    print(f"ConvexityLoss: at most {worst:.2f}x the projector's time on the same batch; report in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
