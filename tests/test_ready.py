"""graders.ready: a kernel client is ready once its own kernel_info request has been answered on
the shell channel and gone idle on IOPub, and not before."""

from __future__ import annotations

import itertools
from queue import Empty

import pytest
from jupyter_core.utils import run_sync

from graders import ready


class _Channel:
    """A channel that delivers the messages queued on it, and none while empty."""

    def __init__(self):
        self.queue = []

    async def get_msg(self, timeout=None):
        if not self.queue:
            raise Empty
        return self.queue.pop(0)


def _msg(parent: str, msg_type: str, state: str | None = None) -> dict:
    content = {"execution_state": state} if state else {"language_info": {"name": "python"}}
    return {"parent_header": {"msg_id": parent}, "msg_type": msg_type, "content": content,
            "header": {"msg_type": msg_type}}


class _Client(ready.ReadyClient):
    """A ReadyClient on scripted channels: ``attempts[i]`` says what the kernel sends for the
    i-th kernel_info request ("reply", "busy", "idle" in the order they arrive)."""

    def __init__(self, attempts):
        super().__init__()
        self._shell, self._iopub = _Channel(), _Channel()
        self._attempts, self._ids, self.asked = attempts, itertools.count(), []

    shell_channel = property(lambda self: self._shell)
    iopub_channel = property(lambda self: self._iopub)

    def kernel_info(self):
        n = next(self._ids)
        msg_id = f"req-{n}"
        self.asked.append(msg_id)
        for event in self._attempts[n] if n < len(self._attempts) else ():
            if event == "reply":
                self._shell.queue.append(_msg(msg_id, "kernel_info_reply"))
            elif event == "stale-reply":
                self._shell.queue.append(_msg("older", "kernel_info_reply"))
            elif event == "welcome":
                self._iopub.queue.append({"parent_header": {}, "msg_type": "iopub_welcome",
                                          "content": {"subscription": ""}})
            else:
                self._iopub.queue.append(_msg(msg_id if event != "other-idle" else "older",
                                              "status", event.removeprefix("other-")))
        return msg_id

    async def _async_is_alive(self):
        return True

    def _handle_kernel_info_reply(self, msg):
        self.info = msg


@pytest.fixture(autouse=True)
def _short_waits(monkeypatch):
    monkeypatch.setattr(ready, "IOPUB_WAIT_S", 0.05)


def test_ready_after_its_own_reply_and_idle_status():
    client = _Client([["stale-reply", "reply", "other-idle", "busy", "idle"]])
    run_sync(client.wait_for_ready)(timeout=5)
    assert client.asked == ["req-0"] and client.info["parent_header"]["msg_id"] == "req-0"


def test_asks_again_when_iopub_missed_the_status_or_the_shell_no_reply():
    client = _Client([["reply", "busy"], [], ["reply", "busy", "idle"]])
    run_sync(client.wait_for_ready)(timeout=10)
    assert client.asked == ["req-0", "req-1", "req-2"]


def test_a_welcome_on_iopub_means_ask_again_at_once(monkeypatch):
    monkeypatch.setattr(ready, "IOPUB_WAIT_S", 60.0)  # not waited for: the welcome ends it
    client = _Client([["reply", "welcome"], ["reply", "busy", "idle"]])
    run_sync(client.wait_for_ready)(timeout=10)
    assert client.asked == ["req-0", "req-1"]


def test_a_kernel_that_never_answers_times_out():
    client = _Client([["reply"]] * 1000)  # never idle on IOPub
    with pytest.raises(RuntimeError, match="didn't respond"):
        run_sync(client.wait_for_ready)(timeout=0.3)
