"""A small SAM 2 with random weights, built by sam2's own config and modules (no download).

sam2's Hiera-tiny config at a 128-pixel frame instead of 1024: the same modules and
code paths as the official model (Hiera trunk, FPN neck, high-resolution features,
SAM 2 prompt encoder and mask decoder), 64 times fewer pixels, so `set_image` takes well
under a second on one CPU thread.

sam2 is an optional extra: a test that builds one is skipped where sam2 is missing.
"""

import pytest
import torch

try:  # held here, so that a test may monkeypatch sam2's build_sam2 to build this model
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor
except ImportError:  # the optional extra is missing: the tests that need it skip
    build_sam2 = SAM2ImagePredictor = None

TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def tiny_sam2(image_size: int = 128, seed: int = 0, logit_scale: float = 30.0):
    """A random SAM 2 (sam2.1 Hiera-tiny modules) with an `image_size` frame; eval mode, CPU.

    `logit_scale` multiplies the mask decoder's last hypernetwork layers: random weights
    give logits within about +-0.4, i.e. probabilities near 0.5 everywhere; scaled, the
    masks have clear insides and outsides like a trained model's.
    """
    if build_sam2 is None:
        pytest.skip("sam2 (an optional extra) is not installed")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_sam2(
            TINY_CONFIG, ckpt_path=None, device="cpu", hydra_overrides_extra=[f"++model.image_size={image_size}"]
        )
    with torch.no_grad():
        for mlp in model.sam_mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(logit_scale)
            mlp.layers[-1].bias.mul_(logit_scale)
    return model.eval()


def sam2_image_predictor(model, **kwargs):
    """sam2's own SAM2ImagePredictor for `model`, with the backbone feature sizes of the
    model's frame (the predictor hard-codes those of a 1024 frame)."""
    if SAM2ImagePredictor is None:
        pytest.skip("sam2 (an optional extra) is not installed")
    predictor = SAM2ImagePredictor(model, **kwargs)
    s = model.image_size // model.backbone_stride
    predictor._bb_feat_sizes = [(4 * s, 4 * s), (2 * s, 2 * s), (s, s)]
    return predictor


class FixedSam2Decoder(torch.nn.Module):
    """Stands in for SAM 2's mask decoder: always the same low-res logits.

    Keeps the real decoder's two convolutions, which SAM 2 applies to the backbone's
    high-resolution features while embedding the image.

    Args:
        decoder: the model's `sam_mask_decoder`.
        low_res: (1, 1, h, w) logits, h = w = the model's image_size // 4.
    """

    def __init__(self, decoder: torch.nn.Module, low_res: torch.Tensor, score: float = 0.9):
        super().__init__()
        self.conv_s0, self.conv_s1 = decoder.conv_s0, decoder.conv_s1
        self.register_buffer("low_res", low_res)
        self.score = score

    def forward(
        self,
        image_embeddings,
        image_pe,
        sparse_prompt_embeddings,
        dense_prompt_embeddings,
        multimask_output,
        repeat_image,
        high_res_features=None,
    ):
        b, c = sparse_prompt_embeddings.shape[0], 3 if multimask_output else 1
        masks = self.low_res.expand(b, c, -1, -1).clone()
        return masks, torch.full((b, c), self.score), torch.zeros(b, c, 1), torch.ones(b, 1)
