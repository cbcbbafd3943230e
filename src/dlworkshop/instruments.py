"""Instrumented models and small probes that test cells run in the student's kernel.

A spy records how a student's training or evaluation loop calls it (mode, gradient tracking,
device and dtype of each batch); the probes compute something about a student's model where the
model lives (gradients of a loss, predictions on given inputs). None of them solves a task.
Test cells reach them as ``dlworkshop.testing.<name>``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from dlworkshop.introspect import in_mode


class SpyLinear(torch.nn.Module):
    """A linear model that records how it is called: the mode (``training``), whether
    gradients were tracked, and the device and dtype of every input batch."""

    def __init__(self, in_features: int = 6, num_classes: int = 3) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(in_features, num_classes)
        self.modes: list[bool] = []
        self.grad_enabled: list[bool] = []
        self.devices: list[str] = []
        self.dtypes: list[str] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        self.grad_enabled.append(torch.is_grad_enabled())
        self.devices.append(str(x.device))
        self.dtypes.append(str(x.dtype).removeprefix("torch."))
        return self.lin(x)


def toy_data(
    n: int = 20, in_features: int = 6, num_classes: int = 3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, y)``: ``n`` random inputs and labels, the same for the same arguments."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, in_features, generator=gen)
    return X, torch.randint(0, num_classes, (n,), generator=gen)


def tensor_loader(X: Any, y: Any, batch_size: int) -> torch.utils.data.DataLoader:
    """A loader over ``(X, y)`` in order (no shuffling), batches of ``batch_size``."""
    X, y = torch.as_tensor(X), torch.as_tensor(y)
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=batch_size
    )


def toy_loader(
    n: int = 20, in_features: int = 6, num_classes: int = 3, batch: int = 5, seed: int = 0
) -> torch.utils.data.DataLoader:
    """:func:`tensor_loader` over :func:`toy_data`."""
    return tensor_loader(*toy_data(n, in_features, num_classes, seed), batch)


def fill_grads(model: torch.nn.Module, value: float) -> None:
    """Give every parameter of ``model`` a gradient full of ``value`` (stale gradients)."""
    for p in model.parameters():
        p.grad = torch.full_like(p, value)


def loss_gradients(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor | None]:
    """Each parameter's gradient of the mean cross-entropy of ``model(x)`` against ``y``, from
    zero (``model.zero_grad()`` first): None where no gradient reaches a parameter."""
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return {n: None if p.grad is None else p.grad.detach().clone()
            for n, p in model.named_parameters()}


def forward_on(device: str | torch.device, model: torch.nn.Module, x: torch.Tensor) -> Any:
    """``model(x)`` with ``x`` moved to ``device`` first (the model is expected there)."""
    return model(torch.as_tensor(x).to(device))


@torch.no_grad()
def predict(
    model: torch.nn.Module, X: Any, device: str | torch.device, batch_size: int = 256
) -> torch.Tensor:
    """The class ``model`` predicts for every input of ``X`` (in eval mode, in batches, on
    ``device``), on the CPU."""
    model.eval()
    X = torch.as_tensor(X)
    out = [model(X[i:i + batch_size].to(device)).argmax(1).cpu()
           for i in range(0, len(X), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


# ----------------------------------------------------------------- batches not moved to a device
class Unmoved(torch.Tensor):
    """A batch tensor as :class:`MarkedLoader` hands it out: it stays ``Unmoved`` (and every
    result computed from it too) until ``.to(device)`` or ``.cuda()`` moves it, which gives a
    plain tensor. Each use in a computation before that is logged in :data:`UNMOVED_USES`."""

    # what reads a batch or changes only its type (``X.float().to(device)``: the result stays
    # unmoved) is not a use
    _BENIGN = frozenset({"__get__", "__len__", "size", "dim", "numel", "__repr__", "__format__",
                         "__hash__", "__iter__", "__reduce_ex__", "__deepcopy__", "data_ptr",
                         "is_floating_point", "cpu", "detach", "__setstate__", "to", "type",
                         "float", "double", "half", "bfloat16", "long", "int", "short",
                         "contiguous"})

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        result = super().__torch_function__(func, types, args, kwargs)
        if name in ("to", "cuda") and (name == "cuda" or _names_a_device(args[1:], kwargs)):
            MOVED_TO.append(_target(name, args[1:], kwargs))
            return _plain(result)
        if name not in cls._BENIGN:
            UNMOVED_USES.append(name)
        return result


#: Names of the operations applied to :class:`Unmoved` batches (cleared by each new epoch of a
#: :class:`MarkedLoader`).
UNMOVED_USES: list[str] = []


#: The devices :class:`Unmoved` batches were moved to, in order (cleared with
#: :data:`UNMOVED_USES`): a loop that moves its batches to a global ``DEVICE`` instead of the
#: ``device`` it is given shows there.
MOVED_TO: list[torch.device] = []


def _target(name: str, args: Any, kwargs: dict) -> torch.device:
    if name == "cuda":
        index = kwargs.get("device", args[0] if args else None)
        return torch.device("cuda") if index is None else torch.device("cuda", int(index))
    device = kwargs.get("device", next((a for a in args if isinstance(a, (str, torch.device))),
                                       None))
    return torch.device(device)


def _names_a_device(args: Any, kwargs: dict) -> bool:
    if "device" in kwargs:
        return True
    return any(isinstance(a, (str, torch.device)) for a in args)


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and type(value) is not torch.Tensor:
        return value.as_subclass(torch.Tensor)
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


class MarkedLoader(torch.utils.data.DataLoader):
    """A loader over ``(X, y)`` in order whose batches are :class:`Unmoved` until a loop moves
    them to its device; ``unmoved_uses`` lists what was computed with batches still unmoved, and
    ``batches`` counts the batches handed out."""

    def __init__(self, X: Any, y: Any, batch_size: int) -> None:
        X, y = torch.as_tensor(X), torch.as_tensor(y)
        super().__init__(torch.utils.data.TensorDataset(X, y), batch_size=batch_size)
        self.batches = 0

    def __iter__(self) -> Any:
        UNMOVED_USES.clear()
        MOVED_TO.clear()
        for X, y in super().__iter__():
            self.batches += 1
            yield X.as_subclass(Unmoved), y.as_subclass(Unmoved)

    @property
    def unmoved_uses(self) -> list[str]:
        """The operations (names) that used a batch before it was moved to a device."""
        return list(UNMOVED_USES)

    @property
    def moved_to(self) -> list[str]:
        """The devices the batches of the last epoch were moved to, in order, as
        ``str(torch.device)`` (``"cpu:0"`` stays distinct from ``"cpu"``)."""
        return [str(d) for d in MOVED_TO]


# ------------------------------------------------------------------- a spy around any module
class Spy(torch.nn.Module):
    """``inner`` (any model) with a record of every call: the mode (``training``), whether
    gradients were tracked, whether the batch had been moved to a device (see
    :class:`MarkedLoader`), its device and dtype; and an event log shared with
    :class:`SpySGD`: ``("forward",)``, ``("backward", clean)`` (``clean``: no gradient was left
    in any parameter when this backward pass began), ``("zero_grad",)``, ``("step",)``."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.modes: list[bool] = []
        self.grad_enabled: list[bool] = []
        self.moved: list[bool] = []
        self.devices: list[str] = []
        self.events: list[tuple] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        self.grad_enabled.append(torch.is_grad_enabled())
        self.moved.append(not isinstance(x, Unmoved))
        self.devices.append(str(x.device))
        self.events.append(("forward",))
        out = self.inner(_plain(x))
        if out.requires_grad:
            out.register_hook(self._on_backward)
        return out

    def _on_backward(self, grad: torch.Tensor) -> None:
        clean = all(p.grad is None or not bool(p.grad.any()) for p in self.parameters())
        self.events.append(("backward", clean))

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.events.append(("zero_grad",))
        super().zero_grad(set_to_none=set_to_none)


