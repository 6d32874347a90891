"""Image pipeline: ImageNet lists / image folders, transforms against hand computations, training and
self-distillation of the image models on a synthetic image set."""
import json

import pytest
import torch
import torch.nn.functional as F

from videomamba.data.annotations import AnnotationError
from videomamba.data.images import (ImageDataset, eval_transform, load_image, make_synthetic_images,
                                    read_image_list)
from videomamba.data.transforms import IMAGENET_MEAN, IMAGENET_STD

TINY_IMAGE = {"model.name": "videomamba_image_tiny", "model.embed_dim": 16, "model.depth": 1,
              "model.patch_size": 8, "data.img_size": 16, "data.batch_size": 4, "data.num_workers": 0,
              "optim.lr": 2e-3, "optim.epochs": 1, "optim.warmup_steps": 0, "train.amp": "none",
              "train.plots": False, "train.progress": "none"}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_synthetic_images(tmp_path_factory.mktemp("imgs"), per_class=4, val_per_class=2, size=24)


def test_list_and_folder_formats_agree(images):
    s1, c1 = read_image_list(images["train_list"], root=images["root"])
    s2, c2 = read_image_list(images["train_dir"])
    assert c1 == ["0", "1", "2", "3"] and c2 == ["blue", "gray", "green", "red"]
    assert len(s1) == len(s2) == 16
    # same files; the list's label i is class i of the generator's order (red, green, blue, gray)
    order = ["red", "green", "blue", "gray"]
    assert sorted((str(s.path), order[s.label]) for s in s1) == sorted((str(s.path), c2[s.label]) for s in s2)


def test_bad_list_line_names_the_file(tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("a.JPEG 0\nb.JPEG\n")
    with pytest.raises(AnnotationError, match=r"train.txt:2: expected 'relative/path.JPEG label'"):
        read_image_list(f)
    with pytest.raises(AnnotationError, match="not found"):
        read_image_list(tmp_path / "missing.txt")


def test_eval_transform_by_hand(tmp_path):
    from PIL import Image
    import numpy as np

    arr = (np.arange(40 * 56 * 3) % 251).astype(np.uint8).reshape(40, 56, 3)
    Image.fromarray(arr).save(tmp_path / "x.png")
    img = load_image(tmp_path / "x.png")
    assert img.shape == (3, 40, 56) and torch.equal(img, torch.from_numpy(arr).permute(2, 0, 1))
    out = eval_transform(img, 32, crop_pct=0.875)
    # by hand: short side int(32 / 0.875) = 36, long side round(56 * 36 / 40) = 50, bicubic; centre 32x32
    r = F.interpolate(img[None].float(), size=(36, 50), mode="bicubic", align_corners=False, antialias=True)
    r = r.round().clamp(0, 255)[0, :, 2:34, 9:41] / 255.0
    ref = (r - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(out, ref)


def test_dataset_items(images):
    tr = ImageDataset(images["train_dir"], train=True, img_size=16)
    va = ImageDataset(images["val_list"], root=images["root"], train=False, img_size=16)
    x = tr[0]
    assert x["video"].shape == (3, 16, 16) and x["video"].dtype == torch.float32 and x["label"] == 0
    assert va[0]["video"].shape == (3, 16, 16) and len(va) == 8


def test_train_image_model_and_distill_a_wider_student(images, tmp_path):
    from videomamba.engine.trainer import train

    common = {**TINY_IMAGE, "data.train": str(images["train_dir"]), "data.val": str(images["val_dir"])}
    teacher = train(None, {**common, "train.out_dir": str(tmp_path / "teacher")})
    test = json.loads((tmp_path / "teacher/test_metrics.json").read_text())
    assert test["n"] == 8 and 0 <= test["top1"] <= 100 and test["views"] == {"clips": 1, "crops": 1}
    assert teacher.model.cfg.image
    # self-distillation as the release's image recipe: a wider student (M from S) learns the teacher's tokens
    student = train(None, {**common, "model.embed_dim": 24, "train.out_dir": str(tmp_path / "student"),
                           "distill.teacher": str(teacher.export_dir)})
    assert student.model.cfg.embed_dim == 24
    from safetensors.torch import load_file
    keys = load_file(str(student.export_dir / "model.safetensors")).keys()
    assert not any(k.startswith("distill_head") for k in keys)


def test_evaluate_an_image_model(images, tmp_path):
    from videomamba.apps.evaluate import EvalOptions, evaluate
    from videomamba.engine.trainer import train

    res = train(None, {**TINY_IMAGE, "data.train": str(images["train_list"]), "data.root": str(images["root"]),
                       "train.out_dir": str(tmp_path / "run"), "train.final_test": False})
    out = evaluate(res.export_dir, images["val_list"], root=str(images["root"]),
                   options=EvalOptions(num_workers=0, progress=False), log=None)
    assert out["n"] == 8
