"""describe(): the textbook arithmetic, checked against Keras and the published model tables."""

from __future__ import annotations

import math

import keras
import pytest
from keras import layers

import kerascnn
from kerascnn import arithmetic
from kerascnn.report import describe
from kerascnn.models import get_entry

MODELS = kerascnn.list_models()

# Published at 224x224x3 / 1000 classes. Parameters: torchvision's model table
# (= keras.applications' VGG); ResNet parameters are the trainable ones, since
# Keras also counts BatchNorm's moving statistics, which torchvision keeps as
# buffers. MACs: torchvision's "GFLOPS" column (it counts multiply-adds).
# AlexNet is the original 96-filter network (torchvision ships a 64-filter
# variant), so its figures come from the paper's layer sizes.
PUBLISHED = {
    "vgg11": (132_863_336, 7.61),
    "vgg13": (133_047_848, 11.31),
    "vgg16": (138_357_544, 15.47),
    "vgg19": (143_667_240, 19.63),
    "resnet18": (11_689_512, 1.81),
    "resnet34": (21_797_672, 3.66),
    "resnet50": (25_557_032, 4.09),
    "alexnet": (62_378_344, 1.14),
}


def _keras_shapes(model: keras.Model) -> dict[str, tuple[int, ...]]:
    return {l.name: tuple(int(d) for d in l.output.shape[1:]) for l in model.layers}


@pytest.mark.parametrize("shape_kind", ["small", "standard"])
@pytest.mark.parametrize("name", MODELS)
def test_describe_matches_keras_shapes_and_counts(name, shape_kind):
    entry = get_entry(name)
    if shape_kind == "small":
        side = max(32, entry.min_input_size())
        model = kerascnn.create_model(name, input_shape=(side, side, 3), num_classes=10)
    else:
        model = kerascnn.create_model(name)
    report = describe(model)
    keras_shapes = _keras_shapes(model)
    for row in report.layers:
        if row.type != "InputLayer":
            assert row.output_shape == keras_shapes[row.name], row.name
            assert row.params == model.get_layer(row.name).count_params(), row.name
    assert report.params == model.count_params()
    assert report.trainable_params == sum(math.prod(w.shape) for w in model.trainable_weights)
    assert report.macs > 0


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_standard_variants_match_published_params_and_macs(name):
    params, gmacs = PUBLISHED[name]
    report = describe(kerascnn.create_model(name, input_shape=(224, 224, 3), num_classes=1000))
    assert report.trainable_params == params
    assert round(report.macs / 1e9, 2) == gmacs


def test_mnist_cnn_report():
    report = describe(kerascnn.create_model("mnist_cnn", input_shape=(28, 28, 1), num_classes=10))
    assert report.params == report.trainable_params == 93_322
    rows = {r.name: r for r in report.layers}
    assert rows["block1_conv"].output_shape == (26, 26, 32)
    assert rows["block1_conv"].macs == 26 * 26 * 3 * 3 * 1 * 32
    assert [rows[n].receptive_field for n in ("block1_conv", "block1_pool", "block2_conv", "block2_pool",
                                              "block3_conv")] == [3, 4, 8, 10, 18]  # fmt: skip
    assert [rows[n].jump for n in ("block1_conv", "block1_pool", "block2_pool")] == [1, 2, 4]
    assert rows["fc1"].macs == 576 * 64


# The worked examples --------------------------------------------------------------------------


def test_alexnet_first_conv_on_227():
    assert arithmetic.conv_output_size(227, 11, 4, 0) == 55
    assert arithmetic.conv_params(11, 3, 96) == 34_944
    model = kerascnn.create_model("alexnet", input_shape=(227, 227, 3), num_classes=1000, conv1_padding=0)
    row = next(r for r in describe(model).layers if r.name == "block1_conv")
    assert row.output_shape == (55, 55, 96)
    assert row.params == 34_944
    assert math.prod(row.output_shape) == 290_400  # neurons
    assert row.receptive_field == 11 and row.jump == 4
    # the default 2-pixel padding gives the same 55x55 map from the standard 224 input
    row224 = next(r for r in describe(kerascnn.create_model("alexnet")).layers if r.name == "block1_conv")
    assert row224.output_shape == (55, 55, 96)


