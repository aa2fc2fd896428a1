"""Pretrained weights: keras.applications files loaded by layer name, torchvision state dicts mapped.

No download and no torch needed: keras.applications models are built with ``weights=None`` and saved;
torchvision state dicts are made of random arrays with the real key names and shapes, recorded from
torchvision 0.29.1 in ``tests/data/torchvision_keys.json``::

    {name: {k: list(v.shape) for k, v in getattr(torchvision.models, name)().state_dict().items()}}

and the converted networks are checked against a NumPy transcription of torchvision's forward pass.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import kerascnn
from kerascnn import pretrained
from tests.helpers import all_runs, data_dir

KEYS = json.loads((Path(__file__).parent / "data" / "torchvision_keys.json").read_text())


def _predict(model: keras.Model, x: np.ndarray, layer: str | None = None) -> np.ndarray:
    if layer is not None:
        model = keras.Model(model.inputs, model.get_layer(layer).output)
    return np.asarray(model.predict_on_batch(x))


def _random_state_dict(name: str, seed: int = 0, **shapes: tuple[int, ...]) -> dict[str, np.ndarray]:
    """torchvision's keys and shapes (``shapes`` overrides some) with random values; BN variances > 0."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, recorded in KEYS[name].items():
        shape = shapes.get(key.replace(".", "_"), recorded)
        if key.endswith("num_batches_tracked"):
            state[key] = np.array(7, np.int64)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif len(shape) > 1:  # conv / linear weights, He-like scale
            state[key] = (rng.standard_normal(shape) * np.sqrt(2 / np.prod(shape[1:]))).astype(np.float32)
        else:
            state[key] = rng.uniform(-0.2, 0.2, shape).astype(np.float32) + (key.endswith("weight"))
    return state


# keras.applications --------------------------------------------------------------------------------


def test_vgg16_from_a_saved_keras_applications_model_is_bit_identical(tmp_path):
    ref = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=10)
    path = tmp_path / "vgg16.keras"
    ref.save(path)
    x = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    caffe_x = keras.applications.vgg16.preprocess_input(255.0 * x)
    want = _predict(ref, caffe_x)

    raw = kerascnn.create_model("vgg16", input_shape=(32, 32, 3), num_classes=10, weights=str(path))
    assert not any(layer.name == "preprocess" for layer in raw.layers)  # a plain .keras file: no convention
    assert np.array_equal(_predict(raw, caffe_x), want)  # same function, same float operations

    result = pretrained.create_pretrained("vgg16", path, input_shape=(32, 32, 3), num_classes=10, preprocessing="caffe")
    assert result.loaded == [
        *(f"block{b}_conv{c}" for b, n in enumerate((2, 2, 3, 3, 3), 1) for c in range(1, n + 1)),
        "fc1",
        "fc2",
        "predictions",
    ]
    assert result.skipped == [] and result.preprocessing == "caffe"
    # [0, 1] RGB in, keras.applications' BGR mean-subtracted input inside
    np.testing.assert_allclose(_predict(result.model, x), want, rtol=1e-5, atol=1e-7)


def test_vgg19_from_a_keras_applications_hdf5_file_keeps_a_new_classifier(tmp_path):
    """The format of the ImageNet download (legacy HDF5), without the top: the convolutions load."""
    ref = keras.applications.VGG19(weights=None, include_top=False, input_shape=(48, 48, 3))
    path = tmp_path / "vgg19_notop.h5"
    ref.save(path)  # legacy HDF5, read by keras.applications' own loader too
    assert np.array_equal(
        keras.applications.VGG19(weights=str(path), include_top=False, input_shape=(48, 48, 3))
        .get_layer("block5_conv4")
        .get_weights()[0],
        ref.get_layer("block5_conv4").get_weights()[0],
    )
    x = np.random.default_rng(1).uniform(0, 1, (2, 48, 48, 3)).astype(np.float32)
    want = _predict(ref, keras.applications.vgg19.preprocess_input(255.0 * x))

    result = pretrained.create_pretrained("vgg19", path, input_shape=(48, 48, 3), num_classes=7)
    assert (result.convention, result.preprocessing) == ("caffe", "caffe")
    assert result.skipped == ["fc1", "fc2", "predictions"] and len(result.loaded) == 16
    np.testing.assert_allclose(_predict(result.model, x, "block5_pool"), want, rtol=1e-5, atol=1e-6)
    assert result.model.predict_on_batch(x).shape == (2, 7)
    raw = pretrained.create_pretrained("vgg19", path, input_shape=(48, 48, 3), num_classes=7, preprocessing=None)
    caffe_x = keras.applications.vgg19.preprocess_input(255.0 * x)
    assert np.array_equal(_predict(raw.model, caffe_x, "block5_pool"), want)


