"""`python -m eval.bench_amg_gate`: which masks the convex AMGs should project, measured.

An automatic mask generator segments everything, non-convex things too, and projecting
a ring or an L onto a convex set destroys it; `sam_convex.amg` therefore projects only
the masks whose gate value reaches a threshold. This command measures the gate on 256x256
binary masks (what the AMGs see) whose truth is known:

* convex damaged: the embedded scenes' objects damaged as in the projection benchmark
  (`sam_convex.synthetic.damaged_objects`: a bite, a hole, islands, ragged soft edges),
  binarised at 0.5; truth: the undamaged object;
* convex ragged: the same objects with the same ragged edges only (a clean AMG mask);
* non-convex: rings, L-shapes and two separate objects with the same kind of ragged
  edges; truth: the clean shape.

Every group is projected in one batched `ConvexProjector(threads=1)` fit; a gate at
threshold t keeps the projection of the masks whose gate value is >= t and the raw mask
of the others, and scores the mean IoU to the truth. Two gates: plain solidity (area /
convex-hull area) and major-component solidity (`sam_convex.amg.major_solidity`: islands
ignored, two objects not). Balanced score: the mean of convex damaged and non-convex (the
two kinds the gate must tell apart); convex ragged shows the cost on clean masks. The
balanced score is measured again on `--check-seeds` fresh sets of masks (seeds seed+1,
...), so that a near-tie on one sample can be told from a consistent difference. The
report compares the library's gate and DEFAULT_MIN_SOLIDITY with the best of the run.
Writes <out>/amg_gate.{md,json}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from eval import runs
from eval.bench_projection import scene_targets
from eval.metrics import iou
from sam_convex import ConvexProjector, validation
from sam_convex.amg import DEFAULT_MIN_SOLIDITY, major_solidity, solidity
from sam_convex.synthetic import MASK_SIZE, NONCONVEX_KINDS, nonconvex_shapes

# Thresholds tried; 0 projects every mask. "none" (no mask projected) is added as a row.
THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.825, 0.85, 0.875, 0.9, 0.925, 0.95, 0.975)
GATES = {"solidity": solidity, "major-component solidity": major_solidity}
LIBRARY_GATE = "major-component solidity"  # what sam_convex.amg.project_records uses
KIND_NAMES = {"ring": "a ring", "L": "an L-shape", "two_objects": "a two-object mask"}
GROUPS = ("convex_damaged", "convex_ragged", "nonconvex", *(f"nonconvex:{k}" for k in NONCONVEX_KINDS))
# Balanced-score differences below this are near-ties: neighbouring thresholds differ by
# about this much from one seed to the next.
NEAR_TIE = 0.002


# ---------------------------------------------------------------------------- masks


def mask_groups(convex: int, per_kind: int, seed: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """{group: (raw (N, 256, 256) bool, truths (N, 256, 256) bool)} for convex_damaged,
    convex_ragged and nonconvex, and the non-convex masks' kinds."""
    damaged, truths = scene_targets(convex, seed)
    clean, _ = scene_targets(convex, seed, damaged=False)
    kinds, raw, shapes = nonconvex_shapes(per_kind, seed)
    groups = {"convex_damaged": (damaged > 0.5, truths), "convex_ragged": (clean > 0.5, truths)}
    groups["nonconvex"] = (raw, shapes)
    return groups, kinds


# ---------------------------------------------------------------------------- measurement


def measure(raw: np.ndarray, truths: np.ndarray, projector: ConvexProjector) -> tuple[dict[str, list], float]:
    """Per mask of one group: both gate values of the raw mask, IoU(raw, truth) and
    IoU(projection, truth), the projection being one batched fit of the whole group.

    Args:
        raw, truths: (N, H, W) bool.
    Returns:
        ({"solidity", "major-component solidity", "iou_raw", "iou_proj": N floats each},
        seconds of the batched fit).
    """
    start = time.perf_counter()
    projected = projector(raw)
    seconds = time.perf_counter() - start
    rows = {name: [gate(m) for m in raw] for name, gate in GATES.items()}
    rows["iou_raw"] = [iou(r, t) for r, t in zip(raw, truths)]
    rows["iou_proj"] = [iou(p, t) for p, t in zip(projected, truths)]
    return rows, seconds


