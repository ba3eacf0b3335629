"""IoU and paired comparisons of methods over the same images.

IoU (`sam_convex.measures.iou`, re-exported here): |P & G| / |P | G|, and 1.0 when both
P and G are empty (nothing to find, nothing found). An empty prediction of a non-empty
object scores 0.0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from sam_convex.measures import iou

__all__ = ["TIE", "bootstrap_ci", "iou", "mean_table", "paired_delta", "paired_summary", "wins_ties_losses"]

TIE = 1e-3  # |ΔIoU| below this counts as a tie


def bootstrap_ci(
    values: np.ndarray, seed: int = 0, confidence: float = 0.95, n_resamples: int = 10_000
) -> tuple[float, float]:
    """Bootstrap confidence interval of the mean of `values` (scipy.stats.bootstrap, BCa,
    falling back to the percentile method where BCa is undefined). A single value or
    identical values give the degenerate interval (mean, mean)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if len(values) < 2 or np.ptp(values) == 0:
        return float(values.mean()), float(values.mean())
    for method in ("BCa", "percentile"):
        res = stats.bootstrap(
            (values,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method=method,
            rng=np.random.default_rng(seed),
        )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(lo) and np.isfinite(hi):
            return lo, hi
    return float(values.mean()), float(values.mean())


def wins_ties_losses(delta: np.ndarray, tie: float = TIE) -> tuple[int, int, int]:
    """(wins, ties, losses): delta >= tie, |delta| < tie, delta <= -tie."""
    delta = np.asarray(delta, dtype=np.float64)
    return int((delta >= tie).sum()), int((np.abs(delta) < tie).sum()), int((delta <= -tie).sum())


def mean_table(df: pd.DataFrame, methods: list[str], conditions: list[str]) -> pd.DataFrame:
    """Mean IoU, methods as rows and conditions as columns, from a long table with
    columns method, condition, iou."""
    table = df.pivot_table(index="method", columns="condition", values="iou", aggfunc="mean")
    return table.reindex(index=methods, columns=conditions)


def paired_delta(df: pd.DataFrame, method: str, baseline: str, conditions: list[str], seed: int = 0) -> pd.DataFrame:
    """Per condition, IoU(method) - IoU(baseline) paired by image.

    Args:
        df: long table with columns image, condition, method, iou.
    Returns:
        DataFrame indexed by condition with columns n, delta (mean), lo, hi (95% bootstrap
        CI of the mean), wins, ties, losses. Images missing either method are skipped.
    """
    rows = []
    for cond in conditions:
        sub = df[df["condition"] == cond].pivot_table(index="image", columns="method", values="iou", aggfunc="first")
        if method not in sub or baseline not in sub:
            rows.append({"condition": cond, "n": 0})
            continue
        delta = (sub[method] - sub[baseline]).dropna().to_numpy()
        if len(delta) == 0:
            rows.append({"condition": cond, "n": 0})
            continue
        lo, hi = bootstrap_ci(delta, seed=seed)
        wins, ties, losses = wins_ties_losses(delta)
        rows.append(
            {
                "condition": cond,
                "n": len(delta),
                "delta": float(delta.mean()),
                "lo": lo,
                "hi": hi,
                "wins": wins,
                "ties": ties,
                "losses": losses,
            }
        )
    return pd.DataFrame(rows).set_index("condition")


def paired_summary(delta: np.ndarray, seed: int = 0, tie: float = TIE) -> dict:
    """Mean of paired differences with its 95% bootstrap CI and wins/ties/losses.

    Args:
        delta: (n,) float, one difference per image (e.g. method − baseline IoU).
    Returns:
        {"n", "mean", "lo", "hi", "wins", "ties", "losses"}; wins count delta >= tie.
    """
    delta = np.asarray(delta, dtype=np.float64)
    lo, hi = bootstrap_ci(delta, seed=seed)
    wins, ties, losses = wins_ties_losses(delta, tie)
    return {
        "n": len(delta),
        "mean": float(delta.mean()),
        "lo": lo,
        "hi": hi,
        "wins": wins,
        "ties": ties,
        "losses": losses,
    }
