"""Training data for the search: named sources (`digits`, `cifar10:PATH`, `imagefolder:PATH`) and a batch loader.

Every source ends as uint8 arrays (N, H, W, C) in memory or memory-mapped from a cache file, so a batch is a slice,
a conversion to float and a few tensor ops (search/transforms.py). Compressed sources (JPEG folders, tar.gz) are
decoded once into `FGNAS_CACHE` (default ~/.cache/fgnas), never into the repository.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from profiler.atomic import atomic_write_bytes, atomic_write_text
from profiler.errors import FgnasError
from search.transforms import Augmentation, Compose, eval_transform, train_transform

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VAL_DIR_NAMES = ("val", "test", "validation")


@dataclass(frozen=True, eq=False)
class ImageSet:
    images: np.ndarray  # (N, H, W, C) uint8, possibly a read-only memmap
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int, seed: int) -> ImageSet:
        """A seeded random subset of n images (all of them when n >= len), kept in file order for memmap speed."""
        if n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return ImageSet(np.ascontiguousarray(self.images[idx]), self.labels[idx])


@dataclass(frozen=True, eq=False)
class DataSplits:
    name: str  # the --data text, recorded in the run directory
    train: ImageSet
    val: ImageSet
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, on the 0..1 scale
    std: tuple[float, ...]
    augment: Augmentation = field(default_factory=Augmentation)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[3])

    @property
    def input_size(self) -> int:
        return int(self.train.images.shape[1])

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train)} train / {len(self.val)} val images, "
                f"{self.input_size}x{self.input_size}x{self.in_channels}, {self.num_classes} classes")


def cache_dir() -> Path:
    return Path(os.environ.get("FGNAS_CACHE", Path.home() / ".cache" / "fgnas"))


def channel_stats(images: np.ndarray, sample: int = 5000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the 0..1 scale, from `sample` images spread evenly over the set (class folders
    are stored class by class, so the first images would all be one class)."""
    idx = np.linspace(0, len(images) - 1, num=min(sample, len(images))).round().astype(np.int64)
    x = images[np.unique(idx)].astype(np.float64) / 255.0
    c = x.shape[3]
    flat = x.reshape(-1, c)
    return tuple(float(v) for v in flat.mean(0)), tuple(float(v) for v in flat.std(0))


# ---------------------------------------------------------------------------------------------------------- digits

def load_digits_splits(path: str | None, input_size: int | None = None) -> DataSplits:
    """scikit-learn's 8x8 digits (1,797 images, embedded in the package), upsampled bilinearly to 32x32x1, with a
    fixed stratified 80/20 split (seed 0) so every run sees the same validation set."""
    if path:
        raise FgnasError("--data digits takes no path (the data ships with scikit-learn); write --data digits")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    size = input_size or 32
    digits = load_digits()
    small = torch.from_numpy(digits.images / 16.0).float()[:, None]
    big = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    images = (big.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    labels = digits.target.astype(np.int64)
    tr, va = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0)
    train = ImageSet(images[np.sort(tr)], labels[np.sort(tr)])
    val = ImageSet(images[np.sort(va)], labels[np.sort(va)])
    mean, std = channel_stats(train.images)
    return DataSplits("digits", train, val, tuple(str(d) for d in range(10)), mean, std,
                      Augmentation(crop_padding=2, flip=False, cutout=0))


# ---------------------------------------------------------------------------------------- decoding into the cache

