"""Every registered model: builds, runs, trains a step, names its layers, checks its input."""

from __future__ import annotations

import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import kerascnn
from kerascnn.models import get_entry, get_family

MODELS = kerascnn.list_models()
LAYER_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
KERAS_DEFAULT_NAME = re.compile(r"^(conv2d|dense|max_pooling2d|batch_normalization|re_lu|add|flatten|dropout)_\d+$")


def small_shape(name: str) -> tuple[int, int, int]:
    """A small input the model accepts: 32x32 unless its down-sampling needs more."""
    side = max(32, get_entry(name).min_input_size())
    return (side, side, 3)


def test_required_models_are_registered():
    required = {
        "mnist_cnn",
        "lenet5",
        "alexnet",
        "vgg11",
        "vgg13",
        "vgg16",
        "vgg19",
        "resnet18",
        "resnet34",
        "resnet50",
    }
    assert required <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_small_input_forward_and_one_training_step(name):
    keras.utils.set_random_seed(0)
    shape = small_shape(name)
    model = kerascnn.create_model(name, input_shape=shape, num_classes=7)
    x = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
    y = np.arange(4) % 7
    probs = model.predict_on_batch(x)
    assert probs.shape == (4, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    model.compile(optimizer=keras.optimizers.SGD(1e-2), loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert any(not np.array_equal(b, a) for b, a in zip(before, model.get_weights()))


@pytest.mark.parametrize("name", MODELS)
def test_standard_shape_forward(name):
    entry = get_entry(name)
    model = kerascnn.create_model(name)
    assert model.input_shape == (None, *entry.default_input_shape)
    out = model.predict_on_batch(np.zeros((1, *entry.default_input_shape), np.float32))
    assert out.shape == (1, entry.default_num_classes)


@pytest.mark.parametrize("name", MODELS)
def test_every_layer_has_a_hierarchical_name(name):
    model = kerascnn.create_model(name, input_shape=small_shape(name), num_classes=10)
    names = [layer.name for layer in model.layers]
    assert names[-1] == "predictions"
    for layer_name in names:
        assert LAYER_NAME.match(layer_name), layer_name
        assert not KERAS_DEFAULT_NAME.match(layer_name), f"unnamed layer {layer_name}"


def test_mnist_cnn_is_the_classic_keras_example():
    model = kerascnn.create_model("mnist_cnn", input_shape=(28, 28, 1), num_classes=10)
    assert isinstance(model, keras.Sequential)
    assert model.count_params() == 93_322
    convs = [
        (l.filters, l.kernel_size, l.activation.__name__) for l in model.layers if isinstance(l, keras.layers.Conv2D)
    ]
    assert convs == [(32, (3, 3), "relu"), (64, (3, 3), "relu"), (64, (3, 3), "relu")]
    kinds = [type(l).__name__ for l in model.layers]
    assert kinds == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "Flatten", "Dense", "Dense"]
    assert model.layers[-2].units == 64 and model.layers[-1].units == 10


@pytest.mark.parametrize(
    "name,kind",
    [
        ("lenet5", keras.Sequential),
        ("alexnet", keras.Sequential),
        ("vgg11", keras.Sequential),
        ("resnet18", keras.Model),
    ],
)
def test_api_style_per_family(name, kind):
    model = kerascnn.create_model(name, input_shape=small_shape(name), num_classes=10)
    assert isinstance(model, kind)
    if name.startswith("resnet"):
        assert not isinstance(model, keras.Sequential)


def test_alexnet_first_layer():
    conv = kerascnn.create_model("alexnet").get_layer("block1_conv")
    assert (conv.filters, conv.kernel_size, conv.strides) == (96, (11, 11), (4, 4))


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_resnet_shortcuts_project_exactly_when_shape_changes(name):
    model = kerascnn.create_model(name, input_shape=(32, 32, 3), num_classes=10)
    adds = [l for l in model.layers if isinstance(l, keras.layers.Add)]
    assert adds
    for add in adds:
        block = add.name[: -len("_add")]
        block_input = _block_input(model, block)
        changes = block_input.shape[1:] != add.output.shape[1:]
        has_projection = any(l.name == f"{block}_proj_conv" for l in model.layers)
        assert has_projection == changes, block
        if has_projection:
            proj = model.get_layer(f"{block}_proj_conv")
            assert proj.kernel_size == (1, 1)
            assert model.get_layer(f"{block}_proj_bn")
            strided = f"{block}_conv2" if name == "resnet50" else f"{block}_conv1"
            assert proj.strides == model.get_layer(strided).strides


def _block_input(model: keras.Model, block: str):
    conv1 = model.get_layer(f"{block}_conv1")
    if conv1.kernel_size == (3, 3) and any(l.name == f"{block}_pad" for l in model.layers):
        return model.get_layer(f"{block}_pad").input  # a strided basic block pads before conv1
    return conv1.input


@pytest.mark.parametrize("shape,stem", [((32, 32, 3), "small"), ((28, 28, 1), "small"), ((224, 224, 3), "imagenet")])
def test_resnet_stem_is_chosen_by_input_size_and_overridable(shape, stem):
    model = kerascnn.create_model("resnet18", input_shape=shape, num_classes=10)
    conv = model.get_layer("stem_conv")
    assert conv.kernel_size == ((3, 3) if stem == "small" else (7, 7))
    assert any(l.name == "stem_pool" for l in model.layers) == (stem == "imagenet")
    other = "imagenet" if stem == "small" else "small"
    if other == "imagenet" and min(shape[:2]) < 32:
        return
    forced = kerascnn.create_model("resnet18", input_shape=shape, num_classes=10, stem=other)
    assert forced.get_layer("stem_conv").kernel_size == ((3, 3) if other == "small" else (7, 7))


def test_builders_are_configurable():
    vgg = kerascnn.create_model(
        "vgg11",
        input_shape=(32, 32, 3),
        num_classes=10,
        layout=(1, 1, 2),
        width=8,
        batch_norm=True,
        dropout=0.0,
        dense_units=(32,),
    )
    convs = [l for l in vgg.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [8, 16, 32, 32]
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in vgg.layers)
    assert not any(isinstance(l, keras.layers.Dropout) for l in vgg.layers)
    res = kerascnn.create_model(
        "resnet18", input_shape=(32, 32, 3), num_classes=10, stage_depths=(1, 1), width=16, weight_decay=1e-4
    )
    assert res.get_layer("stage2_block1_conv1").filters == 32
    assert len(res.losses) > 0  # the L2 penalties
    cnn = kerascnn.create_model("mnist_cnn", filters=16, dense_units=32, dropout=0.25)
    assert [l.filters for l in cnn.layers if isinstance(l, keras.layers.Conv2D)] == [16, 32, 32]
    assert cnn.get_layer("fc1_dropout").rate == 0.25


@pytest.mark.parametrize("name", MODELS)
def test_minimum_input_size_is_exact(name):
    minimum = get_entry(name).min_input_size()
    channels = 1 if name in ("mnist_cnn", "lenet5") else 3
    model = kerascnn.create_model(name, input_shape=(minimum, minimum, channels), num_classes=3)
    assert all(d >= 1 for d in model.output_shape[1:])
    if name.startswith("resnet"):  # every strided layer is padded: any size keeps a pixel, the ImageNet stem's too
        assert minimum == 1 and kerascnn.create_model(name, input_shape=(1, 1, 3), stem="imagenet").output_shape
        return
    with pytest.raises(ValueError, match=rf"at least {minimum}\b.*Received: input_shape=\({minimum - 1}, "):
        kerascnn.create_model(name, input_shape=(minimum - 1, minimum, channels), num_classes=3)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(input_shape=(28, 28)), r"input_shape.*Received: input_shape=\(28, 28\)"),
        (dict(input_shape=(28, 28, 0)), r"input_shape.*Received: input_shape=\(28, 28, 0\)"),
        (dict(input_shape=(28, -28, 1)), r"Received: input_shape=\(28, -28, 1\)"),
        (dict(input_shape="28x28"), r"Received: input_shape='28x28'"),
        (dict(input_shape=(28.5, 28, 1)), r"Received: input_shape=\(28.5, 28, 1\)"),
        (dict(num_classes=1), r"`num_classes` must be an integer from 2 to .*Received: num_classes=1"),
        (dict(num_classes=10.0), r"Received: num_classes=10.0"),
        (dict(num_classes=True), r"Received: num_classes=True"),
        (dict(filters=0), r"`filters` must be a positive integer or 3 of them. Received: filters=0"),
        (dict(filters=(8, 16)), r"`filters` must be 3 positive integers. Received: filters=\(8, 16\)"),
        (dict(dense_units=-1), r"dense_units.*Received: dense_units=-1"),
        (dict(dropout=1.0), r"dropout.*Received: dropout=1.0"),
        (dict(widht=2), r"no option `widht`.*Received: widht=2"),
        (dict(input_shape=(17, 17, 1)), r"at least 18.*Received: input_shape=\(17, 17, 1\)"),
    ],
)
def test_validation_errors_name_the_argument_and_echo_the_value(kwargs, match):
    kwargs = dict(dict(input_shape=(28, 28, 1), num_classes=10), **kwargs)
    with pytest.raises(ValueError, match=match):
        kerascnn.create_model("mnist_cnn", **kwargs)


