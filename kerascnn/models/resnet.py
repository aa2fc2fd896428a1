"""ResNet (He et al., 2015) with 1x1 projection shortcuts, functional API.

Bottleneck blocks put the stride on the 3x3 convolution (torchvision's
"ResNet v1.5"), so parameters and MACs match torchvision's model table.
"""

from __future__ import annotations

from typing import Any

from kerascnn import arithmetic, checks
from kerascnn.models._layers import keras, layers, predictions
from kerascnn.models.registry import register_family, register_model
from kerascnn.pretrained import check_preprocessing, preprocessing_layer
from kerascnn.recipes import Recipe

DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STEMS = ("auto", "small", "imagenet")
SMALL_STEM_BELOW = 128  # "auto" picks the small stem for inputs under 128 pixels
_BN = dict(momentum=0.9, epsilon=1e-5)


def _stem(stem: str, input_shape: tuple[int, int, int]) -> str:
    checks.one_of("stem", stem, STEMS)
    if stem == "auto":
        return "small" if min(input_shape[:2]) < SMALL_STEM_BELOW else "imagenet"
    return stem


def min_input_size(stem: str = "auto", stage_depths: Any = None, depth: int = 18, **overrides: Any) -> int:
    """Smallest height/width for a final feature map of at least 1x1 pixel: 1, since every strided
    layer is padded as torchvision pads it (``floor((n - 1) / 2) + 1 >= 1`` pixels out of ``n >= 1``).

    Example:
        >>> min_input_size("imagenet")
        1
    """
    stages = len(checks.int_tuple("stage_depths", stage_depths)) if stage_depths is not None else 4
    imagenet = checks.one_of("stem", stem, STEMS) == "imagenet"
    stem_windows = [(7, 2, 3), (3, 2, 1)] if imagenet else [(3, 1, "same")]
    return arithmetic.min_input_size([*stem_windows, *[(3, 2, 1)] * (stages - 1)])


def _conv(filters: int, kernel: int, stride: int, name: str, regularizer: Any, padding: str = "same") -> layers.Conv2D:
    return layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer,
        name=name,
    )


def _shortcut(x: Any, filters: int, stride: int, name: str, regularizer: Any) -> Any:
    """Identity, or a 1x1 projection + BN when the stride or channel count changes.

    A strided 1x1 convolution needs no padding: it samples pixels 0, s, 2s, ... as torchvision's does.
    """
    if stride == 1 and x.shape[-1] == filters:
        return x
    x = _conv(filters, 1, stride, f"{name}_proj_conv", regularizer, padding="valid")(x)
    return layers.BatchNormalization(**_BN, name=f"{name}_proj_bn")(x)


def _strided_conv3x3(x: Any, filters: int, stride: int, name: str, regularizer: Any) -> Any:
    """A 3x3 convolution named ``{name}_conv{i}``; strided ones pad 1 pixel on every side first.

    ``padding="same"`` would pad a stride-2 layer unevenly on an even input (0 before, 1 after), shifting
    every output pixel by one input pixel against torchvision and keras.applications, which pad
    symmetrically; the explicit ``{block}_pad`` layer computes their function.
    """
    if stride == 1:
        return _conv(filters, 3, 1, name, regularizer)(x)
    block = name.rsplit("_", 1)[0]
    x = layers.ZeroPadding2D(1, name=f"{block}_pad")(x)
    return _conv(filters, 3, stride, name, regularizer, padding="valid")(x)


def basic_block(x: Any, filters: int, stride: int, name: str, regularizer: Any = None) -> Any:
    """Two 3x3 convolutions; output has ``filters`` channels."""
    shortcut = _shortcut(x, filters, stride, name, regularizer)
    x = _strided_conv3x3(x, filters, stride, f"{name}_conv1", regularizer)
    x = layers.BatchNormalization(**_BN, name=f"{name}_bn1")(x)
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = _conv(filters, 3, 1, f"{name}_conv2", regularizer)(x)
    x = layers.BatchNormalization(**_BN, name=f"{name}_bn2")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.ReLU(name=f"{name}_out")(x)


def bottleneck_block(x: Any, filters: int, stride: int, name: str, regularizer: Any = None) -> Any:
    """1x1 reduce, 3x3 (strided), 1x1 expand; output has ``4 * filters`` channels."""
    shortcut = _shortcut(x, 4 * filters, stride, name, regularizer)
    x = _conv(filters, 1, 1, f"{name}_conv1", regularizer)(x)
    x = layers.BatchNormalization(**_BN, name=f"{name}_bn1")(x)
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = _strided_conv3x3(x, filters, stride, f"{name}_conv2", regularizer)
    x = layers.BatchNormalization(**_BN, name=f"{name}_bn2")(x)
    x = layers.ReLU(name=f"{name}_relu2")(x)
    x = _conv(4 * filters, 1, 1, f"{name}_conv3", regularizer)(x)
    x = layers.BatchNormalization(**_BN, name=f"{name}_bn3")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.ReLU(name=f"{name}_out")(x)


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


