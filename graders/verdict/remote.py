"""The trusted side of the channel: a :class:`Bridge` to one student kernel's agent and the
:class:`Remote` proxies that stand for objects living in that kernel.

A :class:`Remote` forwards what trusted test code does with it (attribute access, calls,
indexing, iteration, ``len``, ``bool``, ``repr``, ``in``) to the student's kernel, one request at
a time, and gives back data (decoded by :mod:`graders.verdict.wire`, never unpickled) or further
proxies. ``isinstance`` works against library classes: a proxy reports as its ``__class__`` the
trusted process's own class of the same name when the object's class is a library class
(``torch.nn.Linear``, ``torch.optim.SGD``, ...), and otherwise a stand-in subclass of the nearest
library base in its MRO (a student's ``DigitCNN(nn.Module)`` is an ``nn.Module``). The same
remote object always comes back as the same proxy, so ``id()``/``is`` comparisons hold.

Every request has the deadline of the test cell it belongs to. A call that runs past it is
interrupted (the kernel manager's interrupt); a kernel that does not answer the interrupt is
declared unresponsive and every later request fails at once with that reason.
"""

from __future__ import annotations

import builtins
import contextlib
import itertools
import os
import secrets
import stat
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from graders.verdict import wire

#: Packages whose classes a proxy may report as its own (they are imported on the trusted side).
LIBRARY_PACKAGES = frozenset({
    "builtins", "collections", "functools", "itertools", "types", "abc", "enum", "typing",
    "dataclasses", "pathlib", "numpy", "torch", "torchvision", "sklearn", "scipy", "dlworkshop",
    "pandas", "matplotlib", "PIL",
})
#: Dunder names a proxy asks the student's kernel for; other dunders fail locally (libraries
#: probe objects for many of them, each would cost a round trip).
REMOTE_DUNDERS = frozenset({"__name__", "__qualname__", "__module__", "__func__", "__self__",
                            "__wrapped__", "__dataclass_fields__"})
#: Request fields sent as plain JSON; the others are values, encoded together as ``data``.
PLAIN_FIELDS = frozenset({"name", "n", "limit", "module", "path", "names"})
INTERRUPT_GRACE_S = 10.0
RECEIVE_QUEUE = 4  # messages from the kernel queued on the trusted side, at most
SEND_TIMEOUT_S = 5.0  # a request the kernel's agent does not take within this: it is gone
#: Bytes one test cell may receive from the kernel in all (a test that collects what a student's
#: endless iterator yields held 3 GiB in the grading process; plain nbgrader has no other bound)
RECEIVED_PER_CELL = 1 << 30
HELLO_TIMEOUT_S = 60.0


class StudentCodeError(Exception):
    """The student's code raised while a test called it; carries the student's exception type,
    message and (student-side) traceback text."""

    def __init__(self, type_name: str, message: str, traceback_text: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return self.message


_student_errors: dict[str, type] = {}


def student_error(type_name: str, message: str, traceback_text: str = "") -> StudentCodeError:
    """The exception to raise for an error of the student's code: a :class:`StudentCodeError`
    that is also an instance of the builtin exception of the same name (``AttributeError``,
    ``KeyError``, ``TypeError``, ...), so that ``hasattr``, ``list()``, ``dict.get``-style code
    in the tests behaves as it would with the student's objects at hand."""
    if not (isinstance(type_name, str) and type_name.isidentifier()):
        type_name = "Exception"  # a name is all a report shows of it (":" or "" read as nothing)
    base = getattr(builtins, type_name, None)
    cls = StudentCodeError
    if isinstance(base, type) and issubclass(base, Exception) and base is not Exception:
        cls = _student_errors.get(type_name)
        if cls is None:
            try:
                cls = type(f"Student{type_name}", (StudentCodeError, base), {})
            except TypeError:
                cls = StudentCodeError
            _student_errors[type_name] = cls
    try:
        return cls(type_name, message, traceback_text)
    except TypeError:  # a builtin exception whose constructor needs more
        return StudentCodeError(type_name, message, traceback_text)


class KernelTimeout(Exception):
    """The student's code ran past the test cell's time limit."""


def _share_socket(path: Path) -> None:
    """Make the socket at ``path`` connectable by any uid. The folder is the kernel's own: by
    the time of a chmod by path it may have put a link there (a root chmod would have made any
    host file world-writable), so the inode opened without following links is changed, once it
    is seen to be a socket."""
    if not hasattr(os, "O_PATH"):  # not Linux: no sandbox, the kernel runs as the grader
        os.chmod(path, 0o666)
        return
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise OSError(f"{path} is no longer the agent's socket")
        os.chmod(f"/proc/self/fd/{fd}", 0o666)
    finally:
        os.close(fd)


class BridgeBroken(RuntimeError):
    """The student's kernel cannot be reached any more; the message says why."""


# ------------------------------------------------------------------------------- classes
MAX_SHADOWS = 4096  # stand-in classes one bridge keeps (a kernel could send endless new ones)


def _library_class(module: object, qualname: object) -> type | None:
    """The trusted process's class ``module.qualname`` if it is a library class already
    imported here, else None (nothing is imported on a student's say-so)."""
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    if module.split(".")[0] not in LIBRARY_PACKAGES or module not in sys.modules:
        return None
    obj: object = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, type) else None


