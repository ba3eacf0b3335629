"""The corruption benchmark's run: the plan of items, the cache, the report.

`run` reads finished items from the cache, hands the rest to an executor (computed
here by `items.Serial`, or on Ray by `cluster.Ray`: the caller's choice), caches each
result as it arrives, and writes the report (`report`). What one item computes is in
`items`; what is compared, in `methods`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

import sam_convex
from eval import runs
from eval.corruptions import report
from eval.corruptions.corrupt import ALL_CORRUPTIONS, CORRUPTIONS, SEVERITIES
from eval.corruptions.items import CLEAN, Finished, Job, Serial, condition_image
from eval.corruptions.methods import METHODS
from eval.corruptions.prompts import PROMPTS, make_prompt
from eval.datasets import DATASETS, Sample, load_dataset
from sam_convex import ConvexProjector, GradientProjector, validation
from sam_convex.projectors import make_projector
from sam_convex.segmenters import Segmenter, choose_segmenter

CACHE_VERSION = 3  # 3: item files named by the whole item name (dotted names collided)
GRID_IMAGES = 3  # images whose masks are kept for the qualitative figure
MIN_SIDE = 32  # imagecorruptions' smallest image side


class Executor(Protocol):
    """Computes items (`items.Serial`, `cluster.Ray`); a context manager that holds
    its workers while entered."""

    name: str  # as the report names it
    loads_model_here: bool  # False: workers place the model themselves

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc) -> None: ...

    def evaluate(self, items: list, job: Job, finished: Finished) -> list: ...


# ---------------------------------------------------------------------------- cache


def sample_digest(sample: Sample) -> str:
    """Hash of a sample's image, GT and scribbles (a cached item is reused only if equal)."""
    return runs.digest(sample.image, sample.gt, sample.scribbles)


def cache_dir(
    out: Path,
    dataset: str,
    data: str | None,
    segmenter: Segmenter,
    prompt: str,
    num_points: int,
    seed: int,
    projector,
    variant: tuple = (None, None),
) -> Path:
    """Where items are cached: a readable name + a hash of everything that changes an
    item's result (every projector setting included; `variant` is the split and
    max_side); shared by every severity."""
    # `workers` changes where a fit runs, not its result (bit for bit): not part of the key.
    settings = [type(projector).__name__, {k: v for k, v in dataclasses.asdict(projector).items() if k != "workers"}]
    digest = runs.key(
        CACHE_VERSION,
        sam_convex.__version__,  # a release that changes results starts a fresh cache
        dataset,
        str(Path(data).resolve()) if data else None,
        segmenter.kind,
        segmenter.checkpoint,
        prompt,
        num_points,
        seed,
        settings,
        *([list(variant)] if any(v is not None for v in variant) else []),  # older keys stay valid
    )
    name = f"{dataset}-{segmenter.kind}-{prompt.replace('+', '_')}-seed{seed}-{digest}"
    return Path(out) / ".cache" / "corruptions" / name


def item_paths(cache: Path, sample: Sample, condition: str, severity: int) -> tuple[Path, Path]:
    """The item's cache files (record .json, masks .npz). The suffixes are appended to the
    whole name, never put in place of a "suffix" (`with_suffix` would turn scan.v1__clean
    and scan.v2__clean both into scan.json)."""
    name = f"{sample.name}__{CLEAN}" if condition == CLEAN else f"{sample.name}__{condition}__s{severity}"
    return cache / f"{name}.json", cache / f"{name}.npz"


RECORD_FIELDS = {
    "image": str,
    "condition": str,
    "severity": int,
    "iou": dict,
    "area": dict,
    "gt_area": int,
    "seeds": dict,
    "time_s": dict,
    "sample": str,
}


def check_record(record: dict) -> None:
    """ValueError unless a cached record holds every method's IoU (a number in [0, 1]),
    area and seed."""
    for field in ("iou", "area", "seeds"):
        if set(record[field]) != set(METHODS):
            raise ValueError(f"{field} has methods {sorted(record[field])} instead of {sorted(METHODS)}")
    for m in METHODS:
        value = record["iou"][m]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ValueError(f"iou of {m} is {value!r}, not a number in [0, 1]")
        if not isinstance(record["area"][m], int) or not isinstance(record["seeds"][m], int):
            raise ValueError(f"area or seed of {m} is not an integer")


def read_cached(
    cache: Path, sample: Sample, condition: str, severity: int, want_masks: bool
) -> tuple[dict, dict | None] | None:
    """(record, masks or None) of a finished item, or None when it is missing, was
    computed from a different sample (image, GT or scribbles changed), or is damaged
    (then a warning names the file and the item is recomputed)."""
    json_path, npz_path = item_paths(cache, sample, condition, severity)
    if not json_path.exists() or (want_masks and not npz_path.exists()):
        return None
    try:
        record = runs.read_json(json_path)
        runs.check_fields(record, RECORD_FIELDS)
        check_record(record)
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


