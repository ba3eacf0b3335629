"""PromptNet: a small promptable U-Net, trained here, behind SamPredictor's surface.

A learned stand-in for SAM where no SAM weights exist: it takes the image plus the
prompts SAM takes, encoded as extra input channels the way click-based interactive
segmentation models do (positive-click map, negative-click map, box map), and returns
mask logits at the input size.

    net input  (B, 6, S, S) float32: RGB normalised by ImageNet mean/std, then
               positive points, negative points (Gaussian blobs, sigma = S / 40, max 1),
               box (1 inside, 0 outside; all 0 without a box)
    net output (B, 1, S, S) float32 logits (> 0 object)

`PromptNetPredictor` resizes the image to S x S (no aspect kept: the prompts are scaled
the same way), runs the net, and resizes the logits back to the image (bilinear), so
`SamConvexPredictor(PromptNetPredictor(net))` projects its full-resolution logits exactly as
it projects SAM's. Train with `python -m eval.train`; load with `load_promptnet(path)`.
"""

from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sam_convex import validation

MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255  # ImageNet statistics, as SAM normalises
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255
PROMPT_CHANNELS = ("positive", "negative", "box")
IN_CHANNELS = 3 + len(PROMPT_CHANNELS)
POINT_SIGMA = 1 / 40  # of the input side


def block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with batch norm and ReLU (the U-Net unit)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class PromptNet(nn.Module):
    """U-Net over image + prompt channels.

    Args:
        width: channels of the first level (doubled at every level down).
        depth: number of down-sampling steps (the input side must be divisible by
            2**depth).
        size: the side S of the square input the net was trained at (kept with the
            weights; `PromptNetPredictor` resizes to it).
        stem: stride of the first convolution (2: the U-Net runs at S/2 and its logits
            are upsampled bilinearly to S; about 4x cheaper on a CPU, and a polyp's
            outline needs no finer grid).
    """

    def __init__(self, width: int = 16, depth: int = 4, size: int = 160, stem: int = 2) -> None:
        super().__init__()
        self.config = {
            "width": validation.integer("width", width, minimum=1),
            "depth": validation.integer("depth", depth, minimum=1, maximum=6),
            "size": validation.integer("size", size, minimum=16),
            "stem": validation.integer("stem", stem, minimum=1, maximum=4),
        }
        if size % (stem * 2**depth):
            raise ValueError(f"size {size} must be divisible by stem * 2**depth = {stem * 2**depth}")
        chans = [width * 2**i for i in range(depth + 1)]
        first = nn.Sequential(
            nn.Conv2d(IN_CHANNELS, chans[0], 3, stride=stem, padding=1, bias=False),
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(inplace=True),
            *block(chans[0], chans[0]),
        )
        self.down = nn.ModuleList([first] + [block(a, b) for a, b in pairwise(chans)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in pairwise(chans)])
        self.merge = nn.ModuleList([block(2 * a, a) for a in chans[:-1]])
        self.head = nn.Conv2d(chans[0], 1, 1)

    @property
    def size(self) -> int:
        return self.config["size"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 6, S, S) float32 -> (B, 1, S, S) logits."""
        skips = []
        for i, down in enumerate(self.down):
            x = down(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(reversed(self.up), reversed(self.merge)):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        logits = self.head(x)
        if self.config["stem"] > 1:
            logits = F.interpolate(logits, scale_factor=self.config["stem"], mode="bilinear", align_corners=False)
        return logits


def image_channels(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, size, size) float32, resized (area) and normalised."""
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    return ((small - MEAN) / STD).transpose(2, 0, 1)


def prompt_channels(
    points: np.ndarray | None,
    labels: np.ndarray | None,
    box: np.ndarray | None,
    image_size: tuple[int, int],
    size: int,
) -> np.ndarray:
    """(3, size, size) float32 prompt maps (see the module docstring).

    Args:
        points: (K, 2) (x, y) in pixels of the original image, or None; labels (K,)
            1 object / 0 background.
        box: (4,) (x0, y0, x1, y1) in pixels of the original image, or None.
        image_size: the original image's (H, W).
        size: the net's input side S.
    """
    h, w = image_size
    sx, sy = size / w, size / h
    maps = np.zeros((3, size, size), np.float32)
    centres = (np.arange(size, dtype=np.float32) + 0.5)[None]
    sigma = POINT_SIGMA * size
    if points is not None:
        for (x, y), label in zip(np.asarray(points, np.float32), np.asarray(labels)):
            # Pixel centres of the original image map to (x + 0.5) * scale in the net's frame.
            gx = np.exp(-((centres - (x + 0.5) * sx) ** 2) / (2 * sigma**2))
            gy = np.exp(-((centres - (y + 0.5) * sy) ** 2) / (2 * sigma**2))
            channel = 0 if label == 1 else 1
            maps[channel] = np.maximum(maps[channel], gy.T * gx)
    if box is not None:
        x0, y0, x1, y1 = np.asarray(box, np.float32).reshape(4)
        c0, c1 = int(np.floor(x0 * sx)), int(np.ceil(x1 * sx))
        r0, r1 = int(np.floor(y0 * sy)), int(np.ceil(y1 * sy))
        maps[2, max(0, r0) : max(0, r1), max(0, c0) : max(0, c1)] = 1.0
    return maps