class SpySGD(torch.optim.SGD):
    """Plain SGD over ``spy``'s parameters that adds ``("zero_grad",)`` and ``("step",)`` to the
    spy's event log."""

    def __init__(self, spy: Spy, lr: float) -> None:
        super().__init__(spy.parameters(), lr=lr)
        self._events = spy.events

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._events.append(("zero_grad",))
        super().zero_grad(set_to_none=set_to_none)

    def step(self, closure: Any = None) -> Any:
        # logged once the update is done: a closure (``optimizer.step(closure)``, PyTorch's own
        # pattern) runs the forward and backward passes inside the step
        result = super().step(closure)
        self._events.append(("step",))
        return result


# ------------------------------------------------------------ calls of a notebook's functions
def call_recording(
    names: Sequence[str], func: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> tuple[Any, list[tuple[str, Any, Any]]]:
    """``func(*args, **kwargs)`` while the functions ``names`` of its module (for a notebook:
    the notebook's own functions, e.g. ``mlp_loss``) record every call; returns ``(result,
    calls)`` with ``calls`` a list of ``(name, positional arguments, result)``, each copied when
    the call happened (arguments passed by name are given in their positional place)."""
    namespace = func.__globals__
    calls: list[tuple[str, Any, Any]] = []
    saved = {name: namespace[name] for name in names if name in namespace}

    def recorder(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        try:
            signature = inspect.signature(original)
        except (TypeError, ValueError):
            signature = None

        @functools.wraps(original)
        def recorded(*a: Any, **kw: Any) -> Any:
            snapshot = copy.deepcopy(_positional(signature, a, kw))
            out = original(*a, **kw)
            calls.append((name, snapshot, copy.deepcopy(out)))
            return out

        return recorded

    try:
        for name, original in saved.items():
            namespace[name] = recorder(name, original)
        result = func(*args, **kwargs)
    finally:
        namespace.update(saved)
    return result, calls


def _positional(signature: inspect.Signature | None, args: tuple, kwargs: dict) -> tuple:
    """The arguments of a call as positional ones, whether the caller named them or not
    (``mlp_loss(params, X=X_batch, y=y_batch)`` is ``(params, X_batch, y_batch)``); defaults
    not filled in."""
    if signature is None or not kwargs:
        return args
    try:
        return signature.bind(*args, **kwargs).args
    except TypeError:  # a call the function itself will refuse
        return args


def call_without_library(
    names: Sequence[str], message: str, func: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Any:
    """:func:`dlworkshop.testing.call_without`, and the same functions switched off where
    ``func``'s module holds them under other names (``from dlworkshop.train import
    train_one_epoch as run``)."""
    from dlworkshop import testing

    def refuse(*a: Any, **kw: Any) -> Any:
        raise AssertionError(message)

    forbidden = []
    for name in names:
        if name.startswith(testing.OPERATIONS) or not testing._installed(name):
            continue  # operations have no alias to find; nothing calls an absent package
        owner, attr = testing._owner(name)
        forbidden.append(getattr(owner, attr))
    namespace = func.__globals__
    aliases = {k: v for k, v in namespace.items()
               if any(v is f for f in forbidden) and callable(v)}
    try:
        namespace.update(dict.fromkeys(aliases, refuse))
        return testing.call_without(names, message, func, *args, **kwargs)
    finally:
        namespace.update(aliases)


# -------------------------------------------------------------------------- layer by layer
_CONFIG = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
           "groups", "in_features", "out_features", "start_dim", "end_dim", "negative_slope")


def _config_value(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return tuple(_config_value(v) for v in value)
    return repr(value)


def _parameter(module: torch.nn.Module, name: str) -> torch.Tensor | None:
    value = getattr(module, name, None)
    return _plain(value).detach().clone() if isinstance(value, torch.Tensor) else None


def _recording(module: torch.nn.Module, forward: Callable[..., Any], record: dict[str, Any],
               records: list[dict[str, Any]]) -> Callable[..., Any]:
    """``forward`` that appends ``record``, completed with this call's weights, input and
    output, to ``records`` once it returns."""

    def recorded(*args: Any, **kwargs: Any) -> Any:
        out = forward(*args, **kwargs)
        records.append({**record, "weight": _parameter(module, "weight"),
                        "bias": _parameter(module, "bias"),
                        "input": _plain(args[0]).detach().clone() if args else None,
                        "output": _plain(out).detach().clone()})
        return out

    return recorded


@torch.no_grad()
def layer_calls(
    model: torch.nn.Module, x: torch.Tensor, kinds: tuple[str, ...] = (), training: bool = False,
    functions: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Every call of a leaf module of ``model`` (or of a module whose torch class is named in
    ``kinds``, e.g. ``("Conv2d", "MaxPool2d", "Linear")``) in one forward pass of ``x`` in eval
    mode (``training=True``: in training mode), in call order: ``{"name", "kind" (the torch.nn
    class it is or extends), "config" (in/out sizes, kernel, stride, padding ...), "has_bias",
    "weight" and "bias" (copies, None where the module has none), "input", "output"}``.

    ``functions``: names of torch functions (``"relu6"``, ``"tanh"``, ``"dropout"`` ...; an
    in-place variant such as ``tanh_`` counts as its name) whose calls during the pass are
    recorded too, in the same order (a function called inside a module's forward comes before
    that module's record): ``{"name": the function's name, "kind": "function", "config":
    {"args": the arguments after the first, "kwargs": ...} (numbers, strings, None and bools
    as they are, anything else by its type's name), "has_bias": False, "weight", "bias",
    "input", "output": None}``. Whatever calls the function (``F.relu6``, ``torch.tanh``,
    ``x.tanh()``, a module) is seen: a ``TorchFunctionMode``, PyTorch's documented hook."""
    records: list[dict[str, Any]] = []
    if any(isinstance(m, torch.nn.modules.lazy.LazyModuleMixin) for m in model.modules()):
        with in_mode(model, training=False):  # nn.LazyLinear becomes its nn.Linear
            model(x)
    # each selected module's forward is wrapped on the instance (not a forward hook): a model
    # that calls its layers as ``self.conv1.forward(x)`` is recorded too (hooks run only
    # through ``self.conv1(x)``)
    wrapped: list[tuple[torch.nn.Module, Any]] = []
    for name, module in model.named_modules():
        kind = next((c.__name__ for c in type(module).__mro__
                     if c.__module__.startswith("torch.nn")), type(module).__name__)
        is_leaf = not any(True for _ in module.children())
        if (kinds and kind in kinds) or (not kinds and is_leaf):
            config = {a: _config_value(getattr(module, a)) for a in _CONFIG
                      if hasattr(module, a)}
            record = {"name": name, "kind": kind, "config": config,
                      "has_bias": getattr(module, "bias", None) is not None}
            wrapped.append((module, module.__dict__.get("forward")))
            module.forward = _recording(module, module.forward, record, records)
    try:
        with in_mode(model, training), _functions_recorded(functions, records):
            model(x)
    finally:
        for module, own in reversed(wrapped):
            if own is None:
                module.__dict__.pop("forward", None)
            else:
                module.__dict__["forward"] = own
    return records


def _argument(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return type(value).__name__


def _functions_recorded(names: Sequence[str], records: list[dict[str, Any]]) -> Any:
    """A context in which every call of a torch function named in ``names`` (see
    :func:`layer_calls`) appends its record to ``records`` once it returns; no context when
    ``names`` is empty."""
    if not names:
        return contextlib.nullcontext()
    from torch.overrides import TorchFunctionMode

    wanted = frozenset(names)

    class FunctionCalls(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            name = getattr(func, "__name__", "")
            if name in wanted or (name.endswith("_") and name.rstrip("_") in wanted):
                records.append({
                    "name": name.rstrip("_") if name not in wanted else name,
                    "kind": "function",
                    "config": {"args": tuple(_argument(a) for a in args[1:]),
                               "kwargs": {k: _argument(v) for k, v in kwargs.items()}},
                    "has_bias": False, "weight": None, "bias": None, "input": None,
                    "output": None})
            return out

    return FunctionCalls()


# ------------------------------------------------------------------ what autograd computed
def autograd_recording(
    func: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> tuple[Any, dict[str, list[Any]]]:
    """``func(*args, **kwargs)`` while PyTorch's autograd is watched; returns ``(result,
    record)`` with ``record`` a dict of

    * ``"gradients"``: every gradient autograd's backward pass computed during the call, as
      NumPy copies: the ``.grad`` of every leaf tensor a ``backward()`` reached (read when that
      backward pass ends) and every gradient ``torch.autograd.grad`` (or ``torch.func``, which
      uses it) returned;
    * ``"roots"``: the values (floats) of the scalar tensors those passes started from;
    * ``"scalars"``: the values (floats) of every one-element floating-point tensor a torch
      function returned (a loss computed with torch is one of them).

    A test of "compute the gradients with autograd" compares what the student's code returns
    with these. Only public PyTorch interfaces are used (a ``TorchFunctionMode`` and the graph's
    ``next_functions``)."""
    from torch.overrides import TorchFunctionMode

    # tensors kept as they are and read once the call is over: inside a torch.func transform
    # they are wrapped, and their numbers are only readable outside it
    kept: dict[str, list[torch.Tensor]] = {"gradients": [], "roots": [], "scalars": []}

    def keep(key: str, t: torch.Tensor) -> None:
        kept[key].append(_plain(t).detach().clone())

    def tensors(value: Any) -> list[torch.Tensor]:
        if isinstance(value, torch.Tensor):
            return [value]
        if isinstance(value, (tuple, list)):
            return [v for v in value if isinstance(v, torch.Tensor)]
        return []

    def leaves(roots: list[torch.Tensor]) -> list[torch.Tensor]:
        found, seen = [], set()
        stack = [r.grad_fn for r in roots if r.grad_fn is not None]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            variable = getattr(node, "variable", None)  # an AccumulateGrad node: a leaf
            if isinstance(variable, torch.Tensor):
                found.append(variable)
            stack.extend(f for f, _ in node.next_functions)
        return found

    def note_roots(roots: list[torch.Tensor]) -> None:
        for r in roots:
            if r.numel() == 1:
                keep("roots", r)

    class Watch(TorchFunctionMode):
        def __torch_function__(self, f: Any, types: Any, a: Any = (), kw: Any = None) -> Any:
            kw = kw or {}
            if f is torch.Tensor.backward or f is torch.autograd.backward:
                roots = tensors(kw.get("tensors", a[0] if a else None))
                reached = leaves(roots)
                out = f(*a, **kw)
                note_roots(roots)
                for v in reached:
                    if isinstance(v.grad, torch.Tensor):
                        keep("gradients", v.grad)
                return out
            if f is torch.autograd.grad:
                out = f(*a, **kw)
                note_roots(tensors(kw.get("outputs", a[0] if a else None)))
                for g in tensors(out):
                    keep("gradients", g)
                return out
            out = f(*a, **kw)
            for t in tensors(out):
                if t.numel() == 1 and t.is_floating_point():
                    keep("scalars", t)
            return out

    with Watch():
        result = func(*args, **kwargs)
    record: dict[str, list[Any]] = {key: [] for key in kept}
    for key, values in kept.items():
        for t in values:
            try:
                value = t.cpu().numpy()
            except RuntimeError:  # a tensor of a transform whose numbers cannot be read
                continue
            record[key].append(value if key == "gradients" else float(value.sum()))
    return result, record


# ------------------------------------------------------------ the mode each module ran in
#: Names of the torch.nn classes whose forward pass depends on the mode (``training``):
#: BatchNorm (batch statistics and updated running statistics in train mode) and dropout (units
#: dropped only in train mode), with every subclass (``BatchNorm2d``, ``Dropout2d`` ...).
MODAL_KINDS = ("_BatchNorm", "_DropoutNd")


class ModeRecorder:
    """Records how the modules of ``model`` whose torch.nn class (or a base of it) is named in
    ``kinds`` (default :data:`MODAL_KINDS`) are run: every call appends ``(name, training,
    grad_enabled)`` to ``calls``, the mode *the module itself* was in when it ran (whatever the
    model's own flag says) and whether gradients were tracked. Forward pre-hooks on those
    modules, nothing replaced; :meth:`remove` takes them off."""

    def __init__(self, model: torch.nn.Module, kinds: Sequence[str] = MODAL_KINDS) -> None:
        self.calls: list[tuple[str, bool, bool]] = []
        self._handles: list[Any] = []
        for name, module in model.named_modules():
            if any(c.__name__ in kinds for c in type(module).__mro__):
                self._handles.append(module.register_forward_pre_hook(self._hook(name)))

    def _hook(self, name: str) -> Callable[..., None]:
        def record(module: torch.nn.Module, args: Any) -> None:
            self.calls.append((name, bool(module.training), torch.is_grad_enabled()))

        return record

    def ran_in_train_mode(self) -> list[str]:
        """The names of the recorded modules that ran at least once in train mode, in order."""
        return list(dict.fromkeys(name for name, training, _ in self.calls if training))

    def remove(self) -> None:
        """Take the hooks off."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