def class_for(cls: object, mro: object, cache: dict[tuple, type] | None = None) -> type:
    """The class a proxy reports: the library class itself, or a stand-in subclass of the
    nearest library class in ``mro`` (named like the student's class), kept in ``cache`` (one
    bridge's: what one kernel says never reaches another's proxies).

    Never a tensor class: torch's C code takes whatever ``isinstance`` calls a tensor as one and
    reads its memory (a proxy claiming to be a ``Parameter`` crashed the grading process). A
    proxy of a tensor (a parameter, a leaf that requires grad) reports a stand-in that is not a
    ``torch.Tensor``; torch functions given one get its value (:meth:`Remote.__torch_function__`).
    """
    if not isinstance(mro, list):
        mro = []
    key = tuple(tuple(x) for x in mro if isinstance(x, list) and len(x) == 2)
    own = tuple(cls) if isinstance(cls, list) and len(cls) == 2 else None
    cache = {} if cache is None else cache
    if (own, key) in cache:
        return cache[own, key]
    result = _library_class(*own) if own is not None else None
    if result is None:
        base = next((c for c in (_library_class(*entry) for entry in key[1:])
                     if c is not None), object)
        name = str(key[0][1]).rsplit(".", 1)[-1] if key else "RemoteObject"
        result = _stand_in(name, base, f"student:{key[0][0] if key else '?'}")
    if _is_tensor_class(result):
        result = _stand_in(result.__name__, object, f"student-tensor:{result.__module__}")
    if len(cache) >= MAX_SHADOWS:
        cache.clear()
    cache[own, key] = result
    return result


def _stand_in(name: str, base: type, module: str) -> type:
    try:
        return type(name, (base,), {"__module__": module})
    except TypeError:  # a final or metaclass-heavy base
        return type(name, (object,), {"__module__": module})


def _is_tensor_class(cls: type) -> bool:
    torch = sys.modules.get("torch")
    tensor = getattr(torch, "Tensor", None)
    return isinstance(tensor, type) and issubclass(cls, tensor)