OPTION_ERRORS = [
    ("vgg16", dict(depth=12), r"depth.*Received: depth=12"),
    ("vgg16", dict(layout=(2, 0)), r"layout.*Received: layout=\(2, 0\)"),
    ("vgg16", dict(layout=(500, 501)), r"`layout` adds up to 1001 convolutions; .* at most 1000. Received: layout="),
    ("vgg11", dict(dense_units=64), r"dense_units.*Received: dense_units=64"),
    ("vgg11", dict(batch_norm=3), r"batch_norm.*True or False.*Received: batch_norm=3"),
    ("alexnet", dict(batch_norm="yes"), r"Received: batch_norm='yes'"),
    ("resnet18", dict(stem="tiny"), r"stem.*Received: stem='tiny'"),
    ("resnet18", dict(block="wide"), r"block.*Received: block='wide'"),
    ("resnet18", dict(block=""), r"block.*Received: block=''"),  # (not the default block)
    ("resnet18", dict(stage_depths=(100000,)), r"adds up to 100000 blocks.*Received: stage_depths=\(100000,\)"),
    ("resnet50", dict(weight_decay=-1e-4), r"weight_decay.*Received: weight_decay=-0.0001"),
    ("alexnet", dict(conv1_padding=-1), r"conv1_padding.*Received: conv1_padding=-1"),
    ("lenet5", dict(activation="swish"), r"activation.*Received: activation='swish'"),
    ("lenet5", dict(pooling="min"), r"pooling.*Received: pooling='min'"),
    ("lenet5", dict(dropout=1.5), r"dropout.*Received: dropout=1.5"),
    ("mnist_cnn", dict(filters=0), r"filters.*Received: filters=0"),
]


