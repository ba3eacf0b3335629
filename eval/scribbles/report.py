"""Tables and figure of the scribble experiment: scribbles.md and scribbles.png."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap

from eval.datasets import Sample

MODES = ("sequential", "joint")
FEATURE_LABEL = {"rgb+sem": "RGB+sem", "rgb+xy+sem": "RGB+xy+sem", "rgb": "RGB", "rgb+xy": "RGB+xy"}
# The poster's table: (mode, features, net) -> (predictor IoU, convex IoU).
POSTER_SCRIBBLE_IOU = {
    ("sequential", "rgb+sem", "cnn"): (0.726, 0.843),
    ("sequential", "rgb+sem", "fcn"): (0.714, 0.851),
    ("sequential", "rgb+xy+sem", "cnn"): (0.778, 0.766),
    ("sequential", "rgb+xy+sem", "fcn"): (0.736, 0.746),
    ("joint", "rgb+sem", "cnn"): (0.818, 0.899),
    ("joint", "rgb+sem", "fcn"): (0.635, 0.894),
    ("joint", "rgb+xy+sem", "cnn"): (0.805, 0.809),
    ("joint", "rgb+xy+sem", "fcn"): (0.768, 0.769),
}


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean IoU per (mode, features, net): columns iou_pred, iou_convex, iou_proj, n."""
    return df.groupby(["mode", "features", "net"]).agg(
        iou_pred=("iou_pred", "mean"),
        iou_convex=("iou_convex", "mean"),
        iou_proj=("iou_proj", "mean"),
        n=("iou_pred", "size"),
    )