def gated(rows: dict[str, list], gate: str, t: float | None) -> tuple[float, float]:
    """(mean IoU to the truth, share projected) when masks with gate value >= t are
    projected and the others kept; t None: none projected."""
    chosen = np.array([t is not None and v >= t for v in rows[gate]])
    ious = np.where(chosen, rows["iou_proj"], rows["iou_raw"])
    return float(ious.mean()), float(chosen.mean())


def gate_table(results: dict[str, dict[str, list]], gate: str) -> list[dict]:
    """One row per threshold (and "none"): per group mean IoU and share projected, and
    the balanced score (convex damaged + non-convex) / 2."""
    table = []
    for t in (*THRESHOLDS, None):
        row: dict = {"threshold": t}
        for group in GROUPS:
            row[group], row[f"{group}:projected"] = gated(results[group], gate, t)
        row["balanced"] = (row["convex_damaged"] + row["nonconvex"]) / 2
        table.append(row)
    return table


def measure_seed(convex: int, per_kind: int, seed: int, projector: ConvexProjector) -> tuple[dict, dict, list]:
    """`measure` on every group of one seed's masks.

    Returns:
        {group: per-mask rows} for GROUPS (the non-convex kinds split out too),
        {group: seconds of its batched fit}, and the non-convex masks' kinds.
    """
    groups, kinds = mask_groups(convex, per_kind, seed)
    results, seconds = {}, {}
    for name, (raw, truths) in groups.items():
        results[name], seconds[name] = measure(raw, truths, projector)
    for kind in NONCONVEX_KINDS:
        pick = [i for i, k in enumerate(kinds) if k == kind]
        results[f"nonconvex:{kind}"] = {key: [v[i] for i in pick] for key, v in results["nonconvex"].items()}
    return results, seconds, kinds


