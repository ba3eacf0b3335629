"""The corruption benchmark's methods: one registry of what is compared.

Every method turns the segmenter's one output on an item into a mask: `apply(raw,
projected)` gets the raw (H, W) bool mask (logits > 0) and the proj_S mask of the
convex drop-in (the same call), and returns an (H, W) bool mask. `label` is the
method's display name with "{}" for the segmenter's (e.g. "hull({})" -> "hull(SAM)");
`colour` is its matplotlib colour in every figure. The order is the tables' order.

To add a method, add one entry here: the harness scores it, the cache stores it (a
cache written without it is recomputed), and every table and figure shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sam_convex import baselines


@dataclass(frozen=True)
class Method:
    apply: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (raw, projected) -> mask
    label: str  # "{}" stands for the segmenter's label
    colour: str


METHODS: dict[str, Method] = {
    "raw": Method(lambda raw, projected: raw, "{}", "tab:red"),
    "remove_small": Method(lambda raw, projected: baselines.remove_small(raw), "remove_small({})", "tab:orange"),
    "convex_hull": Method(lambda raw, projected: baselines.convex_hull(raw), "hull({})", "tab:gray"),
    "largest_component": Method(
        lambda raw, projected: baselines.largest_component(raw), "largest_component({})", "tab:olive"
    ),
    "largest_component_hull": Method(
        lambda raw, projected: baselines.largest_component_hull(raw), "hull(largest_component({}))", "tab:purple"
    ),
    "proj_S": Method(lambda raw, projected: projected, "proj_S({})", "tab:blue"),
}


def method_labels(model_label: str) -> dict[str, str]:
    """Display names of the methods, e.g. {"raw": "SAM", "proj_S": "proj_S(SAM)"}."""
    return {name: method.label.format(model_label) for name, method in METHODS.items()}
