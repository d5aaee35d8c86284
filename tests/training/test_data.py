from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from training import data
from training.data import DataError, Mnist, load, load_from_dir, scale, validate
from training.idx import TEST_LABELS, TRAIN_LABELS


def test_real_directory_loads_and_validates(mnist: Mnist) -> None:
    assert mnist.x_train.shape == (60_000, 28, 28)
    assert mnist.x_test.shape == (10_000, 28, 28)
    assert mnist.y_train.dtype == np.uint8


def test_scale_maps_uint8_to_unit_interval() -> None:
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    scaled = scale(images)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, [[0.0, 1.0, 0.2, 0.4]], rtol=1e-6)


def test_missing_directory_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist.*--data-dir.*MNIST_DIR"):
        load_from_dir(tmp_path / "nope")


def test_missing_file_is_named(tmp_path: Path, mnist_dir: Path) -> None:
    for path in mnist_dir.glob("*.gz"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / TEST_LABELS).unlink()
    with pytest.raises(DataError, match=TEST_LABELS):
        load_from_dir(tmp_path)


def test_mismatched_labels_are_rejected(tmp_path: Path, mnist_dir: Path) -> None:
    for path in mnist_dir.glob("*.gz"):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(mnist_dir / TEST_LABELS, tmp_path / TRAIN_LABELS)  # 10k labels for 60k images
    with pytest.raises(DataError, match="mismatched"):
        load_from_dir(tmp_path)


def test_corrupt_file_is_reported(tmp_path: Path, mnist_dir: Path) -> None:
    for path in mnist_dir.glob("*.gz"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / TRAIN_LABELS).write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x09"))
    with pytest.raises(DataError, match="does not match shape"):
        load_from_dir(tmp_path)


def test_label_out_of_range_is_rejected() -> None:
    images = np.zeros((2, 28, 28), np.uint8)
    bad = Mnist(images, np.array([1, 10], np.uint8), images, np.array([0, 1], np.uint8), "test")
    with pytest.raises(DataError, match="label 10"):
        validate(bad)


def test_wrong_image_shape_is_rejected() -> None:
    images = np.zeros((2, 32, 32), np.uint8)
    labels = np.zeros(2, np.uint8)
    with pytest.raises(DataError, match=r"\(n, 28, 28\)"):
        validate(Mnist(images, labels, images, labels, "test"))


def test_env_var_selects_directory(monkeypatch: pytest.MonkeyPatch, mnist_dir: Path) -> None:
    monkeypatch.setenv("MNIST_DIR", str(mnist_dir))
    assert load().source == str(mnist_dir)


def test_download_failure_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    # The network is the one part that cannot run here: fail the download as it fails offline.
    import keras

    def offline() -> None:
        raise OSError("Temporary failure in name resolution")

    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(DataError, match=r"could not download MNIST.*--data-dir"):
        data.load()


def test_cli_exits_non_zero_with_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.__main__ import main

    assert main(["--data-dir", str(tmp_path / "missing"), "--output", str(tmp_path)]) == 2
    assert "--data-dir" in capsys.readouterr().err
