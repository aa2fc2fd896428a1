"""Pretrained weights for the kit's models: keras.applications' ImageNet VGG, torchvision, Keras files.

Sources (``weights=`` of :func:`create_pretrained` and ``create_model``):

* ``"imagenet"`` — ``vgg16``/``vgg19`` only: keras.applications' ImageNet weights, through Keras' own
  download and cache (``~/.keras/models``), copied by layer name (the kit uses keras.applications' names).
* ``"PATH.h5"`` — a keras.applications weights file (legacy HDF5, with or without the top), e.g. the
  ImageNet file copied to a machine without internet; read with h5py, copied by layer name.
* ``"PATH.keras"`` — any saved Keras model (a kit run's ``model.keras``, a saved keras.applications VGG);
  weights copied by layer name.
* ``"PATH.weights.h5"`` — Keras 3's own weights file (``model.save_weights``): it names weights by position,
  not layer name, so it loads (``model.load_weights``) only into the architecture that saved it.
* a torchvision state dict — a ``dict`` of NumPy arrays or torch tensors, a ``.pth``/``.pt`` file (needs
  torch) or an ``.npz`` of the arrays (no torch) — for ResNet-18/34/50 and VGG-11/13/16/19 (``_bn``
  too), mapped by :func:`torchvision_mapping`. Use :func:`convert_torchvision` for a one-step conversion.

Every weighted layer other than ``Dense`` must match the source one-to-one by name and shape (otherwise a
``ValueError``); ``Dense`` layers whose shape differs (a classifier for other classes, ``fc1`` at another
input size) keep their fresh initialisation and are listed in :attr:`Pretrained.skipped`.

**Input convention.** The kit's data pipeline feeds RGB images scaled to [0, 1]. keras.applications'
VGG weights expect ``preprocess_input`` "caffe" inputs (BGR, 0-255 minus the ImageNet mean), torchvision's
``(x - mean) / std`` of [0, 1] RGB ("torch"). Unless told otherwise the model is built with that
convention inside it: a ``preprocess`` ``Rescaling`` layer first (``preprocessing="caffe"``: ``255 x -
mean``; ``"torch"``: ``(x - mean) / std``), and for caffe the first convolution's input channels
reversed (RGB instead of BGR). ``model(x)`` on [0, 1] RGB ``x`` then equals the reference network on the
reference's preprocessed ``x``. Pass ``preprocessing=None`` for the raw reference function (the caller
preprocesses).
"""

from __future__ import annotations

import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerascnn import checks
from kerascnn.errors import ArgumentError

PREPROCESSING = ("caffe", "torch")
# keras.applications.imagenet_utils "caffe" mean (its BGR order reversed to RGB) and torchvision's mean/std
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)

TORCHVISION_MODELS = {
    "resnet18": ("resnet18", {}),
    "resnet34": ("resnet34", {}),
    "resnet50": ("resnet50", {}),
    **{f"vgg{d}": (f"vgg{d}", {"batch_norm": False}) for d in (11, 13, 16, 19)},
    **{f"vgg{d}_bn": (f"vgg{d}", {"batch_norm": True}) for d in (11, 13, 16, 19)},
}
_IMAGENET = {"vgg16": "VGG16", "vgg19": "VGG19"}
_IGNORED_TORCH_KEYS = ("num_batches_tracked",)


def _rescaling(mode: str) -> tuple[Any, Any]:
    if mode == "caffe":
        return 255.0, [-m for m in CAFFE_MEAN_RGB]
    return [1.0 / s for s in TORCH_STD], [-m / s for m, s in zip(TORCH_MEAN, TORCH_STD)]


def check_preprocessing(mode: Any) -> str | None:
    """Returns ``mode`` if it is ``None``, ``"caffe"`` or ``"torch"``.

    Example:
        >>> check_preprocessing("torch")
        'torch'
    """
    return checks.one_of("preprocessing", mode, (*PREPROCESSING, None))  # (the message lists None too)