@pytest.mark.parametrize("name,kwargs,match", OPTION_ERRORS)
def test_family_option_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kerascnn.create_model(name, **kwargs)


def test_option_values_are_checked_before_tensorflow_loads():
    """`train resnet18 -o width=0` is refused in a second, not after the TensorFlow import: the
    builder runs its own checks up to its first use of Keras. Every option's default passes that run."""
    code = """
import ast, inspect, re, sys
from kerascnn import list_models
from kerascnn.config import TrainConfig
from kerascnn.errors import ArgumentError
from kerascnn.models import get_entry, get_family
for name, kwargs, match in ast.literal_eval(sys.argv[1]):
    try:
        TrainConfig.create(model=name, model_kwargs=kwargs)
    except ArgumentError as e:
        assert re.search(match, str(e)), (name, str(e))
    else:
        raise AssertionError(f"{name} accepted {kwargs}")
from kerascnn.models import register_model
from kerascnn.models._layers import KerasNeeded, checks_only

@register_model  # (a builder of the user's: its checks may need the real input, so the build makes them)
def grey_user_cnn(*, input_shape, num_classes, width=8):
    if input_shape[-1] != 1:
        raise ArgumentError(f"grey only. Received: width={width}")

TrainConfig.create(model="grey_user_cnn", model_kwargs={"width": 4})
with checks_only():
    with checks_only():
        pass
    try:
        get_entry("resnet18").fn(input_shape=(32, 32, 3), num_classes=10)  # (still stopped after a nested one)
    except KerasNeeded:
        pass
for name in list_models():
    if name == "grey_user_cnn":
        continue
    entry = get_entry(name)
    params = inspect.signature(get_family(entry.family).builder).parameters
    defaults = {o: params[o].default for o in entry.options()}
    TrainConfig.create(model=name, model_kwargs=defaults)
    print(name, sorted(defaults))
assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "heavy import"
"""
    cases = repr([case for case in OPTION_ERRORS if "depth" not in case[1]])  # (`depth` is a variant's own)
    result = subprocess.run([sys.executable, "-c", code, cases], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.splitlines()) == len(MODELS) and "resnet50 ['block', 'dropout'" in result.stdout


