"""graders.verdict: the codec, the proxies and the trusted test runner, against a real kernel.

One kernel (with the grading agent) serves the whole module; "student cells" are run in it as
nbclient runs them, "test cells" through :class:`graders.verdict.execute.GradingSession`.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import pytest
import torch
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from graders.verdict import remote, wire
from graders.verdict.execute import GradingSession, execute

pytestmark = pytest.mark.xdist_group("verdict")


# ------------------------------------------------------------------------------ the codec
def _roundtrip(value, make_ref=None, resolve=None, **kwargs):
    head, buffers = wire.encode(value, make_ref, **kwargs)
    frames = wire.pack({"v": head}, buffers)
    head2, buffers2 = wire.unpack(frames)
    return wire.decode(head2["v"], buffers2, resolve or (lambda h: pytest.fail("no refs")))


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(2**70), 1.5, float("inf"), -0.0, 1e-310, 2 + 3j, "text ü", b"\x00\xff",
     [1, [2, (3, 4)]], (1,), {"a": 1, 2: "b", None: (1, 2)}, {1, 2}, frozenset({3}),
     slice(1, None, 2), range(2, 9, 3), Ellipsis],
)
def test_plain_values_round_trip(value):
    assert _roundtrip(value) == value
    assert type(_roundtrip(value)) is type(value)


def test_nan_round_trips():
    assert math.isnan(_roundtrip(float("nan")))


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "int64", "uint8", "bool",
                                   "complex128"])
def test_arrays_and_scalars_keep_dtype_shape_and_values(dtype):
    arr = (np.arange(24).reshape(2, 3, 4) % 3).astype(dtype)
    back = _roundtrip(arr[:, ::2])  # not contiguous
    assert back.dtype == arr.dtype and back.shape == (2, 2, 4)
    np.testing.assert_array_equal(back, arr[:, ::2])
    assert back.flags.writeable
    scalar = _roundtrip(arr.flat[5])
    assert type(scalar) is type(arr.flat[5]) and scalar == arr.flat[5]


def test_tensors_dtypes_devices_sizes():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()
    back = _roundtrip(t)
    assert isinstance(back, torch.Tensor) and torch.equal(back, t) and not back.requires_grad
    bf = torch.tensor([1.5, -2.0], dtype=torch.bfloat16)
    assert torch.equal(_roundtrip(bf), bf)
    assert _roundtrip(torch.float16) is torch.float16
    assert _roundtrip(torch.device("cuda:1")) == torch.device("cuda:1")
    assert _roundtrip(torch.Size([2, 3])) == torch.Size([2, 3])


def test_requires_grad_survives_and_parameters_stay_parameters_from_the_trusted_side():
    p = torch.nn.Parameter(torch.ones(2))
    back = _roundtrip({"p": p, "t": torch.ones(1, requires_grad=True)}, lambda o: None,
                      trusted=True)
    assert isinstance(back["p"], torch.nn.Parameter)
    assert back["t"].requires_grad and not isinstance(back["t"], torch.nn.Parameter)


def test_student_side_sends_objects_and_parameters_as_references():
    made = []

    def make_ref(obj):
        made.append(obj)
        return {"$t": "ref", "h": len(made), "cls": ["x", "y"], "mro": []}

    lin = torch.nn.Linear(2, 1)
    head, _ = wire.encode([lin, lin.weight, lin.weight.detach(), {"k": print}], make_ref)
    assert [h.get("$t") for h in head[:3]] == ["ref", "ref", "tensor"]
    assert made == [lin, lin.weight, print]


def test_the_trusted_side_cannot_send_its_own_objects():
    with pytest.raises(wire.WireError, match="cannot send"):
        wire.encode([object()], lambda o: None, trusted=True)


@pytest.mark.parametrize(
    ("head", "buffers", "match"),
    [
        ({"$t": "nd", "dtype": "object", "shape": [1], "b": 0}, [b"x" * 8], "not allowed"),
        ({"$t": "nd", "dtype": "float64", "shape": [2], "b": 0}, [b"x" * 8], "size"),
        ({"$t": "nd", "dtype": "float64", "shape": [-1], "b": 0}, [b""], "shape"),
        ({"$t": "nd", "dtype": "float64", "shape": [1], "b": 3}, [b"x" * 8], "buffer"),
        ({"$t": "pickle", "v": "x"}, [], "unknown tag"),
        ({"$t": "tensor", "dtype": "int64", "shape": [1], "b": 0, "grad": True}, [b"x" * 8],
         "require grad"),
        ({"$t": "range", "v": [1, "2", 3]}, [], "range"),
        ({"no": "tag"}, [], "not a value"),
    ],
)
def test_decoding_rejects_what_is_not_the_protocol(head, buffers, match):
    with pytest.raises(wire.WireError, match=match):
        wire.decode(head, buffers, lambda h: None)


def test_decoding_bounds_nesting():
    deep: object = 1
    for _ in range(wire.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(wire.WireError, match="nested"):
        wire.decode(deep, [], lambda h: None)
    with pytest.raises(wire.WireError, match="nested"):
        wire.encode(deep)


def test_unpack_rejects_garbage():
    with pytest.raises(wire.WireError):
        wire.unpack([b"{not json"])
    with pytest.raises(wire.WireError):
        wire.unpack([b"[1, 2]"])


# ------------------------------------------------------------------------------ a live kernel
STUDENT = '''
import time
import numpy as np
import torch
from torch import nn

def add(a, b):
    return a + b

def boom():
    raise ValueError("student says no")

def sleepy(seconds):
    time.sleep(seconds)
    return "woke up"

def stubborn(seconds):
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    end = time.time() + seconds
    while time.time() < end:
        pass
    return "done"

def grad_enabled():
    return torch.is_grad_enabled()

def append_one(d):
    d["x"].append(1)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
    def forward(self, x):
        return self.fc(x)

net = Net()
values = [1, 2, 3]
'''


class Kernel:
    """A kernel with the agent, a trusted runner, and helpers to run cells both ways."""

    def __init__(self, client: NotebookClient, session: GradingSession) -> None:
        self.client, self.session = client, session

    def student(self, source: str) -> list:
        cell = new_code_cell(source)
        self.client.nb.cells.append(cell)
        self.client.execute_cell(cell, len(self.client.nb.cells) - 1)
        return cell.outputs

    def test(self, source: str, grade_id: str = "t"):
        return self.session.run_test(grade_id, source)

    def call(self, fn, timeout: float = 20.0):
        """Run ``fn(bridge)`` inside a test session."""
        bridge = self.session.bridge
        token = "tok"
        msg_id = self.session.kc.execute(bridge.serve_code(token), silent=True,
                                         store_history=False)
        bridge.wait_hello(token, 30, lambda: None)
        bridge.begin_session(time.monotonic() + timeout)
        try:
            return fn(bridge)
        finally:
            bridge.end_session()
            self.session._shell_reply(msg_id, 15)


@pytest.fixture(scope="module")
def kernel():
    nb = new_notebook(cells=[])
    client = NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=True)
    with client.setup_kernel():
        session = GradingSession(client, ["import numpy as np\nimport torch\nfrom torch import nn"],
                                 ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS"), 20)
        k = Kernel(client, session)
        k.student(STUDENT)
        try:
            yield k
        finally:
            session.close()


def test_calls_ship_data_and_return_data(kernel):
    r = kernel.test("out = add(np.ones(3), np.arange(3.0))\n"
                    "assert isinstance(out, np.ndarray) and out.tolist() == [1, 2, 3]\n"
                    "assert add('a', 'b') == 'ab' and add(2, 3) == 5\n"
                    "assert values == [1, 2, 3]")
    assert r.passed, r.error


def test_models_are_proxies_that_pass_isinstance_and_keep_identity(kernel):
    r = kernel.test(
        "assert isinstance(net, nn.Module) and isinstance(net.fc, nn.Linear)\n"
        "assert not isinstance(net, nn.Linear)\n"
        "assert type(net).__name__ == 'Remote' and net.__class__.__name__ == 'Net'\n"
        "out = net(torch.zeros(4, 3))\n"
        "assert out.shape == (4, 2) and out.requires_grad\n"
        "with torch.no_grad():\n"
        "    assert not net(torch.zeros(1, 3)).requires_grad\n"
        "ids = {id(p) for p in net.parameters()}\n"
        "assert ids == {id(p) for p in net.fc.parameters()} and len(ids) == 2\n"
        "assert net.fc is net.fc\n"
        "assert sum(p.numel() for p in net.parameters()) == 8\n"
        "assert sorted(net.state_dict()) == ['fc.bias', 'fc.weight']\n"
        "net.fc.weight.requires_grad = False\n"
        "assert net.fc.weight.requires_grad is False\n"
        "net.fc.weight.requires_grad = True\n"
        "assert len(list(net.modules())) == 2 and 'fc' in dict(net.named_children())\n"
        "assert hasattr(net, 'fc') and not hasattr(net, 'nothing_here')\n"
    )
    assert r.passed, r.error


def test_a_students_tensor_by_reference_is_never_taken_for_a_tensor_by_torch(kernel):
    """A proxy that said it was a Parameter made torch's C code read it as a tensor: wrong
    answers, then a crashed grading process (and the class after it). It reports a stand-in
    that is not a tensor; torch functions given it compute with its value."""
    kernel.student("def as_param(x):\n    return nn.Parameter(2 * x)")
    r = kernel.test(
        "p = as_param(torch.ones(3))\n"
        "assert not isinstance(p, torch.Tensor) and p.__class__.__name__ == 'Parameter'\n"
        "two = torch.full((3,), 2.0)\n"
        "assert torch.allclose(p, two) and torch.equal(torch.cat([p, p]), torch.cat([two, two]))\n"
        "assert torch.equal(torch.zeros(3) - p, -two)\n"
        "assert torch.equal(torch.zeros(3).copy_(p), two)\n"
        "assert torch.equal(torch.stack([p]), two[None])\n"
        "assert torch.nn.functional.mse_loss(p, two).item() == 0 and torch.numel(p) == 3\n"
        "assert torch.as_tensor(np.asarray(p)).sum() == 6\n"
        "w = net.fc.weight\n"
        "assert torch.equal(torch.zeros(2, 3).copy_(w), w.detach())\n"
    )
    assert r.passed, r.error


def test_stand_in_classes_are_per_kernel_and_never_tensors():
    """One kernel's word about its classes never reaches another's proxies (a kernel that sent
    Net's ancestry with the class None made the next student's model fail isinstance)."""
    mro = [["__main__", "Net"], ["torch.nn.modules.module", "Module"], ["builtins", "object"]]
    mine, theirs = {}, {}
    assert remote.class_for(["builtins", "int"], mro, mine) is int
    assert issubclass(remote.class_for(["__main__", "Net"], mro, theirs), torch.nn.Module)
    assert issubclass(remote.class_for(["__main__", "Net"], mro, mine), torch.nn.Module)
    param = remote.class_for(["torch.nn.parameter", "Parameter"],
                             [["torch.nn.parameter", "Parameter"], ["torch", "Tensor"]], mine)
    assert param.__name__ == "Parameter" and not issubclass(param, torch.Tensor)
    sub = remote.class_for(["__main__", "MyT"], [["__main__", "MyT"], ["torch", "Tensor"]])
    assert not issubclass(sub, torch.Tensor)
    many = {}
    for i in range(remote.MAX_SHADOWS + 10):
        remote.class_for(["__main__", f"C{i}"], [["__main__", f"C{i}"]], many)
    assert len(many) <= remote.MAX_SHADOWS


def test_student_errors_keep_their_type_and_say_where(kernel):
    r = kernel.test("x = 1\nboom()\n")
    assert not r.passed
    out = r.outputs[-1]
    assert (out.ename, out.evalue) == ("ValueError", "student says no")
    assert "in boom" in "\n".join(out.traceback) and "line 2 of the test cell" in out.traceback[-1]
    r = kernel.test("try:\n    boom()\nexcept ValueError:\n    print('caught')\n")
    assert r.passed and "caught" in r.outputs[0].text


def test_failures_point_at_visible_lines_or_a_hidden_check_without_source(kernel):
    source = ("assert add(1, 1) == 2\n### BEGIN HIDDEN TESTS\nsecret_value = 41\n"
              "assert add(secret_value, 1) == 43, 'off by one'\n### END HIDDEN TESTS\n"
              "assert add(2, 2) == 5\n")
    r = kernel.test(source)
    assert r.error == "AssertionError: off by one"
    assert r.outputs[-1].traceback == ["AssertionError: off by one",
                                       "(failed in a hidden check of this test)"]
    r = kernel.test(source.replace("43", "42"))
    assert r.outputs[-1].traceback[-1] == "(failed at line 2 of the test cell)"
    assert "secret_value" not in str(r.outputs)


def test_names_missing_in_the_kernel_are_name_errors(kernel):
    r = kernel.test("never_defined_anywhere(1)")
    assert r.error == "NameError: name 'never_defined_anywhere' is not defined"


def test_trusted_names_beat_the_students(kernel):
    kernel.student("np = None\nlen = lambda x: 42\nAssertionError = KeyError")
    r = kernel.test("assert np.ones(2).sum() == 2 and len([1]) == 1\nassert False, 'real'")
    assert r.error == "AssertionError: real"
    kernel.student("import numpy as np\ndel len, AssertionError")


def test_grad_mode_place_fetch_and_ship(kernel):
    def check(bridge):
        fn = bridge.request("names", names=["grad_enabled"])["grad_enabled"]
        assert fn() is True
        with torch.no_grad():
            assert fn() is False
        placed = bridge.place({"x": [0]})
        bridge.request("names", names=["append_one"])["append_one"](placed)
        assert bridge.fetch(placed) == {"x": [0, 1]}
        model = bridge.ship(torch.nn.Sequential(torch.nn.Linear(2, 2)))
        assert isinstance(model, torch.nn.Sequential) and isinstance(model[0], torch.nn.Linear)
        return True

    assert kernel.call(check)


def test_a_slow_call_is_interrupted_at_the_deadline_and_the_kernel_lives_on(kernel):
    def slow(bridge):
        fn = bridge.request("names", names=["sleepy"])["sleepy"]
        with pytest.raises(remote.KernelTimeout):
            fn(30)
        with pytest.raises(remote.KernelTimeout):  # the cell's time is up
            fn(0)
        return True

    start = time.monotonic()
    assert kernel.call(slow, timeout=2)
    assert time.monotonic() - start < 15
    assert kernel.test("assert sleepy(0) == 'woke up'").passed


def test_what_one_test_cell_receives_in_all_is_bounded(kernel, monkeypatch):
    """Each reply is bounded, but a test that keeps what a student's endless iterator yields
    held 3 GiB in the grading process: a test cell receives at most RECEIVED_PER_CELL."""
    monkeypatch.setattr(remote, "RECEIVED_PER_CELL", 4 << 20)
    kernel.student("def endless():\n    while True:\n        yield np.ones(2**14)")  # 128 KiB

    def collect(bridge):
        kept = []
        with pytest.raises(remote.StudentCodeError, match="passed 4 MiB"):
            for item in bridge.request("names", names=["endless"])["endless"]():
                kept.append(item)
        assert 0 < len(kept) <= 32  # at most 4 MiB of them
        return True

    assert kernel.call(collect)
    assert kernel.test("assert sum(1 for _, x in zip(range(3), endless())) == 3").passed


def test_objects_dropped_by_the_tests_are_released(kernel):
    def count(bridge):
        return bridge.request("names", names=["values"])["values"]

    kernel.test("for _ in range(5):\n    Net()\n")
    kernel.call(count)  # the release rides on the next request
    r = kernel.test("import sys\n")
    assert r.passed
    outputs = kernel.student("import sys\nprint(len(sys.modules['_graders_wire']._agent.objects))")
    assert int(outputs[0]["text"]) < 5


def test_a_kernel_that_ignores_interrupts_is_given_up(tmp_path):
    nb = new_notebook(cells=[
        new_code_cell(STUDENT, metadata={"nbgrader": {"grade_id": "sol", "solution": True}}),
        new_code_cell("stubborn(60)", metadata={"nbgrader": {"grade_id": "t1", "grade": True,
                                                            "points": 1}}),
        new_code_cell("assert add(1, 2) == 3", metadata={"nbgrader": {"grade_id": "t2",
                                                                     "grade": True,
                                                                     "points": 1}}),
    ])
    start = time.monotonic()
    _, results = execute(nb, cwd=tmp_path, timeout=3)
    assert time.monotonic() - start < 40
    assert results["t1"].error.startswith("KernelUnavailable: your code did not stop")
    assert results["t2"].error.startswith("KernelUnavailable")


def test_test_code_never_reaches_the_kernel_and_hooks_cannot_hide_failures(tmp_path):
    hidden = "assert add(2, 2) == 4  # hidden-marker-93"
    meta = {"nbgrader": {"grade_id": "t", "grade": True, "points": 1}}
    nb = new_notebook(cells=[
        new_code_cell("get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)\n"
                      "import builtins\nbuiltins.AssertionError = KeyError\n"
                      "def add(a, b):\n    return a - b"),
        new_code_cell(f"assert add(1, 1) == 2\n### BEGIN HIDDEN TESTS\n{hidden}\n"
                      "### END HIDDEN TESTS", metadata=meta),
        new_code_cell("import gc\nprint('\\n'.join(In))\n"
                      "print(any('hidden-marker' in str(o) for o in gc.get_objects()"
                      " if isinstance(o, str)))"),
    ])
    out, results = execute(nb, cwd=tmp_path, timeout=30)
    assert results["t"].error.startswith("AssertionError")
    printed = out.cells[2].outputs[0]["text"]
    assert "hidden-marker" not in printed.replace("'hidden-marker' in", "")
    assert printed.rstrip().endswith("False")


def test_a_missing_name_says_which_cell_to_fix_first(tmp_path):
    meta = {"nbgrader": {"grade_id": "t", "grade": True, "points": 1}}
    nb = new_notebook(cells=[
        new_code_cell("def train():\n    raise NotImplementedError()",
                      metadata={"nbgrader": {"grade_id": "train_fn", "solution": True}}),
        new_code_cell("params = train()", metadata={"nbgrader": {"grade_id": "train_run"}}),
        new_code_cell("assert params is not None", metadata=meta),
        new_code_cell("assert nothing_defines_this", metadata={
            "nbgrader": {"grade_id": "t2", "grade": True, "points": 1}}),
        new_code_cell("\n# my own experiment, a long comment that goes on and on\nmine = 1 / 0"),
        new_code_cell("assert mine == 1", metadata={
            "nbgrader": {"grade_id": "t3", "grade": True, "points": 1}}),
    ])
    _, results = execute(nb, cwd=tmp_path, timeout=30)
    assert results["t"].error == (
        "NameError: name 'params' is not defined: it is defined by cell train_run, which "
        "failed with NotImplementedError: fix that first")
    assert results["t2"].error.endswith("no cell of your notebook defines it")
    # a cell of the student's own: its place as a reader counts and how it starts
    assert results["t3"].error == (
        "NameError: name 'mine' is not defined: it is defined by cell #5 ('# my own "
        "experiment, a long comment t...'), which failed with ZeroDivisionError: fix that first")


def test_number_and_str_subclasses_arrive_as_plain_values():
    class Yes(float):
        def __eq__(self, other):
            return True

        __hash__ = float.__hash__

    class Text(str):
        pass

    made = []
    head, buffers = wire.encode([Yes(2.5), Text("x"), np.float32(1.5)],
                                lambda o: made.append(o) or {"$t": "ref", "h": 1})
    back = wire.decode(head, buffers, lambda h: pytest.fail("no refs"))
    assert [type(v) for v in back] == [float, str, np.float32] and back[0] != 3.0
    assert made == []


def test_other_numbers_arrive_as_the_plain_value_they_convert_to():
    """A right answer of an odd numeric type (a Fraction, a Decimal) is data, not a proxy that
    compares by identity; a number whose conversion fails is an error, not a proxy."""
    from decimal import Decimal
    from fractions import Fraction

    class Broken(Fraction):
        def __float__(self):
            raise ValueError("no")

    assert _roundtrip([Fraction(3, 2), Decimal("2.5"), Fraction(4, 2)]) == [1.5, 2.5, 2.0]
    assert [type(v) for v in _roundtrip([Fraction(1, 3), Decimal(1)])] == [float, float]
    with pytest.raises(wire.WireError, match="Broken that does not convert to float"):
        wire.encode(Broken(1, 3), lambda o: pytest.fail("no proxy"))


def test_big_endian_arrays_arrive_as_the_same_numbers():
    for value in [np.arange(3, dtype=">f8"), np.arange(4, dtype=">i4").reshape(2, 2),
                  np.array(2.5, dtype=">f4")[()]]:
        back = _roundtrip(value)
        assert np.array_equal(back, value) and back.dtype == value.dtype.newbyteorder("=")


@pytest.mark.parametrize("keys", [
    [2**61 - 1, 1],  # numbers are hashed modulo 2**61 - 1
    [complex(1000003 * k, -k) for k in range(1, 4)],  # all hash to 0
    [(1, 2), (3, 4)],  # a tuple's hash can be solved for (a red team's 20,000 keys: 6.6 s)
    [frozenset({1})],
    [np.complex128(1000003 * k - 1000003j * k) for k in range(1, 4)],  # NumPy's complex too
])
def test_dict_keys_and_set_members_whose_hashes_can_collide_are_refused(keys):
    for value in (dict.fromkeys(keys, 0), set(keys)):
        head, buffers = wire.encode(value)
        with pytest.raises(wire.WireError, match="other than a string or a number"):
            wire.decode(head, buffers, lambda h: pytest.fail("no refs"))
    honest = {2**60: 1, -(2**60): 2, "loss": 4, None: 5, True: 6, 2.5: 7, np.int64(8): 8}
    assert _roundtrip(honest) == honest
    assert math.isnan(next(iter(_roundtrip({float("nan"): 3}))))


# ------------------------------------------------------------- the bridge with a broken peer
@pytest.fixture
def bridge(tmp_path, monkeypatch):
    monkeypatch.setattr(remote, "SEND_TIMEOUT_S", 0.3)
    made = remote.Bridge(tmp_path, interrupt=lambda: None)
    yield made
    made.close()


def _peer(bridge):
    """A socket connected to the bridge where the kernel's agent would be."""
    import zmq

    sock = bridge.context.socket(zmq.PAIR)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(bridge.address)
    return sock


