"""Helpers that test cells use to run things in *your* kernel.

When you run a notebook yourself, the tests and your code share one Python process and these
helpers simply call what they are given. When the course grades your notebook, the tests run in
a separate, trusted process and reach your functions and objects through a narrow channel; an
object your code must work on (a model, a data loader, an optimizer) then has to be made in your
kernel, next to your code: ``student_side(transfer.resnet18)(num_classes=4)`` builds the ResNet
there and gives the test a handle to it. Nothing here gives away an answer.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import re
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any, Protocol


class StudentKernel(Protocol):
    """What the grader provides while a test cell runs (see ``graders.verdict``)."""

    def owns(self, obj: object) -> bool: ...

    def import_object(self, module: str, path: str) -> Any: ...

    def place(self, value: Any) -> Any: ...

    def fetch(self, obj: Any) -> Any: ...

    def ship(self, obj: Any) -> Any: ...


_kernel: StudentKernel | None = None


def set_student_kernel(kernel: StudentKernel | None) -> StudentKernel | None:
    """Install the grader's channel to the student's kernel (None: none); returns the previous.
    Only the grader calls this."""
    global _kernel
    previous, _kernel = _kernel, kernel
    return previous


def _locate(obj: object) -> tuple[str, str]:
    """``(module, attribute path)`` of a module, a module-level function or class, or a dotted
    name such as ``"torch.nn.functional.conv2d"``."""
    if isinstance(obj, str):
        parts = obj.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            return ".".join(parts[:cut]), ".".join(parts[cut:])
        raise ValueError(f"no module in {obj!r}")
    if isinstance(obj, ModuleType):
        return obj.__name__, ""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise TypeError(
            f"student_side needs a module, a module-level function or class, or a dotted name; "
            f"got {obj!r}"
        )
    return module, qualname


def student_side(obj: Any) -> Any:
    """``obj`` as the student's kernel has it: the same module, function or class, imported
    there (a handle to it while grading; ``obj`` itself otherwise)."""
    if _kernel is None or _kernel.owns(obj):
        return obj if not isinstance(obj, str) else _import_here(obj)
    return _kernel.import_object(*_locate(obj))


def place(value: Any) -> Any:
    """``value`` (data: arrays, tensors, numbers, containers of those) where your code runs:
    while grading, a copy kept in your kernel (a handle to it); otherwise ``value`` itself. Use
    it for an object your code must change in place, and :func:`fetch` to read it back."""
    return value if _kernel is None else _kernel.place(value)


def student_copy(obj: Any) -> Any:
    """A copy of ``obj`` (a model, a data loader, an optimizer: anything PyTorch can save whose
    classes your kernel can import) for your code to work on: made in your kernel while grading,
    a deep copy otherwise. The test keeps ``obj`` to compute what to expect."""
    if _kernel is None:
        return copy.deepcopy(obj)
    return _kernel.ship(obj)


def fetch(obj: Any) -> Any:
    """The current value of ``obj`` as data: ``obj`` itself, or, while grading, the data of the
    object in your kernel that ``obj`` stands for."""
    return obj if _kernel is None or not _kernel.owns(obj) else _kernel.fetch(obj)


def _import_here(name: str) -> Any:
    module, path = _locate(name)
    value: Any = importlib.import_module(module)
    for part in filter(None, path.split(".")):
        value = getattr(value, part)
    return value


# ------------------------------------------------------------------------- procedures
def _owner(name: str) -> tuple[Any, str]:
    module, path = _locate(name)
    if not path:
        raise ValueError(f"{name!r} names a module, not a function")
    owner: Any = importlib.import_module(module)
    *parents, attr = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    return owner, attr


OPERATIONS = "aten::"  # a name with this prefix is a pattern of PyTorch operations

#: NumPy's, SciPy's and OpenCV's functions that convolve or correlate: a test of a convolution
#: written by hand switches them off with PyTorch's (names of packages not installed are
#: skipped: nothing can call them).
ARRAY_CONVOLUTIONS = (
    "numpy.convolve", "numpy.correlate",
    "scipy.signal.convolve", "scipy.signal.correlate", "scipy.signal.convolve2d",
    "scipy.signal.correlate2d", "scipy.signal.fftconvolve", "scipy.signal.oaconvolve",
    "scipy.ndimage.convolve", "scipy.ndimage.correlate", "scipy.ndimage.convolve1d",
    "scipy.ndimage.correlate1d", "cv2.filter2D",
)
#: The same for max pooling: maximum filters, dilations and block reductions.
ARRAY_MAX_POOLINGS = (
    "scipy.ndimage.maximum_filter", "scipy.ndimage.maximum_filter1d",
    "scipy.ndimage.grey_dilation", "skimage.measure.block_reduce", "cv2.dilate",
)


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name.split(".")[0]) is not None


@contextlib.contextmanager
def switched_off(names: Sequence[str], message: str) -> Iterator[None]:
    """Inside the block, calling any of the functions ``names`` (dotted, e.g.
    ``"torch.nn.functional.conv2d"``) raises ``AssertionError(message)``.

    A name ``"aten::<regular expression>"`` switches off every PyTorch operation whose name the
    expression finds (``"aten::conv(olution|\\d)"``: ``F.conv2d``, ``torch.convolution``,
    ``nn.Conv2d`` ... all run the operation ``convolution``): what a function does, whatever
    name or alias calls it. A name in a package that is not installed is skipped."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(message)

    patterns = [n.removeprefix(OPERATIONS) for n in names if n.startswith(OPERATIONS)]
    saved = []
    with contextlib.ExitStack() as stack:
        if patterns:
            stack.enter_context(_operations_off(re.compile("|".join(patterns)), message))
        try:
            for name in names:
                if name.startswith(OPERATIONS) or not _installed(name):
                    continue
                owner, attr = _owner(name)
                saved.append((owner, attr, getattr(owner, attr)))
                setattr(owner, attr, refuse)
            yield
        finally:
            for owner, attr, value in reversed(saved):
                setattr(owner, attr, value)


