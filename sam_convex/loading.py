"""Loading SAM and SAM 2: official checkpoints, their model types / configs, the device.

Put official checkpoints in checkpoints/ (see checkpoints/README.md); `find_checkpoint`
returns the SAM one the commands use, `load_sam` builds the model with segment-anything's
own registry and `load_sam2` with sam2's own config (inferred from the weights). sam2 is
an optional extra: it is imported when a SAM 2 model is built (`require_sam2`).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

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
SAM2_INSTALL = "SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0"


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


def model_types_to_try(path: Path, state_dict: dict) -> list[str]:
    """The SAM model types `path` may hold, best evidence first: the weights' shapes,
    then the file name (which may have been renamed); ValueError when neither tells."""
    guesses = (model_type_from_state_dict(state_dict), model_type_from_name(path))
    tried = list(dict.fromkeys(t for t in guesses if t))  # unique, keep order
    if not tried:
        raise ValueError(
            f"cannot tell the model type of {path}: neither the file name nor the weights "
            f"match {', '.join(MODEL_TYPES)}; pass model_type explicitly"
        )
    return tried


def read_state_dict(path: Path, what: str, url: str) -> dict:
    """The state dict in a checkpoint file, loaded weights-only (a checkpoint is data,
    never code to run); official SAM 2 files and some training scripts wrap it as
    {"model": state_dict}. ValueError for a damaged file or one without a state dict."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged file
        raise ValueError(
            f"cannot read {what} checkpoint {path} ({type(err).__name__}: {err}); the file "
            f"may be truncated or not a checkpoint; download it again from {url}"
        ) from err
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError(f"{path} does not hold a {what} state dict (got {type(loaded).__name__})")
    return loaded


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
    state_dict = read_state_dict(path, "SAM", CHECKPOINT_URL)
    if any(k.startswith(("image_encoder.trunk.", "sam_mask_decoder.")) for k in state_dict):
        raise ValueError(f"{path} holds SAM 2 weights: load them with load_sam2 (--model sam2) and Sam2ConvexPredictor")
    tried = [model_type] if model_type is not None else model_types_to_try(path, state_dict)
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


# --------------------------------------------------------------------------- SAM 2


def require_sam2(module: str = "") -> ModuleType:
    """sam2 (or its submodule `module`, e.g. "build_sam"), or an ImportError that says
    how to install it: sam2 is an optional extra, published as source only."""
    name = f"sam2.{module}" if module else "sam2"
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ImportError(
            f"SAM 2 needs the sam2 package ({err}); after torch, install it with: {SAM2_INSTALL}"
        ) from err


SAM2_CHECKPOINT_URL = "https://github.com/facebookresearch/sam2#download-checkpoints"
# Where the official files live; a checkpoint's URL is the base plus its file name.
SAM2_DOWNLOAD_BASE = {
    "sam2.1": "https://dl.fbaipublicfiles.com/segment_anything_2/092824/",
    "sam2": "https://dl.fbaipublicfiles.com/segment_anything_2/072824/",
}
# Official checkpoint file name -> the sam2 config that builds its model.
SAM2_CONFIGS = {
    "sam2.1_hiera_tiny.pt": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small.pt": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus.pt": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large.pt": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2_hiera_tiny.pt": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small.pt": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus.pt": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large.pt": "configs/sam2/sam2_hiera_l.yaml",
}
# (Hiera embedding width, number of Hiera blocks) -> size suffix of the config name.
_HIERA_SIZES = {(96, 12): "t", (96, 16): "s", (112, 24): "b+", (144, 48): "l"}


def sam2_config_names() -> list[str]:
    """The model configs sam2 ships (e.g. "configs/sam2.1/sam2.1_hiera_t.yaml")."""
    root = Path(require_sam2().__path__[0])
    return sorted(str(p.relative_to(root)) for p in (root / "configs").glob("sam2*/sam2*.yaml"))


def resolve_sam2_config(config: str) -> str:
    """A packaged config from "configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_t.yaml"
    or "sam2.1_hiera_t"; ValueError naming the known ones otherwise."""
    known = sam2_config_names()
    name = str(config)
    stem = Path(name).name.removesuffix(".yaml")
    for candidate in known:
        if name == candidate or Path(candidate).name.removesuffix(".yaml") == stem:
            return candidate
    raise ValueError(f"unknown SAM 2 config {config!r}; use one of {known}")


