"""describe(): the textbook arithmetic, checked against Keras and the published model tables."""

from __future__ import annotations

import math
import os

import IPython.lib.pretty
import keras
import numpy as np
import pytest
from keras import layers

import kerascnn
from kerascnn import arithmetic
from kerascnn.models import get_entry
from kerascnn.report import describe
from tests.helpers import data_dir, run_cli

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
    assert [
        rows[n].receptive_field for n in ("block1_conv", "block1_pool", "block2_conv", "block2_pool", "block3_conv")
    ] == [3, 4, 8, 10, 18]
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
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            layers.ZeroPadding2D(1, name="pad"),
            layers.Conv2D(128, 3, name="conv_pad1"),
            layers.Conv2D(128, 3, padding="same", name="conv_same"),
        ]
    )
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
    model = keras.Sequential(
        [
            keras.Input((40, 30, 2)),
            layers.Conv2D(4, 3, dilation_rate=2, name="dilated"),  # k_eff = 5
            layers.Conv2D(4, (5, 3), strides=(2, 1), name="rect"),
            layers.MaxPooling2D(3, strides=2, padding="same", name="pool"),
            layers.Conv2D(8, 3, groups=2, name="grouped"),
            layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise"),
            layers.GlobalAveragePooling2D(name="gap"),
        ]
    )
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
    model = keras.Sequential(
        [keras.Input((20, 20, 3)), layers.Resizing(10, 12, name="resize"), layers.Conv2D(2, 3, name="conv")]
    )
    rows = {r.name: r for r in describe(model).layers}
    assert rows["resize"].output_shape == (10, 12, 3)
    assert not rows["resize"].counted
    assert rows["conv"].output_shape == (8, 10, 2) and rows["conv"].counted


def test_report_as_json_and_table():
    report = describe(kerascnn.create_model("lenet5"))
    data = report.to_dict()
    assert set(data) == {"model", "params", "trainable_params", "macs", "macs_complete", "layers"}
    assert data["macs_complete"] and "MACs: 416,520" in str(report)
    assert set(data["layers"][0]) == {
        "name",
        "type",
        "output_shape",
        "params",
        "macs",
        "receptive_field",
        "jump",
        "counted",
        "call",
        "receptive_field_known",
    }
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
    importlib.import_module("kerascnn.tracking.comparison")
    importlib.import_module("kerascnn.prediction")
    importlib.import_module("kerascnn.training")
    assert callable(kerascnn.describe) and callable(kerascnn.compare) and callable(kerascnn.train)
    assert callable(kerascnn.predict) and callable(kerascnn.export)
    assert kerascnn.describe(kerascnn.create_model("lenet5")).params == 61_706


# Any Keras CNN ----------------------------------------------------------------------------------


def _operations(model) -> dict:
    """Layers and bare ``keras.ops`` operations of a model by name."""
    return {op.name: op for op in (model.layers if isinstance(model, keras.Sequential) else model.operations)}


def _check_against_keras(model: keras.Model, report) -> None:
    """Every row's output shape and parameters equal Keras' own; totals equal count_params()."""
    for row in report.layers:
        if row.type == "InputLayer":
            assert (None, *row.output_shape) in (model.input_shape, *getattr(model, "input_shapes", []))
            continue
        op, *rest = row.name.split("/")
        op = _operations(model)[op]
        for part in rest:  # a nested model's layer
            op = _operations(op)[part]
        assert row.output_shape == tuple(None if d is None else int(d) for d in op.output.shape[1:]), row.name
        assert row.params == (op.count_params() if isinstance(op, keras.layers.Layer) else 0), row.name
    assert report.params == model.count_params()
    assert report.trainable_params == sum(math.prod(w.shape) for w in model.trainable_weights)


