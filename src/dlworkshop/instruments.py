"""Instrumented models and small probes that test cells run in the student's kernel.

A spy records how a student's training or evaluation loop calls it (mode, gradient tracking,
device and dtype of each batch); the probes compute something about a student's model where the
model lives (gradients of a loss, predictions on given inputs). None of them solves a task.
Test cells reach them as ``dlworkshop.testing.<name>``.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch


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


def model_device(model: torch.nn.Module) -> torch.device:
    """The device ``model`` lives on: that of its first parameter (or buffer), the CPU if it
    has none."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """The output length of a convolution or pooling along one axis, by the formula a task
    text states: a stand-in for a student's own while a later task's function is tested (see
    :func:`call_without_library_using`), so that a mistake there is not paid twice."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def forward_on_model_device(model: torch.nn.Module, x: torch.Tensor) -> Any:
    """``model(x)`` with ``x`` moved to the device of the model first (:func:`model_device`)."""
    return model(torch.as_tensor(x).to(model_device(model)))


def loss_gradients(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, to_model_device: bool = False
) -> dict[str, torch.Tensor | None]:
    """Each parameter's gradient of the mean cross-entropy of ``model(x)`` against ``y``, from
    zero (``model.zero_grad()`` first): None where no gradient reaches a parameter.
    ``to_model_device``: ``x`` and ``y`` are moved to the model's device first."""
    if to_model_device:
        x, y = x.to(model_device(model)), y.to(model_device(model))
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


def predict_with_random_weights(
    model: torch.nn.Module, X: Any, device: str | torch.device, seed: int
) -> torch.Tensor:
    """What :func:`predict` gives with every floating-point parameter of ``model`` replaced by
    random values of its own scale (``seed``); the trained values are put back after. A
    network whose predictions come from its weights then predicts at about chance."""
    params = [p for p in model.parameters() if p.is_floating_point()]
    saved = [p.detach().clone() for p in params]
    generator = torch.Generator().manual_seed(seed)
    try:
        with torch.no_grad():
            for p in params:
                scale = float(p.float().std()) if p.numel() > 1 else 1.0
                noise = torch.randn(p.shape, generator=generator) * (scale or 1.0)
                p.copy_(noise.to(p.device, p.dtype))
        return predict(model, X, device)
    finally:
        with torch.no_grad():
            for p, value in zip(params, saved, strict=True):
                p.copy_(value)


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


def grad_mode_after(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> tuple[Any, bool]:
    """``(func(*args, **kwargs), whether gradient tracking was on right after it returned)``,
    measured in the same call: a function that switches tracking off for good
    (``torch.set_grad_enabled(False)``) instead of inside ``with torch.no_grad():`` is seen.
    The tracking mode of before the call is put back afterwards."""
    before = torch.is_grad_enabled()
    try:
        result = func(*args, **kwargs)
        return result, torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(before)


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


def call_without_library_using(
    stand_ins: dict[str, str], names: Sequence[str], message: str, func: Callable[..., Any], /,
    *args: Any, **kwargs: Any
) -> Any:
    """:func:`call_without_library`, with each global name of ``stand_ins`` bound, in
    ``func``'s module, to the trusted function its value names (dotted, e.g.
    ``{"conv_output_size": "dlworkshop.instruments.conv_output_size"}``) during the call: a
    later task's function is tested with a correct version of an earlier task's, so that a
    mistake in the earlier one costs only its own points."""
    namespace = func.__globals__
    missing = object()
    saved = {name: namespace.get(name, missing) for name in stand_ins}
    try:
        for name, trusted in stand_ins.items():
            owner, attr = _owner_of(trusted)
            namespace[name] = getattr(owner, attr)
        return call_without_library(names, message, func, *args, **kwargs)
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def _owner_of(name: str) -> tuple[Any, str]:
    from dlworkshop import testing

    return testing._owner(name)
