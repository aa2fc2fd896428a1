"""Datasets, offline files, image folders and the tf.data pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kerascnn import data
from tests.helpers import data_dir, make_image_folder


def test_mnist_from_the_offline_mirror_with_a_seeded_split():
    data_dir()
    d = data.load_dataset("mnist", train_samples=1000, test_samples=200, seed=3)
    assert d.sizes() == {"train": 900, "val": 100, "test": 200}
    assert d.image_shape == (28, 28, 1) and d.x_train.dtype == np.uint8
    assert d.num_classes == 10 and d.source.endswith("mnist.npz")
    again = data.load_dataset("mnist", train_samples=1000, test_samples=200, seed=3)
    np.testing.assert_array_equal(d.y_val, again.y_val)
    other = data.load_dataset("mnist", train_samples=1000, test_samples=200, seed=4)
    assert not np.array_equal(d.y_val, other.y_val)
    # the split partitions exactly the first 1000 training images
    full = np.load(data_dir() / "mnist.npz", allow_pickle=False)["y_train"][:1000]
    assert sorted(np.concatenate([d.y_train, d.y_val]).tolist()) == sorted(full.tolist())
    assert full[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert d.notes == []


def test_a_sample_count_above_the_dataset_uses_all_of_it_and_says_so():
    d = data.load_dataset("mnist", train_samples=70000, test_samples=20000, validation_split=0.0)
    assert d.sizes() == {"train": 60000, "val": 0, "test": 10000}
    assert d.notes == [
        "train_samples=70000 is more than the 60,000 training images of mnist: all of them are used",
        "test_samples=20000 is more than the 10,000 test images of mnist: all of them are used",
    ]


@pytest.mark.parametrize("given", [{}, {"test_samples": 20000}])
def test_a_training_subset_larger_than_the_test_set_warns_of_the_test_set_only_if_asked(given):
    from kerascnn.config import TrainConfig
    from kerascnn.training import _data

    config = TrainConfig.create(model="lenet5", dataset="mnist", train_samples=20000, **given).resolved()
    assert config.test_samples == 20000  # (--train-samples N alone: N test images too, or all there are)
    notes = _data(config)[1].notes
    assert any(note.startswith("test_samples=20000 is more than") for note in notes) == bool(given), notes


def _write_npz(folder: Path, name: str, **arrays) -> Path:
    path = folder / f"{name}.npz"
    np.savez(path, **arrays)
    return path


def _good(n: int = 20, shape=(32, 32, 3)) -> dict:
    rng = np.random.default_rng(0)
    return dict(
        x_train=rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        y_train=np.arange(n) % 10,
        x_test=rng.integers(0, 256, (10, *shape), dtype=np.uint8),
        y_test=np.arange(10),
    )


def test_offline_file_in_keras_layout_is_used(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERASCNN_DATA_DIR", "data")  # relative, as README's command gives ../shared/data
    arrays = _good()
    arrays["y_train"] = arrays["y_train"].reshape(-1, 1)  # CIFAR's (N, 1) labels
    _write_npz(tmp_path / "data", "cifar10", **arrays)
    d = data.load_dataset("cifar10", validation_split=0.2)
    assert d.image_shape == (32, 32, 3) and d.sizes() == {"train": 16, "val": 4, "test": 10}
    assert d.source == str((tmp_path / "data" / "cifar10.npz").resolve())  # absolute: the run logs it as dataset_source


@pytest.mark.parametrize(
    "arrays,match",
    [
        (dict(x_train=np.zeros((4, 8, 8), np.uint8)), "lacks x_test, y_test, y_train"),
        (dict(_good(), x_train=np.zeros((20, 8, 8), np.float32)), "x_train must be uint8"),
        (dict(_good(), y_train=np.arange(19)), "one integer label per image"),
        (dict(_good(), x_test=np.zeros((10, 16, 16, 3), np.uint8)), "differ in shape"),
        (dict(_good(), y_test=-np.ones(10, np.int64)), "Labels must be >= 0"),
    ],
)
def test_wrong_layout_is_refused_naming_the_file(tmp_path, monkeypatch, arrays, match):
    monkeypatch.setenv("KERASCNN_DATA_DIR", str(tmp_path))
    path = _write_npz(tmp_path, "cifar10", **arrays)
    with pytest.raises(ValueError, match=match) as info:
        data.load_dataset("cifar10")
    assert f"Received: file={str(path)!r}" in str(info.value)


def test_a_failed_download_names_the_data_folder_that_lacks_the_file(tmp_path):
    from tests.helpers import assert_usage_error, run_cli

    (tmp_path / "data").mkdir()
    unreachable = "http://127.0.0.1:9"  # (a closed port: the download fails online too)
    env = {"KERASCNN_DATA_DIR": str(tmp_path / "data"), "KERAS_HOME": str(tmp_path / "keras")}
    env |= {
        "HTTPS_PROXY": unreachable,
        "https_proxy": unreachable,
        "HTTP_PROXY": unreachable,
        "http_proxy": unreachable,
        "NO_PROXY": "",
        "no_proxy": "",
    }
    result = run_cli("train", "--dataset", "fashion_mnist", "--no-tracking", cwd=tmp_path, env=env, timeout=120)
    assert_usage_error(
        result, f"put fashion_mnist.npz in KERASCNN_DATA_DIR ('{tmp_path / 'data'}' has no fashion_mnist.npz)"
    )
    assert result.stdout == ""  # (Keras' "Downloading data from" line went there)


def test_corrupt_and_pickled_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASCNN_DATA_DIR", str(tmp_path))
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(ValueError, match=r"corrupt or not an \.npz.*mnist\.npz"):
        data.load_dataset("mnist")
    np.savez(
        tmp_path / "fashion_mnist.npz",
        x_train=np.array([{"a": 1}], dtype=object),
        y_train=np.zeros(1),
        x_test=np.zeros(1),
        y_test=np.zeros(1),
    )
    with pytest.raises(ValueError, match=r"pickled objects, refused.*fashion_mnist\.npz"):
        data.load_dataset("fashion_mnist")


def test_bad_dataset_names_and_folders():
    with pytest.raises(ValueError, match=r"Unknown dataset.*Received: dataset='imagenet'"):
        data.load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"Image folder not found. Received: dataset='/nonexistent/imgs'"):
        data.load_dataset("/nonexistent/imgs")
    with pytest.raises(ValueError, match=r"Received: train_samples=0"):
        data.load_dataset("mnist", train_samples=0)
    with pytest.raises(ValueError, match=r"Received: validation_split=1.5"):
        data.load_dataset("mnist", validation_split=1.5)
    with pytest.raises(ValueError, match=r"leaves too few images .*Received: train_samples=3, validation_split=0.9$"):
        data.load_dataset("mnist", train_samples=3, validation_split=0.9)


def test_a_folder_too_small_to_split_is_named_as_the_cause(tmp_path):
    folder = make_image_folder(tmp_path / "tiny", classes=("a", "b"), per_class=2)
    with pytest.raises(
        ValueError, match=rf"^The dataset has too few images .*Received: dataset='{folder}', validation"
    ):
        data.load_dataset(str(folder))  # (not train_samples=None: it was not given)


def test_image_folder_is_a_dataset(tmp_path):
    folder = make_image_folder(tmp_path / "animals")
    d = data.load_dataset(str(folder), validation_split=0.25)
    assert d.class_names == ["cat", "dog", "fox"] and d.num_classes == 3
    assert d.image_shape == (20, 24, 3)
    assert sum(d.sizes().values()) == 18 and d.sizes()["test"] == 1
    with pytest.raises(ValueError, match="at least 2 class sub-folders"):
        data.load_dataset(str(make_image_folder(tmp_path / "one", classes=("only",))))
    (folder / ".ipynb_checkpoints").mkdir()  # Jupyter's: no class (it failed as one Keras' loader did not find)
    (folder / ".ipynb_checkpoints" / "0-checkpoint.png").write_bytes(b"not an image")
    again = data.load_dataset(str(folder), validation_split=0.25)
    assert again.class_names == ["cat", "dog", "fox"] and sum(again.sizes().values()) == 18


def test_folder_classes_that_would_be_empty_or_left_out_are_refused(tmp_path):
    folder = make_image_folder(tmp_path / "animals", per_class=2)
    (folder / "emu").mkdir()  # no images: a class the model could never learn
    with pytest.raises(ValueError, match=r"Class folder 'emu' holds no images.*Received: dataset='.*animals'$"):
        data.load_dataset(str(folder))
    split = tmp_path / "split"
    make_image_folder(split / "train", classes=("a", "b"), per_class=2)
    make_image_folder(split / "test", classes=("a", "b", "c"), per_class=2)
    with pytest.raises(ValueError, match=r"test/ has classes train/ lacks \(c\).*Received: dataset='.*split/test'$"):
        data.load_dataset(str(split))  # (its 2 images of c were left out of the test accuracy)
    fewer = tmp_path / "fewer"
    make_image_folder(fewer / "train", classes=("a", "b", "c"), per_class=2)
    make_image_folder(fewer / "test", classes=("b", "c"), per_class=1)  # no a in test: fine
    (fewer / "test" / "d").mkdir()  # an empty folder train/ lacks: no class
    d = data.load_dataset(str(fewer), validation_split=0)
    assert d.class_names == ["a", "b", "c"] and d.y_test.tolist() == [1, 2]  # numbered as train/'s classes


def test_a_folder_of_mixed_images_loads_at_its_most_common_size_in_colour_and_says_so(tmp_path):
    """Not at the first file's format: a colour class sorted after a grey one was turned grey (and the
    trained model then refused its own training images), other sizes were resized without a word."""
    make_image_folder(tmp_path / "mixed", classes=("a_grey",), per_class=3, size=(20, 24), channels=1)
    make_image_folder(tmp_path / "mixed", classes=("b_colour",), per_class=4, size=(30, 30), channels=3)
    d = data.load_dataset(str(tmp_path / "mixed"), validation_split=0)
    assert d.image_shape == (30, 30, 3)
    assert d.notes == [
        "the images have 2 sizes: 3 of 7 are resized to the most common, 30x30",
        "3 of 7 images are grey: loaded as RGB, as the other images are colour",
    ]
    folder = make_image_folder(tmp_path / "grey", channels=1)
    Image.open(folder / "cat" / "0.png").convert("P").save(folder / "cat" / "0.png")  # a palette of greys (pngquant)
    grey = data.load_dataset(str(folder), validation_split=0)
    assert grey.image_shape == (20, 24, 1) and grey.notes == []


def test_grey_images_with_alpha_load_as_grey(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("0", "1"):
        (tmp_path / "digits" / c).mkdir(parents=True)
        for i in range(3):  # grey + alpha (PNG's LA mode): 2 channels decoded
            Image.fromarray(rng.integers(0, 256, (20, 24, 2), dtype=np.uint8), "LA").save(
                tmp_path / "digits" / c / f"{i}.png"
            )
    d = data.load_dataset(str(tmp_path / "digits"), validation_split=0.0)
    assert d.image_shape == (20, 24, 1) and sum(d.sizes().values()) == 6


def test_an_unreadable_image_is_named(tmp_path):
    folder = make_image_folder(tmp_path / "animals", per_class=3)
    (folder / "dog" / "1.png").write_bytes(b"not an image")  # in the middle of the files read
    with pytest.raises(ValueError, match=r"Cannot read the image '.*dog/1\.png'.*Received: dataset='.*animals'"):
        data.load_dataset(str(folder))
    (folder / "cat" / "0.png").write_bytes(b"")  # the first file, read to learn the image size
    with pytest.raises(ValueError, match=r"Cannot read the image '.*cat/0\.png'"):
        data.load_dataset(str(folder))


def test_adaptation_plans():
    assert data.plan_adaptation((28, 28, 1), 32).describe() == "pad 28x28 -> 32x32"
    assert data.plan_adaptation((28, 28, 1), 63).describe() == "resize 28x28 -> 63x63"
    assert data.plan_adaptation((28, 28, 1), 18).describe() == "none"
    assert data.plan_adaptation((28, 28, 1), 32, (32, 32, 3)).describe() == "pad 28x28 -> 32x32, grey -> RGB"
    with pytest.raises(
        ValueError, match=r"3 channel\(s\) cannot feed a model with 1.*Received: input_shape=\(32, 32, 1\)"
    ):
        data.plan_adaptation((32, 32, 3), 8, (32, 32, 1))
    with pytest.raises(ValueError, match=r"at least 32.*Received: input_shape=\(28, 28, 1\)"):
        data.plan_adaptation((28, 28, 1), 32, (28, 28, 1))


def test_pipeline_scales_pads_converts_and_shuffles():
    x = np.full((10, 28, 28, 1), 255, np.uint8)
    y = np.arange(10, dtype=np.int32)
    plan = data.plan_adaptation((28, 28, 1), 32, (32, 32, 3))
    batches = list(data.make_pipeline(x, y, batch_size=4, adaptation=plan, training=True, seed=1).as_numpy_iterator())
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.float32
    assert images.max() == 1.0 and images[:, 0, 0, :].max() == 0.0  # padded border
    assert sorted(labels.tolist()) == list(range(10)) and labels.tolist() != list(range(10))
    plain = list(data.make_pipeline(x, y, batch_size=4, adaptation=plan).as_numpy_iterator())
    assert np.concatenate([b[1] for b in plain]).tolist() == list(range(10))


def test_augmentation_changes_images_between_epochs_and_only_in_training():
    data_dir()
    d = data.load_dataset("mnist", train_samples=64, validation_split=0.0)
    plan = data.plan_adaptation(d.image_shape, 1)
    layers = data.augmentation_layers("mnist", seed=0)
    assert [l.name for l in layers] == ["aug_translate", "aug_rotate"]
    assert data.augmentation_layers("cifar10")[0].name == "aug_flip"
    pipe = data.make_pipeline(d.x_train, d.y_train, batch_size=64, adaptation=plan, augment=layers)
    first, second = (next(iter(pipe))[0].numpy() for _ in range(2))
    plain = next(iter(data.make_pipeline(d.x_train, d.y_train, batch_size=64, adaptation=plan)))[0].numpy()
    assert not np.allclose(first, second) and not np.allclose(first, plain)
    assert first.shape == plain.shape and first.min() >= 0.0 and first.max() <= 1.0 + 1e-6


def test_each_split_is_an_mlflow_dataset_input_with_a_digest_of_its_first_4_mib():
    import hashlib

    from kerascnn.data import Dataset, describe_splits

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6000, 28, 28, 1), dtype=np.uint8)  # 4.7 MB: more than the digest reads
    y = rng.integers(0, 10, 6000).astype(np.int32)
    data = Dataset("mnist", x, y, x[:10], y[:10], x[:0], y[:0], 10, [str(i) for i in range(10)], "keras.datasets")
    train, val = describe_splits(data)  # (no test split: none described)
    expected = hashlib.md5(x.tobytes()[: 1 << 22] + y.tobytes() + str(x.shape).encode()).hexdigest()[:8]
    assert (train["digest"], train["context"], val["context"]) == (expected, "training", "validation")
    assert train["profile"] == {"num_rows": 6000, "features_shape": [6000, 28, 28, 1]}