# One model per keras.applications module (each module's variants share their layer types; building all
# 40 takes ~3 minutes on 2 cores: KERASCNN_TEST_ALL_APPLICATIONS=1 runs them all). MACs in the papers, at
# their rounding (within 1.2%): MobileNet 569M, MobileNetV2 300M, MobileNetV3-Small 56M, NASNet-A Mobile
# 564M, EfficientNet-B0 0.39G, ConvNeXt-T 4.5G; VGG-16 as above.
APPLICATIONS = {
    "ConvNeXtTiny": 4.5e9,
    "DenseNet121": None,
    "EfficientNetB0": 0.39e9,
    "EfficientNetV2B0": None,
    "InceptionResNetV2": None,
    "InceptionV3": None,
    "MobileNet": 569e6,
    "MobileNetV2": 300e6,
    "MobileNetV3Small": 56e6,
    "NASNetMobile": 564e6,
    "ResNet50": None,
    "ResNet50V2": None,
    "VGG16": 15.47e9,
    "Xception": None,
}


ALL_APPLICATIONS = sorted(n for n in dir(keras.applications) if n[0].isupper())


@pytest.mark.parametrize(
    "name", ALL_APPLICATIONS if os.environ.get("KERASCNN_TEST_ALL_APPLICATIONS") else sorted(APPLICATIONS)
)
def test_every_keras_application_is_described_exactly(name):
    model = getattr(keras.applications, name)(weights=None)  # at its default input
    report = describe(model)
    _check_against_keras(model, report)
    counted_types = {
        "Conv2D",
        "DepthwiseConv2D",
        "SeparableConv2D",
        "Dense",
        "MaxPooling2D",
        "AveragePooling2D",
        "GlobalAveragePooling2D",
        "BatchNormalization",
        "Add",
        "Concatenate",
        "Multiply",
    }
    if None in model.input_shape[1:]:  # MobileNetV3 takes any size: MACs unknown, marked, no crash
        assert all(r.note in ("", "spatial size unknown") for r in report.layers)
        keras.backend.clear_session()
        model = getattr(keras.applications, name)(weights=None, input_shape=(224, 224, 3))
        report = describe(model)
        _check_against_keras(model, report)
    assert report.not_counted == [], [(r.name, r.type, r.note) for r in report.not_counted]
    assert {r.type for r in report.layers} & counted_types
    if APPLICATIONS.get(name):
        assert report.macs == pytest.approx(APPLICATIONS[name], rel=0.012)
    keras.backend.clear_session()


def test_resnet50_batch_norm_axis_3_and_published_receptive_fields():
    """keras.applications.ResNet50 (BatchNormalization(axis=3)) used to raise IndexError."""
    report = describe(keras.applications.ResNet50(weights=None))
    rows = {r.name: r for r in report.layers}
    assert rows["conv1_bn"].params == 4 * 64
    # Araujo et al. (Distill 2019): ResNet-50 v1 483 before pooling; the kit's v1.5 (stride in the 3x3) 427
    assert (rows["conv5_block3_out"].receptive_field, rows["conv5_block3_out"].jump) == (483, 32)
    kit = {r.name: r for r in describe(kerascnn.create_model("resnet50")).layers}
    assert kit["stage4_block3_out"].receptive_field == 427
    alexnet = {r.name: r for r in describe(kerascnn.create_model("alexnet")).layers}
    assert alexnet["block5_pool"].receptive_field == 195


def test_cli_describes_a_saved_keras_application(tmp_path):
    path = tmp_path / "resnet50.keras"
    keras.applications.ResNet50(weights=None).save(path)
    keras.backend.clear_session()
    result = run_cli("describe", str(path))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "conv1_bn (BatchNormalization)" in result.stdout and "Total params: 25,636,712" in result.stdout
    assert "MACs: 3,8" in result.stdout and "not counted" not in result.stdout


# The receptive field rule (report.py's docstring): removing the spatial axes widens it to the whole map


