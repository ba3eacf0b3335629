"""SamConvexPredictor and SamConvexAutomaticMaskGenerator with a SAM-family model that is
not segment-anything's `Sam`.

MobileSAM ships its own `Sam` class (same interface, TinyViT image encoder instead of a
ViT); this stand-in does the same with a small convolutional encoder: a separate class
that only follows segment-anything's model interface (image_encoder with img_size,
prompt_encoder, mask_decoder, preprocess, postprocess_masks, mask_threshold,
image_format, device).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_erosion
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from sam_convex import ConvexProjector, SamConvexPredictor
from sam_convex.amg import SamConvexAutomaticMaskGenerator
from sam_convex.measures import hull_gap

from tiny_sam import random_image
from tiny_sam2 import tiny_sam2

H, W = 96, 160
POINT = dict(point_coords=np.array([[80.0, 40.0]]), point_labels=np.array([1]))


class ConvEncoder(torch.nn.Module):
    """Two strided convolutions: (B, 3, S, S) -> (B, C, S/16, S/16)."""

    def __init__(self, img_size: int, out_chans: int):
        super().__init__()
        self.img_size = img_size  # SamPredictor reads the frame size here
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 4, stride=4), torch.nn.GELU(), torch.nn.Conv2d(16, out_chans, 4, stride=4)
        )

    def forward(self, x):
        return self.net(x)


class StandInSam(torch.nn.Module):
    """A SAM-family model: segment-anything's interface, not its class."""

    mask_threshold = 0.0
    image_format = "RGB"

    def __init__(self, img_size: int = 256, dim: int = 32, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        grid = img_size // 16
        self.image_encoder = ConvEncoder(img_size, dim)
        self.prompt_encoder = PromptEncoder(
            embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(img_size, img_size), mask_in_chans=8
        )
        self.mask_decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer_dim=dim,
            iou_head_depth=2,
            iou_head_hidden_dim=32,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
        )
        with torch.no_grad():  # sharp random masks, as in tiny_sam
            for mlp in self.mask_decoder.output_hypernetworks_mlps:
                mlp.layers[-1].weight.mul_(50.0)
                mlp.layers[-1].bias.mul_(50.0)
        self.register_buffer("pixel_mean", torch.tensor([123.7, 116.3, 103.5]).view(-1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([58.4, 57.1, 57.4]).view(-1, 1, 1))
        self.eval()

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess(self, x):
        """Normalise, then pad the resized image to the square frame (bottom/right)."""
        x = (x - self.pixel_mean) / self.pixel_std
        size = self.image_encoder.img_size
        return F.pad(x, (0, size - x.shape[-1], 0, size - x.shape[-2]))

    def postprocess_masks(self, masks, input_size, original_size):
        """Low-res logits -> the frame, drop the padding, -> the original image size."""
        size = self.image_encoder.img_size
        masks = F.interpolate(masks, (size, size), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def model():
    model = StandInSam()
    assert not isinstance(model, Sam)
    return model


@pytest.fixture(scope="module")
def image():
    return random_image(H, W)


def is_convex(mask):
    boundary = int((mask & ~binary_erosion(mask)).sum())
    return hull_gap(mask) <= max(2, 0.02 * boundary)


def test_unprojected_is_bit_identical_to_sam_predictor(model, image):
    ours, theirs = SamConvexPredictor(model, project=False), SamPredictor(model)
    ours.set_image(image)
    theirs.set_image(image)
    for multimask in (True, False):
        for a, b in zip(
            ours.predict(**POINT, multimask_output=multimask), theirs.predict(**POINT, multimask_output=multimask)
        ):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def test_projected_masks_are_convex(model, image):
    predictor = SamConvexPredictor(model, ConvexProjector())
    predictor.set_image(image)
    masks, _, _ = predictor.predict(**POINT)
    raw = predictor.last_sam_logits.numpy() > 0
    assert masks.shape == (3, H, W) and masks.dtype == bool
    assert predictor.last_fit.masks.shape == (3, H, W)
    assert all(is_convex(m) for m in masks)
    assert not all(is_convex(r) for r in raw)  # the stand-in's own masks are not


def test_automatic_mask_generator(model, image):
    settings = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    theirs = SamAutomaticMaskGenerator(model, **settings).generate(image)
    unprojected = SamConvexAutomaticMaskGenerator(model, **settings, project=False).generate(image)
    assert len(theirs) == len(unprojected) > 0
    for a, b in zip(unprojected, theirs):
        np.testing.assert_array_equal(a["segmentation"], b["segmentation"])
        assert a["bbox"] == b["bbox"] and a["area"] == b["area"]
    records = SamConvexAutomaticMaskGenerator(
        model, **settings, min_solidity=0.0, projector=ConvexProjector()
    ).generate(image)
    assert len(records) == len(theirs)
    assert all(is_convex(r["segmentation"]) for r in records if r["convex_distance"] is not None)


def test_other_families_are_refused(model):
    with pytest.raises(ValueError, match="Sam"):
        SamConvexPredictor(tiny_sam2())  # SAM 2 has its own wrapper
    with pytest.raises(ValueError, match="Sam"):
        SamConvexPredictor(torch.nn.Conv2d(3, 3, 1))