def preprocessing_layer(mode: str) -> Any:
    """The ``preprocess`` layer mapping [0, 1] RGB images to a reference network's input convention.

    ``"caffe"``: ``255 x - mean`` per channel (keras.applications' VGG; the RGB-to-BGR swap is left to the
    first convolution's weights); ``"torch"``: ``(x - mean) / std`` (torchvision). Computed in float32.

    Example:
        >>> layer = preprocessing_layer("torch")
    """
    from keras import layers

    scale, offset = _rescaling(checks.one_of("preprocessing", mode, PREPROCESSING))
    return layers.Rescaling(scale, offset, dtype="float32", name="preprocess")


def model_preprocessing(model: Any) -> str | None:
    """The convention of ``model``'s ``preprocess`` layer (``"caffe"``, ``"torch"``), or ``None`` (no layer).

    Example:
        >>> model_preprocessing(create_model("vgg16", preprocessing="caffe"))  # doctest: +SKIP
        'caffe'
    """
    try:
        layer = model.get_layer("preprocess")
    except ValueError:
        return None
    cfg = layer.get_config()
    scale, offset = (np.asarray(_plain(cfg.get(k)), dtype=np.float64) for k in ("scale", "offset"))
    for mode in PREPROCESSING:
        want_scale, want_offset = _rescaling(mode)
        if np.allclose(scale, want_scale) and np.allclose(offset, want_offset):
            return mode
    return None


def _plain(value: Any) -> Any:
    """A Rescaling config value (maybe a serialized NumPy array) as a plain number or list."""
    if isinstance(value, dict) and "config" in value:
        inner = value["config"]
        return inner.get("value", inner) if isinstance(inner, dict) else inner
    return value


@dataclass
class Pretrained:
    """A model with loaded weights and what was loaded.

    Attributes:
        model: The ``keras.Model``.
        source: ``"imagenet"``, the file path, or ``"state_dict"``.
        convention: Input convention of the source weights (``"caffe"``, ``"torch"`` or ``None``: unknown).
        preprocessing: The convention built into the model's ``preprocess`` layer (``None``: the caller
            must feed inputs in ``convention``).
        loaded: Layers whose weights came from the source.
        skipped: ``Dense`` layers left at their initialisation because their shape differs from the source's.
    """

    model: Any
    source: str
    convention: str | None
    preprocessing: str | None
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# Sources ----------------------------------------------------------------------------------------


@dataclass
class _Source:
    label: str
    convention: str | None
    kind: str  # "layers" (by layer name), "torchvision" (a state dict), "keras_weights" (model.load_weights)
    layers: Any = None  # callable(model) -> dict[name, list[np.ndarray]]
    state_dict: dict[str, np.ndarray] | None = None
    preprocess: str | None = None  # the source model's own preprocess layer (a kit model), if any
    has_preprocess_layer: bool = False
    argument: str = "weights"  # the argument errors echo
    shown: str | None = None  # how they echo it, when not as ``label`` (a dict: ``<a dict of 3 arrays>``)

    @property
    def received(self) -> str:
        return f"Received: {self.argument}={self.shown or repr(self.label)}"

    @classmethod
    def torchvision(cls, given: Any, state: dict[str, np.ndarray], argument: str) -> _Source:
        """A torchvision state dict read from ``given`` (a file, or a dict: echoed ``<a dict of N arrays>``)."""
        if isinstance(given, dict):
            shown = f"<a dict of {len(state)} arrays>"
            return cls("state_dict", "torch", "torchvision", state_dict=state, argument=argument, shown=shown)
        return cls(str(given), "torch", "torchvision", state_dict=state, argument=argument)


_SUFFIXES = (".keras", ".weights.h5", ".h5", ".hdf5", ".pth", ".pt", ".npz")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".weights.h5" if name.endswith(".weights.h5") else path.suffix.lower()


