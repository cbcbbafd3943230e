"""Device selection, seeding and the thread cap."""

from __future__ import annotations

import os
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


def test_seed_everything_makes_gpu_runs_repeatable_in_float32():
    flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32 = False, True
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32 = True, True
        device.seed_everything(0)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert not torch.backends.cudnn.allow_tf32  # TF32 convolutions: the default on Ampere+
        assert not torch.backends.cuda.matmul.allow_tf32
    finally:
        (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
         torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) = flags


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


def test_set_num_threads_automatic_choice(restore_threads, monkeypatch, capsys):
    monkeypatch.setattr(device, "auto_threads", lambda: 1)
    torch.set_num_threads(2)
    assert device.set_num_threads() == 1
    assert torch.get_num_threads() == 1
    out = capsys.readouterr().out
    assert out.startswith("threads: 1 (automatic for ") and "DLWORKSHOP_THREADS" in out


def test_set_num_threads_says_what_it_chose(restore_threads, monkeypatch, capsys):
    device.set_num_threads(2)
    assert capsys.readouterr().out == "threads: 2 (set_num_threads argument)\n"
    monkeypatch.setenv(device.THREADS_ENV, "1")
    device.set_num_threads()
    assert capsys.readouterr().out == "threads: 1 ($DLWORKSHOP_THREADS)\n"
    device.set_num_threads(verbose=False)
    assert capsys.readouterr().out == ""


def test_set_num_threads_rejects_a_bad_variable(restore_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "four")
    with pytest.raises(ValueError, match=r"\$OMP_NUM_THREADS must be a whole number.*'four'"):
        device.set_num_threads()
    monkeypatch.setenv(device.THREADS_ENV, " ")  # blank: the next variable decides
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert device.set_num_threads() == 1


def test_set_num_threads_caps_numpy_blas(restore_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    if not blas:
        pytest.skip("no BLAS library that threadpoolctl knows is loaded")
    before = {i["filepath"]: i["num_threads"] for i in blas}
    try:
        device.set_num_threads(1)
        after = [i["num_threads"] for i in threadpoolctl.threadpool_info()
                 if i["user_api"] == "blas"]
        assert after and all(n == 1 for n in after)
    finally:
        for path, n in before.items():
            threadpoolctl.threadpool_limits(limits={path: n})


@pytest.mark.parametrize(
    ("cpus", "load", "expected"),
    [
        (1, 0.0, 1),     # one CPU
        (2, 0.0, 1),     # a 2-core machine or Colab's 2 vCPUs: one thread (README, "Threads")
        (2, 3.5, 1),     # busy: still at least one
        (4, 0.0, 2),     # half the CPUs
        (16, 0.2, 4),    # at most MAX_AUTO_THREADS
        (16, 13.5, 2),   # no more than the idle CPUs
        (64, 70.0, 1),   # an overloaded shared node
    ],
)
def test_auto_threads(cpus, load, expected):
    assert device.auto_threads(cpus, load) == expected


def test_usable_cpus_reads_a_cgroup_quota(tmp_path, monkeypatch):
    cpus = device.usable_cpus()
    assert 1 <= cpus <= (os.cpu_count() or 1)
    monkeypatch.setattr(device, "CGROUP_V1_CPU", str(tmp_path / "absent"))
    monkeypatch.setattr(device, "CGROUP_V2_CPU_MAX", str(tmp_path / "cpu.max"))
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: one
    assert device.usable_cpus() == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert device.usable_cpus() == len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert device._quota_v2(str(tmp_path / "cpu.max")) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert device._quota_v2(str(tmp_path / "cpu.max")) is None
    (tmp_path / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu.cfs_period_us").write_text("100000\n")
    assert device._quota_v1(str(tmp_path)) == 2.0
    (tmp_path / "cpu.cfs_quota_us").write_text("-1\n")
    assert device._quota_v1(str(tmp_path)) is None
