"""Bounds on what a student's kernel can put into the graded notebook (graders.verdict.outputs):
the bookkeeping message by message, then one real kernel that floods its output."""

from __future__ import annotations

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from graders.verdict import outputs
from graders.verdict.execute import execute
from graders.verdict.outputs import MIB, BoundedOutputs

KIB = 1024
WIDGET = {"_model_module": "@jupyter-widgets/controls", "_model_module_version": "2.0.0",
          "_model_name": "FloatProgressModel"}


def _msg(msg_type: str, **content) -> dict:
    return {"msg_type": msg_type, "header": {"msg_type": msg_type},
            "parent_header": {"msg_id": "parent"}, "content": content, "buffers": []}


def _stream(text: str) -> dict:
    return _msg("stream", name="stdout", text=text)


def _image(n: int) -> dict:
    return _msg("display_data", data={"image/png": "A" * n}, metadata={})


@pytest.fixture
def client():
    nb = new_notebook(cells=[new_code_cell("") for _ in range(3)])
    client = BoundedOutputs(nb, max_cell_output_bytes=100 * KIB, max_output_bytes=250 * KIB)
    client.clear_before_next_output = False  # (nbclient sets it when a cell starts)
    return client


def _kept(cell) -> int:
    return sum(len(o.get("text", "")) + sum(len(v) for v in o.get("data", {}).values())
               for o in cell.outputs)


def _notes(cell) -> int:
    return sum(outputs.cut_note(100 * KIB, 250 * KIB) in o.get("text", "") for o in cell.outputs)


def test_a_cell_keeps_the_start_of_its_output_and_one_note(client):
    cell = client.nb.cells[0]
    for _ in range(50):  # 50 x 10 kB printed, 100 kB kept
        client.process_message(_stream("x" * 10 * KIB), cell, 0)
    client.process_message(_image(5 * KIB), cell, 0)
    assert 99 * KIB < _kept(cell) <= 101 * KIB + 300
    assert _notes(cell) == 1
    assert client.output_cut[0] >= 400 * KIB
    assert client.output_report(cell, 0)["output_cut"] == client.output_cut[0]
    other = client.nb.cells[1]  # the next cell has room of its own
    client.process_message(_stream("fine\n"), other, 1)
    assert other.outputs[0].text == "fine\n" and 1 not in client.output_cut


def test_the_notebook_as_a_whole_is_bounded(client):
    for index, cell in enumerate(client.nb.cells):
        for _ in range(9):
            client.process_message(_image(10 * KIB), cell, index)
    assert sum(_kept(c) for c in client.nb.cells) <= 250 * KIB
    assert 2 in client.output_cut and 0 not in client.output_cut


def test_a_live_plot_redrawn_with_clear_output_keeps_its_last_frame(client):
    cell = client.nb.cells[0]
    for wait in (True, False) * 25:  # IPython.display.clear_output(wait=...) each epoch
        client.process_message(_msg("clear_output", wait=wait), cell, 0)
        client.process_message(_image(40 * KIB), cell, 0)
    assert len(cell.outputs) == 1 and _kept(cell) == 40 * KIB
    assert client.output_cut == {}


def test_an_error_past_the_limit_is_kept_shortened(client):
    cell = client.nb.cells[0]
    client.process_message(_stream("x" * 100 * KIB), cell, 0)
    client.process_message(_msg("error", ename="ValueError", evalue="v" * MIB,
                                traceback=["line " * 10_000] * 500), cell, 0)
    error = [o for o in cell.outputs if o.output_type == "error"]
    assert error and error[0].ename == "ValueError"
    assert len(error[0].evalue) == outputs.ERROR_CHARS
    assert len(error[0].traceback) == outputs.ERROR_LINES
    assert _notes(cell) == 1


def test_widget_messages_are_bounded_silently(client):
    cell = client.nb.cells[0]
    for i in range(100):
        client.process_message(_msg("comm_open", comm_id=f"c{i}", target_name="jupyter.widget",
                                    data={"state": {**WIDGET, "value": "w" * 10 * KIB}}),
                              cell, 0)
    assert len(client.widget_state) < 30 and client.output_cut[0] > 0
    assert cell.outputs == []


def test_message_size_counts_nested_content():
    assert outputs.message_size({"a": ["xy", {"b": "zzz"}]}) == len("a") + 2 + len("b") + 3
    deep: list = []
    for _ in range(10_000):  # no recursion limit
        deep = [deep]
    assert outputs.message_size(deep) == 0


@pytest.mark.slow
def test_a_flooding_kernel_leaves_a_small_notebook_and_its_grades(tmp_path):
    """A cell printing 6 MB in small pieces keeps 2 MiB and a note; a single 40 MB print closes
    the output channel (the grading process never holds it): the cell says so, the later cells'
    outputs are missing, and the test cell after it is graded as usual."""
    test = new_code_cell("assert f() == 42")
    test.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "points": 1, "solution": False,
                                 "locked": True}
    nb = new_notebook(cells=[
        new_code_cell("def f():\n    return 42"),
        new_code_cell("import sys, time\nfor _ in range(60):\n    print('x' * 100_000)\n"
                      "    sys.stdout.flush(); time.sleep(0.002)"),
        new_code_cell("import sys\nsys.stdout.write('y' * 40_000_000)"),
        test,
        new_code_cell("print('after')"),
    ])
    out, results = execute(nb, cwd=tmp_path, timeout=60)
    assert results["t"].passed
    small, big, after = out.cells[1], out.cells[2], out.cells[4]
    text = "".join(o.get("text", "") for o in small.outputs)
    assert 2 * MIB - 1000 <= len(text) < 2 * MIB + 1000 and text.startswith("x" * 1000)
    assert outputs.cut_note(2 * MIB, 16 * MIB) in text
    assert [o.text for o in big.outputs] == [outputs.LOST_NOTE]
    assert after.outputs == []
