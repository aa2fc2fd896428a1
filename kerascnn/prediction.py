"""``predict()``: class names and probabilities of images, from a ``.keras`` file, a run or a registered model.

The model is loaded as the run logged it for MLflow (:mod:`kerascnn.sources`): it takes raw
``uint8`` images of the dataset's shape and does the training preprocessing itself (scaling,
zero-padding or resizing, grey to RGB), so images are given as they are.

Inputs are image files (png, jpg, bmp, gif), folders of them (searched recursively, in sorted
order) or ``.npz``/``.npy`` arrays (an ``.npz``'s ``x``, ``images`` or ``x_test`` array, or its
only array). ``uint8`` arrays are taken as they are; other integer arrays must lie in 0..255;
float arrays in [0, 1] are scaled by 255 (in [0, 255], rounded); boolean arrays are masks (True
is 255). A grey image feeds an RGB model (repeated into 3 channels); a colour image feeds a grey
model only if it is grey (equal channels); an alpha channel is dropped. The height and width must
be the model's.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerascnn import checks
from kerascnn.data import IMAGE_SUFFIXES, decode_image, image_files
from kerascnn.errors import ArgumentError

ARRAY_SUFFIXES = (".npz", ".npy")
ARRAY_KEYS = ("x", "images", "x_test")

__all__ = ["Predictions", "predict", "read_images"]


@dataclass
class Predictions:
    """What ``predict()`` returns: one row of class probabilities per input.

    Attributes:
        model: The MODEL argument.
        inputs: One name per image (``file.png``, ``file.npz[3]``).
        probabilities: ``(N, classes)`` float32.
        class_names: One name per class.
        top_k: How many classes ``top()``, ``to_json()`` and ``to_table()`` give per input.
    """

    model: str
    inputs: list[str]
    probabilities: np.ndarray
    class_names: list[str]
    top_k: int = 1

    @property
    def labels(self) -> list[str]:
        """The most probable class of each input."""
        return [self.class_names[i] for i in self.probabilities.argmax(axis=1)]

    def top(self, row: int) -> list[tuple[str, float]]:
        """The ``top_k`` (class name, probability) pairs of input ``row``, most probable first."""
        order = np.argsort(-self.probabilities[row], kind="stable")[: self.top_k]
        return [(self.class_names[i], float(self.probabilities[row, i])) for i in order]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "predictions": [
                {"input": name, "top": [{"class": c, "probability": p} for c, p in self.top(i)]}
                for i, name in enumerate(self.inputs)
            ],
        }

    def __repr__(self) -> str:  # (not the probabilities: a notebook shows this)
        return (
            f"Predictions(model={self.model!r}, inputs={len(self.inputs)}, "
            f"classes={len(self.class_names)}, top_k={self.top_k})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.to_table())

    def to_table(self) -> str:
        from kerascnn.console import columns, pad

        width = max(columns(n) for n in self.inputs)
        return "\n".join(
            f"{pad(name, width)}  " + "  ".join(f"{c} {p:.4f}" for c, p in self.top(i))
            for i, name in enumerate(self.inputs)
        )


def predict(
    model: Any,
    inputs: Any,
    top_k: int = 1,
    *,
    tracking_uri: str | None = None,
    unsafe: bool = False,
    batch_size: int = 256,
) -> Predictions:
    """Predicts the classes of images with a trained model.

    Args:
        model: A ``.keras`` file, ``runs:/RUN_ID[/NAME]``, a run id, ``models:/NAME@ALIAS`` or
            ``models:/NAME/VERSION`` (see :mod:`kerascnn.sources`), or a Keras model: a kit model
            this process trained or loaded (``train(...).model``) predicts as its file would; any
            other takes ``uint8`` images, or [0, 1] floats, of its input shape.
        inputs: An image file, a folder of images, an ``.npz``/``.npy`` file, a list of those, or
            an array of images ``(N, H, W[, C])`` (see the module docstring).
        top_k: How many classes to report per image.
        tracking_uri: The MLflow store of runs and registered models (default as in ``train``).
        unsafe: Allow ``.keras`` files that can run code when loaded (``Lambda`` layers).
        batch_size: Images per forward pass.

    Returns:
        :class:`Predictions`.

    Raises:
        ArgumentError: An unknown model, an unreadable input, or images the model cannot take.

    Example:
        >>> kerascnn.predict("models:/digits@champion", "digits/", top_k=2).to_table()  # doctest: +SKIP
        'digits/seven.png  7 0.9981  2 0.0012'
    """
    from kerascnn import sources
    from kerascnn.device import batch_fits

    top_k = checks.positive_int("top_k", top_k)
    batch_size = checks.positive_int("batch_size", batch_size)
    source = None if sources.is_keras_model(model) else sources.resolve(model, tracking_uri)
    if not isinstance(inputs, np.ndarray):
        check_inputs(inputs)
    loaded = sources.from_keras(model) if source is None else sources.load(source, unsafe=unsafe)
    if top_k > len(loaded.class_names):
        raise ArgumentError(
            f"`top_k` must be at most the model's {len(loaded.class_names)} classes. Received: top_k={top_k}"
        )
    names, images = read_images(inputs, loaded.image_shape)
    with batch_fits(batch_size):
        probabilities = np.asarray(loaded.model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)
    sums = probabilities.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3) or probabilities.min(initial=0.0) < 0:
        print(
            "kerascnn: warning: the model's outputs are not probabilities (they do not sum to 1; logits?): "
            "shown as they are, ranked",
            file=sys.stderr,
            flush=True,
        )
    return Predictions(loaded.source.text, names, probabilities, loaded.class_names, top_k)


def _paths(inputs: Any) -> list[Any]:
    if isinstance(inputs, (str, os.PathLike)):
        return [inputs]
    if isinstance(inputs, Sequence) and inputs and all(isinstance(i, (str, os.PathLike)) for i in inputs):
        return list(inputs)
    raise ArgumentError(
        "`inputs` must be image files, folders, .npz/.npy files or an array of images. "
        f"Received: inputs={_short(inputs)}"
    )


def _short(value: Any) -> str:
    text = re.sub(r"\s*\n\s*", " ", repr(value))  # (an array's repr spans lines)
    return text if len(text) <= 80 else text[:77] + "..."


def check_inputs(inputs: Any) -> None:
    """Refuses missing files and unknown file types (before any model is loaded; no TensorFlow needed).

    Example:
        >>> check_inputs(["missing.png"])
        Traceback (most recent call last):
        kerascnn.errors.ArgumentError: Input not found. Received: inputs='missing.png'
    """
    for item in _paths(inputs):
        path = Path(item)
        if not str(item).strip():  # Path("") is the current folder
            raise ArgumentError(f"`inputs` must name files or folders. Received: inputs={str(item)!r}")
        if not path.exists():
            raise ArgumentError(f"Input not found. Received: inputs={str(item)!r}")
        if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES + ARRAY_SUFFIXES:
            raise ArgumentError(
                f"Inputs must be images ({', '.join(IMAGE_SUFFIXES)}), folders of them or "
                f".npz/.npy arrays. Received: inputs={str(item)!r}"
            )


def read_images(inputs: Any, image_shape: tuple[int, int, int]) -> tuple[list[str], np.ndarray]:
    """Reads ``inputs`` as ``uint8`` images of ``image_shape``; returns their names and the ``(N, H, W, C)`` array.

    Example:
        >>> names, x = read_images(np.zeros((2, 28, 28), np.uint8), (28, 28, 1))
        >>> names, x.shape
        (['array[0]', 'array[1]'], (2, 28, 28, 1))
    """
    if isinstance(inputs, np.ndarray):
        return _array_images(inputs, "array", image_shape)
    check_inputs(inputs)
    names: list[str] = []
    batches: list[np.ndarray] = []
    for item in _paths(inputs):
        for name, images in _read_path(Path(item), str(item), image_shape):
            names += name
            batches.append(images)
    return names, np.concatenate(batches)


def _read_path(path: Path, text: str, shape: tuple[int, int, int]) -> list[tuple[list[str], np.ndarray]]:
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise ArgumentError(f"Folder holds no images ({', '.join(IMAGE_SUFFIXES)}). Received: inputs={text!r}")
        return [([str(f)], _fit(decode_image(f, f"inputs={text!r}"), shape, f"inputs={str(f)!r}")[None]) for f in files]
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return [_array_images(_read_array(path, text), text, shape)]
    return [([text], _fit(decode_image(path, f"inputs={text!r}"), shape, f"inputs={text!r}")[None])]


def _read_array(path: Path, text: str) -> np.ndarray:
    """An ``.npy`` array, or the ``x``/``images``/``x_test`` (or only) array of an ``.npz`` (no pickles)."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as loaded:
            keys = [k for k in ARRAY_KEYS if k in loaded.files] or (loaded.files if len(loaded.files) == 1 else [])
            if not keys:
                raise ArgumentError(
                    f"The .npz holds {', '.join(loaded.files) or 'no arrays'}; name the images x, "
                    f"images or x_test. Received: inputs={text!r}"
                )
            return loaded[keys[0]]
    except ArgumentError:
        raise
    except Exception as e:
        raise ArgumentError(f"The array file {array_file_problem(e)}. Received: inputs={text!r}") from None