def stem_block(x: Any, stem: str, width: int, regularizer: Any = None) -> Any:
    """``"small"``: a 3x3 convolution; ``"imagenet"``: torchvision's 7x7/2 convolution padded 3 pixels
    (``stem_pad``) and 3x3/2 max-pool padded 1 (``stem_pool_pad``), symmetric on any input size."""
    if stem == "imagenet":
        x = layers.ZeroPadding2D(3, name="stem_pad")(x)
        x = _conv(width, 7, 2, "stem_conv", regularizer, padding="valid")(x)
    else:
        x = _conv(width, 3, 1, "stem_conv", regularizer)(x)
    x = layers.BatchNormalization(**_BN, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    if stem == "imagenet":  # zeros pad like -inf here: the input is a ReLU's (>= 0)
        x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    return x


def resnet(
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    depth: int = 18,
    stage_depths: tuple[int, ...] | None = None,
    width: int = 64,
    block: str | None = None,
    stem: str = "auto",
    weight_decay: float = 0.0,
    dropout: float = 0.0,
    preprocessing: str | None = None,
) -> keras.Model:
    """ResNet: stem, stages of residual blocks (stride 2 from stage 2), global pool, classifier.

    Args:
        input_shape: ``(height, width, channels)``.
        num_classes: Number of classes.
        depth: 18, 34, 50, 101 or 152; picks the block type and stage depths.
        stage_depths: Blocks per stage, e.g. ``(1, 1, 1)``, at most 1000 in all; overrides ``depth``'s.
        width: Filters of the first stage; stage ``i`` has ``width * 2**i``.
        block: ``"basic"`` or ``"bottleneck"``; overrides ``depth``'s.
        stem: ``"small"`` (3x3 conv, no pool, for MNIST/CIFAR-sized images), ``"imagenet"``
            (7x7/2 conv + 3x3/2 max-pool) or ``"auto"`` (small under 128 pixels).
        weight_decay: L2 factor on every kernel (0 for none).
        dropout: Dropout rate before the classifier (0 adds no layer).
        preprocessing: ``None``, or ``"torch"``/``"caffe"``: a first ``preprocess`` layer making [0, 1] RGB
            the input of torchvision's or keras.applications' weights (``create_model(weights=...)`` sets it).

    Strided layers pad symmetrically, as torchvision and keras.applications do (see ``stem`` and
    ``_strided_conv3x3``); batch normalisation uses torchvision's epsilon 1e-5 and momentum 0.1.

    Example:
        >>> model = resnet(input_shape=(32, 32, 3), num_classes=10, depth=18)
    """
    default_block, default_stages = DEPTHS[checks.one_of("depth", depth, DEPTHS)]
    block = checks.one_of("block", default_block if block is None else block, BLOCKS)
    stages = checks.int_tuple(
        "stage_depths", default_stages if stage_depths is None else stage_depths, total=(checks.MAX_BLOCKS, "blocks")
    )
    width = checks.positive_int("width", width)
    weight_decay = checks.non_negative_float("weight_decay", weight_decay)
    dropout = checks.fraction("dropout", dropout)
    stem = _stem(stem, input_shape)
    checks.min_spatial_size(f"resnet{depth}", input_shape, min_input_size(stem, stages))
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
    preprocessing = check_preprocessing(preprocessing)
    inputs = keras.Input(shape=input_shape, name="input")
    x = preprocessing_layer(preprocessing)(inputs) if preprocessing else inputs
    x = stem_block(x, stem, width, regularizer)
    for s, blocks in enumerate(stages, start=1):
        for b in range(1, blocks + 1):
            stride = 2 if s > 1 and b == 1 else 1
            x = BLOCKS[block](x, width * 2 ** (s - 1), stride, f"stage{s}_block{b}", regularizer)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = predictions(num_classes, kernel_regularizer=regularizer)(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}")


@register_model(fixes={"depth": 18})
def resnet18(**kwargs: Any) -> keras.Model:
    """ResNet-18: basic blocks (2, 2, 2, 2), 11.7M parameters at 224x224x3."""
    return resnet(**kwargs, depth=18)


@register_model(fixes={"depth": 34})
def resnet34(**kwargs: Any) -> keras.Model:
    """ResNet-34: basic blocks (3, 4, 6, 3), 21.8M parameters at 224x224x3."""
    return resnet(**kwargs, depth=34)


@register_model(fixes={"depth": 50})
def resnet50(**kwargs: Any) -> keras.Model:
    """ResNet-50: bottleneck blocks (3, 4, 6, 3), 25.6M parameters at 224x224x3."""
    return resnet(**kwargs, depth=50)


def search_space(hp: Any, *, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """Depth (18/34), width, weight decay and learning rate of ResNet."""
    hp.Choice("learning_rate", [0.01, 0.03, 0.1])
    return resnet(
        input_shape=input_shape,
        num_classes=num_classes,
        depth=hp.Choice("depth", [18, 34]),
        width=hp.Choice("width", [16, 32, 64]),
        weight_decay=hp.Choice("weight_decay", [0.0, 1e-4, 5e-4]),
    )


register_family(
    "resnet",
    builder=resnet,
    recipe=Recipe(optimizer="sgd", learning_rate=0.1, schedule="cosine", warmup_epochs=1.0, batch_size=128, epochs=15),
    space=search_space,
    min_input_size=min_input_size,
)
