"""Sam2ConvexPredictor: sam2's SAM2ImagePredictor with convex masks; loading SAM 2.

    model = load_sam2("checkpoints/sam2.1_hiera_tiny.pt")   # config from the file name
    predictor = Sam2ConvexPredictor(model)                   # was: SAM2ImagePredictor(model)
    predictor.set_image(image)
    masks, scores, low_res_logits = predictor.predict(point_coords, point_labels)

Every call runs sam2's own `SAM2ImagePredictor` (held, not re-implemented), then projects
the masks it returns onto ICNN sublevel sets with one batched `ConvexProjector` fit.

What is fitted: SAM 2's full-resolution logits, i.e. what `SAM2ImagePredictor.predict`
returns with `return_logits=True`. SAM 2 resizes the image to its square frame without
padding, so these logits cover exactly the image; its own hole/sprinkle filling
(`max_hole_area`, `max_sprinkle_area`, which needs sam2's optional CUDA extension) has
already been applied to them. SAM 2's mask is `logits > mask_threshold`, so the target
of the fit is sigmoid(logits - mask_threshold).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sam2.build_sam import build_sam2
from sam2.modeling.sam2_base import SAM2Base
from sam2.sam2_image_predictor import SAM2ImagePredictor

from sam_convex import validation
from sam_convex.grabcut import ImageNotSetError
from sam_convex.loading import default_device
from sam_convex.projection import OUTSIDE_LOGIT, ConvexFit, ConvexProjector

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
# SAM 2's prompt encoder knows these point labels: -1 padding, 0 background,
# 1 foreground, 2 / 3 box corners.
_POINT_LABELS = (-1, 0, 1, 2, 3)


# --------------------------------------------------------------------------- loading


def sam2_config_names() -> list[str]:
    """The model configs sam2 ships (e.g. "configs/sam2.1/sam2.1_hiera_t.yaml")."""
    import sam2

    root = Path(sam2.__path__[0])
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


def load_sam2(checkpoint: str | Path, config: str | None = None, device: str | torch.device | None = None) -> SAM2Base:
    """Build a SAM 2 model from sam2's own config and load a local checkpoint.

    Args:
        checkpoint: path to an official SAM 2 / 2.1 checkpoint (.pt, {"model": state
            dict}), e.g. checkpoints/sam2.1_hiera_tiny.pt.
        config: one of sam2's configs ("configs/sam2.1/sam2.1_hiera_t.yaml", or just
            "sam2.1_hiera_t"); None: inferred from the weights (Hiera width and depth,
            SAM 2 or 2.1), else from the official file name.
        device: where to put the model; default cuda if available, else cpu.
    Returns:
        the `SAM2Base` model in eval mode on `device`, with sam2's default
        post-processing settings (as `build_sam2`).
    Raises:
        FileNotFoundError: no such file (the message says where to download it).
        ValueError: unknown config, unreadable file, or weights that do not fit the config.
    """
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
    try:
        # weights_only: a checkpoint is data, never code to run.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged file
        raise ValueError(
            f"cannot read SAM 2 checkpoint {path} ({type(err).__name__}: {err}); the file "
            f"may be truncated or not a checkpoint; download it again from {SAM2_CHECKPOINT_URL}"
        ) from err
    # Official files wrap the weights as {"model": state_dict}; accept a bare one too.
    state_dict = loaded.get("model", loaded) if isinstance(loaded, dict) else loaded
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f"{path} does not hold a SAM 2 state dict (got {type(loaded).__name__})")
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
    model = build_sam2(config, ckpt_path=None, device="cpu")
    try:
        model.load_state_dict(state_dict)  # strict, as sam2's own loader
    except RuntimeError as err:
        detail = " ".join(line.strip() for line in str(err).splitlines()[:2])[:300]
        raise ValueError(
            f"weights in {path} do not fit SAM 2 config {config} ({detail} ...); pass the "
            "config of the model that was saved"
        ) from err
    return model.to(target).eval()


def check_sam2_model(model: object) -> None:
    """ValueError unless `model` looks like a SAM 2 model (what SAM2ImagePredictor uses)."""
    if all(hasattr(model, name) for name in ("prompt_encoder", "mask_decoder", "postprocess_masks")):
        raise ValueError(
            f"got a segment-anything (SAM 1) model ({type(model).__name__}); "
            "use SamConvexPredictor / SamConvexAutomaticMaskGenerator for it"
        )
    needed = (
        "forward_image",
        "_prepare_backbone_features",
        "sam_prompt_encoder",
        "sam_mask_decoder",
        "image_size",
        "backbone_stride",
    )
    if not all(hasattr(model, name) for name in needed):
        raise ValueError(
            "sam_model must be a SAM 2 model (sam2.modeling.sam2_base.SAM2Base, "
            f"e.g. from load_sam2 or sam2.build_sam.build_sam2), got {type(model).__name__}"
        )


def match_feature_sizes(predictor: SAM2ImagePredictor) -> None:
    """Set the predictor's backbone feature sizes from its model's image size.

    SAM2ImagePredictor hard-codes the sizes of a 1024 frame (256, 128, 64: strides 4, 8
    and 16); the same rule at the model's own `image_size` is identical for the official
    models and lets a model built at another size (e.g. a small test model) run.
    """
    s = predictor.model.image_size // predictor.model.backbone_stride
    predictor._bb_feat_sizes = [(4 * s, 4 * s), (2 * s, 2 * s), (s, s)]


# --------------------------------------------------------------------------- predictor


class Sam2ConvexPredictor:
    """Drop-in for `sam2.sam2_image_predictor.SAM2ImagePredictor` with convex masks.

    Args:
        sam_model: a SAM 2 model (`load_sam2`, or sam2's `build_sam2`).
        mask_threshold, max_hole_area, max_sprinkle_area: SAM2ImagePredictor's
            post-processing settings, passed to it unchanged.
        projector: the `ConvexProjector` used for every call; default `ConvexProjector()`.
        project: False makes every method return exactly what SAM2ImagePredictor returns.
        **kwargs: passed to SAM2ImagePredictor (which ignores them), as there.

    With `project=True`, `predict` / `predict_batch` return:
      * masks: the ICNN projection of each of SAM 2's masks, a convex set, as float32
        0/1 (SAM 2's dtype); with `return_logits=True`, the fitted -G at full
        resolution (float32; `>= 0` is the mask, whatever `mask_threshold` is);
      * scores: SAM 2's own predicted IoUs, unchanged (they rate SAM 2's masks);
      * low-res logits: SAM 2's own, unchanged, usable as `mask_input`.
    All masks of one call (C, B x C for batched prompts, or those of every image for
    predict_batch) are projected in one batched fit, kept as `last_fit` (`losses`: the
    per-mask projection distances); `last_sam_logits` holds SAM 2's logits of that call,
    shaped as the masks (a list for predict_batch).
    """

    def __init__(
        self,
        sam_model: SAM2Base,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
        *,
        projector: ConvexProjector | None = None,
        project: bool = True,
        **kwargs,
    ) -> None:
        check_sam2_model(sam_model)
        self.sam2_predictor = SAM2ImagePredictor(
            sam_model,
            mask_threshold=validation.number("mask_threshold", mask_threshold),
            max_hole_area=validation.number("max_hole_area", max_hole_area, minimum=0),
            max_sprinkle_area=validation.number("max_sprinkle_area", max_sprinkle_area, minimum=0),
            **kwargs,
        )
        match_feature_sizes(self.sam2_predictor)
        self.model = sam_model
        self.projector = validation.projector(projector) or ConvexProjector()
        self.project = validation.flag("project", project)
        self.last_fit: ConvexFit | None = None
        self.last_sam_logits = None
        self._image_sizes: list[tuple[int, int]] = []  # (H, W) of each set image
        self._is_batch = False  # set by set_image_batch, as in SAM2ImagePredictor

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path, config: str | None = None, device: str | torch.device | None = None, **kwargs
    ) -> Sam2ConvexPredictor:
        """Load SAM 2 with `load_sam2(checkpoint, config, device)` and wrap it; `kwargs`
        go to the constructor (mask_threshold, ..., projector, project)."""
        return cls(load_sam2(checkpoint, config, device), **kwargs)

    # ---- SAM2ImagePredictor's settings and state -------------------------------------

    @property
    def mask_threshold(self) -> float:
        return self.sam2_predictor.mask_threshold

    @property
    def max_hole_area(self) -> float:
        return self.sam2_predictor._transforms.max_hole_area

    @property
    def max_sprinkle_area(self) -> float:
        return self.sam2_predictor._transforms.max_sprinkle_area

    @property
    def device(self) -> torch.device:
        return self.sam2_predictor.device

    @property
    def is_image_set(self) -> bool:
        return bool(self._image_sizes)

    # ---- images ----------------------------------------------------------------------

    def set_image(self, image: np.ndarray | Image.Image, image_format: str = "RGB") -> None:
        """Compute the embedding of one image.

        Args:
            image: (H, W, 3) uint8 numpy array, or an RGB PIL image.
            image_format: "RGB" or "BGR", the channel order of a numpy image (an
                addition to SAM2ImagePredictor, which takes RGB only).
        """
        image = _as_rgb(image, image_format)
        self.reset_predictor()
        self.sam2_predictor.set_image(image)
        self._image_sizes = [_image_size(image)]

    def set_image_batch(self, image_list: list[np.ndarray]) -> None:
        """Compute the embeddings of a list of (H_i, W_i, 3) uint8 RGB numpy images."""
        if not isinstance(image_list, list) or not image_list:
            raise ValueError(
                f"image_list must be a non-empty list of (H, W, 3) uint8 RGB arrays, got {type(image_list).__name__}"
            )
        for i, image in enumerate(image_list):
            if not isinstance(image, np.ndarray):
                raise ValueError(
                    f"image_list[{i}] must be a numpy array (SAM 2 takes numpy "
                    f"images in a batch), got {type(image).__name__}"
                )
            try:
                validation.image(image)
            except ValueError as err:
                raise ValueError(f"image_list[{i}]: {err}") from None
        self.reset_predictor()
        self.sam2_predictor.set_image_batch(image_list)
        self._image_sizes = [_image_size(image) for image in image_list]
        self._is_batch = True

    def get_image_embedding(self) -> torch.Tensor:
        return self.sam2_predictor.get_image_embedding()

    def reset_predictor(self) -> None:
        self.sam2_predictor.reset_predictor()
        self._image_sizes = []
        self._is_batch = False
        self.last_fit = None
        self.last_sam_logits = None

    def reset_image(self) -> None:
        """reset_predictor under SamPredictor's name, so code written for either works."""
        self.reset_predictor()

    # ---- prediction ------------------------------------------------------------------

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """SAM2ImagePredictor.predict, with convex masks.

        Args (as SAM2ImagePredictor.predict):
            point_coords: (K, 2) float (x, y), or (B, K, 2) for B objects at once;
                point_labels: (K,) / (B, K), 1 object, 0 background (-1 padding).
            box: (4,) or (B, 4) float (x0, y0, x1, y1).
            mask_input: (1, h, w) or (B, 1, h, w) low-res logits from a previous call.
            multimask_output: three masks per prompt (C = 3) instead of one.
            return_logits: return float32 logits instead of 0/1 masks.
            normalize_coords: True: coordinates are pixels of the image; False: already
                normalised to [0, 1].
        Returns:
            masks: (C, H, W) float32 0/1 ((B, C, H, W) for batched prompts), or logits.
            scores: (C,) / (B, C) float32, SAM 2's predicted IoU of its own masks.
            low_res_logits: (C, h, w) / (B, C, h, w) float32, SAM 2's.
        Raises:
            ValueError: no image set, or prompts of the wrong shape or outside the image.
        """
        if not self.is_image_set:
            raise ImageNotSetError("an image must be set with .set_image(...) before predict")
        # SAM2ImagePredictor.predict after set_image_batch uses the last image.
        _check_prompts(
            point_coords,
            point_labels,
            box,
            mask_input,
            self._image_sizes[-1],
            normalize_coords,
            self._low_res_size,
            extent=self.project,
        )
        args = (point_coords, point_labels, box, mask_input, multimask_output)
        if not self.project:
            return self.sam2_predictor.predict(*args, return_logits=return_logits, normalize_coords=normalize_coords)
        sam_logits, scores, low_res = self.sam2_predictor.predict(
            *args, return_logits=True, normalize_coords=normalize_coords
        )
        shape = sam_logits.shape
        projected = self._project([sam_logits.reshape(-1, *shape[-2:])], return_logits)[0]
        self.last_sam_logits = sam_logits
        return projected.reshape(shape), scores, low_res

    def predict_batch(
        self,
        point_coords_batch: list[np.ndarray] | None = None,
        point_labels_batch: list[np.ndarray] | None = None,
        box_batch: list[np.ndarray] | None = None,
        mask_input_batch: list[np.ndarray] | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """SAM2ImagePredictor.predict_batch (after set_image_batch), with convex masks.

        Each `*_batch` list has one entry per image, as `predict` takes them. Returns
        lists over the images of masks (C, H_i, W_i) float32 0/1 (or logits), scores and
        low-res logits. The masks of all images go through one batched fit; images of
        different sizes are padded with background to the largest size for it (the
        projection of a mask lies inside its bounding box, so the padding changes only
        the fit lattice near a border, not what is projected), then cropped back.
        """
        n = len(self._image_sizes)
        if not self._is_batch:
            raise ValueError("predict_batch needs images set with .set_image_batch(...); after set_image use predict")
        batches = (point_coords_batch, point_labels_batch, box_batch, mask_input_batch)
        for name, batch in zip(("point_coords_batch", "point_labels_batch", "box_batch", "mask_input_batch"), batches):
            if batch is not None and (not isinstance(batch, (list, tuple)) or len(batch) != n):
                raise ValueError(f"{name} must be a list with one entry per image ({n})")
        for i, size in enumerate(self._image_sizes):
            coords, labels, box, mask_input = (b[i] if b is not None else None for b in batches)
            try:
                _check_prompts(
                    coords, labels, box, mask_input, size, normalize_coords, self._low_res_size, extent=self.project
                )
            except ValueError as err:
                raise ValueError(f"image {i}: {err}") from None
        kwargs = dict(multimask_output=multimask_output, normalize_coords=normalize_coords)
        if not self.project:
            return self.sam2_predictor.predict_batch(*batches, return_logits=return_logits, **kwargs)
        sam_logits, scores, low_res = self.sam2_predictor.predict_batch(*batches, return_logits=True, **kwargs)
        shapes = [m.shape for m in sam_logits]
        projected = self._project([m.reshape(-1, *m.shape[-2:]) for m in sam_logits], return_logits)
        self.last_sam_logits = sam_logits
        return [p.reshape(s) for p, s in zip(projected, shapes)], scores, low_res

    @property
    def _low_res_size(self) -> int:
        """Side of SAM 2's low-res logits (the model frame / 4)."""
        return self.model.image_size // 4

    def _project(self, sam_logits: Sequence[np.ndarray], return_logits: bool) -> list[np.ndarray]:
        """One batched fit of SAM 2's full-resolution logits.

        Args:
            sam_logits: per image, (N_i, H_i, W_i) float32 logits.
        Returns:
            per image, (N_i, H_i, W_i) float32: 0/1 masks, or the fitted -G.
        """
        h = max(m.shape[1] for m in sam_logits)
        w = max(m.shape[2] for m in sam_logits)
        # Background beyond an image's own size (finite: -inf would make NaN in the fit).
        stack = np.full((sum(len(m) for m in sam_logits), h, w), OUTSIDE_LOGIT, np.float32)
        start = 0
        for m in sam_logits:
            stack[start : start + len(m), : m.shape[1], : m.shape[2]] = m
            start += len(m)
        target = torch.from_numpy(stack).to(self.device) - self.mask_threshold
        fit = self.projector.fit(target, logits=True)
        self.last_fit = fit
        out = (fit.logits if return_logits else fit.masks.float()).cpu().numpy()
        pieces, start = [], 0
        for m in sam_logits:
            pieces.append(out[start : start + len(m), : m.shape[1], : m.shape[2]])
            start += len(m)
        return pieces


# --------------------------------------------------------------------------- checks


def _as_rgb(image, image_format: str) -> np.ndarray | Image.Image:
    """The image as SAM2ImagePredictor takes it: an RGB uint8 array or an RGB PIL image."""
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            raise ValueError(f"a PIL image must have mode 'RGB', got {image.mode!r}; use image.convert('RGB')")
        if image_format != "RGB":
            raise ValueError("image_format applies to numpy images; a PIL image is RGB")
        return image
    validation.image(image, image_format)
    # A copy, not a view: torchvision's ToTensor cannot take negative strides.
    return np.ascontiguousarray(image[..., ::-1]) if image_format == "BGR" else image


def _image_size(image) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.size[1], image.size[0]
    return int(image.shape[0]), int(image.shape[1])


def _check_prompts(
    point_coords,
    point_labels,
    box,
    mask_input,
    image_size: tuple[int, int],
    normalize_coords: bool,
    low_res: int,
    extent: bool = True,
) -> None:
    """ValueError for prompts SAM 2 would only assert on: shapes, labels, non-finite
    values; with `extent`, also points and boxes beyond the image ([0, W] x [0, H] in
    pixels, [0, 1]^2 when normalize_coords=False) and empty boxes, which SAM 2 accepts
    (so it is off with projection off, to return exactly SAM2ImagePredictor's output)."""
    h, w = image_size
    limit_x, limit_y = (float(w), float(h)) if normalize_coords else (1.0, 1.0)
    where = (
        f"the {w}x{h} image (x in [0, {w}], y in [0, {h}])"
        if normalize_coords
        else "[0, 1] (normalize_coords=False takes normalised coordinates)"
    )
    batch = []
    if point_coords is not None or point_labels is not None:
        if point_coords is None or point_labels is None:
            raise ValueError("point_coords and point_labels must be given together")
        coords = np.asarray(point_coords, dtype=np.float64)
        labels = np.asarray(point_labels)
        if coords.ndim not in (2, 3) or coords.shape[-1] != 2 or coords.shape[-2] == 0:
            raise ValueError(f"point_coords must have shape (K, 2) or (B, K, 2) as (x, y), got {coords.shape}")
        if labels.shape != coords.shape[:-1]:
            raise ValueError(f"point_labels must have shape {coords.shape[:-1]}, got {labels.shape}")
        if not np.isin(labels, _POINT_LABELS).all():
            raise ValueError(
                f"point_labels must be 1 (object) or 0 (background) (-1 pads), got {np.unique(labels).tolist()}"
            )
        if not np.isfinite(coords).all():
            raise ValueError("point_coords contain NaN or infinite values")
        real = labels != -1  # padding points carry no position
        x, y = coords[..., 0][real], coords[..., 1][real]
        outside = (x < 0) | (x > limit_x) | (y < 0) | (y > limit_y)
        if extent and outside.any():
            bad = np.stack([x[outside], y[outside]], axis=1).tolist()
            raise ValueError(f"point(s) {bad} lie outside {where}")
        if coords.ndim == 3:
            batch.append(coords.shape[0])
    if box is not None:
        boxes = np.asarray(box, dtype=np.float64)
        if boxes.ndim not in (1, 2) or boxes.shape[-1] != 4:
            raise ValueError(f"box must have shape (4,) or (B, 4) as (x0, y0, x1, y1), got {boxes.shape}")
        boxes = boxes.reshape(-1, 4)
        x0, y0, x1, y1 = boxes.T
        inside = (0 <= x0) & (x0 < x1) & (x1 <= limit_x) & (0 <= y0) & (y0 < y1) & (y1 <= limit_y)
        ok = np.isfinite(boxes).all(axis=1) & (inside | (not extent))
        if not ok.all():
            raise ValueError(
                f"box(es) {boxes[~ok].tolist()} are empty or lie outside {where}: "
                f"need 0 <= x0 < x1 <= {limit_x:g} and 0 <= y0 < y1 <= {limit_y:g}"
            )
        if np.ndim(box) == 2:
            batch.append(boxes.shape[0])
    if len(set(batch)) > 1:
        raise ValueError(f"batched point_coords and box must have the same B, got {batch}")
    if mask_input is not None:
        shape = tuple(np.shape(mask_input))
        if len(shape) not in (3, 4) or shape[-3] != 1 or shape[-2:] != (low_res, low_res):
            raise ValueError(
                f"mask_input must have shape (1, {low_res}, {low_res}) or "
                f"(B, 1, {low_res}, {low_res}) (low-res logits of an earlier "
                f"call), got {shape}"
            )
        if not np.isfinite(np.asarray(mask_input, dtype=np.float64)).all():
            raise ValueError("mask_input contains NaN or infinite values")
