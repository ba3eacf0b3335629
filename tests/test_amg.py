"""Convex automatic mask generators against segment-anything's and sam2's own, on a scene
of known masks: a damaged disk and an ellipse (convex objects) and a ring and an L
(non-convex), produced by tiny SAM / SAM 2 models whose mask decoder returns the shape
under each prompt point. Everything else (point grid, filters, NMS, RLE, records) is
the upstream generators' own code."""

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_erosion
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.utils.amg import rle_to_mask
from segment_anything.utils.transforms import ResizeLongestSide
from skimage.measure import regionprops

from sam_convex import ConvexProjector, GradientProjector
from sam_convex.amg import (
    DEFAULT_MIN_SOLIDITY,
    Sam2ConvexAutomaticMaskGenerator,
    SamConvexAutomaticMaskGenerator,
    major_solidity,
    project_records,
    solidity,
)
from sam_convex.measures import hull_gap, iou
from sam_convex.outlines import rasterize
from sam_convex.synthetic import disk, ellipse

from tiny_sam import random_image, tiny_sam
from tiny_sam2 import tiny_sam2

H, W = 160, 224
UPSTREAM_KEYS = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def scene():
    """Truth and SAM's masks of the four objects, (H, W) bool each."""
    yy, xx = np.mgrid[:H, :W]
    damaged = (disk(55, 50, 32, H, W) & ~disk(50, 45, 7, H, W)) | disk(93, 50, 5, H, W)
    ring = disk(60, 118, 34, H, W) & ~disk(60, 118, 19, H, W)
    ell = ellipse(168, 45, 36, 20, 0.3, H, W)
    l_shape = ((xx >= 140) & (xx < 158) & (yy >= 85) & (yy < 150)) | (
        (xx >= 140) & (xx < 210) & (yy >= 132) & (yy < 150)
    )
    truth = {"damaged_disk": disk(55, 50, 32, H, W), "ellipse": ell, "ring": ring, "L": l_shape}
    sam = {"damaged_disk": damaged, "ellipse": ell, "ring": ring, "L": l_shape}
    return truth, sam


class PointRecorder(torch.nn.Module):
    """Wraps a prompt encoder and keeps the last point coordinates (model frame)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.points = None

    def forward(self, points, boxes, masks):
        self.points = points[0] if points is not None else None
        return self.encoder(points, boxes, masks)

    def get_dense_pe(self):
        return self.encoder.get_dense_pe()


class SceneDecoder(torch.nn.Module):
    """A mask decoder that returns the scene object under each prompt's first point
    (logits +-40, sharp enough for the stability filter; predicted IoU 0.95), or
    nothing (IoU 0, filtered out upstream).

    Args:
        low_res: (K, L, L) bool, the objects in the low-res frame (L = frame / 4).
        frame: the model's square input frame in pixels.
        recorder: the model's wrapped prompt encoder.
        decoder: for SAM 2, its real decoder (SAM 2 embeds images with two of its convs).
    """

    def __init__(self, low_res, frame, recorder, decoder=None):
        super().__init__()
        self.register_buffer("low_res", low_res)
        self.frame, self.recorder, self.sam2 = frame, [recorder], decoder is not None
        if decoder is not None:
            self.conv_s0, self.conv_s1 = decoder.conv_s0, decoder.conv_s1

    def forward(self, sparse_prompt_embeddings, multimask_output, **unused):
        points = self.recorder[0].points[:, 0]  # (B, 2) x, y in the frame
        size = self.low_res.shape[-1]
        idx = (points * size / self.frame).long().clamp(0, size - 1)
        b, c = len(points), 3 if multimask_output else 1
        masks = torch.full((b, c, size, size), -40.0)
        scores = torch.zeros(b, c)
        for i, (x, y) in enumerate(idx.tolist()):
            hits = torch.nonzero(self.low_res[:, y, x]).flatten()
            if len(hits):
                masks[i] = torch.where(self.low_res[hits[0]], 40.0, -40.0)
                scores[i] = 0.95
        if self.sam2:
            return masks, scores, torch.zeros(b, c, 1), torch.ones(b, 1)
        return masks, scores


def to_low_res(mask, valid_hw, frame):
    """(H, W) bool -> (frame/4)^2 bool: resized into the frame's top-left valid_hw
    region (SAM pads the rest; SAM 2's valid region is the whole frame)."""
    t = F.interpolate(torch.from_numpy(mask).float()[None, None], size=valid_hw, mode="bilinear")
    framed = torch.zeros(1, 1, frame, frame)
    framed[..., : valid_hw[0], : valid_hw[1]] = t
    return (F.avg_pool2d(framed, 4) > 0.5)[0, 0]


def scene_sam():
    sam = tiny_sam()
    frame = sam.image_encoder.img_size
    valid = ResizeLongestSide.get_preprocess_shape(H, W, frame)
    sam.prompt_encoder = PointRecorder(sam.prompt_encoder)
    low = torch.stack([to_low_res(m, valid, frame) for m in scene()[1].values()])
    sam.mask_decoder = SceneDecoder(low, frame, sam.prompt_encoder)
    return sam


def scene_sam2():
    model = tiny_sam2(image_size=256)
    frame = model.image_size
    model.sam_prompt_encoder = PointRecorder(model.sam_prompt_encoder)
    low = torch.stack([to_low_res(m, (frame, frame), frame) for m in scene()[1].values()])
    model.sam_mask_decoder = SceneDecoder(low, frame, model.sam_prompt_encoder, model.sam_mask_decoder)
    return model


FAMILIES = {
    "sam": (scene_sam, SamAutomaticMaskGenerator, SamConvexAutomaticMaskGenerator),
    "sam2": (scene_sam2, None, Sam2ConvexAutomaticMaskGenerator),
}
SETTINGS = dict(points_per_side=8)


def upstream(family, model, **kwargs):
    if family == "sam":
        return SamAutomaticMaskGenerator(model, **SETTINGS, **kwargs)
    SAM2AutomaticMaskGenerator = pytest.importorskip("sam2.automatic_mask_generator").SAM2AutomaticMaskGenerator

    from sam_convex.sam2_predictor import match_feature_sizes

    generator = SAM2AutomaticMaskGenerator(model, **SETTINGS, **kwargs)
    match_feature_sizes(generator.predictor)
    return generator


def ours(family, model, **kwargs):
    kwargs.setdefault("projector", ConvexProjector())
    return FAMILIES[family][2](model, **SETTINGS, **kwargs)


@pytest.fixture(scope="module", params=list(FAMILIES))
def setup(request):
    family = request.param
    model = FAMILIES[family][0]()
    image = random_image(H, W)
    return family, model, image, upstream(family, model).generate(image)


def is_convex(mask):
    boundary = int((mask & ~binary_erosion(mask)).sum())
    return hull_gap(mask) <= max(2, 0.02 * boundary)


def by_object(records):
    """{object name: record} by best IoU with SAM's scene masks."""
    sam_masks = scene()[1]
    return {max(sam_masks, key=lambda k: iou(r["segmentation"], sam_masks[k])): r for r in records}


def assert_same_records(ours_, theirs):
    assert len(ours_) == len(theirs)
    for a, b in zip(ours_, theirs):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], np.ndarray):
                assert a[key].dtype == b[key].dtype
                np.testing.assert_array_equal(a[key], b[key])
            else:
                assert a[key] == b[key], key


