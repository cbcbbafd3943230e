"""Records of what ran inside a student's model while a test cell calls it, in the student's
kernel: each layer's call (:func:`layer_calls`), what autograd computed
(:func:`autograd_recording`), the mode each layer ran in (:class:`ModeRecorder`). Like
:mod:`dlworkshop.instruments` they solve no task; test cells reach them as
``dlworkshop.testing.<name>``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from dlworkshop.instruments import _plain, model_device
from dlworkshop.introspect import in_mode

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
    functions: Sequence[str] = (), to_model_device: bool = False,
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
    ``x.tanh()``, a module) is seen: a ``TorchFunctionMode``, PyTorch's documented hook.

    ``to_model_device``: ``x`` is moved to the model's device first (:func:`model_device`)."""
    records: list[dict[str, Any]] = []
    if to_model_device:
        x = torch.as_tensor(x).to(model_device(model))
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