def test_unknown_model_lists_the_available_names():
    with pytest.raises(ValueError, match=r"Available models: alexnet, .*vgg19\. Received: name='resnet19'"):
        kerascnn.create_model("resnet19", input_shape=(32, 32, 3), num_classes=10)


def test_register_model_adds_a_testable_model():
    from kerascnn.models import register_model
    from kerascnn.models.registry import _MODELS

    @register_model(default_input_shape=(8, 8, 1), default_num_classes=2)
    def tiny_test_cnn(*, input_shape, num_classes, units: int = 4):
        """A two-layer test model."""
        return keras.Sequential(
            [
                keras.Input(input_shape),
                keras.layers.Flatten(name="flatten"),
                keras.layers.Dense(num_classes, name="predictions"),
            ]
        )

    def defined_elsewhere():
        def tiny_test_cnn(**kwargs):
            return None

        return tiny_test_cnn

    try:
        assert "tiny_test_cnn" in kerascnn.list_models()
        assert kerascnn.create_model("tiny_test_cnn").output_shape == (None, 2)
        with pytest.raises(ValueError, match=r"already registered\. Received: name='tiny_test_cnn'"):
            register_model(defined_elsewhere())  # another function of the same name
        assert kerascnn.create_model("tiny_test_cnn").output_shape == (None, 2)

        @register_model(default_input_shape=(8, 8, 1), default_num_classes=3)
        def tiny_test_cnn(*, input_shape, num_classes, units: int = 4):  # (a notebook cell run again)
            return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(num_classes)])

        assert kerascnn.create_model("tiny_test_cnn").output_shape == (None, 8, 8, 3)  # the new definition
        with pytest.raises(ValueError, match=r"`fn` must be a named function .*Received: fn=<function"):
            register_model(lambda **kwargs: None)
    finally:
        _MODELS.pop("tiny_test_cnn")


