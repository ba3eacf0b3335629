"""Train PromptNet (`sam_convex.promptnet`) on Kvasir-SEG: `python -m eval.train --help`.

    python -m eval.train --data /path/to/Kvasir-SEG            # the reference model
    python -m eval.train --data FIXTURE --epochs 1 --limit 8   # a smoke run

Data: the dataset's train split (kvasir-seg: the SHA-256 split of `eval.datasets`),
images and masks resized to S x S once (area averaging; masks object where >= half).
Validation: the val split, every epoch, through `PromptNetPredictor` exactly as the
benchmark runs it (its box and point prompts, `eval.corruptions.prompts.make_prompt`,
logits upsampled to the image, IoU at the image's size; images downscaled to
`VAL_MAX_SIDE` first to keep it fast).

Every step samples prompts from the ground truth as the benchmark's prompt generator
does, with randomness: box (the GT's bounding box, each side jittered by up to 3% of the
image), points (1-3 positive points in the object's deep interior, 0-3 negative points at
least 5% of the side away from it), or both. Augmentations: flips, 90° turns, brightness
and contrast (±20%); no corruption of the benchmark is used in training.

The loss is a weighted sum of named terms (`LOSSES`; `--loss bce=1,dice=1`), and `train`
takes extra terms (`extra_terms`: name -> (weight, fn(logits, target, batch))), so a
regulariser (e.g. a convexity term) can be added without touching the loop.

Resumable: after every epoch the model, optimiser, history and epoch go to
`<work>/last.pt` (atomically); a rerun with the same settings resumes there. The best
epoch by val IoU (mean of box and points) is saved as the model (`--save`), with its
provenance, and the report goes to `--report` (md, json, png).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F
from tqdm import tqdm

from eval import runs
from eval.corruptions.prompts import make_prompt
from eval.datasets import Sample, load_dataset
from eval.metrics import iou
from sam_convex.promptnet import (
    MEAN,
    STD,
    PromptNet,
    PromptNetPredictor,
    prompt_channels,
    save_promptnet,
)
from sam_convex.validation import CommandLineParser

VAL_MAX_SIDE = 256
VAL_PROMPTS = ("box", "points")
LossFn = Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor]


def bce_loss(logits: torch.Tensor, target: torch.Tensor, batch: dict) -> torch.Tensor:
    """Mean binary cross-entropy of (B, 1, S, S) logits against {0, 1} targets."""
    return F.binary_cross_entropy_with_logits(logits, target)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, batch: dict) -> torch.Tensor:
    """1 − soft Dice, averaged over the batch (robust to the object's size)."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()


LOSSES: dict[str, LossFn] = {"bce": bce_loss, "dice": dice_loss}


@dataclass
class TrainSettings:
    """Everything that changes the trained model (hashed into the work directory's key)."""

    data: str
    dataset: str = "kvasir-seg"
    size: int = 160
    width: int = 16
    depth: int = 4
    epochs: int = 30
    batch: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    limit: int | None = None
    loss: dict = field(default_factory=lambda: {"bce": 1.0, "dice": 1.0})


# ---------------------------------------------------------------------------- data


@dataclass
class TrainSet:
    """Images, masks and the regions prompts are drawn from, all at S x S.

    images (N, S, S, 3) uint8; masks (N, S, S) bool; inner (N, S, S) float32 distance
    to the background in pixels; outer (N, S, S) float32 distance to the object."""

    images: np.ndarray
    masks: np.ndarray
    inner: np.ndarray
    outer: np.ndarray


def to_square(samples: list[Sample], size: int) -> TrainSet:
    images = np.stack([cv2.resize(s.image, (size, size), interpolation=cv2.INTER_AREA) for s in samples])
    masks = np.stack(
        [cv2.resize(s.gt.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) >= 0.5 for s in samples]
    )
    inner = np.stack([ndimage.distance_transform_edt(m) for m in masks]).astype(np.float32)
    outer = np.stack([ndimage.distance_transform_edt(~m) for m in masks]).astype(np.float32)
    return TrainSet(images, masks, inner, outer)


def sample_prompt(inner: np.ndarray, outer: np.ndarray, rng: np.random.Generator):
    """Random (points, labels, box) for one (S, S) mask given by its distance maps
    (see the module docstring); coordinates in the S x S frame."""
    size = inner.shape[0]
    mask = inner > 0
    kind = rng.choice(["box", "points", "points+box"], p=[0.45, 0.45, 0.1])
    points = labels = box = None
    if "box" in kind or not mask.any():
        if mask.any():
            rows, cols = np.nonzero(mask)
            box = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float32)
            box += rng.uniform(-0.03, 0.03, 4).astype(np.float32) * size
            box = np.clip(box, 0, size)
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                box = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float32)
        else:
            box = np.array([0, 0, size, size], np.float32)
    if "points" in kind and mask.any():
        deep = inner >= max(1.0, rng.uniform(0.3, 0.7) * inner.max())
        far = outer >= 0.05 * size
        pos = np.argwhere(deep)
        neg = np.argwhere(far)
        n_pos, n_neg = int(rng.integers(1, 4)), int(rng.integers(0, 4)) if len(neg) else 0
        chosen = [pos[rng.integers(len(pos), size=n_pos)]]
        if n_neg:
            chosen.append(neg[rng.integers(len(neg), size=n_neg)])
        yx = np.concatenate(chosen).astype(np.float32)
        points = yx[:, ::-1].copy()
        labels = np.array([1] * n_pos + [0] * n_neg, np.int64)
    return points, labels, box


