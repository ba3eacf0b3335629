"""One table over several one-severity corruption runs: `python -m eval.corruptions.summary DIR...`.

For each run directory (holding `corruptions_sev<S>.csv` and `.json` written by
`python -m eval.corruptions`): mean IoU of the raw mask, of proj_S and of the best
baseline, clean and averaged over the corruptions; Δ proj_S − raw with its 95% bootstrap
CI over images (each image's Δ averaged over the corruptions first) and wins/ties/losses.
Then the gate of `eval.corruptions.strata` ("project when the raw mask's solidity < t")
chosen on each run and applied to the others of the same model and prompt (a threshold
chosen on one dataset, judged on another). Writes markdown to stdout or `--out FILE`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from eval.corruptions import strata
from eval.corruptions.harness import CLEAN, METHODS
from eval.metrics import paired_summary

BASELINES = [m for m in METHODS if m not in ("raw", "proj_S")]


def load_run(directory: Path) -> tuple[pd.DataFrame, dict]:
    """(results table, metadata) of the one-severity run in `directory`."""
    csvs = sorted(directory.glob("corruptions_sev[0-9].csv"))
    if not csvs:
        raise FileNotFoundError(f"{directory}: no corruptions_sev<S>.csv (run python -m eval.corruptions --out there)")
    return pd.read_csv(csvs[0]), json.loads(csvs[0].with_suffix(".json").read_text())


def run_row(df: pd.DataFrame, meta: dict) -> dict:
    """The summary row of one run (see the module docstring)."""
    clean, corrupted = df[df.condition == CLEAN], df[df.condition != CLEAN]
    per_image = corrupted.groupby(["image", "method"]).iou.mean().unstack()
    clean_img = clean.pivot_table(index="image", columns="method", values="iou")
    d_clean = paired_summary((clean_img.proj_S - clean_img.raw).to_numpy(), seed=meta["seed"])
    d_corr = paired_summary((per_image.proj_S - per_image.raw).to_numpy(), seed=meta["seed"])
    baselines = [m for m in BASELINES if m in clean_img]
    best_clean = max(baselines, key=lambda m: clean_img[m].mean())
    best_corr = max(baselines, key=lambda m: per_image[m].mean())
    return {
        "dataset": meta["dataset"],
        "model": meta["model"],
        "prompt": meta["prompt"],
        "images": meta["images"],
        "clean raw": clean_img.raw.mean(),
        "clean proj_S": clean_img.proj_S.mean(),
        "clean Δ [95% CI]": f"{d_clean['mean']:+.3f} [{d_clean['lo']:+.3f}, {d_clean['hi']:+.3f}]",
        "clean best baseline": f"{best_clean} {clean_img[best_clean].mean():.3f}",
        "corrupted raw": per_image.raw.mean(),
        "corrupted proj_S": per_image.proj_S.mean(),
        "corrupted Δ [95% CI]": f"{d_corr['mean']:+.3f} [{d_corr['lo']:+.3f}, {d_corr['hi']:+.3f}]",
        "corrupted W/T/L": f"{d_corr['wins']}/{d_corr['ties']}/{d_corr['losses']}",
        "corrupted best baseline": f"{best_corr} {per_image[best_corr].mean():.3f}",
    }


def gate_transfer(runs: list[tuple[pd.DataFrame, dict]]) -> pd.DataFrame:
    """For each pair of runs with the same model and prompt on different datasets: the
    gate chosen on the first, its mean IoU on the second, beside never / always."""
    rows = []
    items = [(strata.item_table(df), meta) for df, meta in runs]
    for tune, tmeta in items:
        rule, _ = strata.best_gate(tune)
        for test, meta in items:
            if meta["dataset"] == tmeta["dataset"] or (meta["model"], meta["prompt"]) != (
                tmeta["model"],
                tmeta["prompt"],
            ):
                continue
            gates = strata.gate_table(test).set_index("rule")["mean IoU"]
            rows.append(
                {
                    "model": meta["model"],
                    "prompt": meta["prompt"],
                    "rule chosen on": tmeta["dataset"],
                    "rule": rule,
                    "applied to": meta["dataset"],
                    "never (raw)": gates.iloc[0],
                    "always (proj_S)": gates["always project"],
                    "with the rule": gates[rule],
                }
            )
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "(none)"
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def summarise(directories: list[Path]) -> str:
    runs = [load_run(Path(d)) for d in directories]
    table = pd.DataFrame([run_row(df, meta) for df, meta in runs])
    sources = "\n".join(f"- `{d}`: {meta['model_description']}" for d, (_, meta) in zip(directories, runs))
    return (
        "Mean IoU (clean; and over the corruptions, each image averaged over them first), "
        "Δ = proj_S − raw with 95% bootstrap CI over images:\n\n"
        + to_markdown(table)
        + "\n\nThe solidity gate chosen on one dataset, applied to the other (mean IoU over all items):\n\n"
        + to_markdown(gate_transfer(runs))
        + "\n\nRuns:\n"
        + sources
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.corruptions.summary", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (--out of python -m eval.corruptions)")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here (default: stdout)")
    args = parser.parse_args(argv)
    try:
        text = summarise(args.runs)
    except (OSError, ValueError, KeyError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
