"""`python -m eval.convex_training`: does a convexity term in training beat projecting afterwards?

PromptNet (`sam_convex.promptnet`, the promptable U-Net of `python -m eval.train`) is
trained on Kvasir-SEG train by `eval.train.train` with one of the loss variants of
`VARIANTS`, each an extra term added to its plain loss (BCE + Dice):

* ``plain``: the plain loss alone;
* ``convexity``: + w * `ConvexityLoss` (the distance of each prediction to its proj_S);
* ``star``: + w * `StarShapeLoss` (Mirikharaji & Hamarneh 2018, the published peer).

The weight w of each term is chosen on Kvasir-SEG val only (seed 0 trained at every
weight of the variant's grid; the best mean of raw and proj_S val IoU wins); the other
seeds train at that weight. Every model is evaluated with the ground truth's box as the
prompt, raw (logits > 0) and projected (`ConvexProjector` on its logits), on Kvasir-SEG
test and on CVC-ClinicDB (never seen in training), clean and at one severity of the
poster's eight corruptions, with images downscaled to --max-side first (corruptions
applied at that size). The report gives mean IoU and Dice per variant and output, the
paired differences joint − sequential (convexity + proj_S and convexity raw vs plain +
proj_S; the same for star) with 95% bootstrap CIs over images (each image's value the
mean over seeds, and over the corruptions in the corrupted column), and the training
time per epoch per variant.

Cached under --cache: each (variant, weight, seed) model (`eval.train`'s resumable
checkpoint after every epoch, then the best epoch's weights), the corrupted images and
every evaluation; a killed run resumes, a rerun only rewrites the report. Writes
<out>/convex_training.{md,csv.gz,json}.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

import eval.train as train_loop
import sam_convex.promptnet as promptnet
from eval import runs
from eval.corruptions.corrupt import corrupt, corruption_names
from eval.corruptions.prompts import make_prompt
from eval.datasets import Sample, load_dataset
from eval.metrics import bootstrap_ci
from eval.train import TrainSettings
from eval.train import train as train_promptnet
from sam_convex import ConvexityLoss, ConvexProjector, StarShapeLoss, validation
from sam_convex.promptnet import PromptNet, image_channels, load_promptnet, prompt_channels

CACHE_VERSION = 1
OUTPUTS = ("raw", "proj_S")


# ---------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """A training loss: the plain loss + weight * term for weight in `weights` (the
    validation grid); term None is the plain loss alone."""

    term: str | None
    weights: tuple[float, ...]
    label: str


VARIANTS = {
    "plain": Variant(None, (0.0,), "BCE + Dice"),
    "convexity": Variant("convexity", (1.0, 4.0), "BCE + Dice + w ConvexityLoss"),
    "star": Variant("star", (10.0, 40.0), "BCE + Dice + w StarShapeLoss"),
}


def extra_terms(variant: str, weight: float) -> dict:
    """`eval.train.train`'s extra_terms for a variant: name -> (weight, fn(logits,
    target, batch)) with logits and target (B, 1, S, S)."""
    term = VARIANTS[variant].term
    if term is None:
        return {}
    if term == "convexity":
        convexity = ConvexityLoss(ConvexProjector(threads=1))
        return {term: (weight, lambda logits, target, batch: convexity(logits))}
    star = StarShapeLoss()
    return {term: (weight, lambda logits, target, batch: star(logits, target))}


# ---------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Settings:
    """The training settings shared by every variant and seed (`eval.train.TrainSettings`
    without data, seed and loss)."""

    size: int
    width: int
    depth: int
    epochs: int
    batch: int
    lr: float
    train_limit: int | None


@functools.cache
def training_code() -> str:
    """A hash of the training loop's and the model's source, kept with every trained
    model and listed in the report (what trained the cached models)."""
    source = inspect.getsource(train_loop) + inspect.getsource(promptnet)
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def train(
    variant: str, weight: float, seed: int, settings: Settings, kvasir: str, cache: Path
) -> tuple[PromptNet, dict]:
    """The model of one (variant, weight, seed): trained (or resumed) by
    `eval.train.train`, or read from the cache. Returns it and the training summary
    (its "history" holds each epoch's seconds, validation included)."""
    train_settings = TrainSettings(
        data=str(Path(kvasir).resolve()),
        size=settings.size,
        width=settings.width,
        depth=settings.depth,
        epochs=settings.epochs,
        batch=settings.batch,
        lr=settings.lr,
        seed=seed,
        limit=settings.train_limit,
    )
    key = runs.key(CACHE_VERSION, variant, weight, asdict(train_settings))
    model, summary_path = cache / f"model-{key}.pt", cache / f"model-{key}.json"
    if model.exists() and summary_path.exists():
        try:
            return load_promptnet(model), runs.read_json(summary_path)
        except (OSError, ValueError) as err:
            runs.warn_damaged(summary_path, err)
    summary = train_promptnet(
        train_settings,
        cache / f"work-{key}",
        model,
        report_dir=None,
        extra_terms=extra_terms(variant, weight),
        command=f"eval.convex_training {variant} w={weight:g} seed {seed}",
    )
    summary["training_code"] = training_code()
    summary["projector_code"] = projector_code()  # what ConvexityLoss projected onto
    runs.write_json(summary_path, summary)
    return load_promptnet(model), summary


# ---------------------------------------------------------------------------- evaluation


def corrupted(samples: list[Sample], dataset: str, condition: str, severity: int, cache: Path) -> list[np.ndarray]:
    """The samples' images under one corruption ("clean": as they are), seeded per
    (dataset, image, condition), cached."""
    if condition == "clean":
        return [s.image for s in samples]
    shapes = [s.image.shape for s in samples]
    path = (
        cache
        / f"corrupt-{runs.key(CACHE_VERSION, dataset, [s.name for s in samples], shapes, condition, severity)}.npz"
    )
    if path.exists():
        try:
            arrays = runs.read_npz(path)
            return [arrays[f"i{k}"] for k in range(len(samples))]
        except (OSError, ValueError, KeyError) as err:
            runs.warn_damaged(path, err)
    images = [corrupt(s.image, condition, severity, runs.derive_seed(0, dataset, s.name, condition)) for s in samples]
    runs.write_npz(path, {f"i{k}": img for k, img in enumerate(images)})
    return images


def iou_dice(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """IoU and Dice of two (H, W) bool masks; both 1.0 when both are empty."""
    inter, total = float((pred & gt).sum()), float(pred.sum() + gt.sum())
    if total == 0:
        return 1.0, 1.0
    return inter / (total - inter), 2 * inter / total


def predict_logits(
    net: PromptNet, images: list[np.ndarray], samples: list[Sample], chunk: int = 32
) -> list[np.ndarray]:
    """(H, W) float32 logits per image, prompted with its sample's ground-truth box:
    what `PromptNetPredictor.predict(box=..., return_logits=True)` returns, batched."""
    size = net.size
    out = []
    with torch.no_grad():
        for start in range(0, len(images), chunk):
            batch = list(zip(images[start : start + chunk], samples[start : start + chunk], strict=True))
            x = np.stack(
                [
                    np.concatenate(
                        [
                            image_channels(img, size),
                            prompt_channels(None, None, make_prompt(s, "box")["box"], img.shape[:2], size),
                        ]
                    )
                    for img, s in batch
                ]
            )
            low = net(torch.from_numpy(x))
            for k, (img, _) in enumerate(batch):
                full = F.interpolate(low[k : k + 1], size=img.shape[:2], mode="bilinear", align_corners=False)
                out.append(full[0, 0].numpy())
    return out


def evaluate(net: PromptNet, images: list[np.ndarray], samples: list[Sample]) -> dict:
    """IoU and Dice per image of the raw masks (logits > 0) and of proj_S (the
    projection of the logits), with the ground truth's box as the prompt.

    Returns:
        {"raw_iou", "raw_dice", "proj_S_iou", "proj_S_dice"}: (N,) float64 each, and
        "seconds": 0-d, the evaluation's time.
    """
    start = time.perf_counter()
    projector = ConvexProjector(threads=1)
    out = {f"{o}_{m}": np.zeros(len(samples)) for o in OUTPUTS for m in ("iou", "dice")}
    for k, (logits, s) in enumerate(zip(predict_logits(net, images, samples), samples, strict=True)):
        masks = {"raw": logits > 0, "proj_S": projector.fit(logits, logits=True).masks[0].numpy()}
        for output, mask in masks.items():
            out[f"{output}_iou"][k], out[f"{output}_dice"][k] = iou_dice(mask, s.gt)
    out["seconds"] = np.array(time.perf_counter() - start)
    return out


@functools.cache
def projector_code() -> str:
    """A fingerprint of what the projector does: the hash of `ConvexProjector()`'s masks on
    six fixed soft 64x64 maps (blobs in smooth noise). Part of every evaluation's cache
    key, so a projector that projects differently re-evaluates, while a refactor that
    leaves its output alone keeps the cache."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    blobs = np.stack([((xx - 20 - 4 * k) ** 2 + (yy - 30) ** 2 < (10 + 2 * k) ** 2) for k in range(6)])
    field = 4.0 * (blobs - 0.5) + 3.0 * gaussian_filter(rng.normal(size=(6, 64, 64)), (0, 3, 3))
    masks = ConvexProjector().fit((1 / (1 + np.exp(-field))).astype(np.float32)).masks.numpy()
    return hashlib.sha256(masks.tobytes()).hexdigest()[:16]


def cached_evaluation(cache: Path, key: tuple, compute) -> dict:
    """`compute()` (an `evaluate` call) cached in `cache` as .npz under `key` and the
    projector's source hash."""
    path = cache / f"eval-{runs.key(CACHE_VERSION, *key, projector_code())}.npz"
    if path.exists():
        try:
            return runs.read_npz(path, keys=("raw_iou", "raw_dice", "proj_S_iou", "proj_S_dice", "seconds"))
        except (OSError, ValueError) as err:
            runs.warn_damaged(path, err)
    result = compute()
    runs.write_npz(path, result)
    return result


# ---------------------------------------------------------------------------- the experiment


@dataclass(frozen=True)
class Protocol:
    """What the run covers (the command's options)."""

    kvasir: str
    cvc: str
    variants: tuple[str, ...]
    seeds: int
    corruptions: tuple[str, ...]
    severity: int
    max_side: int
    test_limit: int | None
    cross_limit: int | None


def choose_weight(variant: str, settings: Settings, protocol: Protocol, val: list[Sample], cache: Path):
    """The variant's weight from its grid: seed 0 trained at every weight, the best
    mean of raw and proj_S IoU on Kvasir-SEG val wins (ties: the first). Returns the
    weight and one row per grid value."""
    grid = VARIANTS[variant].weights
    rows, images = [], [s.image for s in val]
    for weight in grid:
        net, summary = train(variant, weight, 0, settings, protocol.kvasir, cache)
        res = cached_evaluation(
            cache, ("val", variant, weight, asdict(settings), protocol.max_side), lambda n=net: evaluate(n, images, val)
        )
        rows.append(
            {
                "variant": variant,
                "weight": weight,
                "train_s": float(summary["train_s"]),
                "eval_s": float(res["seconds"]),
                "val_raw_iou": float(res["raw_iou"].mean()),
                "val_proj_S_iou": float(res["proj_S_iou"].mean()),
            }
        )
    score = [(r["val_raw_iou"] + r["val_proj_S_iou"]) / 2 for r in rows]
    return grid[int(np.argmax(score))], rows


def run(settings: Settings, protocol: Protocol, cache: Path) -> dict:
    """Train every variant and seed, evaluate every model on every test set and
    condition; returns the per-image results and the run's metadata."""
    started = time.time()
    val = load_dataset("kvasir-seg", protocol.kvasir, split="val", max_side=protocol.max_side)
    tests = {
        "Kvasir-SEG test": load_dataset(
            "kvasir-seg", protocol.kvasir, split="test", limit=protocol.test_limit, max_side=protocol.max_side
        ),
        "CVC-ClinicDB": load_dataset(
            "cvc-clinicdb", protocol.cvc, split="test", limit=protocol.cross_limit, max_side=protocol.max_side
        ),
    }
    conditions = ("clean", *protocol.corruptions)
    selection, chosen, epoch_seconds, rows = [], {}, [], []
    trained, eval_seconds, codes = {}, [], set()  # compute of the whole run, cached work included
    for variant in protocol.variants:
        chosen[variant], grid_rows = choose_weight(variant, settings, protocol, val, cache)
        selection += grid_rows
        weight = chosen[variant]
        for seed in range(protocol.seeds):
            net, summary = train(variant, weight, seed, settings, protocol.kvasir, cache)
            trained[(variant, weight, seed)] = summary["train_s"]
            codes.add(summary.get("training_code", "unrecorded"))
            train_images = summary["train_images"]
            epoch_seconds += [{"variant": variant, "seed": seed, "seconds": h["time_s"]} for h in summary["history"]]
            for test_name, samples in tests.items():
                for condition in tqdm(conditions, desc=f"{variant} seed {seed} on {test_name}", leave=False):
                    images = corrupted(samples, test_name, condition, protocol.severity, cache)
                    res = cached_evaluation(
                        cache,
                        (
                            test_name,
                            condition,
                            protocol.severity,
                            protocol.max_side,
                            variant,
                            weight,
                            seed,
                            asdict(settings),
                        ),
                        lambda n=net, x=images, s=samples: evaluate(n, x, s),
                    )
                    eval_seconds.append(float(res["seconds"]))
                    for output in OUTPUTS:
                        rows += [
                            {
                                "dataset": test_name,
                                "condition": condition,
                                "variant": variant,
                                "weight": weight,
                                "seed": seed,
                                "output": output,
                                "image": s.name,
                                "iou": float(i),
                                "dice": float(d),
                            }
                            for s, i, d in zip(samples, res[f"{output}_iou"], res[f"{output}_dice"], strict=True)
                        ]
    unchosen = [r for r in selection if r["weight"] != chosen[r["variant"]]]
    return {
        "rows": pd.DataFrame(rows),
        "selection": selection,
        "chosen": chosen,
        "training_code": sorted(codes),
        "epoch_seconds": epoch_seconds,
        "sizes": {"train": train_images, "val": len(val), **{name: len(samples) for name, samples in tests.items()}},
        "compute_s": sum(trained.values()) + sum(eval_seconds) + sum(r["train_s"] + r["eval_s"] for r in unchosen),
        "wall_s": time.time() - started,
    }


# ---------------------------------------------------------------------------- report

COMPARISONS = (  # (label, (variant, output), baseline (variant, output))
    ("convexity + proj_S − plain + proj_S (joint vs sequential)", ("convexity", "proj_S"), ("plain", "proj_S")),
    ("convexity raw − plain + proj_S", ("convexity", "raw"), ("plain", "proj_S")),
    ("star + proj_S − plain + proj_S", ("star", "proj_S"), ("plain", "proj_S")),
    ("star raw − plain + proj_S", ("star", "raw"), ("plain", "proj_S")),
    ("plain + proj_S − plain raw (the projection alone)", ("plain", "proj_S"), ("plain", "raw")),
)


def per_image(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One value per (dataset, group, image) and (variant, output) column: the mean over
    seeds, and for group "corrupted" also over the corruptions."""
    df = df.assign(group=np.where(df["condition"] == "clean", "clean", "corrupted"))
    return df.pivot_table(
        index=["dataset", "group", "image"], columns=["variant", "output"], values=metric, aggfunc="mean"
    )


def summary_tables(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(means, deltas): mean IoU and Dice per dataset, group, variant and output; and
    each `COMPARISONS` difference per dataset and group with its 95% bootstrap CI over
    images."""
    iou, dice = per_image(df, "iou"), per_image(df, "dice")
    means = pd.concat({"iou": iou.groupby(level=[0, 1]).mean(), "dice": dice.groupby(level=[0, 1]).mean()}, axis=1)
    rows = []
    for (dataset, group), sub in iou.groupby(level=[0, 1]):
        for label, method, baseline in COMPARISONS:
            if method not in sub or baseline not in sub:  # a run of a subset of the variants
                continue
            delta = (sub[method] - sub[baseline]).dropna().to_numpy()
            lo, hi = bootstrap_ci(delta)
            rows.append(
                {
                    "dataset": dataset,
                    "group": group,
                    "comparison": label,
                    "n": len(delta),
                    "delta": delta.mean(),
                    "lo": lo,
                    "hi": hi,
                    "wins": int((delta > 1e-3).sum()),
                    "losses": int((delta < -1e-3).sum()),
                }
            )
    columns = ["dataset", "group", "comparison", "n", "delta", "lo", "hi", "wins", "losses"]
    return means, pd.DataFrame(rows, columns=columns)


def markdown(r: dict, means: pd.DataFrame, deltas: pd.DataFrame, meta: dict) -> str:
    df = r["rows"]
    st, pr = meta["settings"], meta["protocol"]
    lines = [
        "# Convexity in training vs projecting afterwards (Kvasir-SEG → Kvasir-SEG test, CVC-ClinicDB)",
        "",
        f"Produced by `{meta['command']}` (eval/convex_training.py). Model: PromptNet (sam_convex.promptnet; width "
        f"{st['width']}, depth {st['depth']}, input {st['size']}x{st['size']}) trained from scratch by "
        f"`eval.train.train` on Kvasir-SEG train ({r['sizes']['train']} images), {st['epochs']} epochs, batch "
        f"{st['batch']}, peak lr {st['lr']:g}, seeds 0..{pr['seeds'] - 1}, the best epoch by val IoU kept; "
        "checkpoints cached under --cache (not committed). Evaluated with the ground truth's box as the prompt on "
        f"Kvasir-SEG test ({r['sizes']['Kvasir-SEG test']} images) and CVC-ClinicDB "
        f"({r['sizes']['CVC-ClinicDB']} frames, never seen in training), images at most {pr['max_side']} px on a "
        f"side, clean and at severity {pr['severity']} of {', '.join(pr['corruptions'])}. raw = logits > 0; "
        "proj_S = `ConvexProjector()` on the logits. Loss weights chosen on Kvasir-SEG val "
        f"({r['sizes']['val']} images) only.",
        "",
        "Full protocol: the command's defaults, `python -m eval.convex_training --kvasir ROOT --cvc ROOT` "
        "(PromptNet 160 px, width 16, depth 4, 30 epochs on all 800 training images; all 100 test images and "
        "612 CVC-ClinicDB frames at 256 px; the eight corruptions at severity 5; 3 seeds). Its expected cost: "
        "docs/convex-training.md.",
        "",
        "## Mean IoU / Dice (mean over images of the mean over seeds; corrupted: also over the corruptions)",
        "",
        "| dataset | variant (weight) | output | IoU clean | Dice clean | IoU corrupted | Dice corrupted |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset in means.index.get_level_values(0).unique():
        for variant in r["chosen"]:
            for output in OUTPUTS:
                cells = []
                for group in ("clean", "corrupted"):
                    for metric in ("iou", "dice"):
                        key = (dataset, group)
                        col = (metric, variant, output)
                        cells.append(f"{means.loc[key, col]:.3f}" if key in means.index else "–")
                weight = r["chosen"][variant]
                lines.append(
                    f"| {dataset} | {variant} (w={weight:g}) | {output} | "
                    + " | ".join(cells[i] for i in (0, 1, 2, 3))
                    + " |"
                )
    lines += [
        "",
        "## Paired differences of IoU, 95% bootstrap CI over images",
        "",
        "| dataset | condition | comparison | Δ IoU [95% CI] | wins / losses |",
        "|---|---|---|---|---|",
    ]
    for row in deltas.itertuples():
        lines.append(
            f"| {row.dataset} | {row.group} | {row.comparison} | {row.delta:+.3f} [{row.lo:+.3f}, {row.hi:+.3f}] "
            f"| {row.wins} / {row.losses} (n={row.n}) |"
        )
    lines += [
        "",
        "## Mean IoU per seed (the spread the CIs over images do not show)",
        "",
        "| dataset | variant | seed | raw clean | proj_S clean | raw corrupted | proj_S corrupted |",
        "|---|---|---|---|---|---|---|",
    ]
    seeds = df.assign(group=np.where(df["condition"] == "clean", "clean", "corrupted")).pivot_table(
        index=["dataset", "variant", "seed"], columns=["group", "output"], values="iou", aggfunc="mean"
    )
    columns = [(g, o) for g in ("clean", "corrupted") for o in OUTPUTS]
    for (dataset, variant), block in seeds.groupby(level=[0, 1], sort=False):
        for (_, _, seed), row in block.iterrows():
            lines.append(f"| {dataset} | {variant} | {seed} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
        spread = " | ".join(f"{block[c].mean():.3f} ± {block[c].std(ddof=1):.3f}" for c in columns)
        lines.append(f"| {dataset} | {variant} | mean ± sd over seeds | {spread} |")
    lines += ["", "## Mean IoU per condition", ""]
    conditions = list(dict.fromkeys(df["condition"]))
    for dataset in df["dataset"].unique():
        sub = df[df["dataset"] == dataset]
        table = sub.pivot_table(index=["variant", "output"], columns="condition", values="iou", aggfunc="mean")
        lines += [f"**{dataset}**", "", "| variant | output | " + " | ".join(conditions) + " |"]
        lines.append("|---|---|" + "---|" * len(conditions))
        for variant in r["chosen"]:
            for output in OUTPUTS:
                vals = " | ".join(f"{table.loc[(variant, output), c]:.3f}" for c in conditions)
                lines.append(f"| {variant} | {output} | {vals} |")
        lines.append("")
    secs = pd.DataFrame(r["epoch_seconds"])
    lines += [
        "## Training time per epoch (seconds, all seeds' epochs)",
        "",
        "| variant | mean | sd | epochs timed |",
        "|---|---|---|---|",
    ]
    for variant, s in secs.groupby("variant", sort=False)["seconds"]:
        lines.append(f"| {variant} | {s.mean():.1f} | {s.std(ddof=0):.1f} | {len(s)} |")
    lines += [
        "",
        "## Weight chosen on Kvasir-SEG val (seed 0; best mean of raw and proj_S IoU)",
        "",
        "| variant | weight | val IoU raw | val IoU proj_S |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {s['variant']} | {s['weight']:g} | {s['val_raw_iou']:.3f} | {s['val_proj_S_iou']:.3f} |"
        for s in r["selection"]
    ]
    lines += [
        "",
        "Training code (sha256 of the source of eval/train.py + sam_convex/promptnet.py, first 16 hex digits): "
        f"{', '.join(meta['training_code']['models'])} for the models, {meta['training_code']['now']} now; "
        f"proj_S in the evaluation: projector fingerprint {projector_code()}.",
        "",
        f"Compute: {meta['compute_s'] / 60:.1f} min of training and evaluation in all (summed over resumed runs; "
        f"this invocation {r['wall_s'] / 60:.1f} min wall). Device: {meta['device']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def build_parser() -> validation.CommandLineParser:
    parser = validation.CommandLineParser(prog="python -m eval.convex_training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kvasir", required=True, help="Kvasir-SEG root (images/, masks/)")
    parser.add_argument("--cvc", required=True, help="CVC-ClinicDB root (Original/, 'Ground Truth'/)")
    parser.add_argument("--size", type=int, default=160, help="PromptNet input side (default 160, eval.train's)")
    parser.add_argument("--width", type=int, default=16, help="PromptNet width (default 16)")
    parser.add_argument("--depth", type=int, default=4, help="PromptNet levels below the first (default 4)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    parser.add_argument("--train-limit", type=int, help="train on N images of the split (default all; val too)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)} (default all)"
    )
    parser.add_argument("--seeds", type=int, default=3, help="training seeds (default 3)")
    parser.add_argument("--corruptions", default="paper", help="corruption set or list (default paper: the eight)")
    parser.add_argument("--severity", type=int, default=5, help="corruption severity 1-5 (default 5)")
    parser.add_argument("--max-side", type=int, default=256, help="test images downscaled to this (default 256)")
    parser.add_argument("--test-limit", type=int, help="Kvasir-SEG test images (default all)")
    parser.add_argument("--cross-limit", type=int, help="CVC-ClinicDB frames (default all, spread by name hash)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--cache", help="cache directory (default .cache/convex_training)")
    parser.add_argument("--out", default="reports", help="output directory (default reports/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = (
        "size",
        "width",
        "depth",
        "epochs",
        "batch",
        "seeds",
        "threads",
        "train_limit",
        "test_limit",
        "cross_limit",
    )
    for name in (*names, "max_side"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.size < 32 or args.size % 2**args.depth:
        parser.error(f"--size must be >= 32 and divisible by 2**depth = {2**args.depth}, got {args.size}")
    if args.max_side < 32:
        parser.error(f"--max-side must be >= 32 (imagecorruptions' limit), got {args.max_side}")
    if not 1 <= args.severity <= 5:
        parser.error(f"--severity must be 1..5, got {args.severity}")
    if not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")
    try:
        corruptions = corruption_names(args.corruptions)
        for option, root in (("--kvasir", args.kvasir), ("--cvc", args.cvc)):
            if not Path(root).is_dir():
                raise FileNotFoundError(f"{option} {root} is not a directory")
        out = runs.check_writable(args.out)
        cache = runs.check_writable(args.cache or runs.default_cache_dir() / "convex_training", "--cache")
        settings = Settings(args.size, args.width, args.depth, args.epochs, args.batch, args.lr, args.train_limit)
        variants = tuple(dict.fromkeys(v.strip() for v in args.variants.split(",") if v.strip()))
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown or not variants:
            raise ValueError(f"--variants: unknown {', '.join(unknown) or 'none given'}; valid: {', '.join(VARIANTS)}")
        protocol = Protocol(
            args.kvasir,
            args.cvc,
            variants,
            args.seeds,
            corruptions,
            args.severity,
            args.max_side,
            args.test_limit,
            args.cross_limit,
        )
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        r = run(settings, protocol, cache)
    except (OSError, ValueError) as err:
        parser.fail(err)
    means, deltas = summary_tables(r["rows"])
    meta = {
        "command": "python -m eval.convex_training " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": asdict(settings),
        "protocol": {**asdict(protocol), "kvasir": None, "cvc": None},  # local paths stay out of the report
        "threads": torch.get_num_threads(),
        "device": runs.machine("cpu"),
        "versions": runs.versions(),
        "compute_s": r["compute_s"],
        "training_code": {"models": r["training_code"], "now": training_code()},
    }
    out.mkdir(parents=True, exist_ok=True)
    # One row per image x condition x variant x seed x output (~60k for the reference run): gzipped, with a
    # fixed gzip time stamp so a rerun from the cache writes the same bytes.
    r["rows"].to_csv(
        out / "convex_training.csv.gz", index=False, float_format="%.6f", compression={"method": "gzip", "mtime": 0}
    )
    record = {
        **meta,
        **{k: r[k] for k in ("selection", "chosen", "sizes", "wall_s")},
        "deltas": deltas.to_dict("records"),
    }
    (out / "convex_training.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    (out / "convex_training.md").write_text(markdown(r, means, deltas, meta))
    key = deltas[deltas["comparison"] == COMPARISONS[0][0]]
    for row in key.itertuples():
        print(f"{row.dataset} {row.group}: {row.comparison}: {row.delta:+.3f} [{row.lo:+.3f}, {row.hi:+.3f}]")
    print(f"report in {args.out}/convex_training.md ({r['compute_s'] / 60:.1f} min of compute)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