def test_3x3_conv_with_padding_1_keeps_height_and_width():
    assert arithmetic.conv_output_size(32, 3, 1, 1) == 32
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.ZeroPadding2D(1, name="pad"),
        layers.Conv2D(128, 3, name="conv_pad1"),
        layers.Conv2D(128, 3, padding="same", name="conv_same"),
    ])  # fmt: skip
    rows = {r.name: r for r in describe(model).layers}
    assert rows["conv_pad1"].output_shape == (32, 32, 128)
    assert rows["conv_pad1"].params == (3 * 3 * 3 + 1) * 128 == 3_584
    assert rows["conv_same"].output_shape == (32, 32, 128)


def test_2x2_stride_2_max_pool_halves():
    assert arithmetic.conv_output_size(56, 2, 2) == 28
    model = keras.Sequential([keras.Input((56, 56, 64)), layers.MaxPooling2D(2, name="pool")])
    row = describe(model).layers[-1]
    assert row.output_shape == (28, 28, 64)
    assert (row.params, row.macs, row.receptive_field, row.jump) == (0, 0, 2, 2)


# Arithmetic beyond the defaults ---------------------------------------------------------------


def test_dilation_strides_and_rectangles_follow_the_formulas():
    model = keras.Sequential([
        keras.Input((40, 30, 2)),
        layers.Conv2D(4, 3, dilation_rate=2, name="dilated"),        # k_eff = 5
        layers.Conv2D(4, (5, 3), strides=(2, 1), name="rect"),
        layers.MaxPooling2D(3, strides=2, padding="same", name="pool"),
        layers.Conv2D(8, 3, groups=2, name="grouped"),
        layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise"),
        layers.GlobalAveragePooling2D(name="gap"),
    ])  # fmt: skip
    report = describe(model)
    rows = {r.name: r for r in report.layers}
    keras_shapes = _keras_shapes(model)
    for row in report.layers[1:]:
        assert row.output_shape == keras_shapes[row.name], row.name
        assert row.params == model.get_layer(row.name).count_params(), row.name
    assert rows["dilated"].output_shape == (36, 26, 4)
    assert rows["dilated"].receptive_field == 5
    assert rows["rect"].receptive_field == (9, 7) and rows["rect"].jump == (2, 1)
    assert rows["grouped"].macs == math.prod(rows["grouped"].output_shape[:2]) * 3 * 3 * (4 // 2) * 8


def test_resnet18_receptive_field_before_pooling_is_435():
    report = describe(kerascnn.create_model("resnet18"))
    last_block = next(r for r in report.layers if r.name == "stage4_block2_out")
    assert (last_block.receptive_field, last_block.jump) == (435, 32)


def test_vgg16_receptive_field_is_212():
    report = describe(kerascnn.create_model("vgg16"))
    assert next(r for r in report.layers if r.name == "block5_pool").receptive_field == 212


def test_unknown_layers_fall_back_to_keras():
    model = keras.Sequential([keras.Input((20, 20, 3)), layers.Resizing(10, 12, name="resize"),
                              layers.Conv2D(2, 3, name="conv")])  # fmt: skip
    rows = {r.name: r for r in describe(model).layers}
    assert rows["resize"].output_shape == (10, 12, 3)
    assert rows["conv"].output_shape == (8, 10, 2)


def test_report_as_json_and_table():
    report = describe(kerascnn.create_model("lenet5"))
    data = report.to_dict()
    assert set(data) == {"model", "params", "trainable_params", "macs", "layers"}
    assert set(data["layers"][0]) == {"name", "type", "output_shape", "params", "macs", "receptive_field", "jump"}
    assert data["params"] == 61_706 and isinstance(data["layers"][1]["output_shape"], list)
    table = str(report)
    assert "block1_conv (Conv2D)" in table and "28x28x6" in table and "Total params: 61,706" in table
    widths = {len(line) for line in table.splitlines()[1:4]}
    assert len(widths) <= 2  # aligned columns


def test_describe_rejects_non_models():
    with pytest.raises(ValueError, match="Received: model="):
        describe(layers.Dense(3))


def test_min_input_size_helper():
    assert arithmetic.min_input_size([(3, 1, "valid"), (2, 2, "valid")] * 2 + [(3, 1, "valid")]) == 18
    assert arithmetic.min_input_size([(2, 2, "valid")] * 5) == 32


def test_package_functions_survive_submodule_imports():
    import importlib

    import kerascnn

    importlib.import_module("kerascnn.report")
    importlib.import_module("kerascnn.comparison")
    importlib.import_module("kerascnn.training")
    assert callable(kerascnn.describe) and callable(kerascnn.compare) and callable(kerascnn.train)
    assert kerascnn.describe(kerascnn.create_model("lenet5")).params == 61_706
