"""A tiny, randomly initialised SAM built from segment_anything's own modules.

Same architecture family as the official models, shrunk so a test builds and runs it in
well under a second on a CPU. The model frame (`img_size`) defaults to 256 instead of
1024: SamPredictor derives everything from `image_encoder.img_size` (ResizeLongestSide,
the padding, `postprocess_masks`) and the prompt encoder's input size is set to match,
so the padding logic is the official one at a quarter of the scale (low-res logits are
64x64 instead of 256x256).

Random decoder weights give logits of about +-0.1, i.e. probabilities near 0.5 where
any shape fits about equally well; `logit_scale` scales the hypernetwork outputs (the
logits are linear in them) to the confident +-several range of a trained SAM.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer


def tiny_sam(
    img_size: int = 256, embed_dim: int = 32, prompt_dim: int = 32, seed: int = 0, logit_scale: float = 50.0
) -> Sam:
    """A random SAM with an (img_size // 16)^2 embedding; eval mode, on the CPU."""
    patch = 16
    grid = img_size // patch
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        sam = Sam(
            image_encoder=ImageEncoderViT(
                img_size=img_size,
                patch_size=patch,
                embed_dim=embed_dim,
                depth=1,
                num_heads=2,
                mlp_ratio=2,
                out_chans=prompt_dim,
                qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True,
                window_size=0,
                global_attn_indexes=(0,),
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=prompt_dim,
                image_embedding_size=(grid, grid),
                input_image_size=(img_size, img_size),
                mask_in_chans=8,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=1, embedding_dim=prompt_dim, mlp_dim=64, num_heads=2),
                transformer_dim=prompt_dim,
                iou_head_depth=2,
                iou_head_hidden_dim=32,
            ),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
    with torch.no_grad():
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(logit_scale)
            mlp.layers[-1].bias.mul_(logit_scale)
    return sam.eval()


def random_image(h: int = 96, w: int = 160, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 RGB: smooth blobs plus noise, so SAM's features vary in space."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    img = np.stack([np.sin(7 * xx + 3 * c) * np.cos(5 * yy - c) for c in range(3)], axis=-1)
    img = 127 + 90 * img + rng.normal(0, 10, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)
