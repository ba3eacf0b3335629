"""The scribble experiment's run: split, inputs per image, training (cached), scoring.

One item is (image, net, feature set, seed index k): a predictor trained on the image's
scribbles in both modes (`eval.scribbles.nets.train_pair`) with the k-th seed, then
scored. Training runs on the image downsampled to `size` pixels on its longer side
(area averaging; a scribble survives where any of its pixels falls in a cell);
predictor logits are upsampled bilinearly to full resolution and the ICNN masks are
evaluated at full-resolution pixel centres. Training results are cached; the
projections are recomputed on every run, so the report always reflects the current
proj_S.

Splits: the settings of both procedures were chosen on the *dev* split
(`eval.scribbles.tune`); the reported table uses the disjoint *test* split (see
`SCENES_SPLITS` and `load_split`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from eval import runs
from eval.datasets import DATASETS, Sample, load_dataset
from eval.metrics import iou
from eval.scribbles import report
from eval.scribbles.features import feature_file, resize_channels, semantic_features
from eval.scribbles.nets import TrainConfig, train_pair
from sam_convex.gradient import GradientProjector
from sam_convex.projection import ConvexProjector, grid_coords, limit_threads
from sam_convex.projectors import PROJECTORS, make_projector

FEATURE_SETS = {  # name -> input channel groups
    "rgb+sem": ("rgb", "sem"),
    "rgb+xy+sem": ("rgb", "xy", "sem"),
    "rgb": ("rgb",),
    "rgb+xy": ("rgb", "xy"),
}
PAPER_FEATURES = ("rgb+sem", "rgb+xy+sem")
NETS = ("cnn", "fcn")
GRADIENT_STEPS = 300  # GradientProjector's Adam steps here (its own default is 120; best of two on dev)
# The scenes benchmark's splits: split -> (generation seed, number of scenes). The joint
# schedule was first developed on seed-0 scenes, so those are the dev split; the test
# split is generated with another seed (different crops, shapes, placements) and is
# used for nothing but the reported table.
SCENES_SPLITS = {"dev": (0, 20), "test": (1, 50)}
DEV_IMAGES = 20  # convexitydb / folder: dev = the first 20 images, test = the rest
SPLITS = ("dev", "test", "all")
CACHE_VERSION = 5  # 5: keyed on the contents of the image, scribbles and feature file
CSV_COLUMNS = [
    "split",
    "image",
    "net",
    "features",
    "mode",
    "k",
    "seed",
    "semantic_source",
    "iou_pred",
    "iou_convex",
    "iou_proj",
    "train_s",
    "project_s",
    "item_s",
    "train_h",
    "train_w",
]
CACHED_TIMINGS = ("seq_s", "joint_s", "train_s")
CACHED_ARRAYS = ("seq_logits", "joint_logits", "joint_convex")


@dataclass
class Settings:
    """Everything a run depends on (the command's options).

    `split` None means the dataset's default: "test" for scenes, "all" otherwise.
    `seed` is the base training seed (the scenes' generation seed is the split's);
    item k of `seeds` trains with `derive_seed(seed, image, net, features, str(k))`.
    """

    dataset: str = "scenes"
    data: str | None = None
    features_dir: str | None = None
    split: str | None = None
    inputs: tuple[str, ...] = PAPER_FEATURES
    nets: tuple[str, ...] = NETS
    limit: int | None = None
    seed: int = 0
    seeds: int = 3
    out: str = "reports"
    train: TrainConfig = field(default_factory=TrainConfig)
    size: int = 128
    projector: str = "polygon"  # chosen on the dev split (see eval.scribbles.tune)
    projector_steps: int | None = None  # GradientProjector's steps; None: GRADIENT_STEPS
    sem_channels: int = 4
    figure_images: int = 3
    threads: int = 1
    fresh: bool = False

    @property
    def split_name(self) -> str:
        if self.split is not None:
            return self.split
        return "test" if self.dataset == "scenes" else "all"


def check_settings(s: Settings) -> None:
    """Raise ValueError naming the first bad setting (the command's option names)."""

    def at_least(name: str, value, minimum: int) -> None:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

    if s.dataset not in DATASETS:
        raise ValueError(f"--dataset {s.dataset!r} is unknown; choose from {', '.join(DATASETS)}")
    if s.split is not None and s.split not in SPLITS:
        raise ValueError(f"--split {s.split!r} is unknown; choose from {', '.join(SPLITS)}")
    if s.dataset == "scenes" and s.split_name == "all":
        raise ValueError(
            "--split all: the scenes benchmark has two disjoint splits, dev (generation seed "
            f"{SCENES_SPLITS['dev'][0]}) and test (seed {SCENES_SPLITS['test'][0]}); choose one"
        )
    if not s.inputs or any(f not in FEATURE_SETS for f in s.inputs):
        raise ValueError(f"--inputs {','.join(s.inputs)!r}: choose from {', '.join(FEATURE_SETS)} or 'all'")
    if not s.nets or any(n not in NETS for n in s.nets):
        raise ValueError(f"--nets {','.join(s.nets)!r}: choose from {', '.join(NETS)}")
    if s.limit is not None:
        at_least("--limit", s.limit, 1)
    at_least("--seed", s.seed, 0)
    at_least("--seeds", s.seeds, 1)
    at_least("--size", s.size, 8)
    at_least("--sem-channels", s.sem_channels, 1)
    at_least("--figure-images", s.figure_images, 0)
    at_least("--threads", s.threads, 1)
    if s.projector not in PROJECTORS:
        raise ValueError(f"--projector {s.projector!r} is unknown; choose from {', '.join(PROJECTORS)}")
    if s.projector_steps is not None:
        at_least("--projector-steps", s.projector_steps, 1)
        if s.projector != "gradient":
            raise ValueError("--projector-steps sets GradientProjector's Adam steps: use it with --projector gradient")
    t = s.train
    at_least("--steps", t.steps, 1)
    at_least("--warmup", t.warmup, 0)
    if t.warmup >= t.steps:
        raise ValueError(f"--warmup must be < --steps, got warmup {t.warmup} and steps {t.steps}")
    at_least("--prefit", t.reg_prefit, 0)
    if not math.isfinite(t.lam) or t.lam < 0:
        raise ValueError(f"--lam must be a finite number >= 0 (the weight of dist(p, S)), got {t.lam!r}")
    if s.features_dir is not None and not Path(s.features_dir).is_dir():
        raise ValueError(
            f"--features {s.features_dir} is not a directory; pass a directory of <image name>.pt "
            "files with an 'embedmap' entry, or omit it for the stand-in"
        )


# ---------------------------------------------------------------- data


def load_split(settings: Settings) -> tuple[list[Sample], str]:
    """The run's images and a one-line description of the split.

    scenes: dev = the first 20 scenes generated with seed 0, test = 50 scenes generated
    with seed 1 (`SCENES_SPLITS`). convexitydb / folder: dev = the first `DEV_IMAGES`
    images in index (name) order, test = the rest, all = every image. `limit` keeps the
    first images of the split.
    """
    split = settings.split_name
    if settings.dataset == "scenes":
        gen_seed, count = SCENES_SPLITS[split]
        root = None if settings.data is None else Path(settings.data) / f"scenes-seed{gen_seed}"
        n = count if settings.limit is None else min(count, settings.limit)
        samples = load_dataset("scenes", root=root, limit=n, seed=gen_seed)
        return samples, f"{split}: scenes generated with seed {gen_seed}, img_0..img_{len(samples) - 1}"
    if settings.data is None:
        raise ValueError(f"--dataset {settings.dataset} needs --data ROOT (the dataset directory)")
    samples = load_dataset(settings.dataset, root=settings.data, limit=DEV_IMAGES if split == "dev" else None)
    if split == "test":
        if len(samples) <= DEV_IMAGES:
            raise ValueError(
                f"--split test: {settings.data} has {len(samples)} images, all in the dev split (the first "
                f"{DEV_IMAGES}); use --split all"
            )
        samples = samples[DEV_IMAGES:]
    what = {"dev": f"the first {DEV_IMAGES} images", "test": f"images {DEV_IMAGES + 1}.. (after the dev split)"}
    return samples[: settings.limit], f"{split}: {what.get(split, 'every image')} of {settings.data}"


def check_samples(samples: list[Sample]) -> None:
    """Raise ValueError when an image has no scribble mask."""
    missing = [s.name for s in samples if s.scribbles is None]
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) have no scribbles (e.g. {missing[0]}); "
            "the scribble experiment needs a scribble mask per image"
        )


