"""A kernel client that is ready as soon as the kernel is.

jupyter_client's ``wait_for_ready`` sends ``kernel_info`` requests until one is answered on the
shell channel and a message arrives on IOPub, then waits for 0.2 s of silence on IOPub before it
returns: a fixed 0.2 s per notebook graded (measured: about a fifth of the grading overhead of
a notebook whose kernel was started ahead, :mod:`graders.prestart`). :class:`ReadyClient` waits
for the same two facts, precisely: the reply to its own ``kernel_info`` request and the kernel's
``idle`` status for that request on IOPub. Once that status has arrived, IOPub is subscribed and
the kernel has nothing of that request left to publish; nbclient reads each cell's output by its
request's id, so anything published earlier could not be taken for a cell's output anyway.
"""

from __future__ import annotations

import math
import time
from queue import Empty
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient

#: How long one attempt waits for the request's idle status before it asks again: a SUB socket
#: that connects after the status was published never sees it (ZeroMQ's "slow joiner").
#: ipykernel 7 says when the subscription has arrived (``iopub_welcome``): then it asks again at
#: once, and that request's status cannot be missed.
IOPUB_WAIT_S = 0.2


class ReadyClient(AsyncKernelClient):
    """``AsyncKernelClient`` whose ``wait_for_ready`` returns once the kernel has answered a
    ``kernel_info`` request on the shell channel and gone idle for it on IOPub."""

    async def _ready_wait(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (math.inf if timeout is None else timeout)
        while time.monotonic() < deadline:
            msg_id = self.kernel_info()
            reply = await self._reply_to(msg_id, min(deadline, time.monotonic() + 1.0))
            if reply is not None and await self._idle_for(
                msg_id, min(deadline, time.monotonic() + IOPUB_WAIT_S)
            ):
                self._handle_kernel_info_reply(reply)
                return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel didn't reply to kernel_info: it died")
        raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

    wait_for_ready = _ready_wait

    async def _reply_to(self, msg_id: str, end: float) -> dict[str, Any] | None:
        """The shell reply to ``msg_id`` (replies to earlier attempts are skipped), or None."""
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await self.shell_channel.get_msg(timeout=left)
            except Empty:
                return None
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg
        return None

    async def _idle_for(self, msg_id: str, end: float) -> bool:
        """Whether the kernel's ``idle`` status for ``msg_id`` arrives on IOPub before ``end``
        (False at once when a welcome says the subscription has only just arrived)."""
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await self.iopub_channel.get_msg(timeout=left)
            except Empty:
                return False
            if msg.get("msg_type") == "iopub_welcome":
                return False
            if (msg.get("parent_header", {}).get("msg_id") == msg_id
                    and msg.get("msg_type") == "status"
                    and msg.get("content", {}).get("execution_state") == "idle"):
                return True
        return False
