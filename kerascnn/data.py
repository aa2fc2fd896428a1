"""Datasets and tf.data pipelines.

Named datasets (``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``) come
from ``<KERASCNN_DATA_DIR>/<name>.npz`` when that file exists (same layout as
``keras.datasets``: ``x_train``, ``y_train``, ``x_test``, ``y_test``), else from
the ``keras.datasets`` loaders, which download when online. A folder with one
sub-folder of images per class is a dataset too.

Images stay ``uint8`` in memory; the pipeline scales them to [0, 1] and adapts
them to the model (pad or resize to its input size, grey to RGB) in a
parallel, batched ``map``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from kerascnn import checks
from kerascnn.errors import ArgumentError

DATA_DIR_ENV = "KERASCNN_DATA_DIR"
NAMED = {
    # name: (keras.datasets module, image shape, classes)
    "mnist": ("mnist", (28, 28, 1), 10),
    "fashion_mnist": ("fashion_mnist", (28, 28, 1), 10),
    "cifar10": ("cifar10", (32, 32, 3), 10),
    "cifar100": ("cifar100", (32, 32, 3), 100),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")  # Pillow's modes without colour
PAD_AT_MOST = 8  # pixels: smaller size gaps are zero-padded (LeNet-style), larger ones resized


@dataclass
class Dataset:
    """Images and labels in memory, split into train / validation / test.

    Attributes:
        name: Dataset name or folder path.
        x_train, y_train, x_val, y_val, x_test, y_test: ``uint8`` images
            ``(N, H, W, C)`` and ``int32`` labels ``(N,)``.
        num_classes: Number of classes.
        class_names: One name per class.
        source: Where the arrays came from (a file, a folder or ``keras.datasets``).
        notes: What a user should hear about the loading (a sample count larger than the
            dataset, say), one line each.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.x_train), "val": len(self.x_val), "test": len(self.x_test)}

    def __repr__(self) -> str:  # (not the arrays: a notebook shows this)
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes().items())
        return f"Dataset({self.name!r}, {sizes}, image_shape={self.image_shape}, num_classes={self.num_classes})"


def check_dataset_name(dataset: Any) -> str:
    """Accepts a named dataset or an existing folder; raises ``ValueError`` otherwise.

    Example:
        >>> check_dataset_name("mnist")
        'mnist'
    """
    if not isinstance(dataset, (str, os.PathLike)) or not str(dataset):
        raise ArgumentError(f"`dataset` must be a dataset name or a folder. Received: dataset={dataset!r}")
    text = str(dataset)
    if text in NAMED:
        return text
    looks_like_path = os.sep in text or text.startswith(".") or Path(text).exists()
    if not looks_like_path:
        raise ArgumentError(
            f"Unknown dataset; use one of {', '.join(NAMED)} or a folder of class sub-folders. "
            f"Received: dataset={text!r}"
        )
    if not Path(text).is_dir():
        raise ArgumentError(f"Image folder not found. Received: dataset={text!r}")
    return text


def as_run(dataset: str) -> str:
    """A dataset as a run records it: a name as is, a folder as its absolute path (so that a
    resumed run or search finds it from any folder).

    Example:
        >>> as_run("mnist"), as_run("/data/../photos")
        ('mnist', '/photos')
    """
    return dataset if dataset in NAMED else str(Path(dataset).resolve())


def load_arrays(name: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], str]:
    """Loads a named dataset as ``((x_train, y_train), (x_test, y_test), source)``.

    Reads ``$KERASCNN_DATA_DIR/<name>.npz`` when it exists, else calls
    ``keras.datasets.<name>.load_data()``. Images come back ``(N, H, W, C)``.

    Example:
        >>> (x, y), (xt, yt), source = load_arrays("mnist")  # doctest: +SKIP
    """
    checks.one_of("dataset", name, NAMED)
    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir:
        if not Path(data_dir).is_dir():
            raise ArgumentError(f"`{DATA_DIR_ENV}` is not a folder. Received: {DATA_DIR_ENV}={data_dir!r}")
        path = Path(data_dir) / f"{name}.npz"
        if path.is_file():
            (x, y), (xt, yt) = _read_npz(path, NAMED[name][1])
            return (x, y), (xt, yt), str(path.resolve())  # (absolute, as the run logs it)
    from kerascnn.device import import_tensorflow

    import_tensorflow()  # quietly: its start-up lines would break the CLI's one-line errors
    import keras

    module = getattr(keras.datasets, NAMED[name][0])
    try:
        with contextlib.redirect_stdout(_download_progress()):
            (x, y), (xt, yt) = module.load_data()
    except Exception as e:  # offline, proxy, corrupt cache...
        where = f"{DATA_DIR_ENV} ({data_dir!r} has no {name}.npz)" if data_dir else f"a folder and set {DATA_DIR_ENV}"
        raise ArgumentError(
            f"Could not load `{name}` with keras.datasets ({type(e).__name__}: {e}); offline, put "
            f"{name}.npz in {where}. Received: dataset={name!r}"
        ) from None
    return (_nhwc(x), y.reshape(-1).astype(np.int32)), (_nhwc(xt), yt.reshape(-1).astype(np.int32)), "keras.datasets"


