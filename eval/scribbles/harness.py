"""The scribble experiment's run: inputs per image, training (cached), scoring, report.

One item is (image, net, feature set): a predictor trained on the image's scribbles in
both modes (`eval.scribbles.nets.train_pair`), then scored. Training runs on the image
downsampled to `size` pixels on its longer side (area averaging; a scribble survives
where any of its pixels falls in a cell); predictor logits are upsampled bilinearly to
full resolution and the ICNN masks are evaluated at full-resolution pixel centres.
Training results are cached; the sequential projection is recomputed on every run, so
the report always reflects the current proj_S.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

import sam_convex
from eval import runs
from eval.datasets import Sample, load_dataset
from eval.metrics import iou
from eval.scribbles import report
from eval.scribbles.features import resize_channels, semantic_features
from eval.scribbles.nets import TrainConfig, train_pair
from sam_convex.projection import ConvexProjector, grid_coords, limit_threads

FEATURE_SETS = {  # name -> input channel groups
    "rgb+sem": ("rgb", "sem"),
    "rgb+xy+sem": ("rgb", "xy", "sem"),
    "rgb": ("rgb",),
    "rgb+xy": ("rgb", "xy"),
}
PAPER_FEATURES = ("rgb+sem", "rgb+xy+sem")
NETS = ("cnn", "fcn")
CACHE_VERSION = 3
CSV_COLUMNS = [
    "image",
    "net",
    "features",
    "mode",
    "semantic_source",
    "iou_pred",
    "iou_convex",
    "iou_proj",
    "train_s",
    "project_s",
    "item_s",
    "seed",
    "train_h",
    "train_w",
]


@dataclass
class Settings:
    """Everything a run depends on (the command's options)."""

    dataset: str = "scenes"
    data: str | None = None
    features_dir: str | None = None
    inputs: tuple[str, ...] = PAPER_FEATURES
    nets: tuple[str, ...] = NETS
    limit: int | None = None
    seed: int = 0
    out: str = "reports"
    train: TrainConfig = field(default_factory=TrainConfig)
    size: int = 128
    projector_steps: int | None = None
    sem_channels: int = 4
    figure_images: int = 3
    threads: int = 1
    fresh: bool = False


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


# ---------------------------------------------------------------- one item


def make_projector(steps: int | None, seed: int) -> ConvexProjector:
    """The sequential mode's proj_S: ConvexProjector's defaults unless steps is given."""
    return ConvexProjector(seed=seed) if steps is None else ConvexProjector(steps=steps, seed=seed)


def train_item(
    groups: dict[str, np.ndarray],
    labels: np.ndarray,
    net: str,
    features: str,
    cfg: TrainConfig,
    seed: int,
    full_size: tuple[int, int],
) -> tuple[dict, dict[str, np.ndarray]]:
    """Train both modes for one (image, net, features): the expensive, cached part.

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


def score_masks(sample: Sample, arrays: dict[str, np.ndarray], projector: ConvexProjector) -> tuple[dict, float]:
    """Project the predictions and render the full-resolution bool masks.

    Returns:
        ({sequential,joint}_{pred,convex,proj}: (H, W) bool, where *_proj is proj_S of
        the predictor (for sequential the convex output itself), and the seconds spent
        projecting the sequential prediction).
    """
    height, width = sample.gt.shape

    def project(logits: np.ndarray) -> np.ndarray:
        fit = projector.fit(torch.sigmoid(torch.from_numpy(logits)))
        return (fit.render(height, width)[0] >= 0).numpy()

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


def item_rows(
    sample: Sample,
    net: str,
    features: str,
    item: dict,
    masks: dict,
    project_s: float,
    seed: int,
    train_shape: tuple[int, int],
) -> list[dict]:
    """The item's two CSV rows (sequential, joint)."""
    rows = []
    for mode, train_s, proj_s in (("sequential", item["seq_s"], project_s), ("joint", item["joint_s"], 0.0)):
        rows.append(
            {
                "image": sample.name,
                "net": net,
                "features": features,
                "mode": mode,
                "semantic_source": item["semantic_source"],
                "iou_pred": iou(masks[f"{mode}_pred"], sample.gt),
                "iou_convex": iou(masks[f"{mode}_convex"], sample.gt),
                "iou_proj": iou(masks[f"{mode}_proj"], sample.gt),
                "train_s": round(train_s, 3),
                "project_s": round(proj_s, 3),
                "item_s": round(item["train_s"] + project_s, 3),
                "seed": seed,
                "train_h": train_shape[0],
                "train_w": train_shape[1],
            }
        )
    return rows


# ---------------------------------------------------------------- the run


def item_cache_paths(settings: Settings, sample: Sample, net: str, features: str, seed: int) -> tuple[Path, Path]:
    """(json, npz) cache files of one item: named by a hash of what changes its training."""
    name = runs.key(
        CACHE_VERSION,
        settings.dataset,
        settings.data,
        settings.features_dir,
        sample.name,
        net,
        features,
        dataclasses.asdict(settings.train),
        settings.size,
        settings.sem_channels,
        seed,
    )
    cache = Path(settings.out) / ".cache" / "scribbles"
    return cache / f"{name}.json", cache / f"{name}.npz"


class ImageInputs:
    """An image's training-resolution labels and (lazily) its input channels."""

    def __init__(self, sample: Sample, settings: Settings) -> None:
        self.sample, self.settings = sample, settings
        self.shape = train_size(sample.gt.shape, settings.size)
        self.labels = downsample_scribbles(sample.scribbles, *self.shape)
        self._groups: tuple[dict, str] | None = None

    def groups(self) -> tuple[dict[str, np.ndarray], str]:
        """Channel groups and semantic source, computed once, only when training."""
        if self._groups is None:
            s = self.settings
            self._groups = channel_groups(self.sample, *self.shape, s.features_dir, s.sem_channels)
        return self._groups


def trained(inputs: ImageInputs, net: str, features: str, seed: int) -> tuple[dict, dict, bool]:
    """(timings and source, arrays, from_cache) of one item, trained unless cached."""
    settings, sample = inputs.settings, inputs.sample
    json_path, npz_path = item_cache_paths(settings, sample, net, features, seed)
    if not settings.fresh and json_path.exists() and npz_path.exists():
        return runs.read_json(json_path), runs.read_npz(npz_path), True
    groups, source = inputs.groups()
    timings, arrays = train_item(groups, inputs.labels, net, features, settings.train, seed, sample.gt.shape)
    item = dict(timings, semantic_source=source if "sem" in features else "none")
    runs.write_npz(npz_path, arrays)
    runs.write_json(json_path, item)  # written last: marks the item done
    return item, arrays, False


def run(settings: Settings, command: str = "") -> pd.DataFrame:
    """Run the experiment and write scribbles.csv, scribbles.md, scribbles.png."""
    start = time.perf_counter()
    samples = load_dataset(settings.dataset, root=settings.data, limit=settings.limit, seed=settings.seed)
    missing = [s.name for s in samples if s.scribbles is None]
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) have no scribbles (e.g. {missing[0]}); "
            "the scribble experiment needs a scribble mask per image"
        )
    fig_net, fig_features = settings.nets[0], settings.inputs[0]
    rows, fig_masks, cached = [], {}, 0
    bar = tqdm(
        total=len(samples) * len(settings.nets) * len(settings.inputs),
        desc="scribbles",
        unit="training pair",
        file=sys.stderr,
    )
    with limit_threads(settings.threads):
        for idx, sample in enumerate(samples):
            inputs = ImageInputs(sample, settings)
            for features in settings.inputs:
                for net in settings.nets:
                    seed = runs.derive_seed(settings.seed, sample.name, net, features)
                    item, arrays, from_cache = trained(inputs, net, features, seed)
                    cached += from_cache
                    masks, project_s = score_masks(sample, arrays, make_projector(settings.projector_steps, seed))
                    if idx < settings.figure_images and (net, features) == (fig_net, fig_features):
                        fig_masks[sample.name] = masks
                    rows += item_rows(sample, net, features, item, masks, project_s, seed, inputs.shape)
                    bar.update(1)
    bar.close()
    df = pd.DataFrame(rows)[CSV_COLUMNS]
    write_outputs(
        df,
        settings,
        samples,
        fig_masks,
        metadata(df, settings, len(samples), cached, time.perf_counter() - start, command),
    )
    return df