def test_global_pooling_and_flatten_widen_the_receptive_field_alike_and_dense_keeps_it():
    def head(collapse):
        return describe(
            keras.Sequential(
                [
                    keras.Input((28, 28, 1)),
                    layers.Conv2D(4, 3, name="c1"),
                    layers.MaxPooling2D(2, name="p1"),
                    layers.Conv2D(4, 3, name="c2"),
                    layers.MaxPooling2D(2, name="p2"),
                    layers.Conv2D(4, 3, name="c3"),
                    collapse,
                    layers.Dense(8, name="fc"),
                    layers.Dense(2, name="out"),
                ]
            )
        )

    for collapse in (layers.Flatten(name="collapse"), layers.GlobalAveragePooling2D(name="collapse")):
        report = head(collapse)
        rows = {r.name: r for r in report.layers}
        assert (rows["c3"].receptive_field, rows["c3"].jump, rows["c3"].output_shape[:2]) == (18, 4, (3, 3))
        assert rows["collapse"].receptive_field == 18 + (3 - 1) * 4 == 26  # r + (n - 1) j
        assert rows["fc"].receptive_field == rows["out"].receptive_field == 26
    # Dense on a feature map acts per position (a 1x1 convolution): the field stays
    model = keras.Sequential([keras.Input((9, 9, 3)), layers.Conv2D(4, 3, name="c"), layers.Dense(5, name="fc")])
    rows = {r.name: r for r in describe(model).layers}
    assert rows["fc"].receptive_field == 3 and rows["fc"].output_shape == (7, 7, 5)
    assert rows["fc"].macs == 7 * 7 * 4 * 5


# Transposed convolution, up-sampling, padding, cropping, 1-D/3-D; checked against Keras and gradients


def _empirical_rf(model: keras.Model, axis_len: int) -> int:
    """Largest extent (along height) of the input pixels any output unit depends on: all-ones kernels, so
    no gradient cancels; every output position is tried."""
    import tensorflow as tf

    for w in model.weights:
        w.assign(np.ones(w.shape, np.float32))
    x = tf.random.uniform((1, *model.input_shape[1:]), 0.5, 1.0)
    out_shape = model.output_shape[1:]
    extent = 0
    for i in range(out_shape[0]):
        for j in range(out_shape[1]):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = model(x)[0, i, j]
                total = tf.reduce_sum(y)
            rows = np.nonzero(np.abs(tape.gradient(total, x).numpy()[0]).sum(axis=(1, 2)) > 0)[0]
            extent = max(extent, int(rows.max() - rows.min() + 1))
    return extent


def test_transposed_convolution_doubles_4x4_to_8x8():
    """The seeds' worked example: k=4, s=2, p=1: (4 - 1) * 2 - 2 * 1 + 4 = 8."""
    assert arithmetic.conv_transpose_output_size(4, 4, 2, 1) == 8
    assert arithmetic.conv_transpose_output_size(4, 4, 2, "same") == 8
    assert arithmetic.conv_transpose_output_size(4, 4, 2, "valid") == 10
    assert arithmetic.conv_transpose_output_size(4, 3, 2, "valid", output_padding=1) == 10
    same = keras.Sequential(
        [keras.Input((4, 4, 16)), layers.Conv2DTranspose(8, 4, strides=2, padding="same", name="up")]
    )
    cropped = keras.Sequential(
        [keras.Input((4, 4, 16)), layers.Conv2DTranspose(8, 4, strides=2, name="up"), layers.Cropping2D(1, name="crop")]
    )  # p=1 written out
    for model in (same, cropped):
        report = describe(model)
        _check_against_keras(model, report)
        last, up = report.layers[-1], next(r for r in report.layers if r.name == "up")
        assert last.output_shape == (8, 8, 8)
        assert up.macs == 4 * 4 * (4 * 4 * 16 * 8)  # k*k*C_in*C_out per input pixel
        # an output pixel sees ceil(4 / 2) = 2 input pixels; neighbours are half an input pixel apart
        assert (last.receptive_field, last.jump) == (2, 0.5)
        assert _empirical_rf(model, 4) == 2
    assert "1/2" in str(describe(same))


def test_dilated_3x3_with_dilation_2_sees_5_pixels():
    """The seeds' worked example: k_eff = d(k - 1) + 1 = 5."""
    model = keras.Sequential([keras.Input((11, 11, 1)), layers.Conv2D(1, 3, dilation_rate=2, name="dilated")])
    row = describe(model).layers[-1]
    assert (row.output_shape, row.receptive_field, row.jump) == ((7, 7, 1), 5, 1)
    assert arithmetic.receptive_field(1, 1, 3, 1, dilation=2) == (5, 1)
    assert _empirical_rf(model, 11) == 5


