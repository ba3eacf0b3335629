"""The corruption benchmark's run: items, per-item evaluation, cache, table.

One item is (image, condition): the image under one condition (clean or a corruption at
the run's severity) is segmented once from the sample's prompt, and every method
post-processes that same output (see `METHODS`). `evaluate_item` is pure (everything
random is seeded from the run's seed, the image, the condition and the role), so an
item's record does not depend on which process or run computes it; `run` reads finished
items from the cache, computes the rest and writes the report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from eval import runs
from eval.corruptions import report
from eval.corruptions.corrupt import CORRUPTIONS, SEVERITIES, corrupt
from eval.corruptions.prompts import PROMPTS, has_positive, make_prompt
from eval.datasets import DATASETS, Sample, load_dataset
from eval.metrics import iou
from sam_convex import ConvexProjector, GradientProjector, baselines, validation
from sam_convex.segmenters import Segmenter, choose_segmenter

METHODS = ("raw", "remove_small", "convex_hull", "proj_S")
CLEAN = "clean"
CACHE_VERSION = 1
GRID_IMAGES = 3  # images whose masks are kept for the qualitative figure
EMPTY_LOGIT = -20.0  # the prediction when the prompt has nothing positive


def condition_image(sample: Sample, condition: str, severity: int, seed: int) -> np.ndarray:
    """The (H, W, 3) uint8 image the predictor sees under `condition` (seeded)."""
    if condition == CLEAN:
        return sample.image
    return corrupt(sample.image, condition, severity, runs.derive_seed(seed, sample.name, condition, "corruption"))


def segment(
    sample: Sample,
    image: np.ndarray,
    condition: str,
    seed: int,
    segmenter: Segmenter,
    prompt: dict,
    projector: ConvexProjector,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Run the convex drop-in predictor once on `image` (one mask per prompt).

    Returns:
        the segmenter's raw (H, W) float32 logits, the (H, W) bool proj_S mask, and the
        projection's fit loss.
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


def evaluate_item(
    sample: Sample,
    condition: str,
    severity: int,
    seed: int,
    segmenter: Segmenter,
    prompt: dict,
    projector: ConvexProjector,
) -> tuple[dict, dict]:
    """Corrupt one image, segment it once (raw logits and proj_S), post-process the raw
    mask with the baselines, score every method.

    Returns:
        (record, masks): record is JSON-able (ious, areas, seeds, timings); masks maps
        method -> (H, W) bool.
    """
    timings = {}
    t0 = time.perf_counter()
    image = condition_image(sample, condition, severity, seed)
    timings["corrupt"] = time.perf_counter() - t0

    seeds = {m: runs.derive_seed(seed, sample.name, condition, m) for m in METHODS}
    t0 = time.perf_counter()
    item_projector = seeded(projector, seeds["proj_S"])
    logits, convex, proj_loss = segment(sample, image, condition, seed, segmenter, prompt, item_projector)
    timings["predict_and_project"] = time.perf_counter() - t0

    raw = logits > 0
    t0 = time.perf_counter()
    masks = {"raw": raw, "remove_small": baselines.remove_small(raw), "convex_hull": baselines.convex_hull(raw)}
    timings["baselines"] = time.perf_counter() - t0
    masks["proj_S"] = convex
    record = {
        "image": sample.name,
        "condition": condition,
        "iou": {m: iou(masks[m], sample.gt) for m in METHODS},
        "area": {m: int(masks[m].sum()) for m in METHODS},
        "gt_area": int(sample.gt.sum()),
        "seeds": seeds,
        "proj_loss": proj_loss,
        "time_s": timings,
    }
    return record, masks


def seeded(projector, seed: int):
    """The projector with `seed` when it draws random numbers (`GradientProjector`);
    `ConvexProjector`'s polygon fit uses none."""
    names = {f.name for f in dataclasses.fields(projector)}
    return dataclasses.replace(projector, seed=seed) if "seed" in names else projector


def sample_digest(sample: Sample) -> str:
    """Hash of a sample's image, GT and scribbles (a cached item is reused only if equal)."""
    h = hashlib.sha256()
    for arr in (sample.image, sample.gt, sample.scribbles):
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
            h.update(str(arr.shape).encode())
    return h.hexdigest()[:16]