def test_fine_tuning_from_a_kit_model_file(tmp_path):
    keras.utils.set_random_seed(3)
    source = kerascnn.create_model("resnet18", input_shape=(32, 32, 3), num_classes=10, width=8)
    path = tmp_path / "run.keras"
    source.save(path)
    model = kerascnn.create_model("resnet18", input_shape=(32, 32, 3), num_classes=4, width=8, weights=path)
    for layer in source.layers:
        if layer.weights and layer.name != "predictions":
            for a, b in zip(layer.get_weights(), model.get_layer(layer.name).get_weights()):
                assert np.array_equal(a, b), layer.name
    source.save_weights(tmp_path / "run.weights.h5")  # Keras' own format: by position, same architecture
    same = kerascnn.create_model(
        "resnet18", input_shape=(32, 32, 3), num_classes=10, width=8, weights=tmp_path / "run.weights.h5"
    )
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), same.get_weights()))
    with pytest.raises(ValueError, match=r"does not fit resnet18.*Received: weights="):
        kerascnn.create_model(
            "resnet18", input_shape=(32, 32, 3), num_classes=10, width=16, weights=tmp_path / "run.weights.h5"
        )
    with pytest.raises(ValueError, match=r"do not fit layer 'stem_conv'.*Received: weights="):
        kerascnn.create_model("resnet18", input_shape=(32, 32, 3), num_classes=4, width=16, weights=path)
    with pytest.raises(ValueError, match=r"lacks \(stage.*Received: weights="):  # a deeper source
        kerascnn.create_model(
            "resnet18", input_shape=(32, 32, 3), num_classes=4, width=8, stage_depths=(2, 2, 1, 2), weights=path
        )


@pytest.mark.parametrize(
    "weights,match",
    [
        ("imagenet", r"available for vgg16, vgg19.*convert torchvision's.*Received: weights='imagenet'"),
        ("missing.keras", r"not found. Received: weights='missing.keras'"),
        (3, r"Received: weights=3"),
        (
            "empty.keras",
            r"not a Keras archive \(empty, cut short or another format\). Received: weights='.*empty.keras'",
        ),
        (
            "text.npz",
            r"^The file is neither an .npy nor an .npz file \(corrupt, or another format\)\. "
            r"Received: weights='.*text.npz'",
        ),
    ],
)
def test_weights_errors(weights, match, tmp_path):
    (tmp_path / "empty.keras").write_bytes(b"")
    (tmp_path / "text.npz").write_text("not an archive\n")
    weights = str(tmp_path / weights) if weights in ("empty.keras", "text.npz") else weights
    with pytest.raises(ValueError, match=match):
        kerascnn.create_model("resnet18", input_shape=(32, 32, 3), num_classes=10, weights=weights)


def test_unknown_weights_suffix_and_preprocessing(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"0")
    with pytest.raises(ValueError, match=r"must end in .keras, .weights.h5, .h5.*Received: weights='.*bin'"):
        kerascnn.create_model("vgg11", input_shape=(32, 32, 3), num_classes=10, weights=path)
    with pytest.raises(ValueError, match=r"preprocessing.*Received: preprocessing='tf'"):
        kerascnn.create_model("vgg11", input_shape=(32, 32, 3), num_classes=10, preprocessing="tf")