@pytest.mark.parametrize("interpolation,rf", [("nearest", 3), ("bilinear", 4)])
def test_up_sampling_and_zero_padding(interpolation, rf):
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            layers.Conv2D(2, 3, padding="same", name="conv"),
            layers.UpSampling2D(2, interpolation=interpolation, name="up"),
            layers.ZeroPadding2D(((1, 2), (0, 3)), name="pad"),
        ]
    )
    report = describe(model)
    _check_against_keras(model, report)
    up, pad = report.layers[-2:]
    assert up.output_shape == (12, 12, 2) and pad.output_shape == (15, 15, 2)
    assert (up.receptive_field, up.jump) == (rf, 0.5)  # bilinear mixes 2 neighbours: one more input pixel
    head = keras.Sequential([keras.Input((6, 6, 2)), model.get_layer("conv"), model.get_layer("up")])
    assert _empirical_rf(head, 6) == rf


def test_conv1d_conv3d_and_their_pools():
    model1 = keras.Sequential(
        [
            keras.Input((50, 3)),
            layers.Conv1D(8, 5, strides=2, name="c"),
            layers.MaxPooling1D(2, name="p"),
            layers.Conv1DTranspose(4, 3, strides=2, name="t"),
            layers.UpSampling1D(2, name="u"),
            layers.Cropping1D((1, 2), name="crop"),
            layers.GlobalAveragePooling1D(name="gap"),
        ]
    )
    model3 = keras.Sequential(
        [
            keras.Input((9, 10, 11, 2)),
            layers.Conv3D(4, (3, 3, 1), name="c"),
            layers.AveragePooling3D(2, name="p"),
            layers.ZeroPadding3D(1, name="pad"),
            layers.Conv3D(2, 1, name="c2"),
            layers.Flatten(name="flat"),
        ]
    )
    for model in (model1, model3):
        report = describe(model)
        _check_against_keras(model, report)
        assert all(r.counted for r in report.layers)
    rows = {r.name: r for r in describe(model1).layers}
    assert rows["c"].macs == 23 * 5 * 3 * 8 and (rows["c"].receptive_field, rows["p"].jump) == (5, 4)
    rows3 = {r.name: r for r in describe(model3).layers}
    assert rows3["c"].receptive_field == (3, 3, 1) and rows3["c"].macs == 7 * 8 * 11 * 3 * 3 * 2 * 4


def test_channels_first_shapes():
    first = "channels_first"
    model = keras.Sequential(
        [
            keras.Input((3, 20, 16)),
            layers.Conv2D(4, 3, strides=2, data_format=first, name="c"),
            layers.MaxPooling2D(2, data_format=first, name="p"),
            layers.GlobalAveragePooling2D(data_format=first, name="gap"),
        ]
    )
    report = describe(model)
    _check_against_keras(model, report)
    assert report.layers[1].output_shape == (4, 9, 7)


def test_nested_models_are_expanded():
    inner = keras.Sequential([layers.Conv2D(4, 3, strides=2, name="conv"), layers.ReLU(name="relu")], name="stem")
    inputs = keras.Input((16, 16, 3), name="image")
    x = inner(inputs)
    x = layers.Conv2D(8, 3, name="conv2")(x)
    outputs = layers.Dense(2, name="out")(layers.GlobalMaxPooling2D(name="gmp")(x))
    model = keras.Model(inputs, outputs)
    report = describe(model)
    _check_against_keras(model, report)
    names = [r.name for r in report.layers]
    assert names == ["image", "stem/conv", "stem/relu", "conv2", "gmp", "out"]
    assert {r.name: r.receptive_field for r in report.layers}["conv2"] == 3 + 2 * 2