def test_the_trusted_side_queues_few_messages_from_a_kernel(bridge):
    """A kernel sending messages nobody asked for (twelve of 128 MiB grew the grading process
    to 1.5 GiB) fills a queue of a few; then its own sends wait."""
    import zmq

    assert bridge.socket.getsockopt(zmq.RCVHWM) == remote.RECEIVE_QUEUE <= 4
    peer = _peer(bridge)
    peer.setsockopt(zmq.SNDHWM, 1)
    peer.setsockopt(zmq.SNDTIMEO, 200)
    sent = 0
    with contextlib.suppress(zmq.Again):
        for _ in range(100):
            peer.send(b"x" * (1 << 20))
            sent += 1
    peer.close(0)
    assert sent < 20


def test_a_request_to_a_kernel_that_is_gone_fails_instead_of_waiting_for_ever(bridge):
    bridge.begin_session(time.monotonic() + 30)
    start = time.monotonic()
    with pytest.raises(remote.BridgeBroken, match="stopped taking"):
        bridge.request("names", names=["f"])
    assert time.monotonic() - start < 5 and bridge.dead


def test_a_kernel_that_dies_during_a_call_is_a_crash_not_a_timeout(bridge):
    peer = _peer(bridge)  # takes the request, never answers
    bridge.alive = lambda: False
    bridge.begin_session(time.monotonic() + 30)
    start = time.monotonic()
    with pytest.raises(remote.BridgeBroken, match="died while a test"):
        bridge.request("names", names=["f"])
    assert time.monotonic() - start < 5 and not bridge.timed_out
    peer.close()