def write_cached(cache: Path, sample: Sample, condition: str, severity: int, record: dict, masks: dict | None) -> None:
    """Store a finished item: masks (bit-packed) first, the JSON record last, as the
    marker that the item is complete. Adds the sample's digest to `record`."""
    json_path, npz_path = item_paths(cache, sample, condition, severity)
    record["sample"] = sample_digest(sample)
    for path in (json_path, npz_path):
        runs.clear_damaged(path)
    if masks is not None:
        runs.write_npz(npz_path, {m: np.packbits(masks[m].ravel()) for m in METHODS})
    runs.write_json(json_path, record)


# ---------------------------------------------------------------------------- settings


def parse_severities(text: str | int | Iterable[int]) -> tuple[int, ...]:
    """Severities from 5, "5", "1-5" or "1,3,5" (sorted, unique; each in 1..5)."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        values = [int(text)]
    elif isinstance(text, str):
        values = []
        for part in (p.strip() for p in text.split(",")):
            lo, dash, hi = part.partition("-")
            try:
                ends = [int(lo), int(hi)] if dash else [int(lo)]
            except ValueError as err:
                raise ValueError(
                    f"severity must be 1..5, a range such as 1-5 or a list such as 1,3,5, got {text!r}"
                ) from err
            for end in ends:  # before building a range from them
                validation.choice("severity", end, SEVERITIES)
            if ends[-1] < ends[0]:
                raise ValueError(f"severity range {part!r} runs backwards; write {hi}-{lo}")
            values += list(range(ends[0], ends[-1] + 1))
    else:
        values = [int(v) for v in text]
    for v in values:
        validation.choice("severity", v, SEVERITIES)
    if not values:
        raise ValueError(f"severity must name at least one of 1..5, got {text!r}")
    return tuple(sorted(set(values)))


def projector_for(projector, device: str | None):
    """A projector object for `run`'s `projector` argument (objects pass through): one
    thread wherever the fit runs on the CPU (the polygon fit always does), where one
    thread per item is fastest."""
    if not isinstance(projector, str):
        return projector
    on_cpu = validation.device("device", device) in (None, torch.device("cpu")) and not torch.cuda.is_available()
    return make_projector(projector, device=device, threads=1 if projector == "polygon" or on_cpu else None)


def check_corruptible(samples: list[Sample]) -> None:
    """ValueError naming an image too small for imagecorruptions (it needs H, W >= 32),
    before anything is computed."""
    small = [s.name for s in samples if min(s.image.shape[:2]) < MIN_SIDE]
    if small:
        raise ValueError(
            f"image(s) {', '.join(small[:5])} are smaller than {MIN_SIDE} px on a side, which imagecorruptions "
            "cannot corrupt; leave them out of --data"
        )


def check_settings(corruptions, prompt: str, dataset: str) -> None:
    unknown = [c for c in corruptions if c not in ALL_CORRUPTIONS]
    if unknown or not corruptions:
        raise ValueError(
            f"unknown corruption(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(ALL_CORRUPTIONS)}"
        )
    validation.choice("prompt", prompt, PROMPTS)
    validation.choice("dataset", dataset, DATASETS)


# ---------------------------------------------------------------------------- the run


def run(
    severity: int | str | Iterable[int] = 5,
    dataset: str = "scenes",
    data: str | None = None,
    model: str | None = None,
    checkpoint: str | None = None,
    config: str | None = None,
    prompt: str = "points",
    corruptions: Iterable[str] = CORRUPTIONS,
    limit: int | None = None,
    seed: int = 0,
    device: str | None = None,
    out: str | os.PathLike = "reports",
    fresh: bool = False,
    num_points: int = 3,
    projector: ConvexProjector | GradientProjector | str | None = None,
    segmenter: Segmenter | None = None,
    executor: Executor | None = None,
    on_item: Callable[[dict], None] | None = None,
    progress: bool = True,
    split: str | None = None,
    max_side: int | None = None,
) -> dict[str, Path]:
    """Run the benchmark and write the report.

    Args: as the command-line options (see `eval.corruptions.__main__`); plus
        severity: one severity (the report of that severity) or several (a sweep).
        projector: "polygon" (default: `ConvexProjector`), "gradient"
            (`GradientProjector`), or a projector object (a seed is set per item where
            it takes one).
        segmenter: an already loaded `Segmenter` (then model/checkpoint/config are
            not used).
        executor: computes the items that are not cached: `items.Serial()` (default:
            here) or `cluster.Ray(address, gpus_per_worker)`; entered (started) after
            the settings are checked and left when the run ends.
        on_item: called with each item's record after it is computed and cached.
        progress: show a tqdm progress bar.
        split: the dataset's split (kvasir-seg: train/val/test, default test;
            cvc-clinicdb: test); None for datasets without splits.
        max_side: downscale images and masks to at most this many pixels on the longer
            side before anything runs (the same input for every method); None: full size.
    Returns:
        paths of the written files (csv, markdown, meta, figures).
    """
    started = time.perf_counter()
    severities, corruptions = parse_severities(severity), tuple(corruptions)
    check_settings(corruptions, prompt, dataset)
    runs.check_writable(out)
    executor = executor or Serial()
    with executor:  # a cluster is joined here, before any compute, and left at the end
        samples = load_dataset(dataset, data, limit=limit, seed=seed, split=split, max_side=max_side)
        check_corruptible(samples)
        # Where workers place the model themselves, it is loaded on the CPU here.
        here = device if executor.loads_model_here else "cpu"
        chosen = segmenter or choose_segmenter(model, checkpoint, config, device=here)
        projector = projector_for(projector or "polygon", device)
        plan = Plan(
            severities=severities,
            conditions=[CLEAN, *dict.fromkeys(corruptions)],  # in the order given (a set's own order)
            samples=samples,
            job=Job(seed, chosen, projector, {s.name: make_prompt(s, prompt, num_points) for s in samples}),
            cache=cache_dir(Path(out), dataset, data, chosen, prompt, num_points, seed, projector, (split, max_side)),
            out=Path(out),
            describe=dict(
                dataset=dataset,
                data=data,
                prompt=prompt,
                num_points=num_points,
                split=split,
                max_side=max_side,
                empty_gt=sum(not s.gt.any() for s in samples),
            ),
        )
        results, computed = collect(plan, fresh, executor, on_item, progress)
    return write_outputs(plan, results, computed, executor.name, time.perf_counter() - started)


@dataclass
class Plan:
    """A run's resolved settings: what to compute and where results go."""

    severities: tuple[int, ...]
    conditions: list[str]  # "clean" first
    samples: list[Sample]
    job: Job
    cache: Path
    out: Path
    describe: dict  # dataset, data, prompt, num_points (for the report)

    @property
    def items(self) -> list[tuple[Sample, str, int]]:
        """(sample, condition, severity): clean once, every corruption at every severity."""
        clean = [(s, CLEAN, 0) for s in self.samples]
        return clean + [(s, c, v) for v in self.severities for s in self.samples for c in self.conditions[1:]]

    @property
    def grid_names(self) -> set[str]:
        """Images whose masks the one-severity report's grid figure shows."""
        return {s.name for s in self.samples[:GRID_IMAGES]} if len(self.severities) == 1 else set()