def test_check_weights_is_cheap_and_says_what_create_model_would(tmp_path):
    code = (
        "import sys, kerascnn.pretrained as p; p.check_weights('vgg19', 'imagenet'); "
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    with pytest.raises(ValueError, match=r"available for vgg16, vgg19.*Received: weights='imagenet'"):
        pretrained.check_weights("resnet50", "imagenet")
    (tmp_path / "w.npz").write_bytes(b"")
    assert pretrained.check_weights("resnet50", tmp_path / "w.npz") == tmp_path / "w.npz"
    with pytest.raises(ValueError, match=r"not found"):
        pretrained.check_weights("resnet50", tmp_path / "x.npz")


# torchvision ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KEYS))
def test_torchvision_mapping_names_every_weight_exactly_once(name):
    kit_name, options = pretrained.TORCHVISION_MODELS[name]
    side = 64 if kit_name.startswith("resnet") else 32
    if kit_name.startswith("resnet"):
        options = dict(options, stem="imagenet")
    model = kerascnn.create_model(kit_name, input_shape=(side, side, 3), num_classes=1000, **options)
    mapping = pretrained.torchvision_mapping(model)
    assert set(mapping) == {k for k in KEYS[name] if not k.endswith("num_batches_tracked")}
    targets = [(layer, index) for layer, index, _ in mapping.values()]
    assert len(targets) == len(set(targets))  # no weight filled twice ...
    every_weight = [(layer.name, i) for layer in model.layers for i in range(len(layer.weights))]
    assert sorted(targets) == sorted(every_weight)  # ... or never
    for key, (layer, index, transform) in mapping.items():
        if transform == "dense_chw":
            continue  # fc1's input size depends on the input (224 in torchvision): checked below
        shape = tuple(KEYS[name][key])
        want = {"conv": lambda s: (s[2], s[3], s[1], s[0]), "dense": lambda s: s[::-1]}.get(transform, lambda s: s)
        assert tuple(model.get_layer(layer).weights[index].shape) == want(shape), key
    keras.backend.clear_session()


def _conv_nchw(x, w, stride, pad):
    """torch.nn.functional.conv2d: NCHW input, OIHW weight, symmetric zero padding."""
    x = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    k = w.shape[2]
    patches = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", patches, w, optimize=True)


def _bn_nchw(x, state, prefix):
    s = lambda k: state[f"{prefix}.{k}"][None, :, None, None]  # noqa: E731
    return (x - s("running_mean")) / np.sqrt(s("running_var") + 1e-5) * s("weight") + s("bias")


def _torchvision_resnet18(state, x):
    """torchvision.models.resnet18's forward pass, transcribed (eval mode)."""
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    y = relu(_bn_nchw(_conv_nchw(x, state["conv1.weight"], 2, 3), state, "bn1"))
    y = np.pad(y, [(0, 0), (0, 0), (1, 1), (1, 1)], constant_values=-np.inf)  # MaxPool2d(3, 2, padding=1)
    y = np.lib.stride_tricks.sliding_window_view(y, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(4, 5))
    for stage in range(1, 5):
        for block in range(2):
            p = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            out = relu(_bn_nchw(_conv_nchw(y, state[f"{p}.conv1.weight"], stride, 1), state, f"{p}.bn1"))
            out = _bn_nchw(_conv_nchw(out, state[f"{p}.conv2.weight"], 1, 1), state, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in state:
                y = _bn_nchw(_conv_nchw(y, state[f"{p}.downsample.0.weight"], stride, 0), state, f"{p}.downsample.1")
            y = relu(out + y)
    return y.mean(axis=(2, 3)) @ state["fc.weight"].T + state["fc.bias"]


def test_torchvision_resnet18_converts_to_the_same_function(tmp_path):
    state = _random_state_dict("resnet18")
    path = tmp_path / "resnet18.npz"
    np.savez(path, **state)
    x = np.random.default_rng(2).uniform(0, 1, (2, 3, 64, 64)).astype(np.float32)
    want = _torchvision_resnet18(state, x)

    model = kerascnn.convert_torchvision("resnet18", path, input_shape=(64, 64, 3), preprocessing=None)
    features = _predict(model, x.transpose(0, 2, 3, 1), "avg_pool")
    kernel, bias = model.get_layer("predictions").get_weights()
    logits = features @ kernel + bias
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert np.abs(logits - want).max() / np.abs(want).max() < 1e-5
    np.testing.assert_allclose(_predict(model, x.transpose(0, 2, 3, 1)), _softmax(want), rtol=1e-4, atol=1e-6)

    # the default builds torchvision's normalisation in: [0, 1] RGB in
    normalised = pretrained.convert_torchvision("resnet18", state, input_shape=(64, 64, 3))
    assert pretrained.model_preprocessing(normalised) == "torch"
    x01 = x.transpose(0, 2, 3, 1)
    by_hand = (x01 - np.array(pretrained.TORCH_MEAN, np.float32)) / np.array(pretrained.TORCH_STD, np.float32)
    np.testing.assert_allclose(_predict(normalised, x01), _predict(model, by_hand), rtol=1e-4, atol=1e-6)
    # and through create_model: the state dict, ImageNet stem and preprocessing chosen from the source
    via_registry = kerascnn.create_model("resnet18", input_shape=(64, 64, 3), weights=path)
    assert via_registry.get_layer("stem_conv").kernel_size == (7, 7)
    np.testing.assert_allclose(_predict(via_registry, x01), _predict(normalised, x01), rtol=1e-6, atol=1e-7)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_torchvision_vgg11_bn_first_conv_and_channel_first_flatten(tmp_path):
    """VGG's classifier.0 reads PyTorch's (C, H, W) flatten order; Keras flattens (H, W, C)."""
    state = _random_state_dict(
        "vgg11_bn",
        classifier_0_weight=(64, 25088),
        classifier_0_bias=(64,),
        classifier_3_weight=(64, 64),
        classifier_3_bias=(64,),
        classifier_6_weight=(10, 64),
        classifier_6_bias=(10,),
    )
    model = pretrained.convert_torchvision("vgg11_bn", state, preprocessing=None, dense_units=(64, 64))
    assert model.output_shape == (None, 10)  # the classifier's size from the state dict
    x = np.random.default_rng(4).uniform(0, 1, (1, 224, 224, 3)).astype(np.float32)
    inner = keras.Model(model.inputs, [model.get_layer(n).output for n in ("block1_relu1", "block5_pool", "fc1")])
    relu1, pool5, fc1 = (np.asarray(t) for t in inner.predict_on_batch(x))
    conv = (
        _conv_nchw(x.transpose(0, 3, 1, 2), state["features.0.weight"], 1, 1) + state["features.0.bias"][:, None, None]
    )
    want_relu1 = np.maximum(_bn_nchw(conv, state, "features.1"), 0)
    np.testing.assert_allclose(relu1.transpose(0, 3, 1, 2), want_relu1, rtol=1e-4, atol=1e-5)
    flat_chw = pool5.transpose(0, 3, 1, 2).reshape(1, -1)  # torch.flatten of the (512, 7, 7) map
    want_fc1 = np.maximum(flat_chw @ state["classifier.0.weight"].T + state["classifier.0.bias"], 0)
    np.testing.assert_allclose(fc1, want_fc1, rtol=1e-4, atol=1e-4 * np.abs(want_fc1).max())


def test_torchvision_state_dict_errors(tmp_path):
    state = _random_state_dict("resnet18")
    with pytest.raises(ValueError, match=r"lacks 1 weights .*'fc.bias'.*state_dict=<a dict of 121 arrays>$"):
        pretrained.convert_torchvision("resnet18", {k: v for k, v in state.items() if k != "fc.bias"})
    with pytest.raises(ValueError, match=r"lacks 102 weights .*Received: weights=<a dict of 0 arrays>$"):
        kerascnn.create_model("resnet18", weights={})  # (it said weights='state_dict')
    with pytest.raises(
        ValueError, match=r"^The weights take 3-channel .* for 1\. Received: input_shape=\(64, 64, 1\)$"
    ):
        pretrained.convert_torchvision("resnet18", state, input_shape=(64, 64, 1))  # (not a misfit of 'stem_conv')
    grey = dict(state, **{"conv1.weight": state["conv1.weight"][:, :1]})  # a torchvision ResNet for grey images
    assert kerascnn.create_model("resnet18", input_shape=(32, 32, 1), weights=grey).input_shape == (None, 32, 32, 1)
    with pytest.raises(ValueError, match=r"one of 'caffe', 'torch', None\. Received: preprocessing='none'$"):
        pretrained.convert_torchvision("resnet18", state, preprocessing="none")
    with pytest.raises(ValueError, match=r"has 1 entries .*'extra.weight'"):
        pretrained.convert_torchvision("resnet18", {**state, "extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"state dict lacks .* of resnet34"):  # ResNet-18 weights, ResNet-34 net
        pretrained.convert_torchvision("resnet34", state)
    with pytest.raises(ValueError, match=r"`name` must be one of .*Received: name='resnet101'"):
        pretrained.convert_torchvision("resnet101", state)
    with pytest.raises(ValueError, match=r"expect 'torch' inputs.*Received: preprocessing='caffe'"):
        kerascnn.create_model("resnet18", weights=state, preprocessing="caffe")
    with pytest.raises(ValueError, match=r"Received: state_dict key 3"):
        pretrained.read_state_dict({3: np.zeros(1)})
    for value, kind in [("abc", "str"), (np.array(["a"]), r"ndarray \(<U1\)")]:  # (it was an IndexError)
        with pytest.raises(
            ValueError, match=rf"arrays or tensors of numbers. Received: state_dict\['fc.weight'\] of type {kind}$"
        ):
            pretrained.convert_torchvision("resnet18", {**state, "fc.weight": value})


def test_weights_refused_for_grey_images_are_the_only_line(tmp_path, capsys, monkeypatch):
    """The refusal comes before the run's warnings (the warm-up one here): one line, as every bad input."""
    data_dir()
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "r18.npz", **_random_state_dict("resnet18"))
    with pytest.raises(ValueError, match=r"take 3-channel images.*Received: input_shape=\(28, 28, 1\)"):
        kerascnn.train("resnet18", "mnist", weights=str(tmp_path / "r18.npz"), epochs=1, train_samples=200)
    assert capsys.readouterr().err == ""
    assert not (tmp_path / "mlruns" / "mlflow.db").exists() or not all_runs(f"sqlite:///{tmp_path}/mlruns/mlflow.db")


def test_pth_files_need_torch_or_load_safely(tmp_path):
    path = tmp_path / "resnet18.pth"
    if importlib.util.find_spec("torch") is None:
        path.write_bytes(b"not read")
        with pytest.raises(ValueError, match=r"needs torch .*save the state dict as .npz.*Received: state_dict="):
            pretrained.read_state_dict(path)
    else:  # pragma: no cover - torch is not a test dependency
        import torch

        torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in _random_state_dict("resnet18").items()}, path)
        assert pretrained.read_state_dict(path)["conv1.weight"].shape == (64, 3, 7, 7)


# The CLI ---------------------------------------------------------------------------------------------


def test_train_fine_tunes_from_weights_and_logs_them(tmp_path):
    from mlflow.tracking import MlflowClient

    from tests.helpers import data_dir, run_cli

    data_dir()
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    first = json.loads(
        run_cli(
            "train",
            "lenet5",
            "--epochs",
            "1",
            "--train-samples",
            "600",
            "--tracking-uri",
            uri,
            "--json",
            cwd=tmp_path,
            check=True,
        ).stdout
    )
    tuned = json.loads(
        run_cli(
            "train",
            "lenet5",
            "--epochs",
            "1",
            "--train-samples",
            "600",
            "--tracking-uri",
            uri,
            "--weights",
            first["model_path"],
            "--json",
            cwd=tmp_path,
            check=True,
        ).stdout
    )
    params = MlflowClient(uri).get_run(tuned["run_id"]).data.params
    assert params["weights"] == first["model_path"] and params["weights_skipped"] == "none"
    assert int(params["weights_loaded"]) == 5  # 2 convolutions, 2 hidden dense layers, the classifier
    assert tuned["test_accuracy"] > first["test_accuracy"]  # a second epoch, from the first's weights


def test_convert_writes_a_kit_model_from_a_state_dict(tmp_path):
    from tests.helpers import assert_usage_error, run_cli

    np.savez(tmp_path / "r18.npz", **_random_state_dict("resnet18"))
    out = json.loads(
        run_cli(
            "convert",
            "resnet18",
            str(tmp_path / "r18.npz"),
            "--output",
            str(tmp_path / "new" / "r18.keras"),  # missing folders are created
            "--input-shape",
            "64",
            "64",
            "3",
            "--json",
            check=True,
        ).stdout
    )
    assert out["params"] == kerascnn.load_model(tmp_path / "new" / "r18.keras", compile=False).count_params()
    written = (tmp_path / "new" / "r18.keras").stat().st_mtime_ns
    assert_usage_error(
        run_cli("convert", "resnet18", str(tmp_path / "r18.npz"), "--output", str(tmp_path / "new" / "r18.keras")),
        "Output exists; pass --overwrite to replace it",
    )
    assert (tmp_path / "new" / "r18.keras").stat().st_mtime_ns == written
    assert_usage_error(
        run_cli("convert", "resnet19", str(tmp_path / "r18.npz"), "--output", "x.keras"), "Received: name='resnet19'"
    )
    assert_usage_error(
        run_cli("convert", "resnet18", str(tmp_path / "none.npz"), "--output", "x.keras"), "State dict file not found"
    )
    misfit = {k: v for k, v in _random_state_dict("resnet18").items() if k != "fc.bias"}
    np.savez(tmp_path / "misfit.npz", **misfit)
    assert_usage_error(  # the file the user named, not the dict it was read into
        run_cli("convert", "resnet18", str(tmp_path / "misfit.npz"), "--output", str(tmp_path / "m.keras")),
        "lacks 1 weights of resnet18 (first: 'fc.bias')",
        f"Received: state_dict='{tmp_path / 'misfit.npz'}'",
    )


def test_imagenet_for_a_model_torchvision_lacks_is_not_sent_to_convert_torchvision():
    with pytest.raises(ValueError, match=r"; the kit has none for mnist_cnn \(train it, or pass a weights file\)"):
        kerascnn.create_model("mnist_cnn", weights="imagenet")