def make_batch(data: TrainSet, index: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 6, S, S) inputs and (B, 1, S, S) targets for the samples `index`, augmented
    and prompted (see the module docstring)."""
    size = data.images.shape[1]
    xs, ys = [], []
    for i in index:
        image, mask, inner, outer = data.images[i], data.masks[i], data.inner[i], data.outer[i]
        k = int(rng.integers(4))
        flip = bool(rng.integers(2))
        arrays = [np.rot90(a, k) for a in (image, mask, inner, outer)]
        if flip:
            arrays = [a[:, ::-1] for a in arrays]
        image, mask, inner, outer = (np.ascontiguousarray(a) for a in arrays)
        gain, shift = rng.uniform(0.8, 1.2), rng.uniform(-0.2, 0.2) * 255
        pixels = np.clip(image.astype(np.float32) * gain + shift, 0, 255)
        channels = ((pixels - MEAN) / STD).transpose(2, 0, 1)
        points, labels, box = sample_prompt(inner, outer, rng)
        prompts = prompt_channels(points, labels, box, (size, size), size)
        xs.append(np.concatenate([channels, prompts]))
        ys.append(mask[None].astype(np.float32))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


# ---------------------------------------------------------------------------- loop


def validate(net: PromptNet, samples: list[Sample], prompts: dict) -> dict[str, float]:
    """Mean IoU per prompt kind on `samples`, through `PromptNetPredictor` as the
    benchmark runs it."""
    predictor = PromptNetPredictor(net)
    scores = {kind: [] for kind in VAL_PROMPTS}
    for s in samples:
        predictor.set_image(s.image)
        for kind in VAL_PROMPTS:
            masks, _, _ = predictor.predict(**prompts[kind][s.name], multimask_output=False)
            scores[kind].append(iou(masks[0], s.gt))
    net.train()
    return {kind: float(np.mean(v)) for kind, v in scores.items()}


def loss_terms_of(settings: TrainSettings, extra_terms: dict | None) -> dict[str, tuple[float, LossFn]]:
    """name -> (weight, fn): the settings' named `LOSSES`, then `extra_terms`."""
    terms = {}
    for name, weight in settings.loss.items():
        if name not in LOSSES:
            raise ValueError(f"unknown loss term {name!r}; valid: {', '.join(LOSSES)}")
        terms[name] = (float(weight), LOSSES[name])
    terms.update(extra_terms or {})
    return terms