def prepare_output(out: str | Path) -> Path:
    """Create `out` and its cache directory and prove both writable, before any
    computation (ValueError naming the directory otherwise)."""
    out = runs.check_writable(out, "--out")
    runs.check_writable(out / ".cache" / "scribbles", "--out")
    return out


# ---------------------------------------------------------------- per-image inputs


def train_size(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """(h, w) with the longer side `size` (never upsampled), aspect kept."""
    h, w = shape
    s = min(1.0, size / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def downsample_scribbles(scribbles: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H, W) uint8 labels -> (h, w): a cell takes a class when any of its pixels has it
    (thin strokes must survive); cells touched by both classes stay unlabelled."""
    onehot = torch.from_numpy(np.stack([scribbles == 1, scribbles == 2])).float()[None]
    frac = F.interpolate(onehot, size=(h, w), mode="area")[0] > 0
    out = np.zeros((h, w), np.uint8)
    out[frac[0].numpy() & ~frac[1].numpy()] = 1
    out[frac[1].numpy() & ~frac[0].numpy()] = 2
    return out


def channel_groups(sample: Sample, h: int, w: int, features_dir, k: int) -> tuple[dict[str, np.ndarray], str]:
    """Input channel groups at (h, w), each (C, h, w) float32, and the semantic source."""
    rgb = resize_channels(sample.image.astype(np.float32) / 255.0, h, w).transpose(2, 0, 1)
    xy = grid_coords(h, w).numpy().T.reshape(2, h, w)  # same frame as the ICNNs
    sem, source = semantic_features(sample.image, sample.name, h, w, features_dir, k)
    return {"rgb": rgb, "xy": xy, "sem": sem.transpose(2, 0, 1)}, source


def stack_inputs(groups: dict[str, np.ndarray], feature_set: str) -> np.ndarray:
    """Concatenate a feature set's groups; each channel standardised (zero mean, unit var)."""
    x = np.concatenate([groups[g] for g in FEATURE_SETS[feature_set]]).astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    return (x - mean) / np.where(std > 1e-6, std, 1.0)


def upsample_logits(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) float logits -> (height, width), bilinear on pixel centres."""
    t = torch.from_numpy(logits)[None, None]
    return F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


class ImageInputs:
    """An image's training-resolution labels and (lazily) its input channels."""

    def __init__(self, sample: Sample, settings: Settings) -> None:
        self.sample, self.settings = sample, settings
        self.shape = train_size(sample.gt.shape, settings.size)
        self.labels = downsample_scribbles(sample.scribbles, *self.shape)
        if not (self.labels > 0).any():
            raise ValueError(
                f"{sample.name}: no scribbled pixel at the training size {self.shape[1]}x{self.shape[0]} "
                "(the scribble mask is empty, or --size is too small)"
            )
        self._groups: tuple[dict, str] | None = None
        # What training reads, by contents (the cache key): the image and its scribbles,
        # and the feature file the semantic channels come from (none: the stand-in).
        path = feature_file(sample.name, settings.features_dir)
        self.digest = runs.digest(sample.image, sample.scribbles)
        self.features_digest = runs.file_digest(path) if path is not None else "standin"

    def groups(self) -> tuple[dict[str, np.ndarray], str]:
        """Channel groups and semantic source, computed once, only when training."""
        if self._groups is None:
            s = self.settings
            self._groups = channel_groups(self.sample, *self.shape, s.features_dir, s.sem_channels)
        return self._groups


# ---------------------------------------------------------------- numerics


@contextlib.contextmanager
def numerics(threads: int) -> Iterator[None]:
    """The run's CPU numerics (restored afterwards):

    * `threads` torch and BLAS threads (results depend on the thread count);
    * subnormal floats flushed to zero: the joint backward pass produces them (saturated
      sigmoids) and x86 handles them in slow microcode; flushing halves the CNN's joint
      training time and behaves the same on every x86 CPU.

    The code paths of ATen, MKL and oneDNN are pinned by the command before torch loads
    (`eval.scribbles.cpu`): joint training is chaotic, a last-bit difference in one step
    moves a joint cell's IoU by up to ~0.1 while sequential cells move by < 0.005 (the
    report's reproducibility section has the measurements).
    """
    torch.set_flush_denormal(True)
    try:
        with limit_threads(threads):
            yield
    finally:
        torch.set_flush_denormal(False)


def numerics_label() -> str:
    """The code paths this process uses, for the cache key and the report."""
    env = ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA"))
    conv = "oneDNN" if torch.backends.mkldnn.enabled else "ATen im2col + BLAS"
    return f"ATen vector kernels {torch.backends.cpu.get_cpu_capability()}, {env}, convolutions {conv}"


# ---------------------------------------------------------------- one item


def scribble_projector(kind: str, steps: int | None, seed: int) -> ConvexProjector | GradientProjector:
    """proj_S of both modes (`sam_convex.projectors`): the gradient fit here takes
    `steps` or GRADIENT_STEPS Adam steps; the seed goes where the projector takes one."""
    settings = {"steps": GRADIENT_STEPS if steps is None else steps} if kind == "gradient" else {}
    return make_projector(kind, seed=seed, **settings)


def train_item(
    groups: dict[str, np.ndarray],
    labels: np.ndarray,
    net: str,
    features: str,
    cfg: TrainConfig,
    seed: int,
    full_size: tuple[int, int],
) -> tuple[dict, dict[str, np.ndarray]]:
    """Train both modes for one (image, net, features, seed): the expensive, cached part.

    Returns:
        timings {"seq_s", "joint_s", "train_s"} and arrays: "seq_logits", "joint_logits"
        ((h, w) float32 at training resolution) and "joint_convex" ((H, W) bool, the
        regulariser's mask at full resolution).
    """
    t0 = time.perf_counter()
    pair = train_pair(net, stack_inputs(groups, features), labels, cfg, seed)
    arrays = {
        "seq_logits": pair.seq_logits,
        "joint_logits": pair.joint_logits,
        "joint_convex": (pair.joint_reg.render(*full_size)[0] >= 0).numpy(),
    }
    return {"seq_s": pair.seq_s, "joint_s": pair.joint_s, "train_s": time.perf_counter() - t0}, arrays


def score_masks(
    sample: Sample, arrays: dict[str, np.ndarray], projector: ConvexProjector | GradientProjector
) -> tuple[dict, float]:
    """Project the predictions and render the full-resolution bool masks.

    Returns:
        ({sequential,joint}_{pred,convex,proj}: (H, W) bool, where *_proj is proj_S of
        the predictor (for sequential the convex output itself), and the seconds spent
        projecting the sequential prediction).
    """
    height, width = sample.gt.shape

    def project(logits: np.ndarray) -> np.ndarray:
        fit = projector.fit(torch.sigmoid(torch.from_numpy(logits)))
        return fit.render_masks(height, width)[0].cpu().numpy()

    t0 = time.perf_counter()
    seq_convex = project(arrays["seq_logits"])
    project_s = time.perf_counter() - t0
    return {
        "sequential_pred": upsample_logits(arrays["seq_logits"], height, width) > 0,
        "sequential_convex": seq_convex,
        "sequential_proj": seq_convex,
        "joint_pred": upsample_logits(arrays["joint_logits"], height, width) > 0,
        "joint_convex": arrays["joint_convex"],
        "joint_proj": project(arrays["joint_logits"]),  # proj_S of the joint predictor
    }, project_s


def item_rows(sample: Sample, item: dict, masks: dict, project_s: float) -> list[dict]:
    """The item's two CSV rows (sequential, joint); `item` holds the cached timings and
    the item's split, net, features, k, seed and training shape."""
    rows = []
    for mode, train_s, proj_s in (("sequential", item["seq_s"], project_s), ("joint", item["joint_s"], 0.0)):
        rows.append(
            {
                "split": item["split"],
                "image": sample.name,
                "net": item["net"],
                "features": item["features"],
                "mode": mode,
                "k": item["k"],
                "seed": item["seed"],
                "semantic_source": item["semantic_source"],
                "iou_pred": iou(masks[f"{mode}_pred"], sample.gt),
                "iou_convex": iou(masks[f"{mode}_convex"], sample.gt),
                "iou_proj": iou(masks[f"{mode}_proj"], sample.gt),
                "train_s": round(train_s, 3),
                "project_s": round(proj_s, 3),
                "item_s": round(item["train_s"] + project_s, 3),
                "train_h": item["shape"][0],
                "train_w": item["shape"][1],
            }
        )
    return rows


# ---------------------------------------------------------------- cache


def item_cache_paths(inputs: ImageInputs, split: str, net: str, features: str, seed: int) -> tuple[Path, Path]:
    """(json, npz) cache files of one item: named by a hash of what changes its training,
    the contents of its image, scribbles and feature file included (`ImageInputs.digest`):
    a replaced file is trained again, not read from the cache under its old name."""
    settings, sample = inputs.settings, inputs.sample
    name = runs.key(
        CACHE_VERSION,
        inputs.digest,
        inputs.features_digest if "sem" in features else None,
        settings.dataset,
        settings.data,
        split if settings.dataset == "scenes" else None,  # scenes: the split picks the images
        settings.features_dir,
        sample.name,
        net,
        features,
        dataclasses.asdict(settings.train),
        settings.size,
        settings.sem_channels,
        seed,
        settings.threads,
        numerics_label(),
    )
    cache = Path(settings.out) / ".cache" / "scribbles"
    return cache / f"{name}.json", cache / f"{name}.npz"


def read_cached(
    json_path: Path, npz_path: Path, train_shape: tuple[int, int], full_shape: tuple[int, int]
) -> tuple[dict, dict[str, np.ndarray]] | None:
    """A cached item, or None when absent or damaged (then a warning names the file).

    Damaged: unreadable, empty or truncated files, JSON that is not an object with the
    timings and the semantic source, an npz without the three arrays of the expected
    shapes and dtypes (float logits at training size, a bool mask at full size).
    """
    if not (json_path.exists() and npz_path.exists()):
        return None
    try:
        item = runs.read_json(json_path)
        runs.check_fields(item, {**dict.fromkeys(CACHED_TIMINGS, (int, float)), "semantic_source": str})
    except (OSError, ValueError) as err:
        runs.warn_damaged(json_path, err)
        return None
    try:
        arrays = runs.read_npz(npz_path, keys=CACHED_ARRAYS)
        for name, shape, kind in (
            ("seq_logits", train_shape, "f"),
            ("joint_logits", train_shape, "f"),
            ("joint_convex", full_shape, "b"),
        ):
            a = arrays[name]
            if a.shape != tuple(shape) or a.dtype.kind != kind or (kind == "f" and not np.isfinite(a).all()):
                raise ValueError(f"{name}: expected finite {kind} array {tuple(shape)}, got {a.dtype} {a.shape}")
    except (OSError, ValueError) as err:
        runs.warn_damaged(npz_path, err)
        return None
    return item, arrays


def trained(
    inputs: ImageInputs, split: str, net: str, features: str, seed: int
) -> tuple[dict, dict[str, np.ndarray], bool]:
    """(timings and source, arrays, from_cache) of one item, trained unless cached."""
    settings, sample = inputs.settings, inputs.sample
    json_path, npz_path = item_cache_paths(inputs, split, net, features, seed)
    if not settings.fresh:
        cached = read_cached(json_path, npz_path, inputs.shape, sample.gt.shape)
        if cached is not None:
            return cached[0], cached[1], True
    groups, source = inputs.groups()
    timings, arrays = train_item(groups, inputs.labels, net, features, settings.train, seed, sample.gt.shape)
    item = dict(timings, semantic_source=source if "sem" in features else "none")
    for path in (json_path, npz_path):
        runs.clear_damaged(path)
    runs.write_npz(npz_path, arrays)
    runs.write_json(json_path, item)  # written last: marks the item done
    return item, arrays, False


# ---------------------------------------------------------------- the run


@dataclass
class Results:
    """What `collect` returns.

    Attributes:
        df: one row per (image, net, features, k, mode), columns `CSV_COLUMNS`.
        samples: the split's images.
        split: the split's one-line description.
        fig_masks: image name -> masks of `score_masks` for the figure (k = 0, first
            net and feature set, first `figure_images` images).
        cached: number of items read from the cache.
        numerics: `numerics_label()` during the run.
        wall_s: seconds.
    """

    df: pd.DataFrame
    samples: list[Sample]
    split: str
    fig_masks: dict
    cached: int
    numerics: str
    wall_s: float


def collect(settings: Settings) -> Results:
    """Validate, load the split, train (or read) and score every item."""
    start = time.perf_counter()
    check_settings(settings)
    prepare_output(settings.out)
    samples, split_text = load_split(settings)
    check_samples(samples)
    all_inputs = [ImageInputs(s, settings) for s in samples]  # checks every image first
    split, fig_net, fig_features = settings.split_name, settings.nets[0], settings.inputs[0]
    rows, fig_masks, cached = [], {}, 0
    bar = tqdm(
        total=len(samples) * len(settings.nets) * len(settings.inputs) * settings.seeds,
        desc="scribbles",
        unit="training pair",
        file=sys.stderr,
    )
    with numerics(settings.threads):
        label = numerics_label()
        for idx, inputs in enumerate(all_inputs):
            sample = inputs.sample
            for features in settings.inputs:
                for net in settings.nets:
                    for k in range(settings.seeds):
                        seed = runs.derive_seed(settings.seed, sample.name, net, features, str(k))
                        item, arrays, from_cache = trained(inputs, split, net, features, seed)
                        cached += from_cache
                        projector = scribble_projector(settings.projector, settings.projector_steps, seed)
                        masks, project_s = score_masks(sample, arrays, projector)
                        if idx < settings.figure_images and (net, features, k) == (fig_net, fig_features, 0):
                            fig_masks[sample.name] = masks
                        info = dict(split=split, net=net, features=features, k=k, seed=seed, shape=inputs.shape)
                        rows += item_rows(sample, dict(item, **info), masks, project_s)
                        bar.update(1)
    bar.close()
    df = pd.DataFrame(rows, columns=CSV_COLUMNS)
    return Results(df, samples, split_text, fig_masks, cached, label, time.perf_counter() - start)


def run(settings: Settings, command: str = "") -> pd.DataFrame:
    """Run the experiment and write scribbles.csv, scribbles.md, scribbles.png."""
    dev = report.read_dev_summary(settings.out)  # a bad dev grid is refused before any training
    res = collect(settings)
    meta = metadata(res, settings, command)
    out = Path(settings.out)
    res.df.to_csv(out / "scribbles.csv", index=False, float_format="%.4f")
    (out / "scribbles.md").write_text(report.markdown_report(res.df, meta, dev))
    fig_samples = [s for s in res.samples if s.name in res.fig_masks]
    if fig_samples:
        net, features = settings.nets[0], settings.inputs[0]
        foot = (
            f"{res.split}; training seed {settings.seed} (k = 0); semantic features: {meta['semantic_source']}; "
            f"{settings.train.steps} steps, lambda {settings.train.lam}; {meta['machine']}; python -m eval.scribbles"
        )
        rows = res.df[(res.df.net == net) & (res.df.features == features) & (res.df.k == 0)]
        report.figure(
            out / "scribbles.png", fig_samples, [res.fig_masks[s.name] for s in fig_samples], rows, net, features, foot
        )
    print(
        f"wrote {out / 'scribbles.csv'}, {out / 'scribbles.md'}"
        + (f", {out / 'scribbles.png'}" if fig_samples else "")
        + f" in {meta['wall time']}"
    )
    return res.df


def settings_text(settings: Settings) -> dict[str, str]:
    """Every setting of both procedures, as report lines."""
    cfg = settings.train
    projector = repr(scribble_projector(settings.projector, settings.projector_steps, 0)).replace(
        "seed=0", "seed=<item's>"
    )
    return {
        "both modes": f"{cfg.steps} Adam steps (lr {cfg.lr}) on class-balanced scribble BCE, input at "
        f"{settings.size} px on the longer side, predictor width 16",
        "sequential": f"BCE only, then proj_S = {projector}",
        "joint": f"the first {cfg.warmup} steps BCE only (shared with sequential), then the regulariser starts "
        f"at the '{cfg.reg_init}' shape, {cfg.reg_prefit} ICNN-only steps, then BCE + {cfg.lam} x dist(p, S) "
        f"for {cfg.steps - cfg.warmup} steps (ICNN width {cfg.reg_width}, depth {cfg.reg_depth}, lattice <= "
        f"{cfg.reg_grid}, lr {cfg.reg_lr}); convex output: the regulariser's own mask {{G <= 0}}; "
        "'proj_S of joint': the same proj_S as sequential applied to the joint predictor",
    }


def metadata(res: Results, settings: Settings, command: str) -> dict:
    """The report's run block: data, settings, timings, provenance."""
    df = res.df
    sources = sorted(set(df.loc[df.semantic_source != "none", "semantic_source"])) or ["none"]
    pairs = df[df["mode"] == "sequential"]
    items = len(pairs)
    return {
        "dataset": settings.dataset + (f" ({settings.data})" if settings.data else ""),
        "split": res.split,
        "defaults chosen on": f"the dev split: scenes generated with seed {SCENES_SPLITS['dev'][0]}, img_0.."
        f"img_{SCENES_SPLITS['dev'][1] - 1} (python -m eval.scribbles.tune; the test split is seed "
        f"{SCENES_SPLITS['test'][0]})",
        "images": len(res.samples),
        "seeds": f"{settings.seeds} per (image, net, features): derive_seed({settings.seed}, image, net, "
        f"features, k), k = 0..{settings.seeds - 1} (GradientProjector, when chosen, takes the item's seed)",
        "semantic_source": ", ".join(sources),
        "feature sets": ", ".join(settings.inputs),
        "nets": ", ".join(settings.nets),
        **{f"settings, {k}": v for k, v in settings_text(settings).items()},
        "time per training pair (both modes, incl. projection), mean": f"{pairs.item_s.mean():.2f} s",
        "time per training, mean": f"sequential {pairs.train_s.mean():.2f} s + projection "
        f"{pairs.project_s.mean():.2f} s; joint {df[df['mode'] == 'joint'].train_s.mean():.2f} s "
        f"(the first {settings.train.warmup} steps are shared and counted in both)",
        "wall time": f"{res.wall_s:.0f} s ({res.cached} of {items} training pairs from cache)",
        "compute time, sum over items": f"{pairs.item_s.sum():.0f} s (training times as first measured, cached "
        "ones included)",
        "torch threads": settings.threads,
        "numerics": res.numerics + "; subnormals flushed to zero",
        "versions": ", ".join(f"{k} {v}" for k, v in runs.versions().items()),
        "machine": runs.machine(),
        "command": command,
    }
