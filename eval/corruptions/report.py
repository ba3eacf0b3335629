"""Tables and figures of the corruption benchmark.

Writes into the output directory, for a run at one severity S:

    corruptions_sev{S}.csv        one row per image x condition x method
    corruptions_sev{S}.md         mean IoU in the paper's layout + ΔIoU + run metadata
    corruptions_sev{S}.json       run metadata (machine-readable)
    corruptions_sev{S}_bars.png   mean IoU per condition, grouped by method
    corruptions_sev{S}_delta.png  per-image ΔIoU (proj_S - raw) per condition
    corruptions_sev{S}_grid.png   a few images under every condition with contours

and for a sweep over several severities:

    corruptions_sweep.csv         one row per image x condition x severity x method
                                  (clean rows: severity 0)
    corruptions_sweep.md          mean IoU per method x condition x severity, and the mean
                                  ΔIoU proj_S − raw with its 95% CI per severity
    corruptions_sweep.json        run metadata
    corruptions_sweep_curves.png  mean IoU vs severity per condition, a line per method

Every figure carries the run's model, checkpoint, dataset, severity, seed, package
versions and machine in its title and footnote.
"""

from __future__ import annotations

import datetime
import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from eval import runs
from eval.corruptions import strata
from eval.corruptions.corrupt import CORRUPTION_SETS
from eval.corruptions.methods import METHODS, method_labels
from eval.metrics import TIE, bootstrap_ci, mean_table, paired_delta, paired_summary

# Column titles in the paper's order and naming.
TITLES = {
    "clean": "Clean",
    "spatter": "Spatter",
    "contrast": "Contrast",
    "brightness": "Brightness",
    "impulse_noise": "Impulse",
    "shot_noise": "Shot",
    "gaussian_noise": "Gaussian",
    "defocus_blur": "Defocus",
    "glass_blur": "Glass",
    # imagecorruptions' other corruptions ("common" and "all" sets), in its order.
    "motion_blur": "Motion",
    "zoom_blur": "Zoom",
    "snow": "Snow",
    "frost": "Frost",
    "fog": "Fog",
    "elastic_transform": "Elastic",
    "pixelate": "Pixelate",
    "jpeg_compression": "JPEG",
    "speckle_noise": "Speckle",
    "gaussian_blur": "Gaussian blur",
    "saturate": "Saturate",
}
# Published mean IoU (poster; SAM on the convexity dataset, severity 5), per condition
# of POSTER_CONDITIONS.
POSTER_CONDITIONS = ("clean", *CORRUPTION_SETS["paper"])
POSTER_IOU = {
    "SAM": [0.728, 0.563, 0.649, 0.646, 0.533, 0.630, 0.625, 0.733, 0.719],
    "proj_S(SAM)": [0.741, 0.582, 0.660, 0.652, 0.550, 0.637, 0.636, 0.743, 0.732],
}
# The CSV's columns, in order, each as its value for one (record, method) of a run:
# a record is `items.evaluate_item`'s, `run` holds the run's seed, segmenter, dataset,
# prompt and severity (None: each record's own; clean rows then have severity 0).
Column = Callable[[dict, str, dict], object]
COLUMNS: dict[str, Column] = {
    "image": lambda r, m, run: r["image"],
    "condition": lambda r, m, run: r["condition"],
    "severity": lambda r, m, run: r["severity"] if run["severity"] is None else run["severity"],
    "method": lambda r, m, run: m,
    "iou": lambda r, m, run: r["iou"][m],
    "seed": lambda r, m, run: r["seeds"][m],
    "base_seed": lambda r, m, run: run["seed"],
    "model": lambda r, m, run: run["segmenter"].kind,
    "checkpoint": lambda r, m, run: run["segmenter"].checkpoint,
    "dataset": lambda r, m, run: run["dataset"],
    "prompt": lambda r, m, run: run["prompt"],
    "pred_area": lambda r, m, run: r["area"][m],
    "gt_area": lambda r, m, run: r["gt_area"],
    # the raw mask's solidity, for the "when does proj_S help?" section (NaN in older caches)
    "raw_solidity": lambda r, m, run: r.get("raw_solidity", float("nan")),
}


