"""`python -m eval.scribbles`: scribble-trained CNN/FCN, sequential vs joint convexity.

For every image, predictor (CNN, FCN) and input feature set, one predictor is trained
on the image's scribbles (see `eval.scribble_models`) in two modes:

* sequential: BCE only, then proj_S(p) with `ConvexProjector` (convex output = the
  projection's mask {G <= 0}, rendered at full resolution);
* joint: BCE + lambda * dist(p, S) with a `ConvexityRegularizer` trained along, same
  number of steps (convex output = the regulariser's own mask {G <= 0}, rendered at
  full resolution; no projection afterwards).

IoU against the ground truth is reported for the raw predictor (p > 0.5) and for the
convex output. Training runs on the image downsampled to `--size` pixels on its longer
side (area averaging; a scribble survives where any of its pixels falls in a cell) to
fit the CPU budget; predictor logits are upsampled bilinearly to full resolution and
the ICNN masks are evaluated at full-resolution pixel centres.

Outputs in --out: scribbles.csv (one row per image x model x features x mode),
scribbles.md (table in the paper's layout with the paper's numbers, per-column
verdicts, run metadata), scribbles.png (qualitative results). Each item's training
results (logits, the joint mask, timings) are cached atomically in
<out>/.cache/scribbles/, so an interrupted run resumes; --fresh ignores the cache. The
sequential projection is recomputed on every run (about 0.3 s an item), so the report
always reflects the current proj_S.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import sys
import tempfile
import time
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

import sam_convex
from eval.datasets import DATASETS, Sample, load_dataset
from eval.features import resize_channels, semantic_features
from eval.metrics import iou
from eval.scribble_models import TrainConfig, train_pair
from sam_convex.projection import ConvexProjector, grid_coords

FEATURE_SETS = {  # name -> input channel groups
    "rgb+sem": ("rgb", "sem"),
    "rgb+xy+sem": ("rgb", "xy", "sem"),
    "rgb": ("rgb",),
    "rgb+xy": ("rgb", "xy"),
}
PAPER_FEATURES = ("rgb+sem", "rgb+xy+sem")
MODELS = ("cnn", "fcn")
MODES = ("sequential", "joint")
# The poster's table: (mode, features, model) -> (predictor IoU, convex IoU).
PAPER = {
    ("sequential", "rgb+sem", "cnn"): (0.726, 0.843),
    ("sequential", "rgb+sem", "fcn"): (0.714, 0.851),
    ("sequential", "rgb+xy+sem", "cnn"): (0.778, 0.766),
    ("sequential", "rgb+xy+sem", "fcn"): (0.736, 0.746),
    ("joint", "rgb+sem", "cnn"): (0.818, 0.899),
    ("joint", "rgb+sem", "fcn"): (0.635, 0.894),
    ("joint", "rgb+xy+sem", "cnn"): (0.805, 0.809),
    ("joint", "rgb+xy+sem", "fcn"): (0.768, 0.769),
}
FEATURE_LABEL = {"rgb+sem": "RGB+sem", "rgb+xy+sem": "RGB+xy+sem", "rgb": "RGB",
                 "rgb+xy": "RGB+xy"}
CACHE_VERSION = 2


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


def channel_groups(sample: Sample, h: int, w: int, features_dir, k: int
                   ) -> tuple[dict[str, np.ndarray], str]:
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

def item_seed(base: int, name: str, model: str, features: str) -> int:
    """Deterministic seed per (image, model, features); both modes share it (paired)."""
    return zlib.crc32(f"{base}/{name}/{model}/{features}".encode()) & 0x7FFFFFFF


def make_projector(steps: int | None, seed: int) -> ConvexProjector:
    """The sequential mode's proj_S: ConvexProjector's defaults unless steps is given."""
    return ConvexProjector(seed=seed) if steps is None else ConvexProjector(steps=steps, seed=seed)


def train_item(groups: dict[str, np.ndarray], labels: np.ndarray, model: str, features: str,
               cfg: TrainConfig, seed: int, full_size: tuple[int, int]
               ) -> tuple[dict, dict[str, np.ndarray]]:
    """Train both modes for one (image, model, features): the expensive, cached part.

    Returns:
        timings {"seq_s", "joint_s", "train_s"} and arrays: "seq_logits", "joint_logits"
        ((h, w) float32 at training resolution) and "joint_convex" ((H, W) bool, the
        regulariser's mask at full resolution).
    """
    t0 = time.perf_counter()
    pair = train_pair(model, stack_inputs(groups, features), labels, cfg, seed)
    arrays = {"seq_logits": pair.seq_logits, "joint_logits": pair.joint_logits,
              "joint_convex": pair.joint_reg.mask(*full_size)[0].numpy()}
    return {"seq_s": pair.seq_s, "joint_s": pair.joint_s,
            "train_s": time.perf_counter() - t0}, arrays


def evaluate_item(sample: Sample, arrays: dict[str, np.ndarray], projector: ConvexProjector
                  ) -> tuple[dict[str, np.ndarray], float]:
    """Project the predictions and render the full-resolution bool masks.

    The projection is never cached: it is cheap next to training, and a cached run then
    always reflects the current proj_S.
    Returns:
        ({sequential,joint}_{pred,convex,proj}: (H, W) bool, where *_proj is proj_S of
        the predictor (for sequential the convex output itself), and the seconds spent
        projecting the sequential prediction).
    """
    H, W = sample.gt.shape

    def project(logits):
        fit = projector.fit(torch.sigmoid(torch.from_numpy(logits)))
        return (fit.render(H, W)[0] >= 0).numpy()

    t0 = time.perf_counter()
    seq_convex = project(arrays["seq_logits"])
    project_s = time.perf_counter() - t0
    return {
        "sequential_pred": upsample_logits(arrays["seq_logits"], H, W) > 0,
        "sequential_convex": seq_convex,
        "sequential_proj": seq_convex,
        "joint_pred": upsample_logits(arrays["joint_logits"], H, W) > 0,
        "joint_convex": arrays["joint_convex"],
        "joint_proj": project(arrays["joint_logits"]),  # extra: proj_S of the joint predictor
    }, project_s


# ---------------------------------------------------------------- cache

def cache_key(parts: dict) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and rename (no partial files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Arrays as a compressed .npz, written atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write(path, buf.getvalue())


# ---------------------------------------------------------------- report

def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean IoU per (mode, features, model): columns iou_pred, iou_convex, iou_proj, n."""
    return (df.groupby(["mode", "features", "model"])
              .agg(iou_pred=("iou_pred", "mean"), iou_convex=("iou_convex", "mean"),
                   iou_proj=("iou_proj", "mean"), n=("iou_pred", "size")))


def _fmt_pair(v: tuple[float, float] | None) -> str:
    return f"{v[0]:.3f} / {v[1]:.3f}" if v is not None else "–"


def _fmt_delta(ours: float | None, paper: float | None) -> str:
    """'+0.012 (paper +0.030) ✓': our difference, the paper's, and whether signs agree."""
    o = f"{ours:+.3f}" if ours is not None else "–"
    p = f"{paper:+.3f}" if paper is not None else "–"
    agree = "" if ours is None or paper is None else (" ✓" if np.sign(ours) == np.sign(paper) else " ✗")
    return f"{o} (paper {p}){agree}"


def markdown_report(df: pd.DataFrame, meta: dict) -> str:
    """scribbles.md: measured table and the paper's, both in the paper's layout, the
    per-column comparison with the paper's direction, and run metadata."""
    summ = summary_table(df)
    cols = [(f, m) for f in FEATURE_SETS if f in set(df["features"])
            for m in MODELS if m in set(df["model"])]

    def ours(mode, f, m):  # (predictor IoU, convex IoU) or None
        key = (mode, f, m)
        return tuple(summ.loc[key, ["iou_pred", "iou_convex"]]) if key in summ.index else None

    def table(source) -> list[str]:
        head = "| | " + " | ".join(f"{FEATURE_LABEL[f]} {m.upper()} / convex" for f, m in cols) + " |"
        rows = [f"| {mode} | " + " | ".join(_fmt_pair(source(mode, f, m)) for f, m in cols) + " |"
                for mode in MODES]
        return [head, "|---" * (len(cols) + 1) + "|"] + rows

    def paper(mode, f, m):
        return PAPER.get((mode, f, m))

    standin = " (offline stand-in, not the authors' learned embeddings)" \
        if "standin" in meta["semantic_source"] else ""
    lines = ["# Scribble experiment: sequential vs joint convexity", "",
             f"Mean IoU vs ground truth, predictor (p > 0.5) / convex output, {meta['images']} "
             f"images of `{meta['dataset']}`; semantic features: **{meta['semantic_source']}**"
             f"{standin}.", "", "## Measured (this run)", ""]
    lines += table(ours)
    proj = [summ.loc[("joint", f, m)] if ("joint", f, m) in summ.index else None for f, m in cols]
    lines.append("| *joint, then proj_S (extra)* | " + " | ".join(
        "–" if r is None else f"{r.iou_pred:.3f} / {r.iou_proj:.3f}" for r in proj) + " |")
    lines += ["", "The extra row replaces the joint convex output (the regulariser's own mask "
              "over the whole image) by proj_S of the joint predictor, as in sequential mode."]
    lines += ["", "## Paper (poster), for comparison", ""]
    lines += table(paper)
    lines += ["", "## Direction per column (ours vs paper)", "",
              "| column | joint − sequential, predictor | joint − sequential, convex | "
              "convex − predictor, sequential | convex − predictor, joint | "
              "per image, convex: joint better / worse / tie (±0.005); median Δ |",
              "|---|---|---|---|---|---|"]
    for f, m in cols:
        o_seq, o_joint, p_seq, p_joint = ours("sequential", f, m), ours("joint", f, m), \
            paper("sequential", f, m), paper("joint", f, m)

        def delta(a, b, i):
            return a[i] - b[i] if a is not None and b is not None else None

        cells = [_fmt_delta(delta(o_joint, o_seq, i), delta(p_joint, p_seq, i)) for i in (0, 1)]
        cells += [_fmt_delta(None if o is None else o[1] - o[0], None if p is None else p[1] - p[0])
                  for o, p in ((o_seq, p_seq), (o_joint, p_joint))]
        w = df[(df.features == f) & (df.model == m)].pivot(
            index="image", columns="mode", values="iou_convex")
        wins = "–"
        if set(MODES) <= set(w.columns):
            diff = w["joint"] - w["sequential"]
            wins = (f"{int((diff > 0.005).sum())} / {int((diff < -0.005).sum())} / "
                    f"{int((diff.abs() <= 0.005).sum())}; {diff.median():+.3f}")
        lines.append(f"| {FEATURE_LABEL[f]} {m.upper()} | " + " | ".join(cells) + f" | {wins} |")
    failed = {mode: int((df[df["mode"] == mode].iou_convex < 0.05).sum()) for mode in MODES}
    lines += ["", "✓: same sign as the paper, ✗: opposite sign. Convex outputs with IoU < 0.05 "
              f"(missed the object): sequential {failed['sequential']}, joint {failed['joint']} "
              f"of {len(df) // 2}.", "", "## Run", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", "Per-row results (and per-training seconds) are in scribbles.csv."]
    return "\n".join(lines) + "\n"


def overlay_scribbles(image: np.ndarray, scribbles: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 image with background scribbles blue and foreground red."""
    out = image.copy()
    out[scribbles == 1] = (40, 90, 255)
    out[scribbles == 2] = (255, 40, 40)
    return out


def figure(path: Path, samples: list[Sample], masks: list[dict], rows: pd.DataFrame,
           model: str, features: str, footnote: str) -> None:
    """PNG: per image, image + scribbles, then predictor / convex for both modes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

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
            axes[r, c].imshow(np.ma.masked_where(~m[key], m[key]), cmap=orange, alpha=0.6,
                              vmin=0, vmax=1)
            axes[r, c].contour(s.gt, levels=[0.5], colors="lime", linewidths=0.8)
            label = "predictor" if kind == "pred" else "convex"
            axes[r, c].set_title(f"{mode} {label}: IoU {score:.3f}", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(f"Scribble experiment, {model.upper()} on {FEATURE_LABEL[features]} "
                 "(mask orange, ground truth green)", fontsize=11)
    fig.text(0.01, 0.005, footnote, fontsize=7, ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------- command

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m eval.scribbles", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="scenes", choices=DATASETS,
                    help="benchmark (default: the embedded generated scenes)")
    ap.add_argument("--data", default=None, help="dataset root (convexitydb/folder; scenes cache)")
    ap.add_argument("--features", default=None, metavar="DIR",
                    help="directory of per-image <name>.pt files holding {'embedmap': HxWxC}; "
                         "without it (or for images without a file) an offline stand-in is used")
    ap.add_argument("--inputs", default=",".join(PAPER_FEATURES),
                    help=f"comma-separated feature sets from {', '.join(FEATURE_SETS)}, or 'all'")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: cnn, fcn")
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--seed", type=int, default=0, help="base seed (scenes generation, nets)")
    ap.add_argument("--out", default="reports", help="output directory (default reports/)")
    d = TrainConfig()
    ap.add_argument("--steps", type=int, default=d.steps, help="Adam steps per training")
    ap.add_argument("--warmup", type=int, default=d.warmup,
                    help="BCE-only steps before the regulariser joins (joint mode)")
    ap.add_argument("--lam", type=float, default=d.lam, help="weight of dist(p, S) (joint)")
    ap.add_argument("--size", type=int, default=128, help="training resolution: longer side, px")
    ap.add_argument("--projector-steps", type=int, default=None,
                    help="ConvexProjector steps (sequential; default: the projector's own)")
    ap.add_argument("--sem-channels", type=int, default=4, help="PCA channels of semantic features")
    ap.add_argument("--figure-images", type=int, default=3, help="images in the qualitative figure")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest for these small nets)")
    ap.add_argument("--fresh", action="store_true", help="ignore cached per-item results")
    args = ap.parse_args(argv)
    args.inputs = list(FEATURE_SETS) if args.inputs == "all" else args.inputs.split(",")
    args.models = args.models.split(",")
    for f in args.inputs:
        if f not in FEATURE_SETS:
            ap.error(f"unknown feature set {f!r}; choose from {', '.join(FEATURE_SETS)} or 'all'")
    for m in args.models:
        if m not in MODELS:
            ap.error(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    if args.steps < 1 or not 0 <= args.warmup < args.steps:
        ap.error("need steps >= 1 and 0 <= warmup < steps")
    return args


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    out = Path(args.out)
    cache = out / ".cache" / "scribbles"
    samples = load_dataset(args.dataset, root=args.data, limit=args.limit, seed=args.seed)
    missing = [s.name for s in samples if s.scribbles is None]
    if missing:
        raise ValueError(f"{len(missing)} image(s) have no scribbles (e.g. {missing[0]}); "
                         "the scribble experiment needs a scribble mask per image")
    cfg = TrainConfig(steps=args.steps, warmup=args.warmup, lam=args.lam)
    fig_model, fig_features = args.models[0], args.inputs[0]

    rows: list[dict] = []
    fig_masks: dict[str, dict] = {}
    cached = 0
    bar = tqdm(total=len(samples) * len(args.models) * len(args.inputs), desc="scribbles",
               unit="training pair", file=sys.stderr)
    for idx, sample in enumerate(samples):
        h, w = train_size(sample.gt.shape, args.size)
        groups = source = None
        labels = downsample_scribbles(sample.scribbles, h, w)
        for features in args.inputs:
            for model in args.models:
                want_fig = idx < args.figure_images and (model, features) == (fig_model, fig_features)
                seed = item_seed(args.seed, sample.name, model, features)
                key = cache_key({"v": CACHE_VERSION, "dataset": args.dataset, "data": args.data,
                                 "features_dir": args.features, "image": sample.name,
                                 "model": model, "features": features, "cfg": asdict(cfg),
                                 "size": args.size,
                                 "k": args.sem_channels, "seed": seed})
                jpath, npath = cache / f"{key}.json", cache / f"{key}.npz"
                if not args.fresh and jpath.exists() and npath.exists():
                    item = json.loads(jpath.read_text())
                    with np.load(npath) as z:
                        arrays = {k: z[k] for k in z.files}
                    cached += 1
                else:
                    if groups is None:  # features once per image, only when needed
                        groups, source = channel_groups(sample, h, w, args.features, args.sem_channels)
                    timings, arrays = train_item(groups, labels, model, features, cfg, seed,
                                                 sample.gt.shape)
                    item = dict(timings, semantic_source=source if "sem" in features else "none")
                    save_arrays(npath, arrays)  # the JSON, written last, marks completion
                    atomic_write(jpath, json.dumps(item).encode())
                masks, project_s = evaluate_item(sample, arrays,
                                                 make_projector(args.projector_steps, seed))
                if want_fig:
                    fig_masks[sample.name] = masks
                for mode, train_s, proj_s in (("sequential", item["seq_s"], project_s),
                                              ("joint", item["joint_s"], 0.0)):
                    rows.append({
                        "image": sample.name, "model": model, "features": features, "mode": mode,
                        "semantic_source": item["semantic_source"],
                        "iou_pred": iou(masks[f"{mode}_pred"], sample.gt),
                        "iou_convex": iou(masks[f"{mode}_convex"], sample.gt),
                        "iou_proj": iou(masks[f"{mode}_proj"], sample.gt),
                        "train_s": round(train_s, 3), "project_s": round(proj_s, 3),
                        "item_s": round(item["train_s"] + project_s, 3), "seed": seed,
                        "train_h": h, "train_w": w,
                    })
                bar.update(1)
    bar.close()

    df = pd.DataFrame(rows)
    df = df[["image", "model", "features", "mode", "semantic_source", "iou_pred", "iou_convex",
             "iou_proj", "train_s", "project_s", "item_s", "seed", "train_h", "train_w"]]
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "scribbles.csv", index=False, float_format="%.4f")

    sources = sorted(set(df.loc[df.semantic_source != "none", "semantic_source"])) or ["none"]
    wall = time.perf_counter() - start
    pairs = df[df["mode"] == "sequential"]
    meta = {
        "dataset": f"{args.dataset}" + (f" ({args.data})" if args.data else ""),
        "images": len(samples), "seed": args.seed,
        "semantic_source": ", ".join(sources),
        "feature sets": ", ".join(args.inputs), "models": ", ".join(args.models),
        "training": f"{cfg.steps} Adam steps (lr {cfg.lr}) on class-balanced scribble BCE, "
                    f"longer side {args.size} px; joint: BCE-only warm-up {cfg.warmup} steps, then "
                    f"+ {cfg.lam} x dist (regulariser ICNN width {cfg.reg_width}, depth "
                    f"{cfg.reg_depth}, lattice <= {cfg.reg_grid}, lr {cfg.reg_lr}; started at "
                    f"the '{cfg.reg_init}' shape + {cfg.reg_prefit} ICNN-only steps)",
        "sequential projection": repr(make_projector(args.projector_steps, args.seed))
                                 .replace(f"seed={args.seed}", "seed=<per item>"),
        "joint convex output": "the regulariser's own mask {G <= 0} (no projection afterwards)",
        "time per training pair (both modes, incl. projection), mean": f"{pairs.item_s.mean():.2f} s",
        "time per training, mean": f"sequential {pairs.train_s.mean():.2f} s + projection "
                                   f"{pairs.project_s.mean():.2f} s; joint "
                                   f"{df[df['mode'] == 'joint'].train_s.mean():.2f} s "
                                   f"(the first {cfg.warmup} steps are shared and counted in both)",
        "wall time": f"{wall:.0f} s ({cached} of {len(df) // 2} trainings from cache)",
        "compute time, sum over items": f"{pairs.item_s.sum():.0f} s (training times as "
                                        "first measured, cached ones included)",
        "torch threads": args.threads,
        "versions": f"sam_convex {sam_convex.__version__}, torch {torch.__version__}, "
                    f"numpy {np.__version__}, python {platform.python_version()}",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": "python -m eval.scribbles " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    (out / "scribbles.md").write_text(markdown_report(df, meta))
    fig_samples = [s for s in samples if s.name in fig_masks]
    if fig_samples:
        foot = (f"{args.dataset}, seed {args.seed}, semantic features: {', '.join(sources)}; "
                f"{cfg.steps} steps, lambda {cfg.lam}; sam_convex {sam_convex.__version__}; "
                "python -m eval.scribbles")
        figure(out / "scribbles.png", fig_samples, [fig_masks[s.name] for s in fig_samples],
               df[(df.model == fig_model) & (df.features == fig_features)],
               fig_model, fig_features, foot)
    print(f"wrote {out / 'scribbles.csv'}, {out / 'scribbles.md'}"
          + (f", {out / 'scribbles.png'}" if fig_samples else "") + f" in {wall:.0f} s")
    return df


if __name__ == "__main__":
    main()
