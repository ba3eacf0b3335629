"""Loading SAM: official checkpoints, their model types, the device.

Put official checkpoints in checkpoints/ (see checkpoints/README.md); `find_checkpoint`
returns the one the commands use and `load_sam` builds the model with segment-anything's
own registry.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

from sam_convex import validation

CHECKPOINT_URL = "https://github.com/facebookresearch/segment-anything#model-checkpoints"
# Official checkpoint file names, in the order `find_checkpoint` prefers them.
OFFICIAL_CHECKPOINTS = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}
# Output channels of image_encoder.patch_embed.proj (the ViT embedding width) per type.
EMBED_DIM_TO_TYPE = {1280: "vit_h", 1024: "vit_l", 768: "vit_b"}
MODEL_TYPES = ("vit_h", "vit_l", "vit_b")


def default_device() -> torch.device:
    """CUDA when torch sees a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def find_checkpoint(directory: str | Path = "checkpoints") -> Path | None:
    """A SAM checkpoint in `directory`, or None.

    Official file names win (vit_h, then vit_l, then vit_b); otherwise the first
    *.pth / *.pt file by name. A relative `directory` is looked up in the current
    working directory first, then next to the package (the repository's checkpoints/).
    """
    directory = Path(directory)
    candidates = [directory]
    if not directory.is_absolute():
        candidates.append(Path(__file__).resolve().parent.parent / directory)
    for folder in candidates:
        if not folder.is_dir():
            continue
        for name in OFFICIAL_CHECKPOINTS.values():
            if (folder / name).is_file():
                return folder / name
        files = sorted(p for p in folder.iterdir() if p.suffix in (".pth", ".pt") and p.is_file())
        if files:
            return files[0]
    return None


def model_type_from_name(path: str | Path) -> str | None:
    """'vit_h' / 'vit_l' / 'vit_b' when the file name says so (official names do)."""
    match = re.search(r"vit_([hlb])", Path(path).name)
    return f"vit_{match.group(1)}" if match else None


def model_type_from_state_dict(state_dict: dict) -> str | None:
    """Model type from the ViT embedding width, or None when it is not a known one."""
    weight = state_dict.get("image_encoder.patch_embed.proj.weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        return None
    return EMBED_DIM_TO_TYPE.get(int(weight.shape[0]))


def load_sam(checkpoint: str | Path, model_type: str | None = None, device: str | torch.device | None = None) -> Sam:
    """Build a SAM model and load its weights.

    Args:
        checkpoint: path to a SAM state dict (.pth), e.g. checkpoints/sam_vit_b_01ec64.pth.
        model_type: "vit_h", "vit_l", "vit_b" (or "default" = vit_h). None: inferred from
            the weights' shapes (ViT width 1280/1024/768), else from the file name.
        device: where to put the model; default cuda if available, else cpu.
    Returns:
        the `Sam` model in eval mode on `device`.
    Raises:
        FileNotFoundError: no such file (the message says where to get checkpoints).
        ValueError: unknown model_type, unreadable file, or weights that do not fit the
            model type(s) tried.
    """
    validation.checkpoint_path("checkpoint", checkpoint)
    target = validation.device("device", device) or default_device()
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"SAM checkpoint not found: {path}. Download an official checkpoint "
            f"(sam_vit_b_01ec64.pth is the smallest) from {CHECKPOINT_URL} "
            "and put it in checkpoints/."
        )
    if model_type is not None and model_type not in sam_model_registry:
        raise ValueError(
            f"unknown model_type {model_type!r}; use one of {sorted(sam_model_registry)} or None to infer it"
        )
    try:
        # weights_only: a checkpoint is data, never code to run.
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged file
        raise ValueError(
            f"cannot read SAM checkpoint {path} ({type(err).__name__}: {err}); "
            "the file may be truncated or not a checkpoint; download it again from "
            f"{CHECKPOINT_URL}"
        ) from err
    if isinstance(state_dict, dict) and isinstance(state_dict.get("model"), dict):
        state_dict = state_dict["model"]  # some training scripts wrap the weights
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state_dict).__name__})")

    if any(k.startswith(("image_encoder.trunk.", "sam_mask_decoder.")) for k in state_dict):
        raise ValueError(f"{path} holds SAM 2 weights: load them with load_sam2 (--model sam2) and Sam2ConvexPredictor")
    if model_type is not None:
        tried = [model_type]
    else:
        # The weights' shapes are the stronger evidence; the file name may be renamed.
        guesses = (model_type_from_state_dict(state_dict), model_type_from_name(path))
        tried = list(dict.fromkeys(t for t in guesses if t))  # unique, keep order
        if not tried:
            raise ValueError(
                f"cannot tell the model type of {path}: neither the file name nor the weights "
                f"match {', '.join(MODEL_TYPES)}; pass model_type explicitly"
            )
    errors = []
    for name in tried:
        sam = sam_model_registry[name]()
        mismatch = state_dict_mismatch(sam, state_dict)
        if mismatch:
            errors.append(f"{name}: {mismatch}")
            continue
        sam.load_state_dict(state_dict)
        sam.eval()
        return sam.to(target)
    raise ValueError(f"weights in {path} do not fit SAM model type(s) tried: {', '.join(tried)} ({'; '.join(errors)})")


def state_dict_mismatch(model: torch.nn.Module, state_dict: dict, shown: int = 3) -> str:
    """'' when `state_dict` fits `model` exactly, else what does not fit: the first
    missing and unexpected keys and shape mismatches, with their counts."""
    expected = model.state_dict()
    parts = []
    for what, keys in (
        ("missing keys", [k for k in expected if k not in state_dict]),
        ("unexpected keys", [k for k in state_dict if k not in expected]),
    ):
        if keys:
            parts.append(f"{len(keys)} {what} ({', '.join(keys[:shown])}{', ...' if len(keys) > shown else ''})")
    shapes = [
        f"{k} {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and isinstance(v, torch.Tensor) and v.shape != expected[k].shape
    ]
    if shapes:
        parts.append(
            f"{len(shapes)} shape mismatches ({'; '.join(shapes[:shown])}{'; ...' if len(shapes) > shown else ''})"
        )
    return ", ".join(parts)
