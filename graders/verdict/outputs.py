"""Bounds on the output a student's kernel can put into the graded notebook.

nbclient keeps every output message of a running cell in memory, and nbgrader writes them all
into the autograded notebook. A cell that prints in a loop until its time limit therefore grows
the *grading* process, not the sandboxed kernel: measured on 2 cores, a cell printing 100 kB
lines for 8 s left a 3.3 GB notebook and a 9.6 GB grading process; at the course's 180 s cell
limit that is more memory than a grading machine has, and the whole class's grading dies with it.

:class:`BoundedOutputs` (a mixin for nbclient's ``NotebookClient``, used by
:class:`~graders.verdict.execute.VerdictExecute` and the direct executor) keeps at most
``max_cell_output_bytes`` of output per cell and ``max_output_bytes`` per notebook. What comes
after is left out (the cell itself runs on: its results do not change), with one note in the
cell saying so; an error past the limit is kept, shortened, so the feedback still says what went
wrong. Widget (comm) messages count too. Test cells never pass through here: their outputs are
made on the trusted side, which cuts what a test prints itself
(:data:`graders.verdict.trusted.MAX_PRINTED`).

Reading a message costs the grading process its size several times over (the frames, the JSON,
the strings), before any of it can be left out; a kernel can send one message of a gigabyte, or
a stream of big ones faster than they are read. So the kernel client's sockets refuse a message
over :data:`MAX_MESSAGE_BYTES` (zmq then drops the connection: the kernel's output channel is
closed for the rest of the notebook, which the cell where it happened says) and queue at most
:data:`QUEUED_MESSAGES`. Grades never travel on that channel: test cells reach the kernel
through their own (:mod:`graders.verdict.remote`).
"""

from __future__ import annotations

from typing import Any

import zmq
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbformat import NotebookNode
from nbformat.v4 import new_output
from traitlets import Integer

__all__ = ["BoundedOutputs", "cut_note", "message_size"]

MIB = 2**20
#: Message types whose content is kept (in the notebook, or as widget state).
KEPT = frozenset({"stream", "display_data", "execute_result", "error", "update_display_data",
                  "comm_open", "comm_msg"})
ERROR_CHARS = 4000  # an error past the limit keeps this much of its value and of each line
ERROR_LINES = 40
#: One message larger than this closes the kernel's output channel (zmq's ``MAXMSGSIZE``): the
#: bound that keeps the grading process small while it reads (measured on 2 cores, a cell
#: flooding its output for 10 s: 2.4 GB at the peak without it, 115 MB with it; honest outputs
#: are far smaller, and anything over the cell's limit is left out anyway).
MAX_MESSAGE_BYTES = 16 * MIB
#: Messages queued for the grading process at most (zmq's ``RCVHWM``, default 1000): with
#: :data:`MAX_MESSAGE_BYTES`, what a flood can make it hold before it reads them.
QUEUED_MESSAGES = 64
LOST_NOTE = (f"\n[graders: the kernel sent an output over {MAX_MESSAGE_BYTES // MIB} MiB at once, "
             "which closed its output channel: the outputs of this cell and the cells after it "
             "are missing from the graded notebook. Their grades are not affected]\n")


def message_size(content: Any) -> int:
    """The characters (or bytes) of the strings in a message's content, keys included: what
    keeping it would cost, to within a small factor. Iterative: content can nest deeply."""
    total, stack = 0, [content]
    while stack:
        item = stack.pop()
        if isinstance(item, (str, bytes, bytearray, memoryview)):
            total += len(item)
        elif isinstance(item, dict):
            total += sum(len(k) for k in item if isinstance(k, str))
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        else:
            total += 8
    return total


def cut_note(cell_limit: int, notebook_limit: int) -> str:
    """The line a cell gets where its output starts being left out."""
    return (f"\n[graders: output past the limit ({cell_limit / MIB:g} MiB per cell, "
            f"{notebook_limit / MIB:g} MiB per notebook) is left out of the graded notebook; "
            "the cell ran to its end]\n")


def _shortened(msg: dict) -> dict:
    content = dict(msg["content"])
    content["evalue"] = str(content.get("evalue", ""))[:ERROR_CHARS]
    lines = [str(line)[:ERROR_CHARS] for line in content.get("traceback") or []]
    content["traceback"] = lines[-ERROR_LINES:]
    return {**msg, "content": content, "buffers": []}