def test_layers_it_cannot_reason_about_are_marked_not_counted():
    class Shuffle(keras.layers.Layer):  # an unknown custom layer with a weight
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x[:, ::2] * self.w

    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            layers.Conv2D(4, 3, name="conv"),
            Shuffle(name="shuffle"),
            layers.Conv2D(2, 1, name="conv2"),
        ]
    )
    report = describe(model)
    _check_against_keras(model, report)
    rows = {r.name: r for r in report.layers}
    assert not rows["shuffle"].counted
    assert rows["shuffle"].params == 4 and rows["shuffle"].output_shape == (3, 6, 4)
    assert rows["conv2"].counted and rows["conv2"].macs == 3 * 6 * 4 * 2
    assert report.macs == rows["conv"].macs + rows["conv2"].macs
    table = str(report)
    assert "shuffle (Shuffle)" in table
    assert "? not counted: 1 layer; unknown layer type (Shuffle): MACs left out" in table
    assert f"MACs: at least {report.macs:,}" in table and not report.to_dict()["macs_complete"]  # a lower bound
    assert [r["counted"] for r in report.to_dict()["layers"]] == [True, True, False, True]


def test_a_shared_layer_counts_its_parameters_once_and_its_macs_per_call():
    conv = layers.Conv2D(3, 3, padding="same", name="shared")
    x = keras.Input((32, 32, 3))
    twice = describe(keras.Model(x, conv(conv(x))))
    assert [(r.name, r.call, r.params, r.receptive_field) for r in twice.layers[1:]] == [
        ("shared", 1, 84, 3),
        ("shared", 2, 0, 5),  # the second call sees 5 pixels through the first
    ]
    assert twice.params == 84 and twice.macs == 2 * 32 * 32 * 3 * 27
    assert "shared (Conv2D) call 2" in str(twice)
    encoder = keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(8)])
    a, b = keras.Input((28, 28, 1)), keras.Input((28, 28, 1))
    siamese = keras.Model([a, b], layers.Subtract()([encoder(a), encoder(b)]))
    report = describe(siamese)
    assert report.params == report.trainable_params == siamese.count_params() == 21_680
    assert report.macs == 2 * (26 * 26 * 4 * 9 + 2704 * 8)
    assert [r.call for r in report.layers if r.name.endswith("/dense")] == [1, 2]


def test_a_field_carried_through_an_unknown_size_stays_unknown_after_it():
    x = keras.Input((None, None, 3))
    report = describe(keras.Model(x, layers.Dense(2)(layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3)(x)))))
    conv, pool, dense = report.layers[1:]
    assert conv.receptive_field == 3 and conv.receptive_field_known  # a convolution's field needs no size
    assert not pool.receptive_field_known and not dense.receptive_field_known  # the widening does
    assert dense.counted and dense.macs == 8 and str(report).splitlines()[6].split()[-2:] == ["3?", "1?"]
    assert str(report).splitlines()[5].split()[-2:] == ["3", "1"]  # the convolution's field is exact: no "?"
    assert all(r.receptive_field_known for r in describe(kerascnn.create_model("lenet5")).layers)


def test_a_description_shows_as_its_table_in_a_notebook_and_briefly_as_a_repr():
    report = describe("resnet18")
    assert (
        repr(report)
        == f"Description(model='resnet18', layers={len(report.layers)}, params=11699112, macs={report.macs})"
    )
    assert IPython.lib.pretty.pretty(report) == report.to_table()
    data_dir()
    data = kerascnn.load_dataset("mnist", train_samples=1000)
    assert repr(data) == "Dataset('mnist', train=900, val=100, test=10000, image_shape=(28, 28, 1), num_classes=10)"


def test_describe_takes_a_registered_name_and_its_options():
    assert describe("lenet5", input_shape=(28, 28, 1)).params == 44_426  # MNIST's size, not the classic 32x32
    assert describe("mnist_cnn").params == 93_322
    with pytest.raises(ValueError, match=r"Received: model='nope'"):
        describe("nope")
    with pytest.raises(ValueError, match=r"^Options apply to a model given by name.*Received: num_classes=3$"):
        describe(kerascnn.create_model("lenet5"), num_classes=3)