def _decode_image(data: bytes, size: int | None) -> np.ndarray:
    """RGB uint8 (H, W, 3); with `size`, resize the shorter side to it and centre-crop a square."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        if size is not None and img.size != (size, size):
            w, h = img.size
            scale = size / min(w, h)
            img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            img = img.crop((left, top, left + size, top + size))
        return np.asarray(img, dtype=np.uint8)


def _cache_key(source: Path, size: int | None) -> str:
    """An archive is keyed by its size and mtime. A folder's own mtime changes only when its direct entries do, not
    when images are added to, replaced in or removed from a class folder, so a folder is keyed by what the listing
    reads: every SPLIT/CLASS/FILE under it (name, size, mtime), one stat per file, small beside decoding them."""
    st = source.stat()
    if not source.is_dir():
        blob = f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|{size}".encode()
        return hashlib.sha256(blob).hexdigest()[:16]
    digest = hashlib.sha256(f"{source.resolve()}|folder|{size}".encode())
    for split in _sorted_dirs(source):
        for cls in _sorted_dirs(split.path):
            digest.update(f"\0{split.name}/{cls.name}".encode(errors="surrogateescape"))
            with os.scandir(cls.path) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    try:
                        fst = entry.stat()  # follows links, as reading the image does
                    except OSError:  # vanished, or a dangling link: nothing the listing could read either
                        continue
                    digest.update(f"\0{entry.name}|{fst.st_size}|{fst.st_mtime_ns}".encode(errors="surrogateescape"))
    return digest.hexdigest()[:16]


def _sorted_dirs(path: str | Path) -> list[os.DirEntry]:
    with os.scandir(path) as entries:
        return sorted((e for e in entries if e.is_dir()), key=lambda e: e.name)


def _atomic_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue(), "set FGNAS_CACHE to a writable folder")


@dataclass(frozen=True)
class _Listing:
    """Image files of one split: (reader key, class index) pairs; `read` turns a key into bytes."""

    items: list[tuple[str, int]]
    read: Callable[[str], bytes]
    where: str = ""  # what a key is inside, for messages: "ARCHIVE:" for a tar member, "" for a file path


def _decode_item(listing: _Listing, key: str, size: int | None) -> np.ndarray:
    try:
        return _decode_image(listing.read(key), size)
    except FgnasError:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, EOFError, DecompressionBombError, ...
        from PIL import UnidentifiedImageError

        detail = ("no image format recognised" if isinstance(exc, UnidentifiedImageError)  # its text names a BytesIO
                  else f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        raise FgnasError(f"{listing.where}{key} is not a readable image ({detail}); remove or replace it") from None


def _decode_split(listing: _Listing, size: int | None, out: Path) -> ImageSet:
    """Decode every image of a split into `out`.images.npy / .labels.npy (memory-mapped, so ImageNet-sized sets
    never need to fit in memory) and return the mapped arrays."""
    first = _decode_item(listing, listing.items[0][0], size)
    # A unique temp name: two runs decoding the same source at once must not write into one file, and a failed or
    # interrupted decode must not leave a half-written array behind.
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".images.npy.tmp")
    os.close(fd)
    try:
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                           shape=(len(listing.items), *first.shape))
        for i, (key, _) in enumerate(listing.items):
            img = first if i == 0 else _decode_item(listing, key, size)
            if img.shape != first.shape:
                raise FgnasError(f"{key}: image is {img.shape[1]}x{img.shape[0]}, others are {first.shape[1]}x"
                                 f"{first.shape[0]}; give imagefolder a size (imagefolder:PATH with --input-size)")
            images[i] = img
        images.flush()
        del images
        os.replace(tmp, out.with_name(out.name + ".images.npy"))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _atomic_npy(out.with_name(out.name + ".labels.npy"), np.array([c for _, c in listing.items], dtype=np.int64))
    return _load_cached(out)


def _load_cached(out: Path) -> ImageSet:
    return ImageSet(np.load(out.with_name(out.name + ".images.npy"), mmap_mode="r"),
                    np.load(out.with_name(out.name + ".labels.npy")))


def _cached_or_decode(source: Path, split: str, size: int | None, listing: Callable[[], _Listing],
                      key: str | None = None) -> ImageSet:
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    out = root / f"{source.name}-{key or _cache_key(source, size)}-{split}"
    if out.with_name(out.name + ".labels.npy").exists() and out.with_name(out.name + ".images.npy").exists():
        return _load_cached(out)
    return _decode_split(listing(), size, out)


def _folder_listing(split_dir: Path, classes: tuple[str, ...]) -> _Listing:
    items = [(str(f), ci) for ci, c in enumerate(classes) for f in sorted((split_dir / c).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not items:
        raise FgnasError(f"{split_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    return _Listing(items, lambda key: Path(key).read_bytes())


def _split_dirs(root: Path) -> tuple[Path, Path]:
    train = root / "train"
    val = next((root / v for v in VAL_DIR_NAMES if (root / v).is_dir()), None)
    if not train.is_dir() or val is None:
        raise FgnasError(f"{root} is not an image folder: expected train/<class>/*.jpg and val/<class>/*.jpg "
                         f"(or test/<class>/...)")
    return train, val


def _image_folder(root: Path, size: int | None) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
    train_dir, val_dir = _split_dirs(root)
    classes = tuple(sorted(d.name for d in train_dir.iterdir() if d.is_dir()))
    if not classes:
        raise FgnasError(f"{train_dir} has no class folders")
    key = _cache_key(root, size)  # one walk of the folder for both splits
    train = _cached_or_decode(root, "train", size, lambda: _folder_listing(train_dir, classes), key)
    val = _cached_or_decode(root, "val", size, lambda: _folder_listing(val_dir, classes), key)
    return train, val, classes


@contextlib.contextmanager
def _open_tar(archive: Path) -> Iterator[tarfile.TarFile]:
    """tarfile.open, reading in the with-block: a damaged archive fails while it is read (a truncated gzip only at its
    end), as tarfile.ReadError, EOFError, zlib.error or OSError (gzip.BadGzipFile), into one line naming it."""
    try:
        with tarfile.open(archive) as tar:
            yield tar
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        text = " ".join(str(exc).split())
        detail = ("no tar, tar.gz, tar.bz2 or tar.xz header" if text.startswith("file could not be opened")  # one
                  else f"{type(exc).__name__}: {text}")  # reason per compression tried, too long for one line
        raise FgnasError(f"{archive} is not a readable tar archive ({detail}); download or pack it again") from None


def _tar_image_folder(archive: Path, size: int | None) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
    """An image-folder layout inside a tar(.gz): train/<class>/x.jpg and test|val/<class>/x.jpg. The archive is
    read at most once (only when a split is not cached yet); members are decoded from memory."""
    names_file = cache_dir() / f"{archive.name}-{_cache_key(archive, None)}-classes.txt"
    read: dict[str, tuple[list[tuple[str, str, str]], dict[str, bytes]]] = {}

    def members() -> tuple[list[tuple[str, str, str]], dict[str, bytes]]:
        if not read:
            files: dict[str, bytes] = {}
            entries: list[tuple[str, str, str]] = []  # (member name, split, class)
            with _open_tar(archive) as tar:
                for m in tar:
                    parts = PurePosixPath(m.name).parts
                    if m.isfile() and len(parts) >= 3 and PurePosixPath(m.name).suffix.lower() in IMAGE_SUFFIXES:
                        files[m.name] = tar.extractfile(m).read()
                        entries.append((m.name, parts[-3], parts[-2]))
            read["all"] = (entries, files)
            classes = sorted({c for _, s, c in entries if s == "train"})
            cache_dir().mkdir(parents=True, exist_ok=True)
            atomic_write_text(names_file, "\n".join(classes) + "\n", "set FGNAS_CACHE to a writable folder")
        return read["all"]

    def listing(split_names: tuple[str, ...]) -> Callable[[], _Listing]:
        def build() -> _Listing:
            entries, files = members()
            classes = names_file.read_text().split()
            items = sorted((n, classes.index(c)) for n, s, c in entries if s in split_names and c in classes)
            if not items:
                raise FgnasError(f"{archive} holds no {'/'.join(split_names)}/<class>/ images")
            return _Listing(items, files.__getitem__, f"{archive}:")
        return build

    train = _cached_or_decode(archive, "train", size, listing(("train",)))
    val = _cached_or_decode(archive, "val", size, listing(VAL_DIR_NAMES))
    if not names_file.exists():
        members()
    return train, val, tuple(names_file.read_text().split())


# ------------------------------------------------------------------------------------------ CIFAR python batches

# A batch is a dict of bytes keys, lists, bytes and one uint8 array. Unpickling resolves every class or function a
# file names through find_class, and a crafted batch can name os.system: only numpy's array and scalar rebuilding
# are admitted. The original batches (Python 2) name _reconstruct, ndarray and dtype; a batch rewritten by Python 3
# may also name scalar (numpy labels), _codecs.encode (bytes under protocol 2) or _frombuffer (arrays, protocol 5).
_CIFAR_GLOBALS = frozenset({
    *((module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
      for name in ("_reconstruct", "scalar")),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _BatchRefused(pickle.UnpicklingError):
    """A batch names a global outside _CIFAR_GLOBALS."""


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise _BatchRefused(f"{module}.{name}")
        return super().find_class(module, name)


def _unpickle_batch(data: bytes, name: str = "batch") -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _BatchRefused as exc:
        raise FgnasError(f"CIFAR-10 {name} was not loaded: it names {exc}, which a CIFAR-10 python batch never "
                         f"does (unpickling it could run code)") from None
    except Exception as exc:  # truncated or foreign data: pickle raises several unrelated types
        raise FgnasError(f"CIFAR-10 {name} is not a python batch ({type(exc).__name__}); use the original "
                         f"cifar-10-python.tar.gz or an image folder") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise FgnasError(f"CIFAR-10 {name} is not a python batch (no data and labels)")
    try:
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = np.asarray(batch[b"labels"], dtype=np.int64).reshape(-1)
    except (ValueError, TypeError) as exc:
        raise FgnasError(f"CIFAR-10 {name} is not a python batch (data is not rows of 3072 bytes: {exc})") from None
    if len(labels) != len(images):
        raise FgnasError(f"CIFAR-10 {name} has {len(images)} images but {len(labels)} labels")
    return np.ascontiguousarray(images), labels


def _python_batches(read: Callable[[str], bytes]) -> tuple[ImageSet, ImageSet]:
    names = [f"data_batch_{i}" for i in range(1, 6)]
    parts = [_unpickle_batch(read(n), n) for n in names]
    train = ImageSet(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return train, ImageSet(*_unpickle_batch(read("test_batch"), "test_batch"))


def _batches_dir(root: Path) -> Path | None:
    for d in (root, root / "cifar-10-batches-py"):
        if (d / "data_batch_1").is_file() and (d / "test_batch").is_file():
            return d
    return None


def _tar_has_batches(archive: Path) -> bool:
    with _open_tar(archive) as tar:
        for m in tar:
            if PurePosixPath(m.name).name == "data_batch_1":
                return True
            if PurePosixPath(m.name).suffix.lower() in IMAGE_SUFFIXES:
                return False
    return False


def _tar_python_batches(archive: Path) -> tuple[ImageSet, ImageSet]:
    with _open_tar(archive) as tar:
        blobs = {PurePosixPath(m.name).name: tar.extractfile(m).read() for m in tar
                 if m.isfile() and PurePosixPath(m.name).name.startswith(("data_batch_", "test_batch"))}
    missing = [n for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if n not in blobs]
    if missing:
        raise FgnasError(f"{archive} lacks {', '.join(missing)}: not a CIFAR-10 python archive")
    return _python_batches(blobs.__getitem__)


def _is_archive(p: Path) -> bool:
    return p.is_file() and p.name.endswith((".tar.gz", ".tgz", ".tar"))


def load_cifar10_splits(path: str | None, input_size: int | None = None) -> DataSplits:
    """CIFAR-10 from the python batches (a folder with data_batch_1..5 and test_batch, or their tar.gz), an image
    folder (train/<class>/, test/<class>/), or a tar.gz of that folder (../shared/data/cifar10). A folder that only
    holds one such archive is read through it."""
    if not path:
        raise FgnasError("--data cifar10 needs a path: --data cifar10:PATH (python batches, image folder or tar.gz)")
    root = Path(path).expanduser()
    if not root.exists():
        raise FgnasError(f"CIFAR-10 path {root} does not exist; pass --data cifar10:PATH to the python batches, an "
                         f"image folder or the tar.gz")
    if root.is_dir() and _batches_dir(root) is None and not (root / "train").is_dir():
        archives = sorted(p for p in root.iterdir() if _is_archive(p))
        if len(archives) == 1:
            root = archives[0]
    classes = CIFAR10_CLASSES
    if root.is_dir() and (d := _batches_dir(root)) is not None:
        train, val = _python_batches(lambda name: (d / name).read_bytes())
    elif root.is_dir():
        train, val, classes = _image_folder(root, None)
    elif _is_archive(root) and _tar_has_batches(root):
        train, val = _tar_python_batches(root)
    elif _is_archive(root):
        train, val, classes = _tar_image_folder(root, None)
    else:
        raise FgnasError(f"{root} is neither a CIFAR-10 folder nor a .tar.gz/.tar archive")
    if train.images.shape[1:] != (32, 32, 3):
        raise FgnasError(f"{root}: images are {train.images.shape[1:]}, CIFAR-10 is 32x32x3")
    mean, std = channel_stats(train.images)
    return DataSplits(f"cifar10:{path}", train, val, tuple(classes), mean, std, Augmentation(4, True, 16))


def load_imagefolder_splits(path: str | None, input_size: int | None = None) -> DataSplits:
    """ImageNet layout: PATH/train/<class>/*.jpg and PATH/val/<class>/*.jpg (or a tar of it). Each image is resized
    (shorter side) and centre-cropped to `input_size` (default 224) once, into the cache."""
    if not path:
        raise FgnasError("--data imagefolder needs a path: --data imagefolder:PATH with PATH/train/<class>/ and "
                         "PATH/val/<class>/")
    root = Path(path).expanduser()
    if not root.exists():
        raise FgnasError(f"image folder {root} does not exist")
    size = input_size or 224
    if _is_archive(root):
        train, val, classes = _tar_image_folder(root, size)
    else:
        train, val, classes = _image_folder(root, size)
    mean, std = channel_stats(train.images)
    return DataSplits(f"imagefolder:{path}", train, val, classes, mean, std,
                      Augmentation(crop_padding=size // 8, flip=True, cutout=0))


DATA_SOURCES: dict[str, Callable[[str | None, int | None], DataSplits]] = {
    "digits": load_digits_splits,
    "cifar10": load_cifar10_splits,
    "imagefolder": load_imagefolder_splits,
}


def load_data(text: str, input_size: int | None = None, train_subset: int | None = None,
              val_subset: int | None = None, seed: int = 0) -> DataSplits:
    """`digits`, `cifar10:PATH` or `imagefolder:PATH`, optionally cut to seeded random subsets for quick runs."""
    name, _, path = text.partition(":")
    source = DATA_SOURCES.get(name)
    if source is None:
        raise FgnasError(f"unknown data source {name!r}; use one of: {', '.join(DATA_SOURCES)} "
                         f"(e.g. --data digits or --data cifar10:PATH)")
    splits = source(path or None, input_size)
    if train_subset:
        splits = replace(splits, train=splits.train.subset(train_subset, seed))
    if val_subset:
        splits = replace(splits, val=splits.val.subset(val_subset, seed))
    return replace(splits, name=text)


# ------------------------------------------------------------------------------------------------------ loading

class BatchLoader:
    """Batches of (float images N x C x H x W, int64 labels) on `device`, transformed there.

    Epoch e shuffles and augments with generator seed (seed, e), so a resumed run sees the batches it would have."""

    def __init__(self, data: ImageSet, batch_size: int, transform: Compose, shuffle: bool, seed: int = 0,
                 device: torch.device | str = "cpu", drop_last: bool = False) -> None:
        self.data = data
        self.batch_size = batch_size
        self.transform = transform
        self.shuffle = shuffle
        self.seed = seed
        self.device = torch.device(device)
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.data)
        order = torch.randperm(n, generator=generator).numpy() if self.shuffle else np.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            idx_sorted = np.sort(idx)  # memmap reads are faster in file order; the batch's order does not matter
            images = torch.from_numpy(np.ascontiguousarray(self.data.images[idx_sorted]))
            labels = torch.from_numpy(self.data.labels[idx_sorted])
            x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
            yield self.transform(x, generator), labels.to(self.device, non_blocking=True)


def make_loaders(splits: DataSplits, batch_size: int, seed: int = 0, device: torch.device | str = "cpu",
                 input_size: int | None = None) -> tuple[BatchLoader, BatchLoader]:
    """Training loader (shuffled, augmented as the data set says) and validation loader (in order, normalised)."""
    size = input_size or splits.input_size
    train = BatchLoader(splits.train, batch_size, train_transform(size, splits.mean, splits.std, splits.augment),
                        shuffle=True, seed=seed, device=device, drop_last=len(splits.train) > batch_size)
    val = BatchLoader(splits.val, max(batch_size, 256), eval_transform(size, splits.mean, splits.std),
                      shuffle=False, seed=seed, device=device)
    return train, val
