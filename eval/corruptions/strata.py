"""When does proj_S help? Δ(proj_S − raw) stratified, and what kind of error it fixes.

From a one-severity results table (`harness.results_table`: one row per image x
condition x method with iou, pred_area, gt_area, raw_solidity), per item (image x
condition):

* **by raw IoU**: Δ IoU of proj_S over the raw mask in bins of the raw mask's IoU;
* **by error type**: spill = false-positive pixels outside the object, miss =
  false-negative pixels inside it; how many proj_S removes or adds, as % of the object's
  area (the intersection is recovered exactly from IoU and the two areas:
  I = IoU (|P| + |G|) / (1 + IoU));
* **by raw solidity** (area / convex-hull area of the raw mask, known without the ground
  truth): Δ IoU per bin, and the gates "project when solidity < t" and "project when
  solidity >= t" for every t, against always and never projecting. A user can apply
  such a rule; its threshold is chosen on the data of the report, so judge it on another
  dataset (docs/real-data.md does).

CIs are 95% bootstrap intervals over items (an image's corruptions are correlated, so
they are somewhat too narrow; the report's per-condition CIs are over images).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from eval.metrics import bootstrap_ci

IOU_BINS = (0.0, 0.25, 0.5, 0.7, 0.85, 1.0001)
SOLIDITY_BINS = (0.0, 0.7, 0.8, 0.9, 0.95, 1.0001)
GATES = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0001)


def item_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (image, condition): raw and proj_S IoU, spill and miss (pixels) of
    each, gt_area and raw_solidity."""
    keep = df[df.method.isin(["raw", "proj_S"])].copy()
    inter = keep.iou * (keep.pred_area + keep.gt_area) / (1 + keep.iou)
    keep["spill"] = keep.pred_area - inter
    keep["miss"] = keep.gt_area - inter
    wide = keep.pivot_table(index=["image", "condition"], columns="method", values=["iou", "spill", "miss"])
    wide.columns = [f"{a}_{b}" for a, b in wide.columns]
    extra = keep[keep.method == "raw"].set_index(["image", "condition"])[["gt_area", "raw_solidity"]]
    out = wide.join(extra).reset_index()
    out["delta"] = out.iou_proj_S - out.iou_raw
    area = out.gt_area.clip(lower=1)
    out["spill_removed_pct"] = 100 * (out.spill_raw - out.spill_proj_S) / area
    out["miss_added_pct"] = 100 * (out.miss_proj_S - out.miss_raw) / area
    return out


def _summary(group: pd.DataFrame, seed: int) -> dict:
    d = group.delta.to_numpy()
    lo, hi = bootstrap_ci(d, seed=seed) if len(d) else (np.nan, np.nan)
    return {
        "items": len(d),
        "raw IoU": group.iou_raw.mean(),
        "Δ proj_S − raw": d.mean() if len(d) else np.nan,
        "95% CI": f"[{lo:+.3f}, {hi:+.3f}]",
        "wins/losses": f"{int((d >= 1e-3).sum())}/{int((d <= -1e-3).sum())}",
        "spill removed (% GT)": group.spill_removed_pct.mean(),
        "miss added (% GT)": group.miss_added_pct.mean(),
    }


def by_bins(items: pd.DataFrame, column: str, bins: tuple, seed: int = 0) -> pd.DataFrame:
    """Summary rows of `items` in bins of `column` (left-closed)."""
    rows = []
    cut = pd.cut(items[column], bins=list(bins), right=False)
    for interval, group in items.groupby(cut, observed=True):
        hi = min(interval.right, 1.0)
        rows.append({column: f"[{interval.left:.2f}, {hi:.2f}{']' if hi == 1.0 else ')'}", **_summary(group, seed)})
    rows.append({column: "all", **_summary(items, seed)})
    return pd.DataFrame(rows)


def gate_table(items: pd.DataFrame) -> pd.DataFrame:
    """Mean IoU of "project when raw solidity < t" for every t in `GATES` (t > 1:
    always), then of "project when raw solidity >= t" (only nearly convex masks, as the
    automatic mask generators' gate does)."""
    rows = [{"rule": "never project (raw)", "mean IoU": items.iou_raw.mean(), "projected": 0.0}]
    rules = [
        (f"project when solidity < {t:.2f}" if t <= 1 else "always project", items.raw_solidity < t) for t in GATES
    ]
    rules += [(f"project when solidity >= {t:.2f}", items.raw_solidity >= t) for t in GATES if t <= 1]
    for label, use in rules:
        rows.append(
            {"rule": label, "mean IoU": np.where(use, items.iou_proj_S, items.iou_raw).mean(), "projected": use.mean()}
        )
    return pd.DataFrame(rows)


def best_gate(items: pd.DataFrame) -> tuple[str, float]:
    """The rule of `gate_table` with the highest mean IoU, and that IoU."""
    table = gate_table(items)
    row = table.loc[table["mean IoU"].idxmax()]
    return row["rule"], float(row["mean IoU"])


def _md(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table.itertuples(index=False):
        cells = [
            f"{v:+.3f}" if c == "Δ proj_S − raw" else f"{v:.3f}" if isinstance(v, float) else str(v)
            for c, v in zip(cols, row)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(df: pd.DataFrame, seed: int = 0) -> str:
    """The report's section "When does proj_S help?" (empty when the table lacks the
    raw solidity, e.g. items cached by an older version)."""
    items = item_table(df)
    if items.raw_solidity.isna().all():
        return ""
    gates = gate_table(items)
    rule, best = best_gate(items)
    always = float(gates.set_index("rule").loc["always project", "mean IoU"])
    never = float(gates["mean IoU"].iloc[0])
    return f"""
## When does proj_S help?

Every item (image × condition, clean included) of this run; Δ = IoU(proj_S) − IoU(raw).
Spill = false-positive pixels outside the object, miss = false-negative pixels inside it;
"spill removed" > 0 means proj_S cut spill away, "miss added" > 0 means it cut into the object
(both as % of the object's area, mean over items). 95% CIs are bootstrap over items.

By the raw mask's IoU:

{_md(by_bins(items, "iou_raw", IOU_BINS, seed).rename(columns={"iou_raw": "raw IoU bin"}))}

By the raw mask's solidity (area / hull area; known without ground truth):

{_md(by_bins(items, "raw_solidity", SOLIDITY_BINS, seed).rename(columns={"raw_solidity": "raw solidity bin"}))}

Rules "project when the raw mask's solidity < t" and ">= t" (mean IoU over all items):

{_md(gates)}

Best rule here: **{rule}** (mean IoU {best:.3f}; never project {never:.3f}, always {always:.3f}).
The threshold is chosen on this run's own items; docs/real-data.md checks it on the other dataset.
"""