def cache_dir(
    out: Path,
    severity: int,
    dataset: str,
    data: str | None,
    segmenter: Segmenter,
    prompt: str,
    num_points: int,
    seed: int,
    projector: ConvexProjector,
) -> Path:
    """Where items are cached: a readable name + a hash of everything that changes an
    item's result (every projector setting included)."""
    settings = [type(projector).__name__, dataclasses.asdict(projector)]
    digest = runs.key(
        CACHE_VERSION,
        dataset,
        str(Path(data).resolve()) if data else None,
        segmenter.kind,
        segmenter.checkpoint,
        prompt,
        num_points,
        seed,
        settings,
    )
    name = f"{dataset}-{segmenter.kind}-{prompt.replace('+', '_')}-seed{seed}-{digest}"
    return Path(out) / ".cache" / f"corruptions_sev{severity}" / name


RECORD_FIELDS = {
    "image": str,
    "condition": str,
    "iou": dict,
    "area": dict,
    "gt_area": int,
    "seeds": dict,
    "time_s": dict,
    "sample": str,
}


def read_cached(cache: Path, sample: Sample, condition: str, want_masks: bool) -> tuple[dict, dict | None] | None:
    """(record, masks or None) of a finished item, or None when it is missing, was
    computed from a different sample (image, GT or scribbles changed), or is damaged
    (then a warning names the file and the item is recomputed)."""
    stem = cache / f"{sample.name}__{condition}"
    json_path, npz_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
    if not json_path.exists() or (want_masks and not npz_path.exists()):
        return None
    try:
        record = runs.read_json(json_path)
        runs.check_fields(record, RECORD_FIELDS)
        if set(record["iou"]) != set(METHODS) or set(record["area"]) != set(METHODS):
            raise ValueError(f"methods {sorted(record['iou'])} instead of {sorted(METHODS)}")
    except ValueError as err:
        runs.warn_damaged(json_path, err)
        return None
    if record["sample"] != sample_digest(sample):
        return None
    if not want_masks:
        return record, None
    try:
        packed, size = runs.read_npz(npz_path, keys=METHODS), sample.gt.size
        masks = {m: np.unpackbits(packed[m])[:size].reshape(sample.gt.shape).astype(bool) for m in METHODS}
    except ValueError as err:
        runs.warn_damaged(npz_path, err)
        return None
    return record, masks


def write_cached(cache: Path, sample: Sample, condition: str, record: dict, masks: dict | None) -> None:
    """Store a finished item: masks (bit-packed) first, the JSON record last, as the
    marker that the item is complete. Adds the sample's digest to `record`."""
    stem = cache / f"{sample.name}__{condition}"
    record["sample"] = sample_digest(sample)
    if masks is not None:
        runs.write_npz(stem.with_suffix(".npz"), {m: np.packbits(masks[m].ravel()) for m in METHODS})
    runs.write_json(stem.with_suffix(".json"), record)


PROJECTORS = ("polygon", "gradient")


def make_projector(projector, device: str | None):
    """A projector object for `run`'s `projector` argument (objects pass through)."""
    if not isinstance(projector, str):
        return projector
    validation.choice("projector", projector, PROJECTORS)
    if projector == "polygon":  # runs on the CPU, where one thread is fastest
        return ConvexProjector(device=device, threads=1)
    on_cpu = validation.device("device", device) in (None, torch.device("cpu")) and not torch.cuda.is_available()
    return GradientProjector(device=device, threads=1 if on_cpu else None)


def check_settings(severity: int, corruptions, prompt: str, dataset: str) -> None:
    validation.choice("severity", severity, SEVERITIES)
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown or not corruptions:
        raise ValueError(
            f"unknown corruption(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(CORRUPTIONS)}"
        )
    validation.choice("prompt", prompt, PROMPTS)
    validation.choice("dataset", dataset, DATASETS)


