"""The instruments test cells run in the student's kernel (dlworkshop.instruments): each records
what it claims, and none changes what the code under test computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlworkshop import instruments as ins
from dlworkshop import recorders as rec
from dlworkshop import testing, train


def _epoch(spy, loader, opt, move=True, move_y=True, zero=True):
    spy.train()
    for X, y in loader:
        X = X.to("cpu") if move else X
        y = y.to("cpu") if move_y else y
        if zero:
            opt.zero_grad()
        loss = F.cross_entropy(spy(X), y)
        loss.backward()
        opt.step()
        _ = loss.item() * len(y)


def _kit(n=13, batch=5):
    torch.manual_seed(0)
    X, y = ins.toy_data(n=n)
    spy = ins.Spy(nn.Linear(6, 3))
    return spy, ins.MarkedLoader(X, y, batch), ins.SpySGD(spy, lr=0.1)


def test_a_proper_loop_leaves_a_clean_record():
    spy, loader, opt = _kit()
    _epoch(spy, loader, opt)
    assert len(loader) == 3 and loader.batches == 3
    assert spy.modes == [True] * 3 and spy.grad_enabled == [True] * 3 and spy.moved == [True] * 3
    assert loader.unmoved_uses == []
    assert spy.events == [("zero_grad",), ("forward",), ("backward", True), ("step",)] * 3


def test_batches_not_moved_are_seen():
    spy, loader, opt = _kit()
    _epoch(spy, loader, opt, move=False, move_y=False)
    assert spy.moved == [False] * 3
    assert "cross_entropy" in loader.unmoved_uses
    spy, loader, opt = _kit()
    _epoch(spy, loader, opt, move_y=False)  # only y left behind
    assert spy.moved == [True] * 3 and "cross_entropy" in loader.unmoved_uses


def test_a_dtype_conversion_is_not_a_move():
    X = torch.zeros(2, 3).as_subclass(ins.Unmoved)
    assert isinstance(X.to(torch.float64), ins.Unmoved)
    assert type(X.to("cpu")) is torch.Tensor and type(X.to(device="cpu")) is torch.Tensor


def test_the_devices_batches_were_moved_to_are_recorded():
    loader = ins.MarkedLoader(torch.zeros(6, 3), torch.zeros(6), batch_size=3)
    for X, y in loader:
        X, y = X.to("cpu:0"), y.to(device=torch.device("cpu"), non_blocking=True)
        X.float().to("cpu:0")  # a result of a moved batch is a plain tensor: not recorded
    # "cpu:0" is the device a test passes, "cpu" a notebook's global DEVICE
    assert loader.moved_to == ["cpu:0", "cpu", "cpu:0", "cpu"]
    for X, _ in loader:  # each epoch starts a new record
        X.to("cpu")
    assert loader.moved_to == ["cpu", "cpu"]


def test_gradients_left_before_a_backward_pass_are_seen():
    spy, loader, opt = _kit()
    _epoch(spy, loader, opt, zero=False)
    backward = [e for e in spy.events if e[0] == "backward"]
    assert [clean for _, clean in backward] == [True, False, False]
    spy, loader, opt = _kit()
    ins.fill_grads(spy, 1.0)
    _epoch(spy, loader, opt)  # zero_grad first: clean
    assert [e for e in spy.events if e[0] == "backward"] == [("backward", True)] * 3


def test_the_spy_does_not_change_what_the_model_computes():
    torch.manual_seed(1)
    inner = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    x = torch.randn(5, 6)
    spy = ins.Spy(inner)
    spy.eval()
    with torch.no_grad():
        assert torch.equal(spy(x), inner(x))
    assert spy.modes == [False] and spy.grad_enabled == [False]
    assert [n for n, _ in spy.named_parameters()] == [f"inner.{n}" for n, _ in
                                                      inner.named_parameters()]


def _outer(a):
    return _helper(a) + [1]


def _helper(a):
    return a * 2


def test_call_recording_records_copies_and_puts_the_function_back():
    original = _helper
    result, calls = ins.call_recording(["_helper", "_absent"], _outer, [3])
    assert result == [3, 3, 1] and calls == [("_helper", ([3],), [3, 3])]
    assert _helper is original
    with pytest.raises(TypeError):
        ins.call_recording(["_helper"], _outer, None)  # None * 2 fails inside
    assert _helper is original


def _by_name(x):
    return _helper(a=x)


def test_call_recording_puts_arguments_passed_by_name_in_their_place():
    _, calls = ins.call_recording(["_helper"], _by_name, [4])
    assert calls == [("_helper", ([4],), [4, 4])]


_run = train.train_one_epoch  # an alias, as a student could make one


def _delegates(model):
    return _run(model, [], None, None, "cpu")


def test_call_without_library_also_switches_off_aliases():
    with pytest.raises(AssertionError, match="write it yourself"):
        ins.call_without_library(["dlworkshop.train.train_one_epoch"], "write it yourself",
                                 _delegates, nn.Linear(2, 2))
    assert _run is train.train_one_epoch
    assert train.train_one_epoch.__name__ == "train_one_epoch"


_CONV_OPS = "aten::conv(olution|\\d|_transpose|_tbc|_depthwise)"


@pytest.mark.parametrize("call", [
    lambda x, w: F.conv2d(x, w),
    lambda x, w: torch.convolution(x, w, None, (1, 1), (0, 0), (1, 1), False, (0, 0), 1),
    lambda x, w: F.conv_transpose2d(x, w.transpose(0, 1)),
    lambda x, w: nn.functional.conv1d(x.flatten(2), w.flatten(2)),
])
def test_an_operation_pattern_switches_it_off_whatever_calls_it(call):
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(AssertionError, match="by hand"):
        ins.call_without_library([_CONV_OPS], "by hand", call, x, w)
    call(x, w)  # on again afterwards
    # what the task allows still runs: unfold and a matrix product
    patches = ins.call_without_library([_CONV_OPS], "by hand", F.unfold, x, 3)
    assert patches.shape == (1, 18, 9)


def test_layer_calls_in_training_mode_with_weights():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)).eval()
    x = torch.randn(16, 4)
    trained = rec.layer_calls(model, x, ("Linear", "Dropout"), training=True)
    evaluated = rec.layer_calls(model, x, ("Linear", "Dropout"))
    assert not model.training  # the mode it had
    assert torch.equal(trained[0]["weight"], model[0].weight)
    assert trained[1]["weight"] is None and trained[1]["bias"] is None  # dropout has none
    assert not torch.equal(trained[1]["output"], trained[1]["input"])  # dropout dropped
    assert torch.equal(evaluated[1]["output"], evaluated[1]["input"])


def test_layer_calls_name_a_lazy_layer_by_what_it_becomes():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.LazyLinear(5), nn.ReLU(), nn.Linear(5, 2))
    calls = rec.layer_calls(model, torch.randn(2, 3, 4), ("Linear",))
    assert [(c["kind"], c["config"]["in_features"]) for c in calls] == [("Linear", 12),
                                                                        ("Linear", 5)]


def test_layer_calls_follow_the_forward_pass_in_eval_mode():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 3))
    model.train()
    x = torch.randn(2, 1, 4, 4)
    calls = rec.layer_calls(model, x, ("Conv2d", "MaxPool2d", "Linear"))
    assert [c["kind"] for c in calls] == ["Conv2d", "MaxPool2d", "Linear"]
    conv, pool, linear = calls
    assert conv["config"]["kernel_size"] == (3, 3) and conv["config"]["padding"] == (1, 1)
    assert conv["has_bias"] and not pool["has_bias"]
    assert torch.equal(conv["input"], x)
    assert torch.allclose(pool["input"], F.relu(conv["output"]))
    assert torch.allclose(linear["input"], pool["output"].flatten(1))  # dropout off: eval mode
    assert model.training  # the mode is restored
    leaves = rec.layer_calls(model, x)
    assert [c["kind"] for c in leaves] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Dropout",
                                           "Linear"]


def test_every_instrument_is_reachable_from_testing():
    for name in testing._INSTRUMENTS:
        assert getattr(testing, name) is getattr(ins, name)