# ---------------------------------------------------------------- the generators


def test_scene_is_what_upstream_finds(setup):
    """The stand-in model works: upstream finds the four objects, as drawn."""
    theirs = setup[3]
    found = by_object(theirs)
    assert len(theirs) == 4 and set(found) == set(scene()[1])
    for name, record in found.items():
        assert iou(record["segmentation"], scene()[1][name]) >= 0.8


def test_unprojected_is_exactly_upstream(setup):
    family, model, image, theirs = setup
    assert_same_records(ours(family, model, project=False).generate(image), theirs)
    for mode in ("uncompressed_rle",):
        assert_same_records(
            ours(family, model, project=False, output_mode=mode).generate(image),
            upstream(family, model, output_mode=mode).generate(image),
        )


def test_default_projects_the_convex_objects_only(setup):
    family, model, image, theirs = setup
    generator = ours(family, model)
    records = generator.generate(image)
    assert len(records) == len(theirs)
    truth = scene()[0]
    found = by_object(records)
    raw = by_object(theirs)
    for name, record in found.items():
        assert record.keys() == UPSTREAM_KEYS | {"solidity", "convex_distance"}
        for key in ("predicted_iou", "stability_score", "point_coords", "crop_box"):
            assert record[key] == raw[name][key]  # SAM's, unchanged
        assert record["solidity"] == pytest.approx(solidity(raw[name]["segmentation"]))
        mask = record["segmentation"]
        assert mask.dtype == bool and record["area"] == mask.sum()
        rows, cols = np.nonzero(mask)
        assert record["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min(), rows.max() - rows.min()]
    for name in ("ring", "L"):  # non-convex: below the threshold, SAM's mask kept
        assert major_solidity(raw[name]["segmentation"]) < DEFAULT_MIN_SOLIDITY
        assert found[name]["convex_distance"] is None
        np.testing.assert_array_equal(found[name]["segmentation"], raw[name]["segmentation"])
    for name in ("damaged_disk", "ellipse"):  # convex objects: projected
        assert major_solidity(raw[name]["segmentation"]) >= DEFAULT_MIN_SOLIDITY
        assert isinstance(found[name]["convex_distance"], float)
        assert is_convex(found[name]["segmentation"])
        assert iou(found[name]["segmentation"], truth[name]) >= 0.9
    # The projection fills the hole and drops (most of) the island: closer to the true
    # disk. (Decoded at low resolution, the island may touch the disk; the projection is
    # then the convex set closest to SAM's mask, which keeps a little of the bridge.)
    assert (
        iou(found["damaged_disk"]["segmentation"], truth["damaged_disk"])
        > iou(raw["damaged_disk"]["segmentation"], truth["damaged_disk"]) + 0.02
    )
    assert not is_convex(raw["damaged_disk"]["segmentation"])
    # One batched fit of the two chosen masks.
    assert generator.last_fit.masks.shape == (2, H, W)


def test_min_solidity_zero_projects_everything(setup):
    """Why the default gate: projected, the ring becomes a filled disk."""
    family, model, image, theirs = setup
    generator = ours(family, model, min_solidity=0.0)
    found = by_object(generator.generate(image))
    assert generator.last_fit.masks.shape[0] == 4
    assert all(r["convex_distance"] is not None for r in found.values())
    ring = scene()[0]["ring"]
    assert iou(found["ring"]["segmentation"], ring) < 0.8 < iou(by_object(theirs)["ring"]["segmentation"], ring)


def test_rle_output_decodes_to_the_binary_records(setup):
    family, model, image, _ = setup
    binary = ours(family, model).generate(image)
    rles = ours(family, model, output_mode="uncompressed_rle").generate(image)
    for a, b in zip(binary, rles):
        np.testing.assert_array_equal(rle_to_mask(b["segmentation"]), a["segmentation"])
        assert {k: v for k, v in a.items() if k != "segmentation"} == {
            k: v for k, v in b.items() if k != "segmentation"
        }


def test_coco_polygon_output(setup):
    """Projected records carry their convex polygon, exact for the pixel-centre rule;
    records that kept SAM's mask carry its outer contours, which pycocotools reads back."""
    from pycocotools import mask as mask_utils

    family, model, image, _ = setup
    binary = ours(family, model).generate(image)
    polygons = ours(family, model, output_mode="coco_polygon").generate(image)
    assert len(polygons) == len(binary)
    for a, b in zip(binary, polygons):
        assert "polygon" not in b
        assert {k: v for k, v in a.items() if k != "segmentation"} == {
            k: v for k, v in b.items() if k != "segmentation"
        }
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in b["segmentation"])
        if b["convex_distance"] is not None:
            (poly,) = b["segmentation"]
            np.testing.assert_array_equal(rasterize([np.reshape(poly, (-1, 2))], H, W)[0], a["segmentation"])
        else:
            read = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(b["segmentation"], H, W))).astype(bool)
            mask = a["segmentation"]
            assert not (mask & ~read).any()  # outlines: all of the mask, a ring's hole filled too
            assert (read & ~mask).sum() < 0.5 * read.sum()


