"""Each export read back by its format's own reader, IoU to our masks >= 0.99."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sam_convex import ConvexProjector
from sam_convex.exports import coco_dataset, to_coco, to_labelme, to_labelstudio, to_yolo
from sam_convex.measures import iou
from sam_convex.outlines import PolygonWarning
from sam_convex.synthetic import ellipse, rotated_rectangle

H, W = 480, 640


@pytest.fixture(scope="module")
def fit():
    """Three objects of 250-400 px across and an empty mask. The readers of YOLO and
    labelme fill with OpenCV / PIL, about half a pixel off the pixel-centre rule along
    the outline: IoU about 1 - 1 / size, >= 0.99 from about this size (docs/polygons.md)."""
    rng = np.random.default_rng(0)
    targets = np.stack(
        [
            ellipse(250, 220, 200, 130, 0.4, H, W) & (rng.random((H, W)) > 0.1),
            rotated_rectangle(400, 250, 170, 120, 1.1, H, W),
            ellipse(320, 300, 140, 125, 2.0, H, W),
            np.zeros((H, W), bool),
        ]
    ).astype(np.float32)
    return ConvexProjector().fit(targets)


def test_coco_read_back_by_pycocotools(fit, tmp_path):
    dataset = coco_dataset([("a.png", fit), ("b.png", fit.masks[:1].numpy())], categories=["polyp"])
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(dataset))
    coco = COCO(str(path))
    assert coco.getImgIds() == [1, 2] and len(coco.getAnnIds(imgIds=[1])) == 3  # the empty mask is skipped
    masks = fit.masks.numpy()
    for ann_id, mask in zip(coco.getAnnIds(imgIds=[1]), masks):
        ann = coco.loadAnns(ann_id)[0]
        got = coco.annToMask(ann).astype(bool)
        assert iou(got, mask) >= 0.99
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert ann["bbox"] == mask_utils.toBbox(rle).tolist() and ann["area"] == mask_utils.area(rle)
    (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=[2]))
    assert iou(coco.annToMask(ann).astype(bool), masks[0]) >= 0.99
    assert ann["id"] == 4  # ids run on over the images


# ultralytics patches PIL's Image.open on import (and offers to pip-install what it
# misses), so its reader runs in a process of its own.
ULTRALYTICS_READER = """
import sys
import numpy as np
from ultralytics.data.utils import polygon2mask, verify_image_label
image, label, out = sys.argv[1:]
_, lb, shape, segments, _, _, nf, _, nc, msg = verify_image_label((image, label, "", False, 3, 0, 0, False))
assert (nf, nc) == (1, 0), msg
h, w = shape
masks = [polygon2mask((h, w), [s * [w, h]]).astype(bool) for s in segments]
np.savez(out, classes=lb[:, 0], shape=np.array(shape), masks=np.stack(masks))
"""


def test_yolo_read_back_by_ultralytics(fit, tmp_path):
    image, label, out = tmp_path / "img.png", tmp_path / "img.txt", tmp_path / "read.npz"
    cv2.imwrite(str(image), np.zeros((H, W, 3), np.uint8))
    label.write_text(to_yolo(fit, class_id=[0, 2, 1, 0]))
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", ULTRALYTICS_READER, str(image), str(label), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    read = np.load(out)
    assert read["classes"].tolist() == [0, 2, 1] and read["shape"].tolist() == [H, W]
    for got, mask in zip(read["masks"], fit.masks.numpy()):
        assert iou(got, mask) >= 0.99


def test_labelme_read_back_by_its_shape_to_mask(fit):
    # labelme's reader, labelme.utils.shape_to_mask, draws a "polygon" shape's points with
    # PIL: ImageDraw.polygon(xy, outline=1, fill=1) on an (imageHeight, imageWidth) image.
    # labelme itself is not installed (it pulls PyQt5 and onnxruntime), so this is its code.
    data = json.loads(json.dumps(to_labelme(fit, "img.png", label=["a", "b", "c", "d"])))
    assert (data["imageHeight"], data["imageWidth"], data["imagePath"]) == (H, W, "img.png")
    assert [s["label"] for s in data["shapes"]] == ["a", "b", "c"] and data["imageData"] is None
    for shape, mask in zip(data["shapes"], fit.masks.numpy()):
        assert shape["shape_type"] == "polygon"
        canvas = PIL.Image.fromarray(np.zeros((H, W), np.uint8))
        PIL.ImageDraw.Draw(canvas).polygon(xy=[tuple(p) for p in shape["points"]], outline=1, fill=1)
        assert iou(np.array(canvas, bool), mask) >= 0.99


def test_labelstudio_read_back_by_its_converter(fit, tmp_path):
    from label_studio_converter import Converter

    prediction = to_labelstudio(fit, label="polyp", scores=[0.9, 0.8, 0.7, 0.6])
    assert [r["type"] for r in prediction["result"]] == ["polygonlabels"] * 3
    assert prediction["score"] == pytest.approx(0.8)  # the mean of the kept regions'
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((H, W, 3), np.uint8))
    tasks = [{"id": 1, "data": {"image": str(image)}, "annotations": [{"id": 1, "result": prediction["result"]}]}]
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    config = (
        '<View><Image name="image" value="$image"/>'
        '<PolygonLabels name="label" toName="image"><Label value="polyp"/></PolygonLabels></View>'
    )
    Converter(config, str(tmp_path)).convert_to_coco(str(tmp_path / "tasks.json"), str(tmp_path / "out"), is_dir=False)
    coco = COCO(str(tmp_path / "out" / "result.json"))
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == 3
    for ann, mask in zip(anns, fit.masks.numpy()):
        assert iou(coco.annToMask(ann).astype(bool), mask) >= 0.99


def test_masks_in_and_bad_input():
    m = np.zeros((20, 30), bool)
    m[5:9, 3:12] = True
    (ann,) = to_coco(m, image_id=7, category_id=3)
    assert ann["segmentation"] == [[3.0, 5.0, 12.0, 5.0, 12.0, 9.0, 3.0, 9.0]]  # the pixels' outline
    assert (ann["image_id"], ann["category_id"], ann["bbox"], ann["area"]) == (7, 3, [3.0, 5.0, 9.0, 4.0], 36.0)
    assert to_yolo(np.zeros((1, 20, 30), bool)) == ""
    with pytest.raises(ValueError, match="bool masks"):
        to_coco(np.zeros((20, 30), np.float32))
    with pytest.raises(ValueError, match="one per mask"):
        to_yolo(np.stack([m, m]), class_id=[0, 1, 2])
    l_shape = m.copy()
    l_shape[5:19, 3:5] = True
    with pytest.warns(PolygonWarning):
        to_labelme(l_shape, "x.png")