def results_table(
    records: list[dict], seed: int, segmenter, dataset: str, prompt: str, severity: int | None = None
) -> pd.DataFrame:
    """The CSV: one row per (record, method) with the COLUMNS. With `severity`, every
    row gets it (clean included: a one-severity report); else clean rows have severity 0."""
    run = dict(seed=seed, segmenter=segmenter, dataset=dataset, prompt=prompt, severity=severity)
    return pd.DataFrame([{c: value(r, m, run) for c, value in COLUMNS.items()} for r in records for m in METHODS])


def run_metadata(
    segmenter,
    dataset: str,
    data,
    samples: int,
    severities: tuple[int, ...],
    seed: int,
    prompt: str,
    num_points: int,
    projector,
    wall_s: float,
    computed: int,
    items: int,
    compute_s: float,
    executor: str = "serial",
    split: str | None = None,
    max_side: int | None = None,
    empty_gt: int = 0,
) -> dict:
    """Everything a reader needs to reproduce or judge a run (JSON-able)."""
    return {
        "model": segmenter.label,
        "model_id": segmenter.kind,
        "model_description": segmenter.description,
        "checkpoint": segmenter.checkpoint,
        "dataset": dataset,
        "data": str(data) if data else "(generated, cached)" if dataset == "scenes" else None,
        "images": samples,
        "split": split,
        "max_side": max_side,
        "empty_gt": empty_gt,
        "severity": severities[0] if len(severities) == 1 else ", ".join(map(str, severities)),
        "severities": list(severities),
        "seed": seed,
        "prompt": prompt,
        "num_points": num_points,
        "projector": repr(projector),
        "wall_s": round(wall_s, 2),
        "computed": computed,
        "items": items,
        "compute_s": round(compute_s, 2),
        "executor": executor,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": runs.versions(),
        "machine": runs.machine(projector.device),
    }


def footnote(meta: dict) -> str:
    """One line of run metadata for figures."""
    vers = ", ".join(
        f"{k} {v}"
        for k, v in meta["versions"].items()
        if k in ("sam-convex", "torch", "segment-anything", "imagecorruptions", "scikit-image")
    )
    return (
        f"model {meta['model']} | checkpoint {Path(meta['checkpoint']).name} | dataset "
        f"{meta['dataset']} ({meta['images']} images) | severity {meta['severity']} | seed "
        f"{meta['seed']} | prompt {meta['prompt']} | {meta['machine']} | {vers}"
    )


def write_report(
    df: pd.DataFrame,
    conditions: list[str],
    out: Path,
    severity: int,
    meta: dict,
    samples,
    grid_masks: dict,
    grid_images: dict,
) -> dict[str, Path]:
    """Write CSV, markdown, metadata JSON and the three figures; return their paths.

    Args:
        df: long table (columns image, condition, method, iou, ...).
        conditions: column order ("clean" first).
        grid_masks: (image name, condition) -> {method: (H, W) bool} for the grid figure.
        grid_images: (image name, condition) -> (H, W, 3) uint8 image as the predictor saw it.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"corruptions_sev{severity}"
    paths = {
        "csv": stem.with_suffix(".csv"),
        "markdown": stem.with_suffix(".md"),
        "meta": stem.with_suffix(".json"),
        "bars": Path(f"{stem}_bars.png"),
        "deltas": Path(f"{stem}_delta.png"),
        "grid": Path(f"{stem}_grid.png"),
    }
    df.to_csv(paths["csv"], index=False, float_format="%.6f")
    paths["meta"].write_text(json.dumps(meta, indent=2))
    means = mean_table(df, list(METHODS), conditions)
    delta = paired_delta(df, "proj_S", "raw", conditions, seed=meta["seed"])
    paths["markdown"].write_text(markdown(means, delta, conditions, meta) + strata.markdown(df, seed=meta["seed"]))
    plot_bars(means, conditions, meta, paths["bars"])
    plot_deltas(df, delta, conditions, meta, paths["deltas"])
    plot_grid(samples, grid_masks, grid_images, conditions, meta, paths["grid"])
    return paths


def markdown(means: pd.DataFrame, delta: pd.DataFrame, conditions: list[str], meta: dict) -> str:
    """The report: mean IoU table (methods x conditions), ΔIoU row, paper rows, metadata."""
    labels = method_labels(meta["model"])
    head = ["Method"] + [TITLES.get(c, c) for c in conditions]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, row in means.iterrows():
        cells = [f"{v:.3f}" if np.isfinite(v) else "–" for v in row]
        lines.append(f"| {labels[method]} | " + " | ".join(cells) + " |")
    cells = [f"{d.delta:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}]" if d.n else "–" for d in delta.itertuples()]
    lines.append("| **Δ proj_S − raw** [95% CI] | " + " | ".join(cells) + " |")
    cells = [f"{d.wins}/{d.ties}/{d.losses}" if d.n else "–" for d in delta.itertuples()]
    lines.append("| proj_S vs raw: wins/ties/losses | " + " | ".join(cells) + " |")
    paper_cols = list(POSTER_CONDITIONS)
    for name, values in POSTER_IOU.items():
        cells = [f"{values[paper_cols.index(c)]:.3f}" if c in paper_cols else "–" for c in conditions]
        lines.append(f"| *paper: {name}* | " + " | ".join(cells) + " |")
    cells = [
        f"{POSTER_IOU['proj_S(SAM)'][paper_cols.index(c)] - POSTER_IOU['SAM'][paper_cols.index(c)]:+.3f}"
        if c in paper_cols
        else "–"
        for c in conditions
    ]
    lines.append("| *paper: Δ* | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    vers = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    n_images = meta["images"]
    return f"""# Corruption benchmark, severity {meta["severity"]}: {meta["model"]} vs proj_S({meta["model"]})