class BoundedOutputs(NotebookClient):
    """A ``NotebookClient`` that keeps a bounded amount of each cell's output (see the module
    docstring). ``output_cut`` maps a cell's index to the bytes left out of it.

    What a cell's output costs is what it holds now: ``clear_output`` (a live plot redrawn each
    epoch) gives its room back, and ``update_display_data`` replaces an output rather than adding
    one. Widget messages (``comm_*``: a progress bar's updates) have their own budget of the
    notebook's size and are left out silently."""

    max_cell_output_bytes = Integer(
        2 * MIB, help="most bytes of output kept per cell; the rest is left out, with a note",
    ).tag(config=True)
    max_output_bytes = Integer(
        16 * MIB, help="most bytes of output kept per notebook (and of widget messages)",
    ).tag(config=True)

    def reset_execution_trackers(self) -> None:
        super().reset_execution_trackers()
        self.output_kept: dict[int, int] = {}
        self.output_cut: dict[int, int] = {}
        self._noted: set[int] = set()  # cells whose outputs hold the note now
        self._widget_bytes = 0
        self._lost = False  # the output channel closed (see output_report)

    def process_message(
        self, msg: dict[str, Any], cell: NotebookNode, cell_index: int
    ) -> NotebookNode | None:
        msg_type = msg.get("msg_type")
        if msg_type == "clear_output" and not (msg.get("content") or {}).get("wait"):
            self._cleared(cell_index)
        if msg_type not in KEPT:
            return super().process_message(msg, cell, cell_index)
        size = message_size(msg.get("content")) + sum(
            len(memoryview(b)) for b in msg.get("buffers") or [])
        if msg_type.startswith("comm_"):
            if self._widget_bytes + size > self.max_output_bytes:
                self.output_cut[cell_index] = self.output_cut.get(cell_index, 0) + size
                return None
            self._widget_bytes += size
            return super().process_message(msg, cell, cell_index)
        if getattr(self, "clear_before_next_output", False) and msg_type != "update_display_data":
            self._cleared(cell_index)  # nbclient clears the cell before this output
        kept = self.output_kept.get(cell_index, 0)
        room = min(self.max_cell_output_bytes - kept,
                   self.max_output_bytes - sum(self.output_kept.values()))
        if msg_type == "update_display_data":  # replaces an output: only its own size counts
            room = min(self.max_cell_output_bytes, self.max_output_bytes)
        if size > room:
            if msg_type == "stream" and room > 0:  # the start of it is kept, and the note
                note = self._leave_out(cell, cell_index, size - room, add=False)
                text = str((msg.get("content") or {}).get("text", ""))[:room]
                msg = {**msg, "content": {**msg["content"], "text": text + note}}
                self.output_kept[cell_index] = kept + room
                return super().process_message(msg, cell, cell_index)
            if msg_type != "error":
                self._leave_out(cell, cell_index, size)
                return None
            msg = _shortened(msg)  # what went wrong stays visible
            self._leave_out(cell, cell_index, 0)
            size = message_size(msg["content"])
        if msg_type != "update_display_data":
            self.output_kept[cell_index] = kept + size
        return super().process_message(msg, cell, cell_index)

    def _cleared(self, cell_index: int) -> None:
        self.output_kept[cell_index] = 0
        self._noted.discard(cell_index)

    def _leave_out(self, cell: NotebookNode, cell_index: int, size: int,
                   add: bool = True) -> str:
        """Count ``size`` bytes left out of the cell; the note that says so, added to the cell
        (``add``) unless it is there already."""
        self.output_cut[cell_index] = self.output_cut.get(cell_index, 0) + size
        if cell_index in self._noted:
            return ""
        self._noted.add(cell_index)
        note = cut_note(self.max_cell_output_bytes, self.max_output_bytes)
        if add:
            cell.setdefault("outputs", []).append(new_output("stream", name="stdout", text=note))
        return note

    async def async_start_new_kernel_client(self) -> Any:
        """The kernel client, its sockets made with the bounds of :data:`MAX_MESSAGE_BYTES` and
        :data:`QUEUED_MESSAGES`, and a monitor on its output channel."""
        make = self.km.client

        def bounded(**kwargs: Any) -> Any:
            kc = make(**kwargs)
            kc.context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            kc.context.setsockopt(zmq.RCVHWM, QUEUED_MESSAGES)
            return kc

        self.km.client = bounded  # (nbclient makes the client and starts it in one step)
        try:
            kc = await super().async_start_new_kernel_client()
        finally:
            del self.km.client
        # a message over MAX_MESSAGE_BYTES closes the output channel (zmq drops the peer):
        # the monitor says when, so the notebook can say why its later outputs are missing
        self._monitor = kc.iopub_channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._monitor_view = zmq.Socket.shadow(self._monitor.underlying)  # polled without a loop
        return kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    def _channel_closed(self) -> bool:
        view = getattr(self, "_monitor_view", None)
        if self._lost or view is None or view.closed or not view.poll(0):
            return False
        while view.poll(0):
            view.recv_multipart()
        self._lost = True
        return True

    def output_report(self, cell: NotebookNode, cell_index: int) -> dict[str, Any]:
        """What was left out of the output of the cell that just ran, for the progress log
        (``output_cut``: bytes; ``output_lost``: the output channel closed during it, or a test
        cell before it, and the cell says so)."""
        report: dict[str, Any] = {}
        if self._channel_closed():
            cell.setdefault("outputs", []).append(new_output("stream", name="stdout",
                                                             text=LOST_NOTE))
            report["output_lost"] = True
        if cell_index in self.output_cut:
            report["output_cut"] = self.output_cut[cell_index]
        return report
