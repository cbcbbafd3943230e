"""Device selection, seeding and the thread cap."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from dlworkshop import device

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")


@pytest.fixture
def no_device_env(monkeypatch):
    monkeypatch.delenv(device.DEVICE_ENV, raising=False)


@pytest.fixture
def restore_threads(monkeypatch):
    monkeypatch.delenv(device.THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_auto_device_matches_cuda_availability(no_device_env):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert device.get_device().type == expected
    assert device.get_device("auto").type == expected


def test_package_exports_get_device(no_device_env):
    import dlworkshop

    assert dlworkshop.get_device is device.get_device
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        dlworkshop.nonsense  # noqa: B018


@needs_no_cuda
def test_auto_device_is_cpu_without_cuda(no_device_env):
    assert device.get_device() == torch.device("cpu")


@pytest.mark.parametrize("value", ["cpu", " CPU ", "Cpu"])
def test_env_var_selects_cpu(monkeypatch, value):
    monkeypatch.setenv(device.DEVICE_ENV, value)
    assert device.get_device() == torch.device("cpu")


@needs_no_cuda
def test_env_var_cuda_without_cuda_is_an_error(monkeypatch):
    monkeypatch.setenv(device.DEVICE_ENV, "cuda")
    with pytest.raises(RuntimeError, match="DLWORKSHOP_DEVICE") as info:
        device.get_device()
    assert "'cuda'" in str(info.value) and "'cpu'" in str(info.value)


@needs_no_cuda
def test_prefer_cuda_without_cuda_is_an_error(no_device_env):
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        device.get_device("cuda:0")


@needs_no_cuda
def test_argument_overrides_env_var(monkeypatch):
    monkeypatch.setenv(device.DEVICE_ENV, "cuda")
    assert device.get_device("cpu") == torch.device("cpu")


def _draws() -> tuple[float, np.ndarray, torch.Tensor]:
    return random.random(), np.random.rand(5), torch.rand(5)


def test_seed_everything_repeats_draws():
    assert device.seed_everything(123) == 123
    first = _draws()
    device.seed_everything(123)
    second = _draws()
    device.seed_everything(124)
    other = _draws()
    assert first[0] == second[0]
    assert np.array_equal(first[1], second[1])
    assert torch.equal(first[2], second[2])
    assert first[0] != other[0]
    assert not np.array_equal(first[1], other[1])
    assert not torch.equal(first[2], other[2])


def test_set_num_threads_argument(restore_threads):
    assert device.set_num_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert device.set_num_threads(2) == 2
    assert torch.get_num_threads() == 2
    assert device.set_num_threads(0) == 1  # at least one thread
    assert torch.get_num_threads() == 1


def test_set_num_threads_env_vars(restore_threads, monkeypatch):
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert device.set_num_threads() == 1
    assert torch.get_num_threads() == 1
    monkeypatch.setenv(device.THREADS_ENV, "2")  # takes precedence over OMP_NUM_THREADS
    assert device.set_num_threads() == 2
    assert torch.get_num_threads() == 2
    assert device.set_num_threads(1) == 1, "an explicit argument beats the variables"


def test_set_num_threads_default_keeps_current(restore_threads):
    torch.set_num_threads(2)
    assert device.set_num_threads() == 2
    assert torch.get_num_threads() == 2
