"""One item of the corruption benchmark, and the executor that runs items here.

An item is (image, condition, severity): the image under one condition (clean, or a
corruption at a severity) is segmented once from the sample's prompt, and every method
(`eval.corruptions.methods`) turns that same output into a mask. `evaluate_item` is pure
(everything random is seeded from the run's seed, the image, the condition and the
role), so an item's record does not depend on which process, machine or run computes
it. An executor computes a list of items: `Serial` here, `eval.corruptions.cluster.Ray`
on a Ray cluster; the caller of `harness.run` chooses one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from eval import runs
from eval.corruptions.corrupt import corrupt
from eval.corruptions.methods import METHODS
from eval.corruptions.prompts import has_positive
from eval.datasets import Sample
from eval.metrics import iou
from sam_convex import ConvexProjector, GradientProjector, baselines
from sam_convex.projectors import with_seed
from sam_convex.segmenters import Segmenter

CLEAN = "clean"
EMPTY_LOGIT = -20.0  # the prediction when the prompt has nothing positive
# finished(sample, condition, severity, record, masks), called as each item is done
Finished = Callable[[Sample, str, int, dict, dict], None]


@dataclass
class Job:
    """What every item of a run shares (shipped once to each Ray worker)."""

    seed: int
    segmenter: Segmenter
    projector: ConvexProjector | GradientProjector
    prompts: dict[str, dict]  # image name -> prompt


def condition_image(sample: Sample, condition: str, severity: int, seed: int) -> np.ndarray:
    """The (H, W, 3) uint8 image the predictor sees under `condition` (seeded)."""
    if condition == CLEAN:
        return sample.image
    return corrupt(sample.image, condition, severity, runs.derive_seed(seed, sample.name, condition, "corruption"))


def segment(
    sample: Sample, image: np.ndarray, condition: str, seed: int, segmenter: Segmenter, prompt: dict, projector
) -> tuple[np.ndarray, np.ndarray, float]:
    """Run the convex drop-in predictor once on `image` (one mask per prompt).

    Returns:
        the segmenter's raw (H, W) float32 logits, the (H, W) bool proj_S mask, and the
        projection's distance.
    """
    if not has_positive(prompt):  # nothing to point at: the prediction is empty
        logits = np.full(sample.gt.shape, EMPTY_LOGIT, np.float32)
        fit = projector.fit(logits, logits=True)
        return logits, fit.masks[0].cpu().numpy(), float(fit.losses[0])
    predictor = segmenter.convex_predictor(projector, seed=runs.derive_seed(seed, sample.name, condition, "predictor"))
    predictor.set_image(image)
    masks, _, _ = predictor.predict(**prompt, multimask_output=False)
    raw = np.asarray(torch.as_tensor(predictor.last_sam_logits).cpu(), dtype=np.float32).reshape(sample.gt.shape)
    return raw, np.asarray(masks[0]) > 0, float(predictor.last_fit.losses[0])


def evaluate_item(sample: Sample, condition: str, severity: int, job: Job) -> tuple[dict, dict]:
    """Corrupt one image, segment it once (raw logits and proj_S), post-process the raw
    mask with the baselines, score every method.

    Returns:
        (record, masks): record is JSON-able (ious, areas, seeds, timings); masks maps
        method -> (H, W) bool.
    """
    timings = {}
    t0 = time.perf_counter()
    image = condition_image(sample, condition, severity, job.seed)
    timings["corrupt"] = time.perf_counter() - t0

    seeds = {m: runs.derive_seed(job.seed, sample.name, condition, m) for m in METHODS}
    t0 = time.perf_counter()
    projector = with_seed(job.projector, seeds["proj_S"])
    logits, convex, proj_loss = segment(
        sample, image, condition, job.seed, job.segmenter, job.prompts[sample.name], projector
    )
    timings["predict_and_project"] = time.perf_counter() - t0

    raw = logits > 0
    t0 = time.perf_counter()
    masks = {name: method.apply(raw, convex) for name, method in METHODS.items()}
    timings["baselines"] = time.perf_counter() - t0
    record = {
        "image": sample.name,
        "condition": condition,
        "severity": 0 if condition == CLEAN else severity,
        "iou": {m: iou(masks[m], sample.gt) for m in METHODS},
        "area": {m: int(masks[m].sum()) for m in METHODS},
        "gt_area": int(sample.gt.sum()),
        "raw_solidity": solidity(raw),
        "seeds": seeds,
        "proj_loss": proj_loss,
        "time_s": timings,
    }
    return record, masks


def solidity(mask: np.ndarray) -> float:
    """Area / convex-hull area of a (H, W) bool mask (1.0 for an empty one)."""
    if not mask.any():
        return 1.0
    return float(mask.sum() / max(1, baselines.convex_hull(mask).sum()))


class Serial:
    """Computes items one after another in this process."""

    name = "serial"
    loads_model_here = True  # the segmenter runs in this process, on the run's device

    def __enter__(self) -> Serial:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def evaluate(self, items: list[tuple[Sample, str, int]], job: Job, finished: Finished) -> list:
        """Evaluate each (sample, condition, severity) item and call `finished` with it;
        returns the failed items (none: an error here propagates)."""
        for sample, condition, severity in items:
            finished(sample, condition, severity, *evaluate_item(sample, condition, severity, job))
        return []