def sam2_config_from_name(path: str | Path) -> str | None:
    """The config of an official checkpoint file name (also with a prefix such as
    "copy_of_"), or None."""
    name = Path(path).name
    for official in sorted(SAM2_CONFIGS, key=len, reverse=True):  # 2.1 names before 2
        if name.endswith(official):
            return SAM2_CONFIGS[official]
    return None


def sam2_config_from_state_dict(state_dict: dict) -> str | None:
    """The config whose model these weights fit, from the Hiera width and depth (t, s,
    b+, l) and the keys SAM 2.1 added; None when they are not an official model's."""
    weight = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        return None
    blocks = {m.group(1) for k in state_dict if (m := re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", k))}
    size = _HIERA_SIZES.get((int(weight.shape[0]), len(blocks)))
    if size is None:
        return None
    if "no_obj_embed_spatial" in state_dict:  # only SAM 2.1 has it
        return f"configs/sam2.1/sam2.1_hiera_{size}.yaml"
    return f"configs/sam2/sam2_hiera_{size}.yaml"


def load_sam2(
    checkpoint: str | Path, config: str | None = None, device: str | torch.device | None = None
) -> torch.nn.Module:
    """Build a SAM 2 model from sam2's own config and load a local checkpoint.

    Args:
        checkpoint: path to an official SAM 2 / 2.1 checkpoint (.pt, {"model": state
            dict}), e.g. checkpoints/sam2.1_hiera_tiny.pt.
        config: one of sam2's configs ("configs/sam2.1/sam2.1_hiera_t.yaml", or just
            "sam2.1_hiera_t"); None: inferred from the weights (Hiera width and depth,
            SAM 2 or 2.1), else from the official file name.
        device: where to put the model; default cuda if available, else cpu.
    Returns:
        the `sam2.modeling.sam2_base.SAM2Base` model in eval mode on `device`, with sam2's default
        post-processing settings (as `build_sam2`).
    Raises:
        FileNotFoundError: no such file (the message says where to download it).
        ValueError: unknown config, unreadable file, or weights that do not fit the config.
        ImportError: sam2 is not installed (the message gives the install command).
    """
    require_sam2()  # before anything else: without sam2 nothing below can succeed
    validation.checkpoint_path("checkpoint", checkpoint)
    target = validation.device("device", device) or default_device()
    path = Path(checkpoint)
    if not path.is_file():
        name = path.name if path.name in SAM2_CONFIGS else "sam2.1_hiera_tiny.pt"
        url = SAM2_DOWNLOAD_BASE["sam2.1" if name.startswith("sam2.1") else "sam2"] + name
        raise FileNotFoundError(
            f"SAM 2 checkpoint not found: {path}. Download an official checkpoint, e.g. {url} "
            f"(all are listed at {SAM2_CHECKPOINT_URL}), and pass its path."
        )
    if config is not None:
        config = resolve_sam2_config(config)
    state_dict = read_state_dict(path, "SAM 2", SAM2_CHECKPOINT_URL)
    if any(k.startswith(("image_encoder.patch_embed.", "prompt_encoder.")) for k in state_dict):
        raise ValueError(
            f"{path} holds segment-anything (SAM 1) weights; load them with load_sam and use SamConvexPredictor"
        )
    if config is None:
        # The weights' shapes are the stronger evidence; the file may have been renamed.
        config = sam2_config_from_state_dict(state_dict) or sam2_config_from_name(path)
        if config is None:
            raise ValueError(
                f"cannot tell which SAM 2 model {path} holds: neither the weights nor the file "
                f"name match an official one ({', '.join(SAM2_CONFIGS)}); pass config="
            )
    model = require_sam2("build_sam").build_sam2(config, ckpt_path=None, device="cpu")
    try:
        model.load_state_dict(state_dict)  # strict, as sam2's own loader
    except RuntimeError as err:
        detail = " ".join(line.strip() for line in str(err).splitlines()[:2])[:300]
        raise ValueError(
            f"weights in {path} do not fit SAM 2 config {config} ({detail} ...); pass the "
            "config of the model that was saved"
        ) from err
    return model.to(target).eval()