def columns(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(features, net) pairs present in the results, in the paper's order."""
    feature_sets = [f for f in FEATURE_LABEL if f in set(df["features"])]
    return [(f, n) for f in feature_sets for n in ("cnn", "fcn") if n in set(df["net"])]


def measured(summary: pd.DataFrame, mode: str, features: str, net: str) -> tuple[float, float] | None:
    """(predictor IoU, convex IoU) of one cell, or None when it was not run."""
    key = (mode, features, net)
    return tuple(summary.loc[key, ["iou_pred", "iou_convex"]]) if key in summary.index else None


def fmt_pair(v: tuple[float, float] | None) -> str:
    return f"{v[0]:.3f} / {v[1]:.3f}" if v is not None else "–"


def fmt_delta(ours: float | None, paper: float | None) -> str:
    """'+0.012 (paper +0.030) ✓': our difference, the paper's, and whether signs agree."""
    o = f"{ours:+.3f}" if ours is not None else "–"
    p = f"{paper:+.3f}" if paper is not None else "–"
    agree = "" if ours is None or paper is None else (" ✓" if np.sign(ours) == np.sign(paper) else " ✗")
    return f"{o} (paper {p}){agree}"


def difference(a: tuple | None, b: tuple | None, i: int) -> float | None:
    return a[i] - b[i] if a is not None and b is not None else None


def iou_table(cols: list[tuple[str, str]], cell) -> list[str]:
    """Markdown rows of the paper's layout; cell(mode, features, net) -> pair or None."""
    head = "| | " + " | ".join(f"{FEATURE_LABEL[f]} {n.upper()} / convex" for f, n in cols) + " |"
    rows = [f"| {mode} | " + " | ".join(fmt_pair(cell(mode, f, n)) for f, n in cols) + " |" for mode in MODES]
    return [head, "|---" * (len(cols) + 1) + "|", *rows]


def direction_row(df: pd.DataFrame, summary: pd.DataFrame, features: str, net: str) -> str:
    """One row of the per-column comparison with the paper's direction."""
    o_seq, o_joint = measured(summary, "sequential", features, net), measured(summary, "joint", features, net)
    p_seq = POSTER_SCRIBBLE_IOU.get(("sequential", features, net))
    p_joint = POSTER_SCRIBBLE_IOU.get(("joint", features, net))
    cells = [fmt_delta(difference(o_joint, o_seq, i), difference(p_joint, p_seq, i)) for i in (0, 1)]
    cells += [
        fmt_delta(None if o is None else o[1] - o[0], None if p is None else p[1] - p[0])
        for o, p in ((o_seq, p_seq), (o_joint, p_joint))
    ]
    per_image = df[(df.features == features) & (df.net == net)].pivot(
        index="image", columns="mode", values="iou_convex"
    )
    wins = "–"
    if set(MODES) <= set(per_image.columns):
        diff = per_image["joint"] - per_image["sequential"]
        wins = (
            f"{int((diff > 0.005).sum())} / {int((diff < -0.005).sum())} / "
            f"{int((diff.abs() <= 0.005).sum())}; {diff.median():+.3f}"
        )
    return f"| {FEATURE_LABEL[features]} {net.upper()} | " + " | ".join(cells) + f" | {wins} |"


def markdown_report(df: pd.DataFrame, meta: dict) -> str:
    """scribbles.md: measured table and the paper's, both in the paper's layout, the
    per-column comparison with the paper's direction, and run metadata."""
    summary, cols = summary_table(df), columns(df)
    standin = " (offline stand-in, not the authors' learned embeddings)" if "standin" in meta["semantic_source"] else ""
    lines = [
        "# Scribble experiment: sequential vs joint convexity",
        "",
        f"Mean IoU vs ground truth, predictor (p > 0.5) / convex output, {meta['images']} images of "
        f"`{meta['dataset']}`; semantic features: **{meta['semantic_source']}**{standin}.",
        "",
        "## Measured (this run)",
        "",
        *iou_table(cols, lambda mode, f, n: measured(summary, mode, f, n)),
    ]
    proj = [summary.loc[("joint", f, n)] if ("joint", f, n) in summary.index else None for f, n in cols]
    lines.append(
        "| *joint, then proj_S (extra)* | "
        + " | ".join("–" if r is None else f"{r.iou_pred:.3f} / {r.iou_proj:.3f}" for r in proj)
        + " |"
    )
    lines += [
        "",
        "The extra row replaces the joint convex output (the regulariser's own mask over the whole "
        "image) by proj_S of the joint predictor, as in sequential mode.",
        "",
        "## Paper (poster), for comparison",
        "",
        *iou_table(cols, lambda mode, f, n: POSTER_SCRIBBLE_IOU.get((mode, f, n))),
        "",
        "## Direction per column (ours vs paper)",
        "",
        "| column | joint − sequential, predictor | joint − sequential, convex | convex − predictor, "
        "sequential | convex − predictor, joint | per image, convex: joint better / worse / tie "
        "(±0.005); median Δ |",
        "|---|---|---|---|---|---|",
    ]
    lines += [direction_row(df, summary, f, n) for f, n in cols]
    failed = {mode: int((df[df["mode"] == mode].iou_convex < 0.05).sum()) for mode in MODES}
    lines += [
        "",
        "✓: same sign as the paper, ✗: opposite sign. Convex outputs with IoU < 0.05 (missed the "
        f"object): sequential {failed['sequential']}, joint {failed['joint']} of {len(df) // 2}.",
        "",
        "## Run",
        "",
        *[f"- {k}: {v}" for k, v in meta.items()],
        "",
        "Per-row results (and per-training seconds) are in scribbles.csv.",
    ]
    return "\n".join(lines) + "\n"


def overlay_scribbles(image: np.ndarray, scribbles: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 image with background scribbles blue and foreground red."""
    out = image.copy()
    out[scribbles == 1] = (40, 90, 255)
    out[scribbles == 2] = (255, 40, 40)
    return out


def figure(
    path: Path, samples: list[Sample], masks: list[dict], rows: pd.DataFrame, net: str, features: str, footnote: str
) -> None:
    """PNG: per image, image + scribbles, then predictor / convex for both modes."""
    orange = ListedColormap(["darkorange"])
    cols = ["sequential_pred", "sequential_convex", "joint_pred", "joint_convex"]
    fig, axes = plt.subplots(len(samples), 5, figsize=(15, 2.6 * len(samples) + 0.8), squeeze=False)
    for r, (s, m) in enumerate(zip(samples, masks)):
        axes[r, 0].imshow(overlay_scribbles(s.image, s.scribbles))
        axes[r, 0].set_title(f"{s.name}: image + scribbles", fontsize=9)
        for c, key in enumerate(cols, start=1):
            mode, kind = key.split("_")
            row = rows[(rows.image == s.name) & (rows["mode"] == mode)].iloc[0]
            score = row.iou_pred if kind == "pred" else row.iou_convex
            axes[r, c].imshow(s.image, alpha=0.35)
            axes[r, c].imshow(np.ma.masked_where(~m[key], m[key]), cmap=orange, alpha=0.6, vmin=0, vmax=1)
            axes[r, c].contour(s.gt, levels=[0.5], colors="lime", linewidths=0.8)
            label = "predictor" if kind == "pred" else "convex"
            axes[r, c].set_title(f"{mode} {label}: IoU {score:.3f}", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(
        f"Scribble experiment, {net.upper()} on {FEATURE_LABEL[features]} (mask orange, ground truth green)",
        fontsize=11,
    )
    fig.text(0.01, 0.005, footnote, fontsize=7, ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