def test_registering_refuses_bad_arguments_in_one_line():
    from kerascnn.models import register_family, register_model
    from kerascnn.models.registry import _FAMILIES, _MODELS

    def never_test_cnn(*, input_shape, num_classes): ...

    for call, match in [
        (lambda: register_family(3, builder=never_test_cnn), r"`name` must be a non-empty name. Received: name=3$"),
        (lambda: register_family("never_test", builder=3), r"`builder` must be a function. Received: builder=3$"),
        (lambda: register_family("never_test", builder=never_test_cnn, recipe="r"), r"Received: recipe='r'$"),
        (lambda: register_model(never_test_cnn, fixes="x"), r"`fixes` must be a dict .*Received: fixes='x'$"),
        (lambda: register_model(never_test_cnn, default_input_shape="abc"), r"Received: default_input_shape='abc'$"),
        (lambda: register_model(never_test_cnn, default_num_classes=True), r"Received: default_num_classes=True$"),
        (lambda: kerascnn.list_models(["vgg"]), r"^Unknown family. .*Received: family=\['vgg'\]$"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()
    try:  # a size left open is a default still (the model is built with an input_shape given)
        register_model(never_test_cnn, default_input_shape=(None, None, 3))
        assert get_entry("never_test_cnn").default_input_shape == (None, None, 3)
    finally:
        _MODELS.pop("never_test_cnn", None)
    assert "never_test" not in _FAMILIES and "never_test_cnn" not in _MODELS
    assert kerascnn.list_families() == sorted(kerascnn.list_families())


VARIANTS = [(name, key) for name in kerascnn.list_models() for key in get_entry(name).fixes]


@pytest.mark.parametrize("name,key", VARIANTS)
def test_a_variant_refuses_the_option_that_makes_it(name, key):
    entry = get_entry(name)
    others = [m for m in kerascnn.list_models(entry.family) if m != name]
    assert key not in entry.options()
    with pytest.raises(ValueError, match=rf"`{name}` sets `{key}` itself; .*{others[0]}.*Received: {key}=11$"):
        kerascnn.create_model(name, **{key: 11})


@pytest.mark.parametrize("name", sorted({name for name, _ in VARIANTS}))
def test_a_variant_is_its_familys_builder_with_what_it_fixes(name):
    """The values a variant declares (what `tune vgg19` pins) are the ones its function builds with."""
    entry, shape = get_entry(name), (32, 32, 3)
    family = get_family(entry.family).builder(input_shape=shape, num_classes=10, **entry.fixes)
    variant = kerascnn.create_model(name, input_shape=shape, num_classes=10)
    assert (variant.name, variant.count_params()) == (family.name, family.count_params())


def test_variants_are_declared():
    assert {name for name, _ in VARIANTS} >= {"vgg11", "vgg16", "vgg19", "resnet18", "resnet50"}


def test_list_models_by_family():
    assert kerascnn.list_models("resnet") == ["resnet18", "resnet34", "resnet50"]
    with pytest.raises(ValueError, match=r"Unknown family\. Available families: alexnet, .*Received: family='vg'"):
        kerascnn.list_models("vg")
    from kerascnn.models import registry

    def tiny_listed(*, input_shape, num_classes): ...

    registry.register_family("tiny_listed", builder=tiny_listed)
    try:  # a family with no models yet is listed, and has none (it was "Unknown family")
        assert "tiny_listed" in kerascnn.list_families() and kerascnn.list_models("tiny_listed") == []
    finally:
        del registry._FAMILIES["tiny_listed"]

    @registry.register_model(family="tiny_undeclared")
    def tiny_alone(*, input_shape, num_classes): ...

    try:  # a model may name a family no one declared: listed under it
        assert kerascnn.list_models("tiny_undeclared") == ["tiny_alone"]
    finally:
        del registry._MODELS["tiny_alone"]


# Same function as torchvision: symmetric padding, its batch-norm epsilon ---------------------------


def _conv(x, layer, stride, pad):
    import tensorflow as tf

    return tf.nn.conv2d(x, layer.get_weights()[0], stride, [[0, 0], [pad, pad], [pad, pad], [0, 0]]).numpy()


def _bn(x, layer):
    gamma, beta, mean, var = layer.get_weights()
    return gamma * (x - mean) / np.sqrt(var + 1e-5) + beta  # torchvision's epsilon


def _max_pool_3x3_s2_p1(x):
    """PyTorch's MaxPool2d(3, 2, padding=1): pads with -inf, symmetric."""
    x = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], constant_values=-np.inf)
    h, w = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    windows = [x[:, i : i + 2 * h : 2, j : j + 2 * w : 2] for i in range(3) for j in range(3)]
    return np.max(windows, axis=0)