def check_weights(name: str, weights: Any) -> Any:
    """Raises the ``ValueError`` ``create_model(name, weights=weights)`` would for an unusable source.

    Cheap (no Keras, no download, files only checked to exist and have a known suffix), for argument
    checks before anything starts; whether the weights fit the model is known only when loading.

    Example:
        >>> check_weights("vgg16", "imagenet")
        'imagenet'
    """
    if weights is None or isinstance(weights, dict):
        return weights
    if not isinstance(weights, (str, os.PathLike)):
        raise ArgumentError(
            "`weights` must be 'imagenet', a file path (.keras, .weights.h5, .h5, .pth, .pt, .npz) or a "
            f"torchvision state dict. Received: weights={weights!r}"
        )
    if weights == "imagenet":
        if name not in _IMAGENET:
            other = (
                f"for {name} convert torchvision's with kerascnn.convert_torchvision"
                if name in TORCHVISION_MODELS
                else f"the kit has none for {name} (train it, or pass a weights file)"
            )
            raise ArgumentError(
                f"ImageNet weights are available for {', '.join(_IMAGENET)} (keras.applications); {other}. "
                "Received: weights='imagenet'"
            )
        return weights
    path = Path(weights)
    if not path.is_file():
        raise ArgumentError(f"Weights file not found. Received: weights={str(weights)!r}")
    if _suffix(path) not in _SUFFIXES:
        raise ArgumentError(
            "Weights files must end in .keras, .weights.h5, .h5 (keras.applications), .pth, .pt or .npz "
            f"(torchvision). Received: weights={str(weights)!r}"
        )
    return weights


def _open_source(weights: Any, model_name: str | None) -> _Source:
    check_weights(model_name or "?", weights)
    if isinstance(weights, dict):
        return _Source.torchvision(weights, _arrays(weights, "weights"), "weights")
    if weights == "imagenet":
        return _Source("imagenet", "caffe", "layers", layers=lambda model: _imagenet_layers(model_name or "", model))
    path = Path(weights)
    suffix = _suffix(path)
    if suffix == ".keras":
        return _keras_source(path)
    if suffix == ".weights.h5":  # Keras 3's own format names weights by position, not by layer name
        return _Source(str(path), None, "keras_weights")
    if suffix in (".h5", ".hdf5"):
        layers = _read_h5_layers(path)
        return _Source(str(path), "caffe", "layers", layers=lambda model: layers)
    if suffix in (".pth", ".pt", ".npz"):
        return _Source(str(path), "torch", "torchvision", state_dict=read_state_dict(path, "weights"))
    raise AssertionError(suffix)  # check_weights lets only the suffixes above through


def _imagenet_layers(model_name: str, model: Any) -> dict[str, list[np.ndarray]]:
    import keras

    # the top (fc1, fc2, predictions: 500 MB) only when fc1 can take it
    top = _layer_shapes(model).get("fc1", [None])[0] == (25088, 4096)
    try:
        ref = getattr(keras.applications, _IMAGENET[model_name])(weights="imagenet", include_top=top)
    except Exception as e:  # Keras raises a bare Exception when the download fails
        raise ArgumentError(
            f"Could not get keras.applications' ImageNet weights ({' '.join(str(e).split())[:200]}); "
            "offline, "
            "copy the .h5 file (vgg16_weights_tf_dim_ordering_tf_kernels[_notop].h5) and pass its path. "
            "Received: weights='imagenet'"
        ) from None
    try:
        return {layer.name: layer.get_weights() for layer in ref.layers if layer.weights}
    finally:
        del ref


def _keras_source(path: Path) -> _Source:
    from kerascnn.loading import load_model

    ref = load_model(path, compile=False, argument="weights")
    layers = {layer.name: layer.get_weights() for layer in ref.layers if layer.weights}
    nested = [layer.name for layer in ref.layers if hasattr(layer, "layers") and layer.weights]
    if nested:
        raise ArgumentError(
            f"Nested models are not supported as a weights source ({nested[0]}). Received: weights={str(path)!r}"
        )
    mode = model_preprocessing(ref)
    has_layer = any(layer.name == "preprocess" for layer in ref.layers)
    del ref
    return _Source(
        str(path),
        mode,
        "layers",
        layers=lambda model: layers,
        preprocess=mode,
        has_preprocess_layer=has_layer,
    )