def _operations_off(pattern: re.Pattern[str], message: str) -> Any:
    """A PyTorch dispatch mode in which an operation whose name ``pattern`` finds raises
    ``AssertionError(message)``. It sees operations after PyTorch's own decompositions, so an
    alias or a wrapper of a switched-off function reaches it as the same operation.
    (``__torch_dispatch__`` modes are PyTorch's documented extension point for this, e.g.
    ``torch.utils.flop_counter``; the class lives in a module PyTorch names private.)"""
    from torch.utils._python_dispatch import TorchDispatchMode

    class OperationsOff(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            if pattern.search(func.overloadpacket.__name__):
                raise AssertionError(message)
            return func(*args, **(kwargs or {}))

    return OperationsOff()


def call_without(
    names: Sequence[str], message: str, func: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Any:
    """``func(*args, **kwargs)`` with the functions ``names`` switched off (see
    :func:`switched_off`): a test that asks you to write something yourself uses this."""
    with switched_off(names, message):
        return func(*args, **kwargs)


def held_out(X: Any, y: Any, seed: int, noise: float = 1 / 255) -> tuple[Any, Any]:
    """The held-out examples ``(X, y)`` as a hidden test shows them to your model: in an order
    and with a noise (uniform, at most ``noise``: one grey level of an 8-bit image, clipped to
    the range of ``X``) both drawn from ``seed``, a number only the hidden test knows. A model
    that classifies what it sees is unaffected; one that looks its inputs up in the test split
    your kernel can load (by their bytes, or by their order) finds nothing."""
    import numpy as np

    rng = np.random.default_rng(seed)
    X, y = np.asarray(X), np.asarray(y)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    if np.issubdtype(X.dtype, np.floating) and X.size:
        shaken = X + rng.uniform(-noise, noise, X.shape).astype(X.dtype)
        X = np.clip(shaken, X.min(), X.max()).astype(X.dtype)
    return X, y


#: How far above chance a model may still classify with random weights (it is at chance, give
#: or take a few points for a class a random network happens to favour).
RANDOM_WEIGHTS_MARGIN = 0.25


def held_out_accuracy(
    model: Any, X: Any, y: Any, *, seed: int, device: Any,
    prepare: Callable[[Any], Any] | None = None, name: str = "the model",
) -> float:
    """Accuracy of the student's ``model`` on the held-out examples ``held_out(X, y, seed)``
    (``prepare`` turns them into the model's input), measured where the model lives, and
    checked to come from its weights: with every weight replaced by random values it must
    classify about at chance. A model that looked its inputs up among the examples its kernel
    can load (the shaking of :func:`held_out` is too small to hide them from a nearest
    neighbour) scored full accuracy without training; it fails here (AssertionError)."""
    import numpy as np

    X, y = held_out(X, y, seed=seed)
    inputs = prepare(X) if prepare is not None else X
    labels = np.asarray(y)
    predicted = student_side("dlworkshop.instruments.predict")(model, inputs, device)
    accuracy = float((np.asarray(fetch(predicted)) == labels).mean())
    control = student_side("dlworkshop.instruments.predict_with_random_weights")(
        model, inputs, device, seed % 2**31)
    at_random = float((np.asarray(fetch(control)) == labels).mean())
    chance = 1 / max(len(np.unique(labels)), 1)
    assert at_random <= chance + RANDOM_WEIGHTS_MARGIN, (
        f"{name} still classifies {at_random:.0%} of the held-out examples when its weights are "
        f"replaced by random ones (chance is about {chance:.0%}): its predictions must come "
        "from its trained weights, not from examples it looks up")
    return accuracy


# Instrumented models and small probes (dlworkshop.instruments) and the records of what ran in
# a model (dlworkshop.recorders) are reachable from here too (testing.SpyLinear, ...), imported
# on first use so that this module costs no torch import.
_INSTRUMENTS = ("SpyLinear", "toy_data", "tensor_loader", "toy_loader", "fill_grads",
                "loss_gradients", "forward_on", "predict", "Spy", "SpySGD", "MarkedLoader",
                "call_recording", "call_without_library", "model_device",
                "forward_on_model_device", "call_without_library_using", "conv_output_size",
                "predict_with_random_weights")
_RECORDERS = ("layer_calls", "autograd_recording", "ModeRecorder")


def __getattr__(name: str) -> Any:
    if name in _INSTRUMENTS:
        from dlworkshop import instruments

        return getattr(instruments, name)
    if name in _RECORDERS:
        from dlworkshop import recorders

        return getattr(recorders, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