def run(
    severity: int = 5,
    dataset: str = "scenes",
    data: str | None = None,
    model: str | None = None,
    checkpoint: str | None = None,
    config: str | None = None,
    prompt: str = "points",
    corruptions: list[str] | tuple[str, ...] = CORRUPTIONS,
    limit: int | None = None,
    seed: int = 0,
    device: str | None = None,
    out: str | os.PathLike = "reports",
    fresh: bool = False,
    num_points: int = 3,
    projector: ConvexProjector | GradientProjector | str | None = None,
    segmenter: Segmenter | None = None,
    on_item: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Run the benchmark and write the report.

    Args: as the command-line options (see `eval.corruptions.__main__`); plus
        projector: "polygon" (default: `ConvexProjector`), "gradient"
            (`GradientProjector`), or a projector object (a seed is set per item where
            it takes one).
        segmenter: an already loaded `Segmenter` (then model/checkpoint/config are
            not used).
        on_item: called with each item's record after it is computed and cached.
        progress: show a tqdm progress bar.
    Returns:
        paths of the written files: csv, markdown, meta, bars, deltas, grid.
    """
    check_settings(severity, corruptions, prompt, dataset)
    runs.check_writable(out)
    started = time.perf_counter()
    samples = load_dataset(dataset, data, limit=limit, seed=seed)
    chosen = segmenter or choose_segmenter(model, checkpoint, config, device=device)
    projector = make_projector(projector or "polygon", device)
    conditions = [CLEAN] + [c for c in CORRUPTIONS if c in corruptions]
    cache = cache_dir(Path(out), severity, dataset, data, chosen, prompt, num_points, seed, projector)
    cache.mkdir(parents=True, exist_ok=True)

    prompts = {s.name: make_prompt(s, prompt, num_points) for s in samples}
    grid_names = {s.name for s in samples[:GRID_IMAGES]}
    records, grid_masks, computed = [], {}, 0
    items = [(s, c) for s in samples for c in conditions]
    bar = tqdm(
        total=len(items), desc=f"corruptions sev{severity}", unit="item", disable=not progress, dynamic_ncols=True
    )
    for sample, cond in items:
        want_masks = sample.name in grid_names
        cached = None if fresh else read_cached(cache, sample, cond, want_masks)
        if cached is None:
            record, masks = evaluate_item(sample, cond, severity, seed, chosen, prompts[sample.name], projector)
            write_cached(cache, sample, cond, record, masks if want_masks else None)
            computed += 1
            if on_item is not None:
                on_item(record)
        else:
            record, masks = cached
        records.append(record)
        if want_masks:
            grid_masks[(sample.name, cond)] = masks
        bar.set_postfix(computed=computed, cached=len(records) - computed, refresh=False)
        bar.update()
    bar.close()

    df = results_table(records, severity, seed, chosen, dataset, prompt)
    meta = report.run_metadata(
        segmenter=chosen,
        dataset=dataset,
        data=data,
        samples=len(samples),
        severity=severity,
        seed=seed,
        prompt=prompt,
        num_points=num_points,
        projector=projector,
        wall_s=time.perf_counter() - started,
        computed=computed,
        items=len(records),
        compute_s=sum(sum(r["time_s"].values()) for r in records),
    )
    by_name = {s.name: s for s in samples}
    grid_images = {k: condition_image(by_name[k[0]], k[1], severity, seed) for k in grid_masks}
    return report.write_report(df, conditions, Path(out), severity, meta, samples, grid_masks, grid_images)


def results_table(
    records: list[dict], severity: int, seed: int, segmenter: Segmenter, dataset: str, prompt: str
) -> pd.DataFrame:
    """One row per (image, condition, method)."""
    rows = [
        {
            "image": r["image"],
            "condition": r["condition"],
            "severity": severity,
            "method": m,
            "iou": r["iou"][m],
            "seed": r["seeds"][m],
            "base_seed": seed,
            "model": segmenter.kind,
            "checkpoint": segmenter.checkpoint,
            "dataset": dataset,
            "prompt": prompt,
            "pred_area": r["area"][m],
            "gt_area": r["gt_area"],
        }
        for r in records
        for m in METHODS
    ]
    return pd.DataFrame(rows)