def _download_progress() -> IO[str]:
    """Where Keras' "Downloading data from" line and its bar go: not stdout (they are no result);
    stderr on a terminal; nowhere in a pipe or a log file, where the bar is "\\r"-joined noise."""
    return sys.stderr if sys.stderr.isatty() else io.StringIO()


def _nhwc(x: np.ndarray) -> np.ndarray:
    return x[..., None] if x.ndim == 3 else x


def _read_npz(path: Path, expected_shape: tuple[int, int, int] | None = None) -> tuple[Any, Any]:
    """Reads and checks an ``.npz`` in the ``keras.datasets`` layout (no pickles); a named
    dataset's images must have its ``expected_shape``."""
    where = f"Received: file={str(path)!r}"
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # .npz is a zip archive; anything else would reach the pickle loader
            raise ArgumentError(f"Dataset file is not an .npz archive (a zip of arrays). {where}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(npz.files)
            if missing:
                raise ArgumentError(
                    f"Dataset file lacks {', '.join(sorted(missing))} (needs x_train, y_train, x_test, y_test). {where}"
                )
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except ArgumentError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ArgumentError(f"Dataset file holds pickled objects, refused. {where}") from None
        raise ArgumentError(f"Dataset file is corrupt ({e}). {where}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ArgumentError(f"Dataset file is corrupt or not an .npz ({type(e).__name__}). {where}") from None
    for split in ("train", "test"):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = _check_split(
            split, arrays[f"x_{split}"], arrays[f"y_{split}"], where
        )
    shape = arrays["x_train"].shape[1:]
    if shape != arrays["x_test"].shape[1:]:
        raise ArgumentError(
            f"x_train and x_test images differ in shape ({shape} vs {arrays['x_test'].shape[1:]}). {where}"
        )
    if expected_shape is not None and shape != tuple(expected_shape):
        raise ArgumentError(f"Images have shape {shape}, this dataset's are {tuple(expected_shape)}. {where}")
    if len(arrays["x_train"]) == 0 or len(arrays["x_test"]) == 0:
        raise ArgumentError(f"Dataset file has an empty split. {where}")
    if arrays["y_train"].min() < 0 or arrays["y_test"].min() < 0:
        raise ArgumentError(f"Labels must be >= 0. {where}")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _check_split(split: str, x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    if x.ndim not in (3, 4) or x.dtype != np.uint8:
        raise ArgumentError(
            f"x_{split} must be uint8 images (N, H, W) or (N, H, W, C); got {x.dtype} {x.shape}. {where}"
        )
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise ArgumentError(
            f"y_{split} must hold one integer label per image; got {y.dtype} {y.shape} for {len(x)} images. {where}"
        )
    return _nhwc(x), y.astype(np.int32)


def _load_folder(
    path: Path, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str], list[str]]:
    """Loads a class-per-sub-folder image tree (``train/`` + ``test/`` sub-trees when present), every
    image at the folder's :func:`_image_format`; returns the splits, class names and notes."""
    split = (path / "train").is_dir() and (path / "test").is_dir()
    folders = [path / "train", path / "test"] if split else [path]
    names = _class_folders(folders[0])
    found = [_image_files(folder, None if folder == folders[0] else names) for folder in folders]
    shape, notes = _image_format([f for files in found for c in files for f in files[c]], f"dataset={str(path)!r}")
    read = [_read_images(folder, names, shape) for folder in folders]
    if split:
        return read[0], read[1], names, notes
    x, y = read[0]
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, len(x) // 10)
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test]), names, notes