class PromptNetPredictor:
    """A trained `PromptNet` behind segment-anything's SamPredictor surface
    (`set_image`, `predict`), so `SamConvexPredictor` wraps it as it wraps SAM.

    Args:
        net: the trained network (eval mode is set here).
        device: where it runs (None: the net's device).
    """

    def __init__(self, net: PromptNet, device: str | torch.device | None = None) -> None:
        self.net = net.eval()
        if device is not None:
            self.net.to(validation.device("device", device))
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Store an (H, W, 3) uint8 image (RGB or BGR)."""
        validation.image(image, image_format)
        rgb = image[..., ::-1] if image_format == "BGR" else image
        self.channels = image_channels(np.ascontiguousarray(rgb), self.net.size)
        self.original_size = image.shape[:2]
        self.is_image_set = True

    def reset_image(self) -> None:
        self.channels = None
        self.original_size = None
        self.is_image_set = False

    @torch.no_grad()
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segment the set image from prompts (pixels of the original image).

        Args:
            point_coords: (K, 2) float (x, y), with point_labels (K,) 1 object / 0 background.
            box: (4,) float (x0, y0, x1, y1).
            mask_input: not used (the net takes no mask prompt); accepted for the surface.
            multimask_output: ignored; one mask.
            return_logits: return the logits in place of the bool mask.
        Returns:
            masks: (1, H, W) bool (float32 logits with `return_logits`).
            scores: (1,) float32, the mean foreground probability inside the predicted
                mask (a confidence, not a calibrated IoU).
            logits: (1, S, S) float32 logits in the net's frame.
        Raises:
            ValueError: no image set, no box or positive point, or a bad prompt.
        """
        if not self.is_image_set:
            raise validation.ImageNotSetError("an image must be set with .set_image(...) before predict")
        points, labels, box = validation.prompts(point_coords, point_labels, box, image_size=self.original_size)[:3]
        if box is None and (points is None or not (labels == 1).any()):
            raise ValueError("PromptNet needs a box or a positive point (label 1)")
        prompts = prompt_channels(points, labels, box, self.original_size, self.net.size)
        x = torch.from_numpy(np.concatenate([self.channels, prompts])[None]).to(self.device)
        low = self.net(x)  # (1, 1, S, S)
        h, w = self.original_size
        full = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0]
        logits = full.float().cpu().numpy()
        mask = logits > 0
        prob = torch.sigmoid(full).cpu().numpy()
        scores = np.array([float(prob[mask].mean()) if mask.any() else 0.0], np.float32)
        return (logits if return_logits else mask), scores, low[0].float().cpu().numpy()


def save_promptnet(path: str | os.PathLike, net: PromptNet, **extra) -> None:
    """Write the weights, the net's config and `extra` (JSON-able provenance) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"kind": "promptnet", "config": net.config, "state_dict": state, **extra}, tmp)
    os.replace(tmp, path)


def load_promptnet(path: str | os.PathLike, device: str | torch.device | None = None) -> PromptNet:
    """A `PromptNet` from a checkpoint written by `save_promptnet` or `python -m eval.train`
    (read with torch's weights-only loader), in eval mode on `device` (default CPU).

    Raises:
        FileNotFoundError: no such file (the message says how to train one).
        ValueError: the file is not a PromptNet checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no PromptNet checkpoint at {path}; train one with `python -m eval.train` (see docs/real-data.md)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("kind") != "promptnet":
            raise ValueError("not a PromptNet checkpoint (no kind='promptnet')")
        net = PromptNet(**ckpt["config"])
        net.load_state_dict(ckpt["state_dict"])
    except Exception as err:  # a foreign or damaged file fails in many ways (pickle, struct, zip, keys)
        raise ValueError(f"{path}: cannot load a PromptNet from it ({type(err).__name__}: {err})") from err
    device = validation.device("device", device) or torch.device("cpu")
    return net.to(device).eval()