# ------------------------------------------------------------------------------- the proxy
class Remote:
    """An object living in the student's kernel (see the module docstring)."""

    __slots__ = ("_bridge", "_handle", "_cls", "__weakref__")

    def __init__(self, bridge: Bridge, handle: int, cls: type) -> None:
        object.__setattr__(self, "_bridge", bridge)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_cls", cls)

    @property
    def __class__(self) -> type:  # noqa: D105  (what isinstance() sees)
        return object.__getattribute__(self, "_cls")

    def _ask(self, op: str, **fields: object) -> object:
        return object.__getattribute__(self, "_bridge").request(op, target=self, **fields)

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") and name.endswith("__") and name not in REMOTE_DUNDERS:
            raise AttributeError(name)
        if name.startswith("_repr_") or name.startswith("_ipython"):
            raise AttributeError(name)
        return self._ask("getattr", name=name)

    def __setattr__(self, name: str, value: object) -> None:
        self._ask("setattr", name=name, value=value)

    def __delattr__(self, name: str) -> None:
        self._ask("delattr", name=name)

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self._ask("call", args=list(args), kwargs=kwargs)

    def __getitem__(self, key: object) -> object:
        return self._ask("getitem", key=key)

    def __setitem__(self, key: object, value: object) -> None:
        self._ask("setitem", key=key, value=value)

    def __delitem__(self, key: object) -> None:
        self._ask("delitem", key=key)

    def __len__(self) -> int:
        n = self._ask("len")
        if type(n) is not int or n < 0:
            raise TypeError("len() of the student's object is not a non-negative int")
        return n

    def __bool__(self) -> bool:
        return self._ask("bool") is True

    def __contains__(self, value: object) -> bool:
        return self._ask("contains", value=value) is True

    def __iter__(self):
        it = self._ask("iter")
        if not isinstance(it, Remote):
            raise TypeError("iter() of the student's object gave data, not an iterator")
        n = 8
        while True:
            chunk = it._ask("next", n=n)
            if not isinstance(chunk, dict) or not isinstance(chunk.get("items"), list):
                raise TypeError("the student's iterator sent a malformed chunk")
            yield from chunk["items"]
            if chunk.get("done") is True:
                return
            n = 64

    def __next__(self) -> object:
        chunk = self._ask("next", n=1)
        if not isinstance(chunk, dict) or not isinstance(chunk.get("items"), list):
            raise TypeError("the student's iterator sent a malformed chunk")
        if not chunk["items"]:
            raise StopIteration
        return chunk["items"][0]

    def __repr__(self) -> str:
        try:
            text = self._ask("repr", limit=2000)
        except Exception:  # noqa: BLE001 (a repr must not fail a test by itself)
            text = None
        if not isinstance(text, str):
            text = f"<{self.__class__.__name__} object in the student's kernel>"
        return text

    def __str__(self) -> str:
        text = self._ask("str", limit=4000)
        return text if isinstance(text, str) else repr(self)

    def __array__(self, dtype: object = None, copy: object = None) -> object:
        import numpy as np

        value = value_of(self)
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.Tensor):  # a parameter's value
            value = value.detach().cpu().numpy()
        return np.asarray(value, dtype=dtype)

    def __reduce_ex__(self, protocol: object) -> object:
        raise TypeError("an object of the student's kernel cannot be pickled or copied")

    @classmethod
    def __torch_function__(cls, func: Any, types: object, args: object = (),
                           kwargs: object = None) -> object:
        """A torch function given a proxy (a student's parameter, say) computes with its value:
        torch never takes a proxy for a tensor of its own."""
        import torch

        with torch._C.DisableTorchFunctionSubclass():
            return func(*_values(args), **_values(kwargs or {}))


def _values(obj: Any) -> Any:
    """``obj`` with every proxy inside a list, tuple or dict replaced by its value."""
    if type(obj) is Remote:
        return value_of(obj)
    if type(obj) in (list, tuple):
        return type(obj)(_values(x) for x in obj)
    if type(obj) is dict:
        return {k: _values(v) for k, v in obj.items()}
    return obj


def value_of(obj: object) -> object:
    """``obj`` as data: a proxy's object is sent by value (a parameter as a plain tensor, for
    example); anything else is returned as it is."""
    if type(obj) is Remote:
        value = obj._ask("value")
        if type(value) is Remote:
            raise TypeError(f"a {obj.__class__.__name__} of the student's kernel is not data")
        return value
    return obj


def is_remote(obj: object) -> bool:
    """Whether ``obj`` is a proxy of an object in the student's kernel."""
    return type(obj) is Remote