def array_file_problem(error: Exception) -> str:
    """What NumPy's error reading an ``.npy``/``.npz`` file with ``allow_pickle=False`` means.

    Example:
        >>> array_file_problem(ValueError("Object arrays cannot be loaded when allow_pickle=False"))
        'holds pickled objects'
    """
    text = str(error)
    if text.startswith("Object arrays cannot be loaded"):
        return "holds pickled objects"
    if "contains pickled" in text:  # (NumPy's guess for any file that is neither .npy nor a zip archive)
        return "is neither an .npy nor an .npz file (corrupt, or another format)"
    return f"is corrupt ({type(error).__name__}: {' '.join(text.split())[:200]})"


def _array_images(array: np.ndarray, text: str, shape: tuple[int, int, int]) -> tuple[list[str], np.ndarray]:
    """A batch of images ``(N, H, W)``/``(N, H, W, C)``, or one image ``(H, W)``/``(H, W, C)``; named
    ``text[i]`` (``text``: the file, or ``"array"`` for one passed in, which errors describe)."""
    array = np.asarray(array)
    received = f"inputs=<{array.dtype} array of shape {array.shape}>" if text == "array" else f"inputs={text!r}"
    h, w, _ = shape
    if array.ndim == 2 or (array.ndim == 3 and array.shape[:2] == (h, w) and array.shape[2] in (1, 2, 3, 4)):
        array = array[None]  # one image
    if array.ndim not in (3, 4) or len(array) == 0:
        raise ArgumentError(
            f"Arrays must hold images (N, H, W) or (N, H, W, C); got shape {array.shape}. Received: {received}"
        )
    images = _as_uint8(array[..., None] if array.ndim == 3 else array, received)
    return [f"{text}[{i}]" for i in range(len(images))], _fit(images, shape, received)