@pytest.mark.parametrize("block,side", [("basic", 64), ("basic", 65), ("bottleneck", 64)])
def test_resnet_strided_layers_pad_symmetrically_like_torchvision(block, side):
    """The stem and a strided block equal a reference with explicit symmetric padding (float32 precision)."""
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    model = kerascnn.create_model(
        "resnet18",
        input_shape=(side, side, 3),
        num_classes=5,
        stem="imagenet",
        width=8,
        stage_depths=(1, 1),
        block=block,
    )
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial batch-norm statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.get_weights()[0].shape
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, c),
                    rng.uniform(-0.2, 0.2, c),
                    rng.uniform(-0.2, 0.2, c),
                    rng.uniform(0.5, 1.5, c),
                ]
            )
    x = rng.random((2, side, side, 3), dtype=np.float32)
    names = ["stem_pool", "stage1_block1_out", "stage2_block1_out"]
    stem_out, stage1_out, stage2_out = keras.Model(model.input, [model.get_layer(n).output for n in names])(x)
    get = model.get_layer

    stem = np.maximum(_bn(_conv(x, get("stem_conv"), 2, 3), get("stem_bn")), 0)
    expected_stem = _max_pool_3x3_s2_p1(stem)
    assert stem_out.shape == expected_stem.shape == (2, -(-side // 4), -(-side // 4), 8)
    np.testing.assert_allclose(stem_out, expected_stem, rtol=1e-5, atol=1e-5)

    s1 = np.asarray(stage1_out)
    b = "stage2_block1"
    shortcut = _bn(_conv(s1, get(f"{b}_proj_conv"), 2, 0), get(f"{b}_proj_bn"))
    if block == "basic":
        y = np.maximum(_bn(_conv(s1, get(f"{b}_conv1"), 2, 1), get(f"{b}_bn1")), 0)
        y = _bn(_conv(y, get(f"{b}_conv2"), 1, 1), get(f"{b}_bn2"))
        strided = get(f"{b}_conv1")
    else:
        y = np.maximum(_bn(_conv(s1, get(f"{b}_conv1"), 1, 0), get(f"{b}_bn1")), 0)
        strided_in = y
        y = np.maximum(_bn(_conv(y, get(f"{b}_conv2"), 2, 1), get(f"{b}_bn2")), 0)
        y = _bn(_conv(y, get(f"{b}_conv3"), 1, 0), get(f"{b}_bn3"))
        strided = get(f"{b}_conv2")
    expected = np.maximum(y + shortcut, 0)
    assert stage2_out.shape == expected.shape
    np.testing.assert_allclose(stage2_out, expected, rtol=1e-5, atol=1e-5)

    # the check has teeth: TensorFlow's "SAME" pads an even input 0 before and 1 after
    if side % 2 == 0:
        src = s1 if block == "basic" else strided_in
        same = tf.nn.conv2d(src, strided.get_weights()[0], 2, "SAME").numpy()
        assert not np.allclose(same, _conv(src, strided, 2, 1), atol=1e-3)


@pytest.mark.parametrize("name", ["vgg11", "alexnet"])
def test_batch_norm_uses_the_reference_epsilon_and_momentum(name):
    model = kerascnn.create_model(name, input_shape=(64, 64, 3), num_classes=10, batch_norm=True)
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert norms and all((l.epsilon, l.momentum) == (1e-5, 0.9) for l in norms)
    resnet = kerascnn.create_model("resnet18", input_shape=(32, 32, 3), num_classes=10, stage_depths=(1,))
    norms = [l for l in resnet.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert norms and all((l.epsilon, l.momentum) == (1e-5, 0.9) for l in norms)