Mean IoU over {n_images} images of the `{meta["dataset"]}` dataset. Every column is one
condition (clean, or one imagecorruptions corruption at severity {meta["severity"]}); in each
column all methods post-process the *same* prediction of {meta["model"]} per image.

{table}

- **Δ proj_S − raw**: mean over images of IoU(proj_S) − IoU(raw), paired by image, with a
  95% bootstrap confidence interval of that mean (scipy.stats.bootstrap, BCa, 10,000
  resamples, seed {meta["seed"]}). wins/ties/losses count images with Δ ≥ {TIE:g} /
  |Δ| < {TIE:g} / Δ ≤ −{TIE:g}.
- IoU = |P ∩ G| / |P ∪ G|; 1.0 when prediction and ground truth are both empty, 0.0 for an
  empty prediction of a non-empty object.
- *paper* rows: the published numbers (poster; SAM on the convexity dataset of Gorelick et
  al., severity 5), for reference only: they come from a different model, dataset and
  prompt protocol unless this run used SAM on that dataset.

## Run

- model: {meta["model_description"]}
- checkpoint: {meta["checkpoint"]}
- dataset: {meta["dataset"]} ({n_images} images; data: {meta["data"]}; split: {meta.get("split") or "-"};
  longer side at most {meta.get("max_side") or "full resolution"} px; empty ground truths: {meta.get("empty_gt", 0)})
- prompt: {meta["prompt"]} ({meta["num_points"]} per class for points)
- severity: {meta["severity"]}; base seed: {meta["seed"]} (per image/condition/method seeds derived from it)
- projector: `{meta["projector"]}`
- items (image × condition): {meta["items"]} ({meta["computed"]} computed in this invocation, the rest from the cache)
- wall time of this invocation: {meta["wall_s"]:.1f} s; summed per-item compute time (incl. cached
  items): {meta["compute_s"]:.1f} s