def _as_uint8(array: np.ndarray, received: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    where = f"Received: {received}"
    if array.dtype == np.bool_:  # a binary image: True is white, as PIL converts its mode "1"
        return array.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ArgumentError(f"Integer images must lie in 0..255. {where}")
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.floating):
        raise ArgumentError(f"Images must be numbers; got {array.dtype}. {where}")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise ArgumentError(f"Float images must lie in [0, 1] (or 0..255). {where}")
    scale = 255.0 if array.max() <= 1.0 else 1.0
    return np.rint(array * scale).astype(np.uint8)


def _fit(images: np.ndarray, shape: tuple[int, int, int], received: str) -> np.ndarray:
    """``images`` (``(H, W, C)`` or ``(N, H, W, C)``) made to the model's channels; sizes must match.
    ``received``: what errors end with (``inputs='x.png'``)."""
    h, w, c = shape
    have = images.shape[-3:]
    where = f"the model takes {h}x{w}x{c} images. Received: {received}"
    if have[:2] != (h, w):
        raise ArgumentError(f"Images are {have[0]}x{have[1]}x{have[2]}; {where}")
    if have[2] in (2, 4) and c != have[2]:  # drop the alpha channel (grey or colour is left)
        images = images[..., : have[2] - 1]
    channels = images.shape[-1]
    if channels == c:
        return images
    if channels == 1 and c == 3:
        return np.repeat(images, 3, axis=-1)
    if channels == 3 and c == 1:
        if (images[..., :1] == images[..., 1:]).all():
            return images[..., :1]
        raise ArgumentError(f"Colour images cannot feed a model trained on grey images; {where}")
    raise ArgumentError(f"Images have {channels} channel(s); {where}")
