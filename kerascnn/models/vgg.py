"""VGG (Simonyan & Zisserman, 2014): blocks of 3x3 convolutions and max-pools."""

from __future__ import annotations

from typing import Any

from kerascnn import checks
from kerascnn.models._layers import conv_relu, dense_head, keras, layers
from kerascnn.models.registry import register_family, register_model
from kerascnn.recipes import Recipe

LAYOUTS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_WIDTH_MULTIPLIERS = (1, 2, 4, 8, 8)


def _layout(depth: int, layout: tuple[int, ...] | None) -> tuple[int, ...]:
    if layout is not None:
        return checks.int_tuple("layout", layout, total=(checks.MAX_BLOCKS, "convolutions"))
    return LAYOUTS[checks.one_of("depth", depth, LAYOUTS)]


def min_input_size(depth: int = 16, layout: tuple[int, ...] | None = None, **overrides: Any) -> int:
    """Smallest height/width: each block ends in a 2x2 max-pool, so 2**blocks."""
    return 2 ** len(_layout(depth, layout))


def features(blocks: tuple[int, ...], width: int, batch_norm: bool) -> list[Any]:
    """The convolutional part: per block, 3x3 'same' convolutions (``block{b}_conv{c}``) and a 2x2 max-pool."""
    stack: list[Any] = []
    for b, convs in enumerate(blocks, start=1):
        filters = width * _WIDTH_MULTIPLIERS[min(b, len(_WIDTH_MULTIPLIERS)) - 1]
        for c in range(1, convs + 1):
            stack += conv_relu(
                filters,
                3,
                name=f"block{b}_conv{c}",
                bn_name=f"block{b}_bn{c}",
                relu_name=f"block{b}_relu{c}",
                batch_norm=batch_norm,
            )
        stack.append(layers.MaxPooling2D(2, name=f"block{b}_pool"))
    return stack


def vgg(
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    depth: int = 16,
    layout: tuple[int, ...] | None = None,
    width: int = 64,
    batch_norm: bool = False,
    dropout: float = 0.5,
    dense_units: tuple[int, ...] = (4096, 4096),
    preprocessing: str | None = None,
) -> keras.Sequential:
    """VGG: blocks of 3x3 'same' convolutions, each block closed by a 2x2 max-pool.

    Args:
        input_shape: ``(height, width, channels)``; at least ``2**blocks``.
        num_classes: Number of classes.
        depth: 11, 13, 16 or 19 (weight layers), the standard block layouts.
        layout: Convolutions per block, e.g. ``(1, 1, 2)``, at most 1000 in all; overrides ``depth``.
        width: Filters of the first block; block ``i`` has ``width * (1, 2, 4, 8, 8)[i]``.
        batch_norm: Batch normalisation after each convolution (VGG-BN, torchvision's settings).
        dropout: Dropout rate after each hidden dense layer.
        dense_units: Units of the hidden dense layers (may be empty).
        preprocessing: ``None``, or ``"caffe"``/``"torch"``: a first ``preprocess`` layer making [0, 1] RGB
            the input of keras.applications' or torchvision's weights (``create_model(weights=...)`` sets it).

    Example:
        >>> model = vgg(input_shape=(32, 32, 3), num_classes=10, depth=11, width=16)
    """
    blocks = _layout(depth, layout)
    width = checks.positive_int("width", width)
    dropout = checks.fraction("dropout", dropout)
    dense_units = checks.int_tuple("dense_units", dense_units, allow_empty=True)
    batch_norm = checks.boolean("batch_norm", batch_norm)
    name = f"vgg{depth}" if layout is None else "vgg"
    checks.min_spatial_size(name, input_shape, min_input_size(depth, layout))
    from kerascnn.pretrained import check_preprocessing, preprocessing_layer

    preprocessing = check_preprocessing(preprocessing)

    model = keras.Sequential(name=name + ("_bn" if batch_norm else ""))
    model.add(keras.Input(shape=input_shape, name="input"))
    if preprocessing:
        model.add(preprocessing_layer(preprocessing))
    for layer in [*features(blocks, width, batch_norm), *dense_head(dense_units, dropout, num_classes)]:
        model.add(layer)
    return model


@register_model(fixes={"depth": 11})
def vgg11(**kwargs: Any) -> keras.Sequential:
    """VGG-11 (configuration A): 8 conv + 3 FC layers, 132.9M parameters at 224x224x3."""
    return vgg(**kwargs, depth=11)


@register_model(fixes={"depth": 13})
def vgg13(**kwargs: Any) -> keras.Sequential:
    """VGG-13 (configuration B): 10 conv + 3 FC layers, 133.0M parameters at 224x224x3."""
    return vgg(**kwargs, depth=13)


@register_model(fixes={"depth": 16})
def vgg16(**kwargs: Any) -> keras.Sequential:
    """VGG-16 (configuration D): 13 conv + 3 FC layers, 138.4M parameters at 224x224x3."""
    return vgg(**kwargs, depth=16)


@register_model(fixes={"depth": 19})
def vgg19(**kwargs: Any) -> keras.Sequential:
    """VGG-19 (configuration E): 16 conv + 3 FC layers, 143.7M parameters at 224x224x3."""
    return vgg(**kwargs, depth=19)


def search_space(hp: Any, *, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """Variant (depth), width, batch-norm, dropout and learning rate of VGG; 256-unit classifier."""
    hp.Choice("learning_rate", [1e-4, 3e-4, 1e-3])
    return vgg(
        input_shape=input_shape,
        num_classes=num_classes,
        depth=hp.Choice("depth", [11, 13, 16]),
        width=hp.Choice("width", [16, 32, 64]),
        batch_norm=hp.Boolean("batch_norm"),
        dropout=hp.Float("dropout", 0.0, 0.5, step=0.25),
        dense_units=(256, 256),
    )


register_family(
    "vgg",
    builder=vgg,
    recipe=Recipe(
        optimizer="adam", learning_rate=3e-4, schedule="cosine", warmup_epochs=0.5, batch_size=128, epochs=10
    ),
    space=search_space,
    min_input_size=min_input_size,
)