def write_outputs(plan: Plan, results: dict, computed: int, executor: str, wall_s: float) -> dict[str, Path]:
    """The CSV, the report and the figures of a finished run."""
    records = [results[(s.name, c, v)][0] for s, c, v in plan.items]
    job, d = plan.job, plan.describe
    meta = report.run_metadata(
        segmenter=job.segmenter,
        samples=len(plan.samples),
        severities=plan.severities,
        seed=job.seed,
        projector=job.projector,
        wall_s=wall_s,
        computed=computed,
        items=len(records),
        compute_s=sum(sum(r["time_s"].values()) for r in records),
        executor=executor,
        **d,
    )
    table = dict(seed=job.seed, segmenter=job.segmenter, dataset=d["dataset"], prompt=d["prompt"])
    if len(plan.severities) > 1:
        df = report.results_table(records, **table)
        return report.write_sweep_report(df, plan.conditions, plan.severities, plan.out, meta)
    severity = plan.severities[0]
    df = report.results_table(records, severity=severity, **table)
    by_name = {s.name: s for s in plan.samples}
    grid = {(s.name, c): results[(s.name, c, v)][1] for s, c, v in plan.items if s.name in plan.grid_names}
    grid_images = {k: condition_image(by_name[k[0]], k[1], severity, job.seed) for k in grid}
    return report.write_report(df, plan.conditions, plan.out, severity, meta, plan.samples, grid, grid_images)


def collect(plan: Plan, fresh: bool, executor: Executor, on_item, progress: bool) -> tuple[dict, int]:
    """Every item's (record, masks or None), from the cache or computed by `executor`.
    Each computed item is cached as soon as it arrives. Returns (results keyed by
    (image, condition, severity), number computed)."""
    items, cache, want_masks, job = plan.items, plan.cache, plan.grid_names, plan.job
    results, pending = {}, []
    for sample, condition, severity in items:
        cached = None if fresh else read_cached(cache, sample, condition, severity, sample.name in want_masks)
        if cached is None:
            pending.append((sample, condition, severity))
        else:
            results[(sample.name, condition, severity)] = cached
    bar = tqdm(
        total=len(items),
        initial=len(results),
        desc="corruptions",
        unit="item",
        disable=not progress,
        dynamic_ncols=True,
    )

    def finished(sample: Sample, condition: str, severity: int, record: dict, masks: dict) -> None:
        keep = masks if sample.name in want_masks else None
        write_cached(cache, sample, condition, severity, record, keep)
        results[(sample.name, condition, severity)] = (record, keep)
        bar.set_postfix(computed=len(results) - len(items) + len(pending), refresh=False)
        bar.update()
        if on_item is not None:
            on_item(record)

    failed = executor.evaluate(pending, job, finished) if pending else []
    bar.close()
    if failed:
        names = "; ".join(f"{s.name} {c} severity {v}: {err}" for (s, c, v), err in failed[:5])
        raise RuntimeError(f"{len(failed)} item(s) failed twice (the rest is cached; rerun to retry): {names}")
    return results, len(pending)
