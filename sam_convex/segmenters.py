"""Which segmenter a command runs (SAM, SAM 2, PromptNet or GrabCut), wrapped for convex masks.

`choose_segmenter` is the one place that decides, for `python -m sam_convex` and
`python -m eval.corruptions`: an explicit `model` wins; otherwise SAM when a SAM
checkpoint is given or found in checkpoints/, else GrabCut (a classical stand-in, not
SAM). `Segmenter.convex_predictor` then gives the drop-in that both commands call:
`SamConvexPredictor` (SAM, or PromptNet / GrabCut behind the same surface) or
`Sam2ConvexPredictor`. PromptNet (`sam_convex.promptnet`) is the small promptable U-Net
trained here by `python -m eval.train`; it needs `--checkpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sam_convex import validation
from sam_convex.amg import Sam2ConvexAutomaticMaskGenerator, SamConvexAutomaticMaskGenerator
from sam_convex.grabcut import GrabCutPredictor
from sam_convex.loading import (
    CHECKPOINT_URL,
    EMBED_DIM_TO_TYPE,
    SAM2_CHECKPOINT_URL,
    find_checkpoint,
    load_sam,
    load_sam2,
)
from sam_convex.predictor import SamConvexPredictor
from sam_convex.projection import ConvexProjector
from sam_convex.promptnet import PromptNetPredictor, load_promptnet
from sam_convex.sam2_predictor import Sam2ConvexPredictor

SEGMENTERS = ("sam", "sam2", "promptnet", "grabcut")
GRABCUT_ITERATIONS = 5


@dataclass
class Segmenter:
    """A loaded segmenter and how reports name it.

    Attributes:
        kind: "sam", "sam2", "promptnet" or "grabcut".
        label: the raw method's name in tables ("SAM", "SAM 2", "PromptNet", "GrabCut").
        description: one line for reports and the command's output.
        checkpoint: the weights' path, or "none".
        model: the SAM, SAM 2 or PromptNet model; None for GrabCut.
    """

    kind: str
    label: str
    description: str
    checkpoint: str
    model: object | None = None

    def convex_predictor(
        self, projector: ConvexProjector | None = None, seed: int = 0, grabcut_max_side: int | None = None
    ) -> SamConvexPredictor | Sam2ConvexPredictor:
        """A fresh drop-in predictor with convex masks (`seed` seeds GrabCut;
        `grabcut_max_side` is GrabCutPredictor's `max_side`: None = full resolution)."""
        if self.kind == "sam2":
            return Sam2ConvexPredictor(self.model, projector=projector)
        if self.kind == "grabcut":
            inner = GrabCutPredictor(iterations=GRABCUT_ITERATIONS, seed=seed, max_side=grabcut_max_side)
        elif self.kind == "promptnet":
            inner = PromptNetPredictor(self.model)
        else:
            inner = self.model
        return SamConvexPredictor(inner, projector)

    def mask_generator(
        self, projector: ConvexProjector | None = None, **settings
    ) -> SamConvexAutomaticMaskGenerator | Sam2ConvexAutomaticMaskGenerator:
        """The automatic mask generator ("segment everything") with convex masks;
        `settings` go to it (e.g. min_solidity, output_mode, points_per_side)."""
        if self.kind == "sam2":
            return Sam2ConvexAutomaticMaskGenerator(self.model, projector=projector, **settings)
        if self.kind == "sam":
            return SamConvexAutomaticMaskGenerator(self.model, projector=projector, **settings)
        raise ValueError(
            "automatic mask generation needs SAM or SAM 2 (--model sam / sam2 with a checkpoint), "
            f"not {self.label}, which segments one prompted object"
        )


def grabcut() -> Segmenter:
    return Segmenter(
        "grabcut",
        "GrabCut",
        f"GrabCut (sam_convex.GrabCutPredictor, {GRABCUT_ITERATIONS} iterations; a classical stand-in, not SAM)",
        "none",
    )


def choose_segmenter(
    model: str | None = None,
    checkpoint: str | Path | None = None,
    config: str | None = None,
    checkpoint_dir: str | Path = "checkpoints",
    model_type: str | None = None,
    device: str | None = None,
) -> Segmenter:
    """Load the segmenter a command asked for.

    Args:
        model: "sam", "sam2", "promptnet", "grabcut", or None: SAM if a SAM checkpoint
            is given or found in `checkpoint_dir`, else GrabCut.
        checkpoint: weights of SAM (.pth), SAM 2 (.pt) or PromptNet (.pt, from
            `python -m eval.train`).
        config: SAM 2's config (None: inferred from the checkpoint).
        model_type: SAM's "vit_h" / "vit_l" / "vit_b" (None: inferred).
        device: where the model runs (None: CUDA when available).
    Raises:
        FileNotFoundError: a checkpoint is needed and missing (the message says where
            official weights are published).
        ValueError: inconsistent options or unreadable weights.
    """
    if model is not None:
        validation.choice("model", model, SEGMENTERS)
    validation.device("device", device)
    if config is not None and model != "sam2":
        raise ValueError("--config is for --model sam2")
    if model == "grabcut":
        if checkpoint is not None:
            raise ValueError("--checkpoint is for --model sam, sam2 or promptnet; GrabCut takes no checkpoint")
        return grabcut()
    if model == "promptnet":
        if checkpoint is None:
            raise FileNotFoundError(
                "--model promptnet needs --checkpoint PATH to weights trained by `python -m eval.train` "
                "(see docs/real-data.md)"
            )
        net = load_promptnet(checkpoint, device)
        size = sum(p.numel() for p in net.parameters()) / 1e6
        cfg = net.config
        description = (
            f"PromptNet from {checkpoint} (sam_convex.promptnet: U-Net width {cfg['width']}, depth {cfg['depth']}, "
            f"input {cfg['size']}x{cfg['size']}, {size:.2f} M parameters; trained here, not SAM) on {net_device(net)}"
        )
        return Segmenter("promptnet", "PromptNet", description, str(checkpoint), net)
    if model == "sam2":
        if checkpoint is None:
            raise FileNotFoundError(
                f"--model sam2 needs --checkpoint PATH to a SAM 2 checkpoint (official weights: {SAM2_CHECKPOINT_URL})"
            )
        sam2 = load_sam2(checkpoint, config, device)
        size = sum(p.numel() for p in sam2.parameters()) / 1e6
        description = f"SAM 2 from {checkpoint} ({size:.0f} M parameters, sam2's SAM2ImagePredictor) on {sam2.device}"
        return Segmenter("sam2", "SAM 2", description, str(checkpoint), sam2)
    if checkpoint is None:
        checkpoint = find_checkpoint(checkpoint_dir)
        if checkpoint is None:
            if model == "sam":
                raise FileNotFoundError(
                    f"--model sam needs a SAM checkpoint: none in {checkpoint_dir}/; download one from "
                    f"{CHECKPOINT_URL} (see checkpoints/README.md) or pass --checkpoint PATH"
                )
            found = grabcut()
            found.description += f": no SAM checkpoint in {checkpoint_dir}/"
            return found
    sam = load_sam(checkpoint, model_type, device)
    width = sam.image_encoder.patch_embed.proj.out_channels
    kind = model_type or EMBED_DIM_TO_TYPE.get(width, f"custom ViT width {width}")
    description = f"SAM {kind} from {checkpoint} (segment_anything.SamPredictor) on {sam.device}"
    return Segmenter("sam", "SAM", description, str(checkpoint), sam)


def net_device(net) -> str:
    return str(next(net.parameters()).device)