def _class_folders(folder: Path) -> list[str]:
    """The class sub-folders, as Keras' loader finds them: a hidden one is no class."""
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def image_files(folder: Path, hidden: bool = False) -> list[Path]:
    """The image files under ``folder`` (its sub-folders too), sorted; hidden ones (a name starting
    with '.': macOS's ``._*`` copies, Jupyter's ``.ipynb_checkpoints``) only with ``hidden``.

    Example:
        >>> image_files(Path("photos/cat"))[:1]  # doctest: +SKIP
        [PosixPath('photos/cat/001.png')]
    """
    return sorted(
        f
        for f in folder.rglob("*")
        if f.suffix.lower() in IMAGE_SUFFIXES
        and (hidden or not any(part.startswith(".") for part in f.relative_to(folder).parts))
        and f.is_file()
    )


def _image_files(folder: Path, class_names: list[str] | None) -> dict[str, list[Path]]:
    """Each class sub-folder's image files (checked: 2 classes or more, none empty, and a
    ``test/`` tree's classes among ``train/``'s, ``class_names``)."""
    classes = _class_folders(folder)
    files = {c: image_files(folder / c, hidden=True) for c in classes}  # (as Keras' loader reads them)
    received = f"dataset={str(folder)!r}"
    if len(classes) < 2 or not any(files.values()):
        raise ArgumentError(
            "Image folder must hold at least 2 class sub-folders with images "
            f"({', '.join(IMAGE_SUFFIXES)}); found {len(classes)} classes, "
            f"{sum(map(len, files.values()))} images. Received: {received}"
        )
    _check_classes(files, class_names, received)
    return files


def _image_format(files: list[Path], received: str) -> tuple[tuple[int, int, int], list[str]]:
    """The ``(height, width, channels)`` a folder's images load at: the most common size, and
    colour if any image has colour (grey is copied to RGB exactly); notes say what was changed.
    Read from the files' headers (Pillow, as ``keras.utils.load_img``)."""
    from collections import Counter

    from PIL import Image

    sizes: Counter[tuple[int, int]] = Counter()
    grey = 0
    for file in files:
        try:
            with Image.open(file) as image:
                sizes[(image.height, image.width)] += 1
                grey += _grey(image)
        except (OSError, ValueError, Image.DecompressionBombError):
            raise _unreadable(file, received) from None
    (height, width), common = sizes.most_common(1)[0]
    colour = grey < len(files)
    notes = []
    if len(sizes) > 1:
        notes.append(
            f"the images have {len(sizes)} sizes: {len(files) - common} of {len(files)} are resized to the most "
            f"common, {height}x{width}"
        )
    if colour and grey:
        notes.append(f"{grey} of {len(files)} images are grey: loaded as RGB, as the other images are colour")
    return (height, width, 3 if colour else 1), notes


def _grey(image: Any) -> bool:
    """Whether a Pillow image has no colour: a grey mode, or a palette of greys only."""
    if image.mode in ("P", "PA"):
        palette = image.getpalette() or []
        return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))
    return image.mode in GREY_MODES