# ---------------------------------------------------------------- the shared pieces


def test_solidity_matches_skimage():
    truth, sam = scene()
    shapes = dict(
        sam,
        two=disk(40, 40, 15, H, W) | disk(180, 120, 20, H, W),
        line=np.pad(np.ones((1, 30), bool), ((10, H - 11), (5, W - 35))),
    )
    for name, mask in shapes.items():
        expected = regionprops(mask.astype(np.uint8))[0].solidity
        assert solidity(mask) == pytest.approx(expected, abs=0.01), name
    assert solidity(np.zeros((H, W), bool)) == 0.0
    assert solidity(truth["ellipse"]) > 0.97 and solidity(truth["ring"]) < 0.75


def record_of(mask):
    """An upstream-style binary_mask record of an (H, W) bool mask."""
    rows, cols = np.nonzero(mask)
    return dict(
        segmentation=mask,
        area=int(mask.sum()),
        bbox=[int(cols.min()), int(rows.min()), int(np.ptp(cols)), int(np.ptp(rows))],
        predicted_iou=0.9,
        point_coords=[[0.0, 0.0]],
        stability_score=0.9,
        crop_box=[0, 0, W, H],
    )


def test_gate_ignores_islands_not_second_objects():
    """The gate is the solidity of the components with >= 10% of the largest one's area:
    a convex object with far islands (each under 10%) is projected, though its plain
    solidity is low; a ring, an L, and two separate objects (the smaller at 16% of the
    larger's area, a major component) are not."""
    yy, xx = np.mgrid[:H, :W]
    body = disk(60, 80, 40, H, W)
    with_islands = body | disk(190, 30, 8, H, W) | disk(200, 130, 9, H, W)  # 4%, 5% of the body
    masks = {
        "islands": with_islands,
        "ring": disk(110, 80, 45, H, W) & ~disk(110, 80, 25, H, W),
        "L": ((xx >= 40) & (xx < 60) & (yy >= 20) & (yy < 140)) | ((xx >= 40) & (xx < 180) & (yy >= 120) & (yy < 140)),
        "two_objects": body | disk(180, 80, 16, H, W),
    }
    assert major_solidity(with_islands) == solidity(body) > 0.97
    assert solidity(with_islands) < 0.5 < DEFAULT_MIN_SOLIDITY  # plain solidity would keep it raw
    assert major_solidity(masks["two_objects"]) == solidity(masks["two_objects"]) < 0.7
    assert major_solidity(np.zeros((H, W), bool)) == 0.0
    out, fit = project_records([record_of(m) for m in masks.values()], ConvexProjector(), DEFAULT_MIN_SOLIDITY)
    got = dict(zip(masks, out))
    projected = got["islands"]
    assert projected["convex_distance"] is not None and is_convex(projected["segmentation"])
    assert fit.masks.shape == (1, H, W)  # only the convex object went into the fit
    assert iou(projected["segmentation"], body) > 0.97  # islands dropped
    assert projected["solidity"] == pytest.approx(solidity(with_islands))  # the record keeps plain solidity
    for name in ("ring", "L", "two_objects"):
        assert got[name]["convex_distance"] is None, name
        assert got[name]["segmentation"] is masks[name], name