def test_a_reply_that_cannot_be_read_fails_its_request_with_a_reason(bridge):
    peer = _peer(bridge)
    bridge.begin_session(time.monotonic() + 30)
    import threading

    def answer():
        peer.recv_multipart()
        peer.send_multipart([b"{not json"])

    threading.Thread(target=answer, daemon=True).start()
    with pytest.raises(remote.StudentCodeError, match="the reply could not be read"):
        bridge.request("names", names=["f"])
    assert bridge.dead is None  # the kernel goes on serving
    peer.close()


def test_the_agent_answers_a_result_too_large_to_send_with_an_error(monkeypatch):
    sent = []

    class Socket:
        def send_multipart(self, frames, copy=True):
            sent.append(frames)

    agent = object.__new__(wire.Agent)
    agent.namespace, agent.objects, agent.handles, agent.next_handle = {"f": [0.5] * 100}, {}, {}, 1
    agent.socket = Socket()
    head, buffers = wire.encode({})
    monkeypatch.setattr(wire, "MAX_HEADER", 1000)  # a list of 100 floats is 2.5 kB of JSON
    agent._answer({"id": 7, "op": "names", "names": ["f"], "data": head}, buffers)
    reply, _ = wire.unpack(sent[-1])
    assert (reply["id"], reply["ok"]) == (7, False)
    assert "too large to send back" in reply["error"]["message"]
    assert "NumPy array" in reply["error"]["message"]


def test_the_agents_socket_is_shared_by_its_inode_never_through_a_link(tmp_path):
    """The socket's folder is the kernel's: a kernel that swapped the socket for a link
    between the bind and a chmod by path had root make any host file world-writable."""
    import socket
    import stat

    target = tmp_path / "gradebook.db"
    target.write_text("secret")
    target.chmod(0o600)
    link = tmp_path / "agent-link"
    link.symlink_to(target)
    with pytest.raises(OSError):
        remote._share_socket(link)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "agent-real"))
        remote._share_socket(tmp_path / "agent-real")
    assert stat.S_IMODE((tmp_path / "agent-real").stat().st_mode) == 0o666