def _read_images(folder: Path, class_names: list[str], shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A class-per-sub-folder tree as ``uint8`` images of ``shape`` and ``int32`` labels, numbered as
    in ``class_names`` (a ``test/`` tree may lack some of ``train/``'s classes)."""
    from kerascnn.device import import_tensorflow

    tf = import_tensorflow()  # quietly, and only once the folder is known to hold a dataset
    import keras

    own = [c for c in _class_folders(folder) if c in class_names]  # (an empty extra test/ folder is no class)
    ds = keras.utils.image_dataset_from_directory(
        str(folder),
        labels="inferred",
        label_mode="int",
        class_names=own,
        color_mode="rgb" if shape[2] == 3 else "grayscale",
        batch_size=None,
        image_size=shape[:2],
        shuffle=False,
        verbose=False,
    )
    images, labels = [], []
    try:
        for image, label in ds.as_numpy_iterator():
            images.append(np.clip(image, 0, 255).astype(np.uint8))
            labels.append(label)
    except tf.errors.OpError:  # the files are read in ``file_paths`` order
        raise _unreadable(Path(ds.file_paths[len(images)]), f"dataset={str(folder)!r}") from None
    numbers = np.array([class_names.index(c) for c in own], np.int32)
    return np.stack(images), numbers[np.asarray(labels, np.int32)]


def _check_classes(files: dict[str, list[Path]], trained: list[str] | None, received: str) -> None:
    """A class sub-folder without images, or a ``test/`` class that ``train/`` lacks, is refused
    (either would silently become a class with no examples, or test images left out)."""
    if trained is None:
        empty = [c for c, found in files.items() if not found]
        if empty:
            raise ArgumentError(
                f"Class folder {empty[0]!r} holds no images ({len(empty)} such); add images or remove it. "
                f"Received: {received}"
            )
        return
    unknown = [c for c, found in files.items() if found and c not in trained]
    if unknown:
        raise ArgumentError(
            f"test/ has classes train/ lacks ({', '.join(unknown[:3])}); the model could not predict them. "
            f"Received: {received}"
        )


def decode_image(file: Path, received: str) -> np.ndarray:
    """One image file as ``uint8`` ``(H, W, C)`` (a GIF's first frame); an unreadable one is an
    ``ArgumentError`` ending in ``Received: {received}`` (the argument that named it).

    Example:
        >>> decode_image(Path("photos/cat/1.png"), "dataset='photos'").dtype  # doctest: +SKIP
        dtype('uint8')
    """
    from kerascnn.device import import_tensorflow

    tf = import_tensorflow()
    try:
        return tf.io.decode_image(
            tf.io.read_file(str(file)), channels=0, dtype=tf.uint8, expand_animations=False
        ).numpy()
    except tf.errors.OpError:
        raise _unreadable(file, received) from None


def _unreadable(file: Path, received: str) -> ArgumentError:
    return ArgumentError(
        f"Cannot read the image {str(file)!r} (corrupt, or not {', '.join(IMAGE_SUFFIXES)}). Received: {received}"
    )


def _read(name: str, seed: int) -> tuple[tuple[Any, Any], tuple[Any, Any], str, list[str], list[str]]:
    """(train arrays, test arrays, source, class names, notes) of a named dataset or an image folder."""
    if name in NAMED:
        train, test, source = load_arrays(name)
        return train, test, source, [str(i) for i in range(NAMED[name][2])], []
    train, test, class_names, notes = _load_folder(Path(name), seed)
    return train, test, str(Path(name).resolve()), class_names, notes


def load_dataset(
    dataset: str = "mnist",
    *,
    validation_split: float = 0.1,
    train_samples: int | None = None,
    test_samples: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Loads a dataset and holds a seeded validation split out of its training part.

    Args:
        dataset: A name (``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``) or a folder of class
            sub-folders (without ``train/``/``test/`` sub-trees, 10% of its images go to test).
        validation_split: Fraction of the (first ``train_samples``) training images held out for
            validation, chosen by ``seed``.
        train_samples: Use only the first N training images.
        test_samples: Use only the first N test images.
        seed: Seed of the validation split.

    Example:
        >>> data = load_dataset("mnist", train_samples=1000)  # doctest: +SKIP
        >>> data.sizes()  # doctest: +SKIP
        {'train': 900, 'val': 100, 'test': 10000}
    """
    name = check_dataset_name(dataset)
    validation_split = checks.fraction("validation_split", validation_split)
    seed = checks.seed(seed)
    if train_samples is not None:
        train_samples = checks.positive_int("train_samples", train_samples)
    if test_samples is not None:
        test_samples = checks.positive_int("test_samples", test_samples)
    (x, y), (xt, yt), source, class_names, notes = _read(name, seed)
    num_classes = max(len(class_names), int(max(y.max(), yt.max())) + 1)
    if len(class_names) < num_classes:
        class_names = [str(i) for i in range(num_classes)]
    notes += [
        f"{option}={asked} is more than the {len(images):,} {kind} images of {dataset}: all of them are used"
        for option, asked, images, kind in (
            ("train_samples", train_samples, x, "training"),
            ("test_samples", test_samples, xt, "test"),
        )
        if asked is not None and asked > len(images)
    ]
    if train_samples is not None:
        x, y = x[:train_samples], y[:train_samples]
    if test_samples is not None:
        xt, yt = xt[:test_samples], yt[:test_samples]
    n_val = round(len(x) * validation_split)
    if n_val >= len(x) or (validation_split > 0 and n_val == 0):
        cause, given = ("`train_samples` leaves", f"train_samples={train_samples!r}")
        if train_samples is None:  # (the dataset itself is too small)
            cause, given = "The dataset has", f"dataset={str(name)!r}"
        raise ArgumentError(
            f"{cause} too few images to split for training and validation ({len(x)} images, "
            f"validation_split={validation_split}). Received: {given}, validation_split={validation_split!r}"
        )
    order = np.random.default_rng(seed).permutation(len(x))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return Dataset(
        name=name,
        x_train=x[train],
        y_train=y[train],
        x_val=x[val],
        y_val=y[val],
        x_test=xt,
        y_test=yt,
        num_classes=num_classes,
        class_names=class_names,
        source=source,
        notes=notes,
    )


@dataclass(frozen=True)
class Adaptation:
    """How images are changed to feed a model; ``describe()`` says it in words."""

    source_shape: tuple[int, int, int]
    target_shape: tuple[int, int, int]

    @property
    def resize(self) -> str | None:
        (h, w, _), (th, tw, _) = self.source_shape, self.target_shape
        if (h, w) == (th, tw):
            return None
        if th >= h and tw >= w and max(th - h, tw - w) <= PAD_AT_MOST:
            return "pad"
        return "resize"

    @property
    def to_rgb(self) -> bool:
        return self.source_shape[2] == 1 and self.target_shape[2] == 3

    def to_dict(self) -> dict[str, list[int]]:
        return {"source_shape": list(self.source_shape), "target_shape": list(self.target_shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Adaptation:
        """The inverse of ``to_dict`` (what a model's ``kerascnn.json`` holds).

        Example:
            >>> Adaptation.from_dict({"source_shape": [28, 28, 1], "target_shape": [32, 32, 1]}).resize
            'pad'
        """
        source, target = d["source_shape"], d["target_shape"]
        return cls((int(source[0]), int(source[1]), int(source[2])), (int(target[0]), int(target[1]), int(target[2])))

    def describe(self) -> str:
        parts = []
        (h, w, _), (th, tw, _) = self.source_shape, self.target_shape
        if self.resize:
            parts.append(f"{self.resize} {h}x{w} -> {th}x{tw}")
        if self.to_rgb:
            parts.append("grey -> RGB")
        return ", ".join(parts) or "none"


def plan_adaptation(
    image_shape: tuple[int, int, int], min_size: int, input_shape: tuple[int, int, int] | None = None
) -> Adaptation:
    """Decides how to feed ``image_shape`` images to a model.

    Args:
        image_shape: The dataset's ``(H, W, C)``.
        min_size: The model's smallest accepted height/width.
        input_shape: An explicit model input shape, or ``None`` to keep the
            images' shape, enlarged to ``min_size`` if needed.

    Raises:
        ValueError: If the images cannot feed the model (colour to grey,
            other channel counts, an explicit shape below ``min_size``).

    Example:
        >>> plan_adaptation((28, 28, 1), 32).describe()
        'pad 28x28 -> 32x32'
    """
    h, w, c = image_shape
    if input_shape is None:
        target = (max(h, min_size), max(w, min_size), c)
    else:
        target = checks.input_shape(input_shape)
        checks.min_spatial_size("this model", target, min_size)
    if target[2] != c and not (c == 1 and target[2] == 3):
        raise ArgumentError(
            f"Images with {c} channel(s) cannot feed a model with {target[2]} input channel(s) "
            f"(only grey -> RGB is converted). Received: input_shape={target}"
        )
    return Adaptation(source_shape=(h, w, c), target_shape=target)


def augmentation_layers(dataset: str, seed: int = 0) -> list[Any]:
    """Keras preprocessing layers used by ``augment=True``: small shifts and rotations;
    horizontal flips too for photos (CIFAR, folders)."""
    from keras import layers

    digits = dataset in ("mnist", "fashion_mnist")
    stack = [
        layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed, name="aug_translate"),
        layers.RandomRotation(0.05, fill_mode="constant", seed=seed, name="aug_rotate"),
    ]
    if not digits:
        stack.insert(0, layers.RandomFlip("horizontal", seed=seed, name="aug_flip"))
    return stack


def _pad_and_colour(x: np.ndarray, adaptation: Adaptation) -> np.ndarray:
    """Zero-pads (centred, as ``tf.image.resize_with_crop_or_pad``) and repeats grey into RGB."""
    if adaptation.resize == "pad":
        (h, w, _), (th, tw, _) = adaptation.source_shape, adaptation.target_shape
        top, left = (th - h) // 2, (tw - w) // 2
        x = np.pad(x, ((0, 0), (top, th - h - top), (left, tw - w - left), (0, 0)))
    if adaptation.to_rgb:
        x = np.repeat(x, 3, axis=-1)
    return x


def make_pipeline(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    adaptation: Adaptation,
    training: bool = False,
    seed: int = 0,
    augment: list[Any] | None = None,
    deterministic: bool = False,
) -> Any:
    """A ``tf.data.Dataset`` of ``(float32 images in [0, 1], int32 labels)`` batches.

    Padding and grey-to-RGB are applied once to the ``uint8`` arrays; then the
    data is cached, shuffled (seeded, reshuffled each epoch) when ``training``,
    batched, scaled (and resized, if needed) in a parallel ``map``, prefetched.
    tf.data's autotuning model is off (it held up the end of ``fit`` for seconds).
    ``augment`` with ``deterministic`` (TensorFlow's op determinism on) maps in one thread:
    TensorFlow would make the map of random ops serial anyway, with an error line on stderr.

    Example:
        >>> ds = make_pipeline(x, y, batch_size=128, adaptation=plan_adaptation((28, 28, 1), 1))  # doctest: +SKIP
    """
    import tensorflow as tf

    th, tw, _ = adaptation.target_shape
    resize = adaptation.resize
    x = _pad_and_colour(x, adaptation)  # exact on uint8: done once, not per batch and epoch

    def prepare(images, labels):
        images = tf.cast(images, tf.float32) / 255.0
        if resize == "resize":
            images = tf.image.resize(images, (th, tw))
        if augment:
            for layer in augment:
                images = layer(images, training=True)
        return images, labels

    ds = tf.data.Dataset.from_tensor_slices((x, y)).cache()
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(prepare, num_parallel_calls=None if augment and deterministic else tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # No autotuning model: at the end of every fit() Keras' iterator waited for its thread, up to
    # ~5 s; without it an epoch still takes as long as the steps alone (BENCHMARKS.md).
    options.autotune.enabled = False
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def describe_splits(data: Dataset) -> list[dict[str, Any]]:
    """The train, validation and test splits as MLflow dataset inputs (JSON): name, digest,
    source and context, so the MLflow dashboard's Dataset column and filters work.

    Example:
        >>> [d["context"] for d in describe_splits(load_dataset("mnist", train_samples=100))]  # doctest: +SKIP
        ['training', 'validation', 'testing']
    """
    source: dict[str, Any]
    if data.source == "keras.datasets":
        source_type, source = "code", {"tags": {"loader": f"keras.datasets.{NAMED[data.name][0]}.load_data"}}
    else:
        source_type, source = "local", {"uri": Path(data.source).resolve().as_uri()}
    splits = (
        ("train", "training", data.x_train, data.y_train),
        ("val", "validation", data.x_val, data.y_val),
        ("test", "testing", data.x_test, data.y_test),
    )
    described = []
    for split, context, x, y in splits:
        if not len(x):
            continue
        head = np.ascontiguousarray(x).reshape(-1).view(np.uint8)[: 1 << 22]  # the first 4 MiB, no copy of all
        digest = hashlib.md5(head.tobytes() + y.tobytes() + str(x.shape).encode())
        spec = {
            "features": [{"type": "tensor", "tensor-spec": {"dtype": str(x.dtype), "shape": [-1, *x.shape[1:]]}}],
            "targets": [{"type": "tensor", "tensor-spec": {"dtype": str(y.dtype), "shape": [-1]}}],
        }
        described.append(
            {
                "name": f"{Path(data.name).name}-{split}",
                "digest": digest.hexdigest()[:8],
                "source_type": source_type,
                "source": source,
                "context": context,
                "schema": {"mlflow_tensorspec": {k: json.dumps(v) for k, v in spec.items()}},
                "profile": {"num_rows": len(x), "features_shape": list(x.shape)},
            }
        )
    return described


def model_info(model: str, data: Dataset, adaptation: Adaptation) -> dict[str, Any]:
    """What a saved model needs to be used again: its class names, the images it was trained on
    and how they were adapted (``loading.save_model`` keeps it inside the ``.keras`` file)."""
    return {
        "model": model,
        "dataset": as_run(data.name),
        "class_names": list(data.class_names),
        "image_shape": list(data.image_shape),
        "adaptation": adaptation.to_dict(),
    }