# ------------------------------------------------------------------------------- the bridge
class Bridge:
    """The trusted end of the channel to one kernel's agent (see :mod:`graders.verdict.wire`).

    ``folder``: a private folder the kernel can reach (the sandbox binds it); the PAIR socket is
    bound there. ``interrupt``: interrupts the kernel (when a call runs past its deadline).
    """

    def __init__(
        self, folder: Path, interrupt: Callable[[], None], max_message_mb: int = 1024,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PAIR)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, max_message_mb << 20)  # bigger: dropped
        # one reply is awaited at a time: a kernel sending more than that queues a few, not
        # zmq's default thousand (each up to the size above) in the grading process
        self.socket.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE)
        # a PAIR socket whose peer is gone (the kernel died, or its agent quit) blocks a send
        # for ever: give up instead
        self.socket.setsockopt(zmq.SNDTIMEO, int(SEND_TIMEOUT_S * 1000))
        self.alive = alive  # whether the kernel's process still runs
        self.path = Path(folder) / f"agent-{secrets.token_hex(4)}"
        self.address = f"ipc://{self.path}"
        self.socket.bind(self.address)
        _share_socket(self.path)  # the kernel may run as another uid
        self.interrupt = interrupt
        self.deadline: float | None = None
        self.expired = False  # this test cell's time is up: no more requests in it
        self.dead: str | None = None
        self.timed_out = False  # dead because it ignored the interrupt at a time limit
        self.requests = 0
        self.received = 0  # bytes received in this test cell (RECEIVED_PER_CELL)
        self._ids = itertools.count(1)
        self._proxies: weakref.WeakValueDictionary[int, Remote] = weakref.WeakValueDictionary()
        self._released: list[int] = []
        self._session: list[Remote] = []  # proxies kept alive while a test cell runs
        self._classes: dict[tuple, type] = {}  # this kernel's stand-in classes (class_for)

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()
        with contextlib.suppress(OSError):
            self.path.unlink()

    # ------------------------------------------------------------------ install and sessions
    def install_code(self) -> str:
        """Python code that, run in the kernel before any student code, starts the agent."""
        source = Path(wire.__file__).read_text(encoding="utf-8")
        return (
            "def _graders_install(source, address):\n"
            "    import os, sys, types\n"
            "    import builtins\n"
            "    # the sandbox starts a kernel with PYTHONSAFEPATH (nothing of the working folder\n"
            "    # runs before this); from now on it imports as IPython would let it\n"
            "    if os.environ.pop('PYTHONSAFEPATH', None) and '' not in sys.path:\n"
            "        sys.path.insert(next((i for i, p in enumerate(sys.path)\n"
            "                              if p.endswith(('site-packages', 'dist-packages'))),\n"
            "                             0), '')\n"
            "    module = types.ModuleType('_graders_wire')\n"
            "    # its own copy of the builtins: a student who patches builtins.len later does\n"
            "    # not break the agent (only the student's own code)\n"
            "    module.__dict__['__builtins__'] = dict(builtins.__dict__)\n"
            f"    exec(compile(source, {wire.AGENT_FILENAME!r}, 'exec'), module.__dict__)\n"
            "    sys.modules['_graders_wire'] = module\n"
            "    module.install(get_ipython().user_ns, address)\n"
            f"_graders_install({source!r}, {self.address!r})\n"
            "del _graders_install\n"
        )

    def serve_code(self, token: str) -> str:
        """Code that makes the kernel serve one session (one test cell)."""
        return f"__import__('sys').modules['_graders_wire'].serve({token!r})"

    def wait_hello(self, token: str, timeout: float, stop: Callable[[], str | None]) -> None:
        """Wait until the agent opens session ``token``; ``stop()`` returns a reason to give up
        (the kernel answered the serve request with an error, or died)."""
        end = time.monotonic() + timeout
        while True:
            if self.socket.poll(100):
                head, _ = wire.unpack(self.socket.recv_multipart())
                if head.get("hello") == token:
                    return
                continue  # a stale message
            reason = stop()
            if reason:
                raise BridgeBroken(reason)
            if time.monotonic() > end:
                raise BridgeBroken(
                    f"the kernel did not start serving the test within {timeout:g} s")

    def begin_session(self, deadline: float) -> None:
        """Requests from now on belong to a test cell that must end by ``deadline``
        (``time.monotonic()``)."""
        self.deadline, self.expired = deadline, False
        self._session = []
        self.received = 0

    def end_session(self) -> None:
        """Tell the agent that the test cell is over (releasing the proxies dropped meanwhile)."""
        self.expired = False
        self._session = []  # dropped proxies are released with the "end" request
        if self.dead is None:
            self.deadline = time.monotonic() + INTERRUPT_GRACE_S
            with contextlib.suppress(Exception):
                self.request("end")
        self.deadline = None

    # ------------------------------------------------------------------ what tests use
    def owns(self, obj: object) -> bool:
        """Whether ``obj`` is a proxy of this bridge's kernel."""
        return type(obj) is Remote and obj._bridge is self

    def import_object(self, module: str, path: str = "") -> object:
        """``module.path`` imported in the student's kernel (see
        ``dlworkshop.testing.student_side``)."""
        return self.request("import", module=module, path=path)

    def place(self, value: object) -> Remote:
        """A copy of ``value`` (data) kept in the student's kernel, as a proxy: code there that
        changes it in place changes what the test reads back with :meth:`fetch`."""
        return self.request("place", value=value)

    def ship(self, obj: object) -> Remote:
        """A copy of a trusted object (a model, a data loader, ...; its classes importable in the
        kernel) made in the student's kernel, as a proxy. It travels as a pickle made here, so
        only from the trusted side to the student's, never back."""
        import io

        import torch

        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return self.request("unpickle", value=buffer.getvalue())

    def fetch(self, obj: object) -> object:
        """The current value of a proxy's object, as data (see :func:`value_of`)."""
        return value_of(obj)

    # ------------------------------------------------------------------ requests
    def _make_ref(self, obj: object) -> dict | None:
        if type(obj) is Remote:
            if obj._bridge is not self:
                raise wire.WireError("a proxy of another kernel")
            return {"$t": "ref", "h": obj._handle}
        return None

    def _resolve_ref(self, h: dict) -> Remote:
        handle = h.get("h")
        if type(handle) is not int:
            raise wire.WireError("bad reference")
        proxy = self._proxies.get(handle)
        if proxy is None:
            proxy = Remote(self, handle, class_for(h.get("cls"), h.get("mro"), self._classes))
            self._proxies[handle] = proxy
            weakref.finalize(proxy, self._released.append, handle)
        if handle in self._released:  # came back before its release was sent
            self._released.remove(handle)
        # Within one test cell a remote object keeps one proxy (so id() comparisons hold, as
        # they would for the object itself); afterwards proxies no test holds are released.
        self._session.append(proxy)
        return proxy

    def request(self, op: str, **fields: object) -> object:
        """Send one request and return its decoded result (raising the student's error)."""
        if self.dead is not None:
            raise BridgeBroken(self.dead)
        if self.deadline is None:
            raise BridgeBroken("the student's kernel is only reachable while a test cell runs")
        if self.expired and op != "end":
            raise KernelTimeout("the test cell's time limit has passed")
        rid = next(self._ids)
        plain = {k: v for k, v in fields.items() if k in PLAIN_FIELDS}
        data = {k: v for k, v in fields.items() if k not in PLAIN_FIELDS}
        encoded, buffers = wire.encode(data, self._make_ref, trusted=True)
        head: dict = {"id": rid, "op": op, **plain, "data": encoded}
        torch = sys.modules.get("torch")
        if torch is not None:  # the test's grad mode; without torch loaded here it is on
            head["grad"] = torch.is_grad_enabled()
        if self._released:
            head["release"], self._released = self._released, []
        self.requests += 1
        try:
            self.socket.send_multipart(wire.pack(head, buffers), copy=False)
        except zmq.Again:
            self.dead = "the kernel stopped taking the test's requests (it died, or its agent quit)"
            raise BridgeBroken(self.dead) from None
        reply, reply_buffers = self._receive(rid)
        if reply.get("ok") is True:
            return wire.decode(reply.get("value"), reply_buffers, self._resolve_ref)
        error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
        raise student_error(
            _text(error.get("type"), 200) or "Exception",
            _text(error.get("message"), 4000),
            _text(error.get("traceback"), 20000),
        )

    def _receive(self, rid: int) -> tuple[dict, list]:
        assert self.deadline is not None
        interrupted = False
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                if interrupted:
                    self.timed_out = True
                    self.dead = (
                        "your code did not stop when interrupted after the test's time limit; "
                        "the kernel was given up"
                    )
                    raise BridgeBroken(self.dead)
                self.interrupt()
                interrupted = True
                self.deadline = time.monotonic() + INTERRUPT_GRACE_S
                continue
            if not self.socket.poll(int(min(remaining, 1.0) * 1000) + 1):
                if not self.alive():
                    self.dead = "the kernel died while a test was calling your code"
                    raise BridgeBroken(self.dead)
                continue
            frames = self.socket.recv_multipart(copy=False)
            self.received += sum(len(frame) for frame in frames)
            if self.received > RECEIVED_PER_CELL:
                self.expired = True
                raise student_error("MemoryError", f"your code's replies in this test passed "
                                    f"{RECEIVED_PER_CELL >> 20} MiB in all; it was stopped")
            try:
                head, buffers = wire.unpack(frames)
            except wire.WireError as err:  # the kernel's agent only answers the pending request
                raise student_error("WireError", f"the reply could not be read: {err}") from None
            if head.get("id") != rid:
                continue  # a late answer to a request given up on
            if interrupted:
                self.expired = True
                raise KernelTimeout("your code ran past the test cell's time limit and was stopped")
            return head, buffers


def _text(value: object, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""