def run(
    convex: int = 50,
    per_kind: int = 20,
    seed: int = 0,
    check_seeds: int = 3,
    out: Path = Path("reports"),
    command: str = "",
) -> dict:
    """Measure both gates on the same masks (and the balanced score on `check_seeds`
    more seeds) and write <out>/amg_gate.{md,json}; returns what the .json holds."""
    out = runs.check_writable(out)
    projector = ConvexProjector(threads=1)
    results, fit_seconds, kinds = measure_seed(convex, per_kind, seed, projector)
    tables = {gate: gate_table(results, gate) for gate in GATES}
    balanced = {str(seed): {gate: [row["balanced"] for row in table] for gate, table in tables.items()}}
    for other in range(seed + 1, seed + 1 + check_seeds):
        other_results = measure_seed(convex, per_kind, other, projector)[0]
        balanced[str(other)] = {gate: [row["balanced"] for row in gate_table(other_results, gate)] for gate in GATES}
    best = {
        gate: max((r for r in table if r["threshold"] is not None), key=lambda r: r["balanced"])
        for gate, table in tables.items()
    }
    default = next(r for r in tables[LIBRARY_GATE] if r["threshold"] == DEFAULT_MIN_SOLIDITY)
    percentiles = {
        gate: {
            group: np.percentile(results[group][gate], [0, 5, 25, 50, 75, 95, 100]).round(3).tolist()
            for group in GROUPS
        }
        for gate in GATES
    }
    result = {
        "convex": convex,
        "per_kind": per_kind,
        "seed": seed,
        "mask_size": MASK_SIZE,
        "projector": repr(projector),
        "thresholds": [*THRESHOLDS, None],
        "tables": tables,
        "best": best,
        "library_default": {"gate": LIBRARY_GATE, "threshold": DEFAULT_MIN_SOLIDITY, **default},
        "balanced_by_seed": balanced,
        "percentiles": percentiles,
        "fit_seconds": fit_seconds,
        "per_mask": {group: results[group] for group in ("convex_damaged", "convex_ragged", "nonconvex")},
        "nonconvex_kinds": kinds,
        "command": command,
        "machine": runs.machine(),
        "versions": runs.versions(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "amg_gate.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "amg_gate.md").write_text(markdown(result))
    return result


# ---------------------------------------------------------------------------- report


def label(t: float | None) -> str:
    """A threshold as the tables show it: "0 (all)", "0.85", "none"."""
    return "none" if t is None else "0 (all)" if t == 0 else f"{t:.3f}".rstrip("0")


def markdown(r: dict) -> str:
    """The report: both gates' tables, the balanced score by seed, the gate values, the
    default and why."""
    lines = [
        "# AMG gate: which masks the convex automatic mask generators project",
        "",
        f"Produced by `{r['command']}` on {r['machine']}, {r['date']}; seed {r['seed']}. Versions: "
        f"{', '.join(f'{k} {v}' for k, v in r['versions'].items())}.",
        "",
        f"Masks ({r['mask_size']}x{r['mask_size']}, binary, as an automatic mask generator returns them): "
        f"{r['convex']} convex objects of the embedded scenes damaged as in the projection benchmark (a bite, a "
        "hole, 1-3 islands, ragged edges; `sam_convex.synthetic.damaged_objects` binarised at 0.5), the same "
        f"objects with the same ragged edges only, and {3 * r['per_kind']} non-convex masks ({r['per_kind']} "
        "rings, L-shapes and two-object masks, ragged edges). Truth: the undamaged object / the clean shape. "
        f"Each group is projected in one batched `{r['projector']}` fit; a gate at threshold t keeps the "
        "projection of the masks whose gate value is >= t and the raw mask of the others. Cells: mean IoU to "
        "the truth (share of masks projected). Balanced = (convex damaged + non-convex) / 2, the two kinds the "
        "gate must tell apart; convex ragged shows what the gate costs on clean masks.",
    ]
    lines += gate_tables(r) + seed_table(r) + percentile_table(r)
    lines += ["", "## The default", "", *choice_text(r)]
    lines += [
        "",
        "Batched fit per group (1 thread): "
        + ", ".join(f"{g}: {len(r['per_mask'][g]['iou_raw'])} masks in {s:.2f} s" for g, s in r["fit_seconds"].items())
        + ".",
    ]
    return "\n".join(lines) + "\n"


def gate_tables(r: dict) -> list[str]:
    """Per gate: mean IoU and share projected per group and threshold."""
    lines = []
    for gate, table in r["tables"].items():
        what = (
            "area / convex-hull area of the whole mask"
            if gate == "solidity"
            else "the solidity of the components with at least 10% of the largest one's area: islands ignored, "
            "two objects not; `sam_convex.amg.major_solidity`"
        )
        lines += [
            "",
            f"## Gate: {gate} ({what})",
            "",
            "| threshold | convex damaged | convex ragged | non-convex (all) | rings | L-shapes | two objects "
            "| balanced |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in table:
            cells = [f"{row[g]:.3f} ({row[g + ':projected']:.0%})" for g in GROUPS]
            mark = " **best**" if row == r["best"][gate] else ""
            lines.append(f"| {label(row['threshold'])}{mark} | " + " | ".join(cells) + f" | {row['balanced']:.3f} |")
    return lines


def seed_table(r: dict) -> list[str]:
    """The balanced score of every threshold on every measured seed (none for one seed)."""
    lines = []
    seeds = list(r["balanced_by_seed"])
    if len(seeds) <= 1:
        return []
    lines += [
        "",
        "## Balanced score by seed",
        "",
        f"The same measurement on fresh masks of seeds {', '.join(seeds)} (same sizes); per gate the balanced "
        "score of each seed, then their mean.",
        "",
        "| threshold | " + " | ".join(f"{g}: seeds {', '.join(seeds)} (mean)" for g in GATES) + " |",
        "|---" * (1 + len(GATES)) + "|",
    ]
    for i, t in enumerate(r["thresholds"]):
        cells = [
            ", ".join(f"{r['balanced_by_seed'][s][g][i]:.4f}" for s in seeds) + f" ({seed_mean(r, g)[i]:.4f})"
            for g in GATES
        ]
        lines.append(f"| {label(t)} | " + " | ".join(cells) + " |")
    return lines


def percentile_table(r: dict) -> list[str]:
    """Percentiles of both gate values per group."""
    lines = []
    lines += ["", "## Gate values of the raw masks", "", "Percentiles 0 / 5 / 25 / 50 / 75 / 95 / 100.", ""]
    lines += ["| group | " + " | ".join(r["percentiles"]) + " |", "|---" * (1 + len(r["percentiles"])) + "|"]
    for group in GROUPS:
        values = [", ".join(f"{v:.3f}" for v in p[group]) for p in r["percentiles"].values()]
        lines.append(f"| {group} | " + " | ".join(values) + " |")
    return lines


def seed_mean(r: dict, gate: str) -> list[float]:
    """Mean balanced score over the measured seeds, one per threshold (and "none")."""
    return np.mean([by_gate[gate] for by_gate in r["balanced_by_seed"].values()], axis=0).tolist()


def choice_text(r: dict) -> list[str]:
    """The library's default against this run's numbers, in words."""
    gate, t, d = LIBRARY_GATE, DEFAULT_MIN_SOLIDITY, r["library_default"]
    ts = r["thresholds"]
    i_default = ts.index(t)
    b = {g: r["best"][g] for g in GATES}
    top_gate = max(GATES, key=lambda g: b[g]["balanced"])
    top = b[top_gate]
    is_best = top_gate == gate and top["threshold"] == t
    none, everything = r["tables"][gate][-1], r["tables"][gate][0]
    lines = [
        f"The library's default: **{gate} >= {label(t)}** (`sam_convex.amg.DEFAULT_MIN_SOLIDITY`, gate in "
        f"`project_records`). Rule: the gate and threshold with the best balanced score, unless a near-tie "
        f"(< {NEAR_TIE}) favours the simpler gate (plain solidity) or the more conservative threshold (higher: "
        "a non-convex mask projected is destroyed, a damaged convex mask kept only misses its repair).",
        "",
        f"- Here the default scores {d['balanced']:.3f} balanced (convex damaged {d['convex_damaged']:.3f}, "
        f"non-convex {d['nonconvex']:.3f}; convex ragged {d['convex_ragged']:.3f}, raw {none['convex_ragged']:.3f}); "
        "projecting nothing "
        f"{none['balanced']:.3f} ({none['convex_damaged']:.3f} / {none['nonconvex']:.3f}), everything "
        f"{everything['balanced']:.3f} ({everything['convex_damaged']:.3f} / {everything['nonconvex']:.3f}).",
        f"- Best of seed {r['seed']}: {top_gate} >= {label(top['threshold'])}, {top['balanced']:.4f}: "
        + ("the default." if is_best else f"the default is {top['balanced'] - d['balanced']:.4f} below it.")
        + ("" if is_best else " **The default is not this run's best: revisit DEFAULT_MIN_SOLIDITY or the gate.**"),
    ]
    other = next(g for g in GATES if g != gate)
    gaps = [max(v[gate][:-1]) - max(v[other][:-1]) for v in r["balanced_by_seed"].values()]
    lines.append(
        f"- Gate: the best {other} gate (>= {label(b[other]['threshold'])}, {b[other]['convex_damaged']:.3f} / "
        f"{b[other]['nonconvex']:.3f}, projecting {b[other]['convex_damaged:projected']:.0%} of the damaged convex "
        f"masks) is {b[gate]['balanced'] - b[other]['balanced']:.4f} below the best {gate} gate; per seed the "
        f"best {gate} minus the best {other}: {', '.join(f'{g:+.4f}' for g in gaps)}"
        + (
            " (no near-tie, so the simpler gate does not win). Islands count in plain solidity and keep damaged "
            "convex masks from being projected; rings, L-shapes and two objects of comparable size score the "
            "same under both gates."
            if min(gaps) >= NEAR_TIE
            else "."
        )
    )
    lines += near_ties(r, top["balanced"], i_default)
    value, kind = max(zip(r["per_mask"]["nonconvex"][gate], r["nonconvex_kinds"]))
    lines.append(
        f"- Margin: the highest {gate} of a non-convex mask is {value:.3f} ({KIND_NAMES[kind]}); at the default "
        f"{d['nonconvex:projected']:.0%} of the non-convex masks and {d['convex_damaged:projected']:.0%} of the "
        "damaged convex ones are projected."
    )
    return lines


def near_ties(r: dict, best: float, i_default: int) -> list[str]:
    """A line per threshold of the library's gate within NEAR_TIE of the best balanced
    score, with the default's margin over it on every seed."""
    gate, t, lines = LIBRARY_GATE, DEFAULT_MIN_SOLIDITY, []
    near = [
        (i, row)
        for i, row in enumerate(r["tables"][gate])
        if row["threshold"] is not None and i != i_default and best - row["balanced"] < NEAR_TIE
    ]
    for i, row in near:
        by_seed = {s: v[gate][i_default] - v[gate][i] for s, v in r["balanced_by_seed"].items()}
        side = "more conservative" if row["threshold"] > t else "less conservative"
        verdict = (
            "not taken: the default beats it on every seed, so the difference is consistent, not noise"
            if len(by_seed) > 1 and min(by_seed.values()) > 0
            else "the seeds do not settle it: consider it"
        )
        lines.append(
            f"- Near-tie on seed {r['seed']}: {gate} >= {label(row['threshold'])} ({side}; projects "
            f"{row['nonconvex:projected']:.0%} of the non-convex and {row['convex_damaged:projected']:.0%} of the "
            f"damaged convex masks) scores {row['balanced']:.4f}. Default minus it, per seed: "
            f"{', '.join(f'{v:+.4f}' for v in by_seed.values())} (mean over seeds {seed_mean(r, gate)[i_default]:.4f} "
            f"vs {seed_mean(r, gate)[i]:.4f}); {verdict}."
        )
    return lines


# ---------------------------------------------------------------------------- command


def build_parser() -> validation.CommandLineParser:
    parser = validation.CommandLineParser(prog="python -m eval.bench_amg_gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--convex", type=int, default=50, help="convex scene objects (default 50)")
    parser.add_argument(
        "--per-kind", type=int, default=20, help="rings, L-shapes and two-object masks each (default 20)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes and the shapes (default 0)")
    parser.add_argument(
        "--check-seeds",
        type=int,
        default=3,
        help="re-measure the balanced score on this many further seeds (default 3; 0: none)",
    )
    parser.add_argument("--out", default="reports", help="output directory (default reports/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    for name in ("convex", "per_kind"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.seed < 0 or args.check_seeds < 0:
        parser.error(f"--seed and --check-seeds must be >= 0, got {args.seed} and {args.check_seeds}")
    try:
        runs.check_writable(args.out)
        command = " ".join(["python -m eval.bench_amg_gate", *argv])
        r = run(args.convex, args.per_kind, args.seed, args.check_seeds, args.out, command)
    except (OSError, ValueError) as err:
        parser.fail(err)
    for gate, row in r["best"].items():
        print(f"{gate}: best threshold {label(row['threshold'])}, balanced {row['balanced']:.3f}")
    print(f"report in {args.out}/amg_gate.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
