"""The class benchmark's own bookkeeping (``scripts/bench_class.py``): what its tables say must
follow from what was measured. No grading here: the benchmark itself runs with ``make
bench-class`` and on the lent GPU machine."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    path = ROOT / "scripts" / "bench_class.py"
    spec = importlib.util.spec_from_file_location("bench_class", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_class"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_class", None)


def test_sweep_entries_are_workers_and_how_many_on_the_gpu(bench):
    assert bench.parse_sweep("16, 16/8,4/0") == [(16, None), (16, 8), (4, 0)]
    with pytest.raises(ValueError):
        bench.parse_sweep("16/half")


def test_placement_names_the_gpu_share_only_when_mixed(bench):
    def batch(workers, on_gpu, gpu):
        return bench.Batch("a", 1.0, [], None, workers, on_gpu, gpu)

    assert batch(16, 16, True).placement == "16"  # all on the GPU
    assert batch(16, 0, False).placement == "16"  # no GPU on the machine
    assert batch(16, 5, True).placement == "16 (5 on the GPU)"
    assert batch(16, 0, True).placement == "16 (0 on the GPU)"  # a GPU left unused


def test_heaviest_cells_are_means_over_the_runs_that_reached_them(bench):
    timings = bench.Timings()

    def run(*events):
        return bench.RunTiming(0.0, 1.0, 1.0, list(events), None)

    timings.runs["03--s000"] = [run({"done": "train", "seconds": 10.0},
                                    {"test": "test_acc", "seconds": 4.0},
                                    {"done": "setup", "seconds": 3.0})]
    timings.runs["03--s001"] = [run({"done": "train", "seconds": 20.0},
                                    {"timeout": "setup", "seconds": 99.0},  # not a finished cell
                                    {"phase": "end", "t": 5.0})]
    timings.runs["01--s000"] = [run({"done": "train", "seconds": 100.0})]  # another assignment
    assert timings.heaviest_cells("03") == [("train", "cell", 15.0), ("test_acc", "test", 4.0),
                                            ("setup", "cell", 3.0)]
    assert timings.heaviest_cells("03", most=1) == [("train", "cell", 15.0)]
    assert timings.heaviest_cells("02") == []


def test_scores_written_and_compared_name_the_tests_that_differ(bench, tmp_path):
    from graders.gradebook import CellGrade, SubmissionGrade

    def grade(student, acc):
        g = SubmissionGrade("02", student)
        g.cells = {"test_shape": CellGrade("test_shape", 1, 1),
                   "test_acc": CellGrade("test_acc", acc, 2)}
        return g

    def batch(*grades):
        return bench.Batch("02", 1.0, list(grades), None, 2)

    who = {"02": {"s0": ("ref", "ref"), "s1": ("alternative", "alt:x")}}
    path = tmp_path / "gpu.csv"
    bench.write_scores(path, who, [batch(grade("s0", 2), grade("s1", 1))])
    assert "test_acc" in path.read_text().splitlines()[2]  # s1's row names the failed test
    same = bench.compare_scores(path, [batch(grade("s0", 2), grade("s1", 1))])
    assert same == "every one of 2 grades equal (status and score)"
    differ = bench.compare_scores(path, [batch(grade("s0", 2), grade("s1", 2))])
    assert differ == ("1 equal, 1 differ: 02 s1 (alt:x): graded 2 (failed: test_acc) there, "
                      "graded 3 here")


def test_the_overhead_median_leaves_out_the_first_waves_fresh_kernels(bench):
    steady = [bench.Split(start=0.5, saves=0.2, tool=0.3) for _ in range(4)]
    first = bench.Split(start=3.5, saves=0.2, tool=0.3)  # a kernel started in the run
    rows = [first, *steady]
    assert steady[0].overhead == pytest.approx(1.0)
    assert bench.median_overhead(rows) == pytest.approx(1.0)
    assert sum(r.overhead for r in rows) / len(rows) == pytest.approx(1.6)