def _read_h5_layers(path: Path) -> dict[str, list[np.ndarray]]:
    """Weights by layer name from a legacy (keras.applications) HDF5 weights or model file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            if "layer_names" not in group.attrs:
                raise ArgumentError(
                    "Not a keras.applications-style HDF5 weights file (no layer_names). "
                    f"Received: weights={str(path)!r}"
                )
            out = {}
            for raw in group.attrs["layer_names"]:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                g = group[name]
                names = [w.decode() if isinstance(w, bytes) else str(w) for w in g.attrs.get("weight_names", [])]
                if names:
                    out[name] = [np.asarray(g[w]) for w in names]
            return out
    except OSError as e:
        raise ArgumentError(f"Cannot read the HDF5 file ({e}). Received: weights={str(path)!r}") from None


def _arrays(state: dict[str, Any], argument: str) -> dict[str, np.ndarray]:
    out = {}
    for key, item in state.items():
        if not isinstance(key, str):
            raise ArgumentError(f"A state dict's keys must be strings. Received: {argument} key {key!r}")
        value = item.detach().cpu().numpy() if hasattr(item, "detach") else item  # a torch tensor, or not
        numeric = isinstance(value, (np.ndarray, np.generic, numbers.Number)) and np.asarray(value).dtype.kind in "biuf"
        if not numeric:
            raise ArgumentError(
                f"A state dict maps names to arrays or tensors of numbers. Received: {argument}[{key!r}] of type "
                f"{type(value).__name__}" + (f" ({value.dtype})" if isinstance(value, np.ndarray) else "")
            )
        out[key[len("module.") :] if key.startswith("module.") else key] = np.asarray(value)
    return out


def read_state_dict(source: str | os.PathLike | dict[str, Any], argument: str = "state_dict") -> dict[str, np.ndarray]:
    """A torchvision state dict as NumPy arrays, from a dict, a ``.pth``/``.pt`` file (torch) or an ``.npz``.

    ``.pth`` files load with ``torch.load(weights_only=True)`` (no code runs); ``.npz`` with
    ``allow_pickle=False``. A ``"module."`` prefix (``DataParallel``) is dropped.

    Example:
        >>> state = read_state_dict("resnet18.npz")  # doctest: +SKIP
        >>> state["conv1.weight"].shape  # doctest: +SKIP
        (64, 3, 7, 7)
    """
    if isinstance(source, dict):
        return _arrays(source, argument)
    if not isinstance(source, (str, os.PathLike)):
        raise ArgumentError(f"`{argument}` must be a state dict or its file. Received: {argument}={source!r}")
    path, received = Path(source), f"Received: {argument}={str(source)!r}"
    if not path.is_file():
        raise ArgumentError(f"State dict file not found. {received}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return _arrays({k: data[k] for k in data.files}, "state_dict")
        except (OSError, ValueError) as e:
            from kerascnn.prediction import array_file_problem

            raise ArgumentError(f"The file {array_file_problem(e)}. {received}") from None
    if suffix in (".pth", ".pt"):
        try:
            import torch
        except ImportError:
            raise ArgumentError(
                "Reading a .pth/.pt file needs torch (pip install torch), or save the state dict as .npz: "
                "numpy.savez(out, **{k: v.numpy() for k, v in state_dict.items()}). "
                f"{received}"
            ) from None
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ArgumentError(f"The file does not hold a state dict. {received}")
        return _arrays(state, "state_dict")
    raise ArgumentError(f"State dict files must end in .pth, .pt or .npz. {received}")


# torchvision ------------------------------------------------------------------------------------

_VGG_CHANNELS = 512  # channels of torchvision VGG's last feature map
_BN_KEYS = ("weight", "bias", "running_mean", "running_var")  # = Keras' gamma, beta, moving mean/variance


def torchvision_mapping(model: Any) -> dict[str, tuple[str, int, str]]:
    """Which torchvision state-dict entry fills which weight of a kit ResNet or VGG.

    Returns ``{torch_key: (layer_name, weight_index, transform)}`` where ``weight_index`` indexes
    ``layer.weights`` and ``transform`` is ``"conv"`` (OIHW to HWIO), ``"dense"`` (``(out, in)`` to
    ``(in, out)``), ``"dense_chw"`` (VGG's first classifier layer: also PyTorch's channel-first flatten
    order to Keras' channel-last one) or ``"copy"``. ``num_batches_tracked`` entries are not used.

    Example:
        >>> from kerascnn import create_model
        >>> mapping = torchvision_mapping(create_model("resnet18", input_shape=(32, 32, 3), stem="imagenet"))
        >>> mapping["layer2.0.downsample.0.weight"]
        ('stage2_block1_proj_conv', 0, 'conv')
    """
    names = [layer.name for layer in model.layers]
    if "stem_conv" in names:
        return _resnet_mapping(names)
    if "block1_conv1" in names:
        return _vgg_mapping(model)
    raise ArgumentError(f"torchvision weights map onto the kit's ResNet and VGG models. Received: model={model.name!r}")


def _conv_bn(
    mapping: dict, torch_prefix: tuple[str, str], conv: str | None, bn: str | None, bias: bool = False
) -> None:
    if conv:
        mapping[f"{torch_prefix[0]}.weight"] = (conv, 0, "conv")
        if bias:
            mapping[f"{torch_prefix[0]}.bias"] = (conv, 1, "copy")
    if bn:
        for i, key in enumerate(_BN_KEYS):
            mapping[f"{torch_prefix[1]}.{key}"] = (bn, i, "copy")


def _resnet_mapping(names: list[str]) -> dict[str, tuple[str, int, str]]:
    import re

    mapping: dict[str, tuple[str, int, str]] = {}
    _conv_bn(mapping, ("conv1", "bn1"), "stem_conv", "stem_bn")
    pattern = re.compile(r"^stage(\d+)_block(\d+)_(conv|bn)(\d+)$")
    for name in names:
        m = pattern.match(name)
        if m:
            stage, block, kind, i = m.groups()
            prefix = f"layer{stage}.{int(block) - 1}"
            if kind == "conv":
                mapping[f"{prefix}.conv{i}.weight"] = (name, 0, "conv")
            else:
                _conv_bn(mapping, ("", f"{prefix}.bn{i}"), None, name)
        elif (proj := re.match(r"^stage(\d+)_block(\d+)_proj_conv$", name)) is not None:
            stage, block = proj.groups()
            prefix = f"layer{stage}.{int(block) - 1}.downsample"
            _conv_bn(mapping, (f"{prefix}.0", f"{prefix}.1"), name, name[: -len("conv")] + "bn")
    mapping["fc.weight"] = ("predictions", 0, "dense")
    mapping["fc.bias"] = ("predictions", 1, "copy")
    return mapping


def _vgg_mapping(model: Any) -> dict[str, tuple[str, int, str]]:
    mapping: dict[str, tuple[str, int, str]] = {}
    index = 0  # position in torchvision's ``features`` Sequential: conv, [bn,] relu, ..., pool
    dense = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            mapping[f"features.{index}.weight"] = (layer.name, 0, "conv")
            mapping[f"features.{index}.bias"] = (layer.name, 1, "copy")
            index += 1
            if layer.get_config()["activation"] == "relu":
                index += 1
        elif kind == "BatchNormalization":
            _conv_bn(mapping, ("", f"features.{index}"), None, layer.name)
            index += 1
        elif kind in {"ReLU", "MaxPooling2D"}:
            index += 1
        elif kind == "Dense":
            dense.append(layer.name)
    # torchvision's classifier: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear
    for i, name in enumerate(dense):
        mapping[f"classifier.{3 * i}.weight"] = (name, 0, "dense_chw" if i == 0 else "dense")
        mapping[f"classifier.{3 * i}.bias"] = (name, 1, "copy")
    return mapping


def _transform(value: np.ndarray, transform: str, target_shape: tuple[int, ...]) -> np.ndarray | None:
    """The torch array in Keras layout, or ``None`` if it cannot have ``target_shape``."""
    if transform == "conv" and value.ndim == 4:
        value = value.transpose(2, 3, 1, 0)
    elif transform == "dense" and value.ndim == 2:
        value = value.T
    elif transform == "dense_chw" and value.ndim == 2:
        # torchvision flattens its (512, 7, 7) pooled map channel-first, Keras flattens (H, W, 512)
        units, flat = value.shape
        side = round((flat / _VGG_CHANNELS) ** 0.5)
        if side * side * _VGG_CHANNELS != flat or tuple(target_shape) != (flat, units):
            return None
        value = value.reshape(units, _VGG_CHANNELS, side, side).transpose(2, 3, 1, 0).reshape(flat, units)
    return value if tuple(value.shape) == tuple(target_shape) else None


def _torchvision_layers(model: Any, state: dict[str, np.ndarray], received: str) -> dict[str, list[np.ndarray]]:
    mapping = torchvision_mapping(model)
    used = {k for k in state if not k.endswith(_IGNORED_TORCH_KEYS)}
    missing = sorted(set(mapping) - set(state))
    if missing:
        raise ArgumentError(
            f"The state dict lacks {len(missing)} weights of {model.name} (first: {missing[0]!r}); is it a "
            f"torchvision {model.name} with this configuration? {received}"
        )
    unexpected = sorted(used - set(mapping))
    if unexpected:
        raise ArgumentError(
            f"The state dict has {len(unexpected)} entries {model.name} has no weight for (first: "
            f"{unexpected[0]!r}). {received}"
        )
    shapes = _layer_shapes(model)
    out: dict[str, list[Any]] = {}
    for key, (name, index, transform) in mapping.items():
        target = shapes[name][index]
        value = _transform(state[key], transform, target)
        out.setdefault(name, [None] * len(shapes[name]))[index] = value if value is not None else np.asarray(state[key])
    return out


# Applying ---------------------------------------------------------------------------------------


def _layer_shapes(model: Any) -> dict[str, list[tuple[int, ...]]]:
    return {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers if layer.weights}


def _first_conv(model: Any) -> str | None:
    for layer in model.layers:
        if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
            return layer.name
    return None


def load_weights(model: Any, weights: Any, *, model_name: str | None = None) -> Pretrained:
    """Loads ``weights`` into ``model`` in place, by layer name; see the module docstring for the sources.

    Args:
        model: A kit model (or any functional/Sequential model whose layer names match the source).
        weights: ``"imagenet"``, a ``.keras``/``.weights.h5``/``.h5``/``.pth``/``.pt``/``.npz`` path or a
            torchvision state dict.
        model_name: The registered name, for ``"imagenet"`` (default: ``model.name``).

    Returns:
        A :class:`Pretrained` naming the loaded and the skipped layers.

    Raises:
        ValueError: An unknown source, or weights that do not fit the model (a convolution's shape or
            name, missing or unexpected torchvision entries, conflicting input conventions).

    Example:
        >>> model = create_model("vgg16", input_shape=(64, 64, 3), num_classes=10,
        ...                      preprocessing="caffe")  # doctest: +SKIP
        >>> load_weights(model, "imagenet").skipped  # doctest: +SKIP
        ['fc1', 'fc2', 'predictions']
    """
    source = _open_source(weights, model_name or model.name)
    return _apply(model, source)


def _check_convention(model: Any, source: _Source) -> tuple[str | None, bool]:
    """The model's preprocessing, and whether the first convolution must read the channels reversed."""
    mode = model_preprocessing(model)
    if any(layer.name == "preprocess" for layer in model.layers) and mode is None:
        raise ArgumentError(f"The model's `preprocess` layer is not a kit convention. Received: model={model.name!r}")
    if source.has_preprocess_layer:
        if mode != source.preprocess:
            raise ArgumentError(
                f"The weights come from a model built with preprocessing={source.preprocess!r}; "
                f"build this one the same way. Received: preprocessing={mode!r}"
            )
        return mode, False
    if mode is not None and source.convention not in (None, mode):
        raise ArgumentError(
            f"These weights expect {source.convention!r} inputs; a model with preprocessing="
            f"{mode!r} would feed them the wrong ones. Received: preprocessing={mode!r}"
        )
    return mode, mode == "caffe"  # caffe-convention weights read BGR; the model's input is RGB


def _load_keras_weights(model: Any, label: str, mode: str | None) -> Pretrained:
    try:
        with warnings.catch_warnings():  # Keras 3.15 notes "Skipping nested container" though all loads
            warnings.filterwarnings("ignore", message="Skipping nested container")
            model.load_weights(label)
    except (ValueError, KeyError) as e:
        raise ArgumentError(
            f"The .weights.h5 file does not fit {model.name} ({' '.join(str(e).split())[:200]}); "
            f"it loads only into the architecture that saved it. Received: weights={label!r}"
        ) from None
    return Pretrained(model, label, None, mode, loaded=list(_layer_shapes(model)))


def _apply(model: Any, source: _Source) -> Pretrained:
    label = source.label
    mode, flip = _check_convention(model, source)
    if source.kind == "keras_weights":
        return _load_keras_weights(model, label, mode)
    by_layer = (
        _torchvision_layers(model, source.state_dict or {}, source.received)
        if source.kind == "torchvision"
        else (source.layers(model))
    )
    shapes, first_conv = _layer_shapes(model), _first_conv(model)
    result = Pretrained(model, label, source.convention, mode)
    pending = []
    for layer in model.layers:
        if layer.name not in shapes:
            continue
        values = by_layer.get(layer.name)
        if not _fits(values, shapes[layer.name]):
            if type(layer).__name__ == "Dense":  # a new classifier (or fc1 at another input size) stays fresh
                result.skipped.append(layer.name)
                continue
            if layer.name == first_conv:
                _check_channels(model, values, shapes[layer.name], source.kind)
            found = "none for it" if values is None else [tuple(np.shape(v)) for v in values]
            raise ArgumentError(
                f"The weights do not fit layer {layer.name!r} of {model.name}: it needs "
                f"{shapes[layer.name]}, the source has {found}. {source.received}"
            )
        assert values is not None
        if flip and layer.name == first_conv:
            values = [values[0][:, :, ::-1, :], *values[1:]]
        pending.append((layer, values))
        result.loaded.append(layer.name)
    unused = sorted(name for name in by_layer if name not in shapes and not _is_dense_name(name, by_layer[name]))
    if unused:
        raise ArgumentError(
            f"The source has weighted layers {model.name} lacks ({', '.join(unused[:3])}"
            f"{', ...' if len(unused) > 3 else ''}); a different architecture? {source.received}"
        )
    for layer, values in pending:
        layer.set_weights([np.ascontiguousarray(v) for v in values])
    return result


def _check_channels(model: Any, values: list[np.ndarray] | None, shapes: list[tuple[int, ...]], kind: str) -> None:
    """A first convolution whose kernel reads other channels than the model's input has: the
    ``input_shape`` is what to change (a torch kernel is ``(out, in, h, w)``, a Keras one ``(h, w, in, out)``)."""
    if values is None or np.ndim(values[0]) != 4 or len(shapes[0]) != 4:
        return
    theirs = np.shape(values[0])[1 if kind == "torchvision" else 2]
    if theirs != shapes[0][2]:
        raise ArgumentError(
            f"The weights take {theirs}-channel images; {model.name} is built for {shapes[0][2]}. "
            f"Received: input_shape={tuple(model.input_shape[1:])}"
        )


def _fits(values: list[np.ndarray] | None, shapes: list[tuple[int, ...]]) -> bool:
    return (
        values is not None
        and len(values) == len(shapes)
        and all(v is not None and tuple(np.shape(v)) == s for v, s in zip(values, shapes))
    )


def _is_dense_name(name: str, values: list[np.ndarray]) -> bool:
    return len(values) in (1, 2) and np.ndim(values[0]) == 2


def create_pretrained(
    name: str,
    weights: Any,
    *,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    **overrides: Any,
) -> Pretrained:
    """Builds a registered model and loads pretrained weights into it.

    The model is built with the source's input convention inside it (``preprocessing="caffe"`` for
    keras.applications weights, ``"torch"`` for torchvision's) unless ``preprocessing`` is given, so it
    takes the kit's [0, 1] RGB images; torchvision ResNets get the ImageNet stem (``stem="imagenet"``) and
    torchvision ``_bn`` state dicts a ``batch_norm=True`` VGG unless told otherwise.
    ``create_model(name, weights=...)`` returns ``create_pretrained(...).model``.

    Args:
        name: A model from ``list_models()``.
        weights: ``"imagenet"`` (``vgg16``, ``vgg19``), a ``.keras``/``.weights.h5``/``.h5``/``.pth``/``.pt``/
            ``.npz`` path or a torchvision state dict.
        input_shape: As in ``create_model``.
        num_classes: As in ``create_model``; a classifier of another size keeps its initialisation.
        **overrides: Builder options.

    Returns:
        A :class:`Pretrained` (``.model``, ``.loaded``, ``.skipped``, ...).

    Example:
        >>> result = create_pretrained("vgg16", "imagenet", input_shape=(32, 32, 3),
        ...                            num_classes=10)  # doctest: +SKIP
        >>> result.skipped  # doctest: +SKIP
        ['fc1', 'fc2', 'predictions']
    """
    from kerascnn.models.registry import create_model, get_entry

    entry = get_entry(name)
    source = _open_source(weights, name)
    options = entry.options()
    if "preprocessing" in options:
        overrides.setdefault("preprocessing", source.preprocess if source.has_preprocess_layer else source.convention)
    if source.kind == "torchvision":
        if entry.family == "resnet":
            overrides.setdefault("stem", "imagenet")
        if "batch_norm" in options and source.state_dict is not None:
            overrides.setdefault("batch_norm", any(k.endswith("running_mean") for k in source.state_dict))
    model = create_model(name, input_shape=input_shape, num_classes=num_classes, **overrides)
    return _apply(model, source)


def convert_torchvision(
    name: str,
    state_dict: str | os.PathLike | dict[str, Any],
    *,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    num_classes: int | None = None,
    preprocessing: str | None = "torch",
    **overrides: Any,
) -> Any:
    """A kit model computing a torchvision ResNet-18/34/50 or VGG-11/13/16/19(_bn) with its weights.

    torch is needed only to read a ``.pth``/``.pt`` file; a dict of arrays or an ``.npz`` needs none.
    Every weight is checked: a missing, unexpected or misshapen entry raises a ``ValueError`` (a
    classifier of another size is the exception: it keeps its initialisation). VGG's first classifier
    layer expects a 7x7 final map (inputs of 224 to 239 pixels, torchvision's adaptive pool being the
    identity there).

    Args:
        name: ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"vgg11"``...``"vgg19"`` or
            ``"vgg11_bn"``...``"vgg19_bn"`` (torchvision's names).
        state_dict: A state dict (arrays or tensors), a ``.pth``/``.pt`` or an ``.npz`` file.
        input_shape: The model's input; any size for ResNet.
        num_classes: Default: the state dict's classifier size.
        preprocessing: ``"torch"`` builds torchvision's normalisation in (the model takes [0, 1] RGB);
            ``None`` leaves it to the caller.
        **overrides: Other builder options (``dropout``, ``weight_decay``, ...).

    Returns:
        The ``keras.Model``; save it with ``model.save("resnet50.keras")``.

    Example:
        >>> model = convert_torchvision("resnet50", "resnet50-11ad3fa6.pth")  # doctest: +SKIP
    """
    checks.one_of("name", name, TORCHVISION_MODELS)
    kit_name, fixed = TORCHVISION_MODELS[name]
    state = read_state_dict(state_dict)
    if num_classes is None:
        head = state.get("fc.weight", state.get("classifier.6.weight"))
        num_classes = int(head.shape[0]) if head is not None and head.ndim == 2 else None  # (else: misshapen, below)
    source = _Source.torchvision(state_dict, state, "state_dict")
    from kerascnn.models.registry import create_model

    options = dict(fixed, preprocessing=check_preprocessing(preprocessing), **overrides)
    if kit_name.startswith("resnet"):
        options.setdefault("stem", "imagenet")
    model = create_model(kit_name, input_shape=input_shape, num_classes=num_classes, **options)
    return _apply(model, source).model