def test_project_records_keeps_empty_projections_as_sam_made_them():
    """A mask the projection empties keeps SAM's mask. (The exact polygon fit never
    empties a non-empty binary mask: one foreground pixel beats the empty set; the
    gradient fit empties this thin diagonal cross of lines.)"""
    yy, xx = np.mgrid[:H, :W]
    cross = (np.abs(yy - xx) < 1) | (np.abs(yy + xx - 200) < 1)
    record = dict(
        segmentation=cross,
        area=int(cross.sum()),
        bbox=[0, 0, 1, 1],
        predicted_iou=0.9,
        point_coords=[[0.0, 0.0]],
        stability_score=0.9,
        crop_box=[0, 0, W, H],
    )
    out, fit = project_records([record], GradientProjector(), 0.0)
    assert not fit.masks.any()
    assert out[0]["convex_distance"] is None and out[0]["segmentation"] is cross
    assert out[0]["solidity"] < 0.2 and "solidity" not in record  # input not modified


# ---------------------------------------------------------------- interface, bad input


@pytest.mark.parametrize("family", list(FAMILIES))
def test_constructor_mirrors_upstream(family):
    SAM2AutomaticMaskGenerator = pytest.importorskip("sam2.automatic_mask_generator").SAM2AutomaticMaskGenerator

    theirs = SamAutomaticMaskGenerator if family == "sam" else SAM2AutomaticMaskGenerator
    up = [p for p in inspect.signature(theirs.__init__).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    our = list(inspect.signature(FAMILIES[family][2].__init__).parameters.values())[: len(up)]
    assert [(p.name, p.default) for p in our] == [(p.name, p.default) for p in up]


def test_bad_input():
    sam, sam2 = tiny_sam(), tiny_sam2()
    with pytest.raises(ValueError, match="Sam2ConvexAutomaticMaskGenerator"):
        SamConvexAutomaticMaskGenerator(sam2)
    with pytest.raises(ValueError, match="SamConvexAutomaticMaskGenerator"):
        Sam2ConvexAutomaticMaskGenerator(sam)
    with pytest.raises(ValueError, match="SAM model"):
        SamConvexAutomaticMaskGenerator(object())
    with pytest.raises(ValueError, match="output_mode"):
        SamConvexAutomaticMaskGenerator(sam, output_mode="png")
    with pytest.raises(ValueError, match="min_solidity"):
        Sam2ConvexAutomaticMaskGenerator(sam2, min_solidity=1.5)
    with pytest.raises(ValueError, match="exactly one"):
        SamConvexAutomaticMaskGenerator(sam, points_per_side=None)
    generator = SamConvexAutomaticMaskGenerator(sam, points_per_side=2)
    for bad, match in ((random_image(H, W).astype(np.float32), "uint8"), (random_image(H, W)[..., :2], r"\(H, W, 3\)")):
        with pytest.raises(ValueError, match=match):
            generator.generate(bad)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"min_solidity": None}, "min_solidity"),
        ({"min_solidity": "0.5"}, "min_solidity"),
        ({"min_solidity": True}, "min_solidity"),
        ({"points_per_side": 0}, "points_per_side"),
        ({"points_per_side": 2.5}, "points_per_side"),
        ({"points_per_batch": 0}, "points_per_batch"),
        ({"pred_iou_thresh": float("nan")}, "pred_iou_thresh"),
        ({"projector": "polygon"}, "projector"),
        ({"project": "no"}, "project"),
    ],
)
def test_generator_settings_are_checked_where_given(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamConvexAutomaticMaskGenerator(FAMILIES["sam"][0](), **kwargs)
