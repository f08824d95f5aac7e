import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from profiler.errors import FgnasError
from search.data import BatchLoader, ImageSet, load_data, make_loaders
from search.transforms import eval_transform

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR_TAR = SHARED / "cifar10" / "cifar10-jpg.tar.gz"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FGNAS_CACHE", str(tmp_path / "cache"))


def test_digits_is_a_fixed_stratified_split_upsampled_to_32x32():
    a, b = load_data("digits"), load_data("digits")
    assert (len(a.train), len(a.val)) == (1437, 360)
    assert a.train.images.shape[1:] == (32, 32, 1) and a.train.images.dtype == np.uint8
    assert np.array_equal(a.val.labels, b.val.labels) and np.array_equal(a.val.images, b.val.images)
    assert np.bincount(a.val.labels).min() >= 35  # stratified: every digit ~36 times in 360
    assert a.num_classes == 10 and a.in_channels == 1 and a.input_size == 32
    assert not a.augment.flip  # a flipped digit is a different symbol


def test_digits_upsampling_keeps_the_original_picture():
    from sklearn.datasets import load_digits

    d = load_data("digits")
    raw = load_digits()
    originals = raw.images / 16.0
    # Pool 32x32 back to 8x8: the closest of all 1,797 originals is the same picture (same label, tiny error).
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(d.val.images[:20, :, :, 0]).float()[:, None] / 255, 4)
    for img, label in zip(pooled[:, 0].numpy(), d.val.labels[:20]):
        err = np.abs(originals - img).mean(axis=(1, 2))
        assert raw.target[err.argmin()] == label
        assert err.min() < 0.1


def _write_python_batches(root: Path, per_batch: int = 4) -> None:
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        labels = list(rng.integers(0, 10, per_batch))
        (root / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}))


def test_cifar_python_batches_are_read_channel_planes_to_hwc(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    _write_python_batches(root)
    raw = pickle.loads((root / "data_batch_2").read_bytes())
    d = load_data(f"cifar10:{tmp_path}")  # the parent folder is accepted too
    assert (len(d.train), len(d.val)) == (20, 4)
    img = d.train.images[4]  # first image of batch 2
    # Plane layout: 1024 reds, then 1024 greens, then 1024 blues, each row-major.
    assert img[0, 0, 0] == raw[b"data"][0][0]
    assert img[0, 1, 1] == raw[b"data"][0][1024 + 1]
    assert img[1, 0, 2] == raw[b"data"][0][2048 + 32]
    assert d.train.labels[4] == raw[b"labels"][0]


def _write_image_folder(root: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    pixels = {}
    for split, classes in (("train", ("cat", "dog")), ("test", ("cat", "dog"))):
        for ci, c in enumerate(classes):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                arr = np.full((32, 32, 3), 40 * ci + 10 * i + (100 if split == "test" else 0), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.png")
                pixels[f"{split}/{c}/{i}"] = arr
    return pixels


def test_cifar_image_folder_is_decoded_once_into_the_cache(tmp_path):
    _write_image_folder(tmp_path / "imgs")
    d = load_data(f"cifar10:{tmp_path / 'imgs'}")
    assert d.classes == ("cat", "dog")
    assert (len(d.train), len(d.val)) == (6, 6)
    assert list(d.train.labels) == [0, 0, 0, 1, 1, 1]
    assert d.train.images[4, 0, 0, 0] == 40 + 10  # dog/1.png, PNG is lossless
    assert d.val.images[0, 0, 0, 0] == 100
    assert isinstance(d.train.images, np.memmap)
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    for p in (tmp_path / "imgs" / "train" / "dog").iterdir():  # broken, with the same size and mtime as before
        st = p.stat()
        p.write_bytes(b"x" * st.st_size)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = load_data(f"cifar10:{tmp_path / 'imgs'}")  # read from the cache: the broken files are not touched
    assert np.array_equal(again.train.images, d.train.images)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == cached


def test_imagefolder_resizes_to_the_input_size(tmp_path):
    _write_image_folder(tmp_path / "imgs")
    d = load_data(f"imagefolder:{tmp_path / 'imgs'}", input_size=16)
    assert d.train.images.shape == (6, 16, 16, 3)
    assert d.val.images[5, 3, 3, 0] == 100 + 40 + 20  # a flat image stays flat when resized


@pytest.mark.parametrize("text, message", [
    ("cifar10:/no/such/place", "does not exist"),
    ("cifar10", "needs a path"),
    ("mnist:/x", "unknown data source"),
    ("digits:/x", "takes no path"),
    ("imagefolder:/no/such", "does not exist"),
])
def test_bad_data_arguments_raise_one_clear_error(text, message):
    with pytest.raises(FgnasError, match=message):
        load_data(text)


def test_a_folder_that_is_not_cifar_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(FgnasError, match="not an image folder"):
        load_data(f"cifar10:{tmp_path}")


def test_train_subset_is_seeded_and_a_subset():
    full = load_data("digits")
    a = load_data("digits", train_subset=100, seed=3)
    b = load_data("digits", train_subset=100, seed=3)
    c = load_data("digits", train_subset=100, seed=4)
    assert len(a.train) == 100 and np.array_equal(a.train.labels, b.train.labels)
    assert not np.array_equal(a.train.images, c.train.images)
    flat = full.train.images.reshape(len(full.train), -1)
    assert all((flat == img.reshape(1, -1)).all(axis=1).any() for img in a.train.images[:10])


def test_loader_covers_each_image_once_per_epoch_and_reshuffles_per_epoch():
    labels = np.arange(10, dtype=np.int64)
    images = np.broadcast_to(labels[:, None, None, None], (10, 2, 2, 1)).astype(np.uint8).copy()
    loader = BatchLoader(ImageSet(images, labels), 4, eval_transform(2, (0.0,), (1 / 255,)), shuffle=True, seed=1)
    assert len(loader) == 3
    epoch0 = [y for _, y in loader]
    seen = torch.cat(epoch0)
    assert sorted(seen.tolist()) == list(range(10))
    for x, y in loader:  # the pixel value (scaled back) is the label: images and labels stay paired
        assert torch.equal(x[:, 0, 0, 0].round().long(), y)
    assert [b.tolist() for b in epoch0] == [y.tolist() for _, y in loader]  # same epoch, same batches
    loader.set_epoch(1)
    assert [b.tolist() for b in epoch0] != [y.tolist() for _, y in loader]


def test_make_loaders_normalises_with_the_training_statistics():
    d = load_data("digits")
    _, val = make_loaders(d, batch_size=64)
    x = torch.cat([x for x, _ in val])
    assert x.shape == (360, 1, 32, 32)
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.skipif(not CIFAR_TAR.exists(), reason="../shared/data/cifar10 is absent")
def test_real_cifar10_tar_gz_decodes_to_the_published_statistics(monkeypatch):
    monkeypatch.delenv("FGNAS_CACHE")  # the user cache: decoding 60k JPEGs once is enough
    d = load_data(f"cifar10:{CIFAR_TAR.parent}", train_subset=500, val_subset=200)
    assert d.classes[:3] == ("airplane", "automobile", "bird")
    assert (len(d.train), len(d.val)) == (500, 200)
    assert np.allclose(d.mean, (0.4914, 0.4822, 0.4465), atol=0.005)  # PROVENANCE.md: published CIFAR-10 mean
    assert np.bincount(d.val.labels, minlength=10).min() > 5
    x, y = next(iter(make_loaders(d, 32)[0]))
    assert x.shape == (32, 3, 32, 32) and y.max() < 10