def train(
    settings: TrainSettings,
    work: str | os.PathLike,
    save: str | os.PathLike,
    report_dir: str | os.PathLike | None = "reports",
    extra_terms: dict[str, tuple[float, LossFn]] | None = None,
    progress: bool = True,
    command: str = "",
    stop_after: int | None = None,
) -> dict:
    """Train (or resume) and write the best model to `save` and the report to
    `report_dir` (None: no report). Returns the run's summary (JSON-able).

    Args:
        settings: what is trained, on what (see `TrainSettings`).
        work: directory of the resumable checkpoint (`last.pt`) and best weights.
        extra_terms: more loss terms, name -> (weight, fn(logits, target, batch) ->
            scalar); `batch` holds "inputs" (B, 6, S, S) and "index" (dataset rows).
        stop_after: end after this epoch (the schedule stays that of
            `settings.epochs`; rerun without it to go on), e.g. to finish a run that
            outgrew its time budget from its last checkpoint.
    """
    terms = loss_terms_of(settings, extra_terms)
    torch.manual_seed(settings.seed)
    started = time.perf_counter()
    train_samples = load_dataset(settings.dataset, settings.data, split="train", limit=settings.limit)
    val_samples = load_dataset(
        settings.dataset, settings.data, split="val", limit=settings.limit, max_side=VAL_MAX_SIDE
    )
    data = to_square(train_samples, settings.size)
    val_prompts = {k: {s.name: make_prompt(s, k) for s in val_samples} for k in VAL_PROMPTS}
    net = PromptNet(settings.width, settings.depth, settings.size)
    steps_per_epoch = int(np.ceil(len(train_samples) / settings.batch))
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch, pct_start=0.15
    )
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    last, best_path = work / "last.pt", work / "best.pt"
    key = runs.key(asdict(settings), sorted(terms))
    history, start_epoch, train_s, cpu_s = [], 0, 0.0, 0.0
    if last.exists():
        try:
            state = torch.load(last, map_location="cpu", weights_only=True)
            if state["key"] == key:
                net.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                sched.load_state_dict(state["scheduler"])
                history, start_epoch = json.loads(state["history"]), state["epoch"] + 1
                train_s, cpu_s = state["train_s"], state.get("cpu_s", 0.0)
                print(f"resuming after epoch {start_epoch} from {last}")
        except (RuntimeError, KeyError, ValueError, EOFError, OSError) as err:
            runs.warn_damaged(last, err)
    net.train()
    end = settings.epochs if stop_after is None else min(settings.epochs, stop_after)
    for epoch in range(start_epoch, end):
        t0, c0 = time.perf_counter(), time.process_time()
        rng = np.random.default_rng(runs.derive_seed(settings.seed, "epoch", str(epoch)))
        order = rng.permutation(len(train_samples))
        losses = []
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{settings.epochs}",
            unit="batch",
            disable=not progress,
            dynamic_ncols=True,
        )
        for step in bar:
            index = order[step * settings.batch : (step + 1) * settings.batch]
            inputs, target = make_batch(data, index, rng)
            logits = net(inputs)
            batch = {"inputs": inputs, "index": index}
            parts = {name: w * fn(logits, target, batch) for name, (w, fn) in terms.items()}
            loss = sum(parts.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
        bar.close()
        net.eval()
        val = validate(net, val_samples, val_prompts)
        train_s += time.perf_counter() - t0
        cpu_s += time.process_time() - c0  # CPU seconds of this process: what the machine's load does not inflate
        row = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            **{f"val_iou_{k}": v for k, v in val.items()},
            "val_iou": float(np.mean(list(val.values()))),
            "time_s": round(time.perf_counter() - t0, 1),
        }
        history.append(row)
        print(
            f"epoch {row['epoch']}: loss {row['train_loss']:.4f}, val IoU box {val['box']:.3f}, "
            f"points {val['points']:.3f} ({row['time_s']:.0f} s)"
        )
        if row["val_iou"] >= max(r["val_iou"] for r in history):
            save_promptnet(best_path, net, epoch=epoch + 1, val=val)
        state = {
            "key": key,
            "model": net.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "history": json.dumps(history),
            "epoch": epoch,
            "train_s": train_s,
            "cpu_s": cpu_s,
        }
        tmp = last.with_name("last.pt.tmp")
        torch.save(state, tmp)
        os.replace(tmp, last)
    if not history:
        raise ValueError(f"no epoch finished in {work}; nothing to save")
    best = max(history, key=lambda r: r["val_iou"])
    summary = {
        "command": command,
        "settings": asdict(settings),
        "loss_terms": {name: w for name, (w, _) in terms.items()},
        "train_images": len(train_samples),
        "val_images": len(val_samples),
        "parameters": sum(p.numel() for p in net.parameters()),
        "history": history,
        "epochs_done": len(history),
        "best_epoch": best["epoch"],
        "best_val": {k: best[f"val_iou_{k}"] for k in VAL_PROMPTS},
        "train_s": round(train_s, 1),
        "train_cpu_s": round(cpu_s, 1),
        "wall_s_this_invocation": round(time.perf_counter() - started, 1),
        "versions": runs.versions(),
        "machine": runs.machine("cpu"),
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    best_net = torch.load(best_path, map_location="cpu", weights_only=True)
    provenance = {k: summary[k] for k in ("command", "settings", "best_epoch", "best_val", "train_s", "versions")}
    net.load_state_dict(best_net["state_dict"])
    save_promptnet(save, net, provenance=json.dumps(provenance))
    summary["checkpoint"] = str(save)
    summary["checkpoint_bytes"] = Path(save).stat().st_size
    if report_dir is not None:
        write_report(summary, Path(report_dir))
    return summary


# ---------------------------------------------------------------------------- report


def write_report(summary: dict, out: Path) -> dict[str, Path]:
    """reports/train_promptnet.{md,json,png}: the curve, the settings, the provenance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"train_promptnet.{k}" for k in ("md", "json", "png")}
    paths["json"].write_text(json.dumps(summary, indent=2))
    hist = summary["history"]
    epochs = [r["epoch"] for r in hist]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, [r["train_loss"] for r in hist], "o-")
    ax1.set(xlabel="epoch", ylabel="train loss", title="training loss")
    for k in VAL_PROMPTS:
        ax2.plot(epochs, [r[f"val_iou_{k}"] for r in hist], "o-", label=f"{k} prompt")
    ax2.set(xlabel="epoch", ylabel="mean IoU", title=f"validation ({summary['val_images']} images)")
    ax2.legend()
    s = summary["settings"]
    fig.suptitle(
        f"PromptNet on {s['dataset']} train ({summary['train_images']} images), {s['size']}px, seed {s['seed']} | "
        f"{summary['machine']} | torch {summary['versions'].get('torch')}",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    rows = "\n".join(
        f"| {r['epoch']} | {r['train_loss']:.4f} | {r['val_iou_box']:.3f} | {r['val_iou_points']:.3f} "
        f"| {r['time_s']:.0f} |"
        for r in hist
    )
    vers = ", ".join(f"{k} {v}" for k, v in summary["versions"].items())
    stopped = ""
    if summary["epochs_done"] < s["epochs"]:
        stopped = (
            f"**Stopped after epoch {summary['epochs_done']} of {s['epochs']}** (`--stop-after`, for time; the "
            f"learning-rate schedule is that of {s['epochs']} epochs, so the rate had not decayed to its end).\n\n"
        )
    paths["md"].write_text(
        f"""# PromptNet training ({s["dataset"]})

{stopped}Best epoch {summary["best_epoch"]}: validation mean IoU **{summary["best_val"]["box"]:.3f}** with a box prompt,
**{summary["best_val"]["points"]:.3f}** with point prompts (the benchmark's prompts, `make_prompt`, on the
val split's {summary["val_images"]} images at most {VAL_MAX_SIDE} px on a side). Training time
{summary["train_s"] / 60:.1f} min wall ({len(hist)} epochs; {summary["train_cpu_s"] / 60:.1f} min of CPU time of
the process) on {summary["machine"]}, {summary["torch_threads"]} torch threads, the machine shared with other jobs.

| epoch | train loss | val IoU (box) | val IoU (points) | s |
|---|---|---|---|---|
{rows}

![curves](train_promptnet.png)

## Provenance

- command: `{summary["command"]}`
- data: {s["dataset"]} at {s["data"]}, split train ({summary["train_images"]} images) / val
  ({summary["val_images"]}) (SHA-256 split of `eval.datasets`)
- model: PromptNet U-Net, width {s["width"]}, depth {s["depth"]}, input {s["size"]}x{s["size"]},
  {summary["parameters"]:,} parameters; checkpoint `{summary["checkpoint"]}`
  ({summary["checkpoint_bytes"] / 1e6:.2f} MB)
- optimiser: AdamW, lr {s["lr"]} (one-cycle), weight decay {s["weight_decay"]}, batch {s["batch"]},
  {s["epochs"]} epochs, seed {s["seed"]}; loss {" + ".join(f"{w:g}·{n}" for n, w in summary["loss_terms"].items())}
- prompts sampled per step from the ground truth (box with 3% jitter, 1-3 positive / 0-3 negative points,
  or both); augmentation: flips, 90° turns, brightness/contrast ±20%
- versions: {vers}
- date: {summary["date"]}
"""
    )
    return paths


# ---------------------------------------------------------------------------- command


def parse_loss(text: str) -> dict[str, float]:
    """'bce=1,dice=0.5' -> {'bce': 1.0, 'dice': 0.5}; ValueError on a bad term."""
    terms = {}
    for part in text.split(","):
        name, eq, weight = part.strip().partition("=")
        try:
            terms[name] = float(weight) if eq else 1.0
        except ValueError as err:
            raise ValueError(f"--loss: bad weight in {part!r}") from err
        if name not in LOSSES:
            raise ValueError(f"--loss: unknown term {name!r}; valid: {', '.join(LOSSES)}")
    return terms


def build_parser() -> CommandLineParser:
    parser = CommandLineParser(
        prog="python -m eval.train",
        description="Train PromptNet, the small promptable U-Net of sam_convex.promptnet, on Kvasir-SEG's "
        "train split (resumable; validation on the val split every epoch; report in --report).",
    )
    parser.add_argument("--data", required=True, metavar="ROOT", help="Kvasir-SEG root (images/, masks/)")
    parser.add_argument("--dataset", default="kvasir-seg", choices=("kvasir-seg",), help="training data")
    parser.add_argument("--epochs", type=int, default=30, help="epochs (default 30)")
    parser.add_argument("--size", type=int, default=160, metavar="S", help="input side S (default 160)")
    parser.add_argument("--width", type=int, default=16, help="U-Net width (default 16)")
    parser.add_argument("--depth", type=int, default=4, help="U-Net levels below the first (default 4)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only N images per split (smoke runs)")
    parser.add_argument("--loss", default="bce=1,dice=1", help=f"weighted terms of {', '.join(LOSSES)}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--work", default=None, metavar="DIR", help="resumable checkpoints (default .cache/train/<settings hash>)"
    )
    parser.add_argument(
        "--save", default="checkpoints/promptnet_kvasir.pt", metavar="PATH", help="the trained model (best epoch)"
    )
    parser.add_argument("--report", default="reports", metavar="DIR", help="report directory (default reports/)")
    parser.add_argument("--fresh", action="store_true", help="start over (ignore the resumable checkpoint)")
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="N",
        help="end after epoch N (resuming from the checkpoint if there is one) and save the best epoch so far; "
        "the schedule stays that of --epochs, and a rerun without it goes on",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("epochs", "batch", "width", "depth"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.size < 32 or args.size % 2**args.depth:
        parser.error(f"--size must be >= 32 and divisible by 2**depth = {2**args.depth}, got {args.size}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if args.stop_after is not None and args.stop_after < 1:
        parser.error(f"--stop-after must be >= 1, got {args.stop_after}")
    if not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")
    try:
        loss = parse_loss(args.loss)
    except ValueError as err:
        parser.error(str(err))
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    settings = TrainSettings(
        data=str(Path(args.data).resolve()),
        dataset=args.dataset,
        size=args.size,
        width=args.width,
        depth=args.depth,
        epochs=args.epochs,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        limit=args.limit,
        loss=loss,
    )
    work = Path(args.work) if args.work else runs.default_cache_dir() / "train" / runs.key(asdict(settings))[:16]
    if args.fresh:
        (work / "last.pt").unlink(missing_ok=True)
    command = "python -m eval.train " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        runs.check_writable(Path(args.save).parent, "--save")
        summary = train(settings, work, args.save, args.report, command=command, stop_after=args.stop_after)
    except (OSError, ValueError) as err:
        parser.fail(err)
    print(f"best epoch {summary['best_epoch']}: val IoU {summary['best_val']}; model {summary['checkpoint']}")
    if args.report:
        print(f"report: {Path(args.report) / 'train_promptnet.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