- date: {meta["date"]}
- machine: {meta["machine"]}
- versions: {vers}
"""


def _footer(fig, meta: dict) -> None:
    width = int(fig.get_figwidth() * 17)  # characters that fit at fontsize 7
    fig.text(0.5, 0.005, textwrap.fill(footnote(meta), width), ha="center", va="bottom", fontsize=7, color="0.3")


def save_figure(fig, meta: dict, path: Path, rect: tuple, dpi: int) -> None:
    """Lay out, add the run's footnote, write the PNG, free the figure."""
    fig.tight_layout(rect=rect)
    _footer(fig, meta)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def plot_bars(means: pd.DataFrame, conditions: list[str], meta: dict, path: Path) -> None:
    """Grouped bars: mean IoU per condition, one bar per method."""
    labels = method_labels(meta["model"])
    fig, ax = plt.subplots(figsize=(12, 4.8))
    x = np.arange(len(conditions))
    width = 0.8 / len(means.index)
    for k, method in enumerate(means.index):
        ax.bar(
            x + (k - (len(means.index) - 1) / 2) * width,
            means.loc[method].to_numpy(),
            width,
            label=labels[method],
            color=METHODS[method].colour,
        )
    ax.set_xticks(x, [TITLES.get(c, c) for c in conditions])
    ax.set_ylabel("mean IoU")
    ax.set_ylim(0, 1)
    ax.legend(ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    ax.set_title(
        f"Mean IoU, severity {meta['severity']}: {meta['model']} "
        f"(checkpoint {Path(meta['checkpoint']).name}) on {meta['dataset']}, "
        f"{meta['images']} images, seed {meta['seed']}"
    )
    save_figure(fig, meta, path, rect=(0, 0.05, 1, 1), dpi=120)


def plot_deltas(df: pd.DataFrame, delta: pd.DataFrame, conditions: list[str], meta: dict, path: Path) -> None:
    """Per condition: violin of per-image ΔIoU (proj_S − raw), the points, and the mean
    with its 95% bootstrap CI."""
    fig, ax = plt.subplots(figsize=(12, 4.8))
    rng = np.random.default_rng(0)  # jitter only
    for k, cond in enumerate(conditions):
        sub = df[df["condition"] == cond].pivot_table(index="image", columns="method", values="iou", aggfunc="first")
        if "proj_S" not in sub or "raw" not in sub:
            continue
        d = (sub["proj_S"] - sub["raw"]).dropna().to_numpy()
        if len(d) >= 2 and np.ptp(d) > 0:
            parts = ax.violinplot(d, positions=[k], widths=0.8, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor("tab:blue")
                body.set_alpha(0.2)
        ax.scatter(k + rng.uniform(-0.15, 0.15, len(d)), d, s=8, color="k", alpha=0.5, zorder=3)
        row = delta.loc[cond]
        if row["n"]:
            ax.errorbar(
                [k + 0.3],
                [row["delta"]],
                yerr=[[row["delta"] - row["lo"]], [row["hi"] - row["delta"]]],
                fmt="o",
                color="tab:blue",
                capsize=4,
                zorder=4,
            )
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(np.arange(len(conditions)), [TITLES.get(c, c) for c in conditions])
    ax.set_ylabel("ΔIoU = IoU(proj_S) − IoU(raw) per image")
    ax.set_title(
        f"Per-image ΔIoU (blue: mean, 95% bootstrap CI), severity {meta['severity']}: "
        f"{meta['model']} on {meta['dataset']}, {meta['images']} images, seed {meta['seed']}"
    )
    save_figure(fig, meta, path, rect=(0, 0.05, 1, 1), dpi=120)


def plot_grid(samples, grid_masks: dict, grid_images: dict, conditions: list[str], meta: dict, path: Path) -> None:
    """Rows: the first few images; columns: conditions. Each cell shows the image as the
    predictor saw it with the contours of GT (green), raw (red) and proj_S (blue)."""
    names = [s.name for s in samples if all((s.name, c) in grid_masks for c in conditions)]
    gts = {s.name: s.gt for s in samples}
    rows, cols = max(1, len(names)), len(conditions)
    fig, axes = plt.subplots(rows, cols, figsize=(max(7.0, 2.1 * cols), 1.75 * rows + 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, name in enumerate(names):
        for j, cond in enumerate(conditions):
            ax = axes[i, j]
            ax.imshow(grid_images[(name, cond)])
            masks = grid_masks[(name, cond)]
            for mask, color in ((gts[name], "lime"), (masks["raw"], "red"), (masks["proj_S"], "deepskyblue")):
                if mask.any() and not mask.all():
                    ax.contour(mask.astype(float), levels=[0.5], colors=color, linewidths=0.8)
            if i == 0:
                ax.set_title(TITLES.get(cond, cond), fontsize=9)
            if j == 0:
                ax.text(-0.05, 0.5, name, transform=ax.transAxes, rotation=90, ha="right", va="center", fontsize=8)
    labels = method_labels(meta["model"])
    handles = [
        Line2D([], [], color="lime", label="ground truth"),
        Line2D([], [], color="red", label=labels["raw"]),
        Line2D([], [], color="deepskyblue", label=labels["proj_S"]),
    ]
    fig.suptitle(
        f"Severity {meta['severity']}: {meta['model']} "
        f"(checkpoint {Path(meta['checkpoint']).name}) on {meta['dataset']}, seed {meta['seed']}",
        fontsize=10,
    )
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=3, fontsize=8, frameon=False)
    save_figure(fig, meta, path, rect=(0, 0.07, 1, 0.9), dpi=110)


# ---------------------------------------------------------------------------- sweeps


def write_sweep_report(
    df: pd.DataFrame, conditions: list[str], severities: tuple[int, ...], out: Path, meta: dict
) -> dict[str, Path]:
    """Write a sweep's CSV, metadata, markdown and robustness curves; return the paths.

    Args:
        df: long table (columns image, condition, severity, method, iou, ...); clean
            rows have severity 0.
        conditions: "clean" first, then the corruptions in report order.
    """
    stem = Path(out) / "corruptions_sweep"
    paths = {
        "csv": stem.with_suffix(".csv"),
        "markdown": stem.with_suffix(".md"),
        "meta": stem.with_suffix(".json"),
        "curves": Path(f"{stem}_curves.png"),
    }
    stem.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(paths["csv"], index=False, float_format="%.6f")
    paths["meta"].write_text(json.dumps(meta, indent=2))
    deltas = severity_deltas(df, severities, meta["seed"])
    paths["markdown"].write_text(sweep_markdown(df, conditions, severities, deltas, meta))
    plot_curves(df, conditions, severities, meta, paths["curves"])
    return paths


def severity_deltas(df: pd.DataFrame, severities: tuple[int, ...], seed: int) -> pd.DataFrame:
    """Per severity (0 = clean): mean over images of IoU(proj_S) − IoU(raw), each image's
    difference averaged over the corruptions first (images are the independent units),
    with its 95% bootstrap CI and wins/ties/losses over images."""
    rows = []
    for severity in (0, *severities):
        sub = df[df["severity"] == severity].pivot_table(
            index=["image", "condition"], columns="method", values="iou", aggfunc="first"
        )
        per_image = (sub["proj_S"] - sub["raw"]).groupby(level="image").mean().to_numpy()
        rows.append({"severity": severity, **paired_summary(per_image, seed=seed)})
    return pd.DataFrame(rows).set_index("severity")


def sweep_tables(
    df: pd.DataFrame, conditions: list[str], severities: tuple[int, ...], deltas: pd.DataFrame, model: str
) -> tuple[list[str], list[str], list[str]]:
    """The sweep report's three tables as markdown lines: mean IoU per method and
    severity; Δ proj_S − raw per severity; mean IoU per condition, method and severity."""
    labels = method_labels(model)
    methods = [m for m in labels if m in set(df["method"])]
    columns = ["clean", *map(str, severities)]
    head = "| Method | " + " | ".join(["Clean", *(f"Severity {s}" for s in severities)]) + " |"
    overall = [head, "|" + "---|" * (len(columns) + 1)]
    for m in methods:
        cells = [
            df[(df["method"] == m) & (df["severity"] == (0 if c == "clean" else int(c)))].iou.mean() for c in columns
        ]
        overall.append(f"| {labels[m]} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    delta_rows = ["| severity | Δ proj_S − raw [95% CI] | wins / ties / losses (images) |", "|---|---|---|"]
    for severity, d in deltas.iterrows():
        name = "clean" if severity == 0 else str(severity)
        delta_rows.append(
            f"| {name} | {d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] | "
            f"{d['wins']:.0f} / {d['ties']:.0f} / {d['losses']:.0f} |"  # counts (the row's Series is float)
        )
    detail = ["| Condition | Method | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 2)]
    clean = df[df["severity"] == 0].groupby("method").iou.mean()
    for condition in conditions[1:]:
        sub = df[df["condition"] == condition].groupby(["method", "severity"]).iou.mean()
        for m in methods:
            cells = [f"{clean[m]:.3f}"] + [f"{sub.get((m, s), float('nan')):.3f}" for s in severities]
            detail.append(f"| {TITLES.get(condition, condition)} | {labels[m]} | " + " | ".join(cells) + " |")
    return overall, delta_rows, detail


def sweep_markdown(
    df: pd.DataFrame, conditions: list[str], severities: tuple[int, ...], deltas: pd.DataFrame, meta: dict
) -> str:
    """The sweep's report: overall means per severity, Δ with CI per severity, then mean
    IoU per condition x method x severity, and the run block."""
    overall, delta_rows, detail = sweep_tables(df, conditions, severities, deltas, meta["model"])
    vers = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    return "\n".join(
        [
            f"# Corruption sweep: {meta['model']} vs proj_S({meta['model']}), severities {meta['severity']}",
            "",
            f"Mean IoU over {meta['images']} images of the `{meta['dataset']}` dataset and over the corruptions "
            f"{', '.join(TITLES.get(c, c) for c in conditions[1:])}; in every cell all methods post-process the same "
            f"prediction of {meta['model']}. Clean is the same for every severity (computed once).",
            "",
            *overall,
            "",
            "## ΔIoU proj_S − raw per severity",
            "",
            "Per image, IoU(proj_S) − IoU(raw) averaged over the corruptions, then the mean over images with a 95% "
            f"bootstrap CI (BCa, seed {meta['seed']}); wins/ties/losses count images with Δ ≥ {TIE:g} / "
            f"|Δ| < {TIE:g} / Δ ≤ −{TIE:g}.",
            "",
            *delta_rows,
            "",
            "## Mean IoU per condition, method and severity",
            "",
            *detail,
            "",
            "## Run",
            "",
            f"- model: {meta['model_description']}",
            f"- checkpoint: {meta['checkpoint']}",
            f"- dataset: {meta['dataset']} ({meta['images']} images; data: {meta['data']})",
            f"- prompt: {meta['prompt']} ({meta['num_points']} per class for points)",
            f"- severities: {meta['severity']}; base seed: {meta['seed']}",
            f"- projector: `{meta['projector']}`",
            f"- items: {meta['items']} ({meta['computed']} computed in this invocation on {meta['executor']}, the rest "
            "from the cache)",
            f"- wall time of this invocation: {meta['wall_s']:.1f} s; summed per-item compute time: "
            f"{meta['compute_s']:.1f} s",
            f"- date: {meta['date']}",
            f"- machine: {meta['machine']}",
            f"- versions: {vers}",
            "",
        ]
    )


def plot_curves(df: pd.DataFrame, conditions: list[str], severities: tuple[int, ...], meta: dict, path: Path) -> None:
    """Mean IoU vs severity (0 = clean) per corruption, a line per method with a 95%
    bootstrap band over images."""
    labels = method_labels(meta["model"])
    methods = [m for m in labels if m in set(df["method"])]
    corrupted = conditions[1:]
    cols = min(4, len(corrupted))
    rows = -(-len(corrupted) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows + 1.0), squeeze=False, sharey=True)
    xs = [0, *severities]
    clean = df[df["severity"] == 0]
    for ax, condition in zip(axes.flat, corrupted):
        sub = df[df["condition"] == condition]
        for m in methods:
            points = [clean[clean["method"] == m].iou.to_numpy()]
            points += [sub[(sub["method"] == m) & (sub["severity"] == s)].iou.to_numpy() for s in severities]
            means = [p.mean() for p in points]
            bands = [bootstrap_ci(p, seed=meta["seed"], n_resamples=2000) for p in points]
            ax.plot(xs, means, marker="o", ms=3, color=METHODS[m].colour, label=labels[m])
            ax.fill_between(xs, [b[0] for b in bands], [b[1] for b in bands], color=METHODS[m].colour, alpha=0.12)
        ax.set_title(TITLES.get(condition, condition), fontsize=9)
        ax.set_xticks(xs, ["clean", *map(str, severities)], fontsize=7)
        ax.set_ylim(0, 1)
    spare = list(axes.flat)[len(corrupted) :]
    for ax in spare:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    height = fig.get_figheight()
    title_y = 1 - 0.12 / height  # inches from the top, whatever the number of rows
    fig.suptitle(
        f"Mean IoU vs severity (band: 95% bootstrap CI over images): {meta['model']} "
        f"(checkpoint {Path(meta['checkpoint']).name}) on {meta['dataset']}, {meta['images']} images, "
        f"seed {meta['seed']}",
        fontsize=10,
        y=title_y,
        va="top",
    )
    if spare:  # the legend fills an empty cell of the grid
        spare[0].legend(handles, names, loc="center", fontsize=8, frameon=False)
        top = 1 - 0.45 / height
    else:  # or a band under the title
        fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.4 / height), ncol=3, fontsize=8)
        top = 1 - 1.0 / height
    save_figure(fig, meta, path, rect=(0, 0.45 / height, 1, top), dpi=100)


def redraw_sweep_curves(out: str | Path) -> Path:
    """Redraw corruptions_sweep_curves.png in `out` from the sweep's CSV and metadata
    JSON there (no item is recomputed; the figure keeps the run's provenance)."""
    stem = Path(out) / "corruptions_sweep"
    df = pd.read_csv(stem.with_suffix(".csv"))
    meta = json.loads(stem.with_suffix(".json").read_text())
    path = Path(f"{stem}_curves.png")
    plot_curves(df, list(dict.fromkeys(df["condition"])), tuple(meta["severities"]), meta, path)
    return path
