"""`python -m eval.bench_thin`: does `ConvexProjector` keep thin convex objects?

A convex mask is its own projection up to pixelisation, however thin. This command draws
the thin convex objects an annotator or a segmenter produces, at every whole-degree
angle 0..179 and thickness 1..8 px, in a 256x256 frame, centred:

* line: `cv2.line` of length `LINE_LENGTH` px (OpenCV's digital line, as drawing tools
  and the scribbles make them);
* rectangle: a filled `LINE_LENGTH` x thickness rectangle, `cv2.fillConvexPoly` at
  1/16-px precision (a thin bar, a rotated box).

Each (kind, thickness) group of 180 masks is projected in one batched
`ConvexProjector(threads=1)` fit. Per mask: keep = |out & mask| / |mask|, add =
|out \\ mask| / |mask|, and the fit's objective against that of the convex hull of the
mask's pixel centres (`skimage.morphology.convex_hull_image(offset_coordinates=False)`).
The report gives per kind and thickness the worst keep and add over the angles, the
angles with keep < 95% or add > 5%, and the masks whose objective is worse than the
hull's. Writes <out>/thin_shapes.{md,json}. No randomness: the shapes are fixed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from skimage.morphology import convex_hull_image
from tqdm import tqdm

from eval import runs
from sam_convex import ConvexProjector, validation
from sam_convex.polygon import CANDIDATES
from sam_convex.synthetic import MASK_SIZE, THIN_LENGTH, THIN_SHAPES

SIZE = MASK_SIZE  # frame (px per side)
LINE_LENGTH = THIN_LENGTH  # px
ANGLES = tuple(range(180))  # degrees
THICKNESSES = tuple(range(1, 9))  # px
KEEP_AT_LEAST = 0.95  # the bar: keep >= 95% of the pixels ...
ADD_AT_MOST = 0.05  # ... and add <= 5%


SHAPES = THIN_SHAPES  # sam_convex.synthetic.line_mask / rectangle_mask, at SIZE and LINE_LENGTH


def hull_objective(mask: np.ndarray) -> float:
    """The fit's objective mean_x (p - hull)^2 of the convex hull of a bool mask's pixel
    centres (p = the mask)."""
    rows, cols = np.nonzero(mask)
    if np.ptp(rows) == 0 or np.ptp(cols) == 0:  # a straight run is its own hull (qhull needs 2-D)
        return 0.0
    return float((convex_hull_image(mask, offset_coordinates=False) ^ mask).mean())


def measure(kind: str, thickness: int, projector: ConvexProjector) -> dict:
    """Project the 180 masks of one (kind, thickness) in one batched fit; per angle the
    keep and add fractions, the fit's and the hull's objectives and the pocket's choice."""
    masks = np.stack([SHAPES[kind](thickness, a) for a in ANGLES])
    start = time.perf_counter()
    fit = projector.fit(masks.astype(np.float32))
    seconds = time.perf_counter() - start
    out = fit.masks.numpy()
    area = masks.sum((1, 2))
    return {
        "keep": ((out & masks).sum((1, 2)) / area).tolist(),
        "add": ((out & ~masks).sum((1, 2)) / area).tolist(),
        "objective": fit.losses.astype(float).tolist(),
        "hull_objective": [hull_objective(m) for m in masks],
        "choice": [CANDIDATES[c] for c in fit.details["choice"]],
        "seconds": seconds,
    }


def summary(m: dict) -> dict:
    """One row of the table from `measure`'s result."""
    keep, add = np.array(m["keep"]), np.array(m["add"])
    worse = np.array(m["objective"]) > np.array(m["hull_objective"]) + 1e-7  # float32 losses
    choices = {c: m["choice"].count(c) for c in CANDIDATES if c in m["choice"]}
    return {
        "worst_keep": float(keep.min()),
        "worst_keep_angle": int(ANGLES[int(keep.argmin())]),
        "worst_add": float(add.max()),
        "worst_add_angle": int(ANGLES[int(add.argmax())]),
        "angles_failing": int(((keep < KEEP_AT_LEAST) | (add > ADD_AT_MOST)).sum()),
        "worse_than_hull": int(worse.sum()),
        "choice": choices,
        "ms_per_mask": 1000 * m["seconds"] / len(keep),
    }


def run(out: str, command: str) -> dict:
    """Measure every (kind, thickness), write <out>/thin_shapes.{md,json}; returns the record."""
    projector = ConvexProjector(threads=1)
    groups = [(k, t) for k in SHAPES for t in THICKNESSES]
    rows = {}
    for kind, t in tqdm(groups, desc="thin shapes", unit="group"):
        rows[f"{kind}:{t}"] = {"kind": kind, "thickness": t, **summary(measure(kind, t, projector))}
    record = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": runs.machine(),
        "versions": runs.versions(),
        "seed": None,
        "projector": repr(projector),
        "size": SIZE,
        "length": LINE_LENGTH,
        "angles": [ANGLES[0], ANGLES[-1]],
        "rows": rows,
    }
    path = Path(out)
    runs.atomic_write(path / "thin_shapes.json", json.dumps(record, indent=1).encode())
    runs.atomic_write(path / "thin_shapes.md", markdown(record).encode())
    return record


def markdown(r: dict) -> str:
    """The report: provenance, then per kind and thickness the worst keep/add over all angles."""
    lines = [
        "# Thin convex shapes through ConvexProjector",
        "",
        f"Produced by `{r['command']}` on {r['machine']}, {r['date']}; no randomness (fixed shapes, seed: none). "
        f"Versions: {', '.join(f'{k} {v}' for k, v in r['versions'].items())}. Projector: `{r['projector']}`.",
        "",
        f"Masks: {r['size']}x{r['size']} frames, one centred convex object of length {r['length']} px at every "
        f"whole-degree angle {r['angles'][0]}..{r['angles'][1]} per thickness: `cv2.line` lines and filled "
        "rectangles (`cv2.fillConvexPoly`, 1/16-px corners). keep = |out & mask| / |mask|, add = |out \\ mask| / "
        f"|mask|; failing: keep < {KEEP_AT_LEAST:.0%} or add > {ADD_AT_MOST:.0%}; worse than hull: the fit's "
        "objective mean (p - out)^2 above that of the convex hull of the mask's pixel centres; choice: what the "
        "pocket returned (fit, or a candidate that beat it).",
        "",
        "| shape | thickness (px) | worst keep (angle) | worst add (angle) | angles failing | worse than hull "
        "| choice | ms per mask |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"].values():
        choice = ", ".join(f"{k} {v}" for k, v in row["choice"].items())
        lines.append(
            f"| {row['kind']} | {row['thickness']} | {row['worst_keep']:.3f} ({row['worst_keep_angle']}°) "
            f"| {row['worst_add']:.3f} ({row['worst_add_angle']}°) | {row['angles_failing']} / {len(ANGLES)} "
            f"| {row['worse_than_hull']} | {choice} | {row['ms_per_mask']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> validation.CommandLineParser:
    parser = validation.CommandLineParser(prog="python -m eval.bench_thin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="reports", help="output directory (default reports/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        runs.check_writable(args.out)
        r = run(args.out, " ".join(["python -m eval.bench_thin", *argv]))
    except (OSError, ValueError) as err:
        parser.fail(err)
    failing = sum(row["angles_failing"] for row in r["rows"].values())
    worse = sum(row["worse_than_hull"] for row in r["rows"].values())
    print(f"{failing} masks fail keep >= 95% / add <= 5%, {worse} worse than the hull")
    print(f"report in {args.out}/thin_shapes.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