def metadata(df: pd.DataFrame, settings: Settings, images: int, cached: int, wall: float, command: str) -> dict:
    """The report's run block: data, settings, timings, provenance."""
    cfg = settings.train
    sources = sorted(set(df.loc[df.semantic_source != "none", "semantic_source"])) or ["none"]
    pairs = df[df["mode"] == "sequential"]
    projector = repr(make_projector(settings.projector_steps, settings.seed))
    return {
        "dataset": settings.dataset + (f" ({settings.data})" if settings.data else ""),
        "images": images,
        "seed": settings.seed,
        "semantic_source": ", ".join(sources),
        "feature sets": ", ".join(settings.inputs),
        "nets": ", ".join(settings.nets),
        "training": f"{cfg.steps} Adam steps (lr {cfg.lr}) on class-balanced scribble BCE, longer side "
        f"{settings.size} px; joint: BCE-only warm-up {cfg.warmup} steps, then + {cfg.lam} x dist "
        f"(regulariser ICNN width {cfg.reg_width}, depth {cfg.reg_depth}, lattice <= {cfg.reg_grid}, "
        f"lr {cfg.reg_lr}; started at the '{cfg.reg_init}' shape + {cfg.reg_prefit} ICNN-only steps)",
        "sequential projection": projector.replace(f"seed={settings.seed}", "seed=<per item>"),
        "joint convex output": "the regulariser's own mask {G <= 0} (no projection afterwards)",
        "time per training pair (both modes, incl. projection), mean": f"{pairs.item_s.mean():.2f} s",
        "time per training, mean": f"sequential {pairs.train_s.mean():.2f} s + projection "
        f"{pairs.project_s.mean():.2f} s; joint "
        f"{df[df['mode'] == 'joint'].train_s.mean():.2f} s "
        f"(the first {cfg.warmup} steps are shared and counted in both)",
        "wall time": f"{wall:.0f} s ({cached} of {len(df) // 2} trainings from cache)",
        "compute time, sum over items": f"{pairs.item_s.sum():.0f} s (training times as first measured, cached "
        "ones included)",
        "torch threads": settings.threads,
        "versions": ", ".join(f"{k} {v}" for k, v in runs.versions().items()),
        "machine": runs.machine(),
        "command": command,
    }


def write_outputs(df: pd.DataFrame, settings: Settings, samples: list[Sample], fig_masks: dict, meta: dict) -> None:
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "scribbles.csv", index=False, float_format="%.4f")
    (out / "scribbles.md").write_text(report.markdown_report(df, meta))
    fig_samples = [s for s in samples if s.name in fig_masks]
    if fig_samples:
        net, features = settings.nets[0], settings.inputs[0]
        foot = (
            f"{settings.dataset}, seed {settings.seed}, semantic features: {meta['semantic_source']}; "
            f"{settings.train.steps} steps, lambda {settings.train.lam}; sam_convex {sam_convex.__version__}; "
            f"{meta['machine']}; python -m eval.scribbles"
        )
        report.figure(
            out / "scribbles.png",
            fig_samples,
            [fig_masks[s.name] for s in fig_samples],
            df[(df.net == net) & (df.features == features)],
            net,
            features,
            foot,
        )
    print(
        f"wrote {out / 'scribbles.csv'}, {out / 'scribbles.md'}"
        + (f", {out / 'scribbles.png'}" if fig_samples else "")
        + f" in {meta['wall time']}"
    )
