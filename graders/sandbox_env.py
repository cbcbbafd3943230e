"""The environment of a sandboxed kernel: what it keeps of the grader's variables, its own, and
the folders of the host's Python it needs.

A sandboxed kernel (:mod:`graders.sandbox`) starts with a cleared environment: only the variables
it needs to run (paths, locale, threads, the GPU, the course's settings: :data:`KERNEL_ENV`),
never the grader's others (a database password or a token its feedback could print), plus a
private ``HOME`` in its own ``/tmp`` with every tool's configuration folder inside.
"""

from __future__ import annotations

import ast
import glob
import os
import site
import tempfile
from pathlib import Path

from graders import syntax

SANDBOX_HOME = "/tmp/home"
#: Where a grading run's sandboxed kernels keep their connection files and sockets (set by
#: ``graders autograde`` to a folder of its scratch course, which it removes even when a grading
#: process is killed from outside and its kernels' own clean-up never ran).
ENV_RUN_ROOT = "GRADERS_KERNEL_RUN_ROOT"
RUN_ROOT_MAX = 64  # a socket's path is at most 107 bytes: room for the folders below it

#: The grader's variables a sandboxed kernel gets (paths, locale, threads, the GPU, the course's
#: settings), never the rest (a password, a token: student code could print them).
KERNEL_ENV = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "TERM", "LD_LIBRARY_PATH", "VIRTUAL_ENV",
                        "CONDA_PREFIX", "PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONIOENCODING",
                        "PYTHONWARNINGS", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE",
                        "PYDEVD_DISABLE_FILE_VALIDATION", "MPLBACKEND", "CUBLAS_WORKSPACE_CONFIG"})
KERNEL_ENV_PREFIXES = ("LC_", "DLWORKSHOP_", "OMP_", "KMP_", "MKL_", "OPENBLAS_", "NUMEXPR_",
                       "VECLIB_", "CUDA_", "NVIDIA_", "PYTORCH_", "CUDNN_", "TORCH_")


def kernel_environment(kernel_env: dict[str, str]) -> dict[str, str]:
    """The variables of ``kernel_env`` a sandboxed kernel keeps (:data:`KERNEL_ENV`)."""
    return {name: value for name, value in kernel_env.items()
            if name in KERNEL_ENV or name.startswith(KERNEL_ENV_PREFIXES)}


def split_paths(value: str) -> list[Path]:
    """The paths of an ``os.pathsep``-separated list (empty entries dropped)."""
    return [Path(p) for p in value.split(os.pathsep) if p]


def library_folders(kernel_env: dict[str, str]) -> list[Path]:
    """The absolute folders of ``LD_LIBRARY_PATH`` (a GPU driver's or CUDA's libraries may live
    outside the system folders a sandbox shows, e.g. under ``/opt``)."""
    found = split_paths(kernel_env.get("LD_LIBRARY_PATH", ""))
    return [p for p in found if p.is_absolute() and p != Path("/")]


def environment_args(kernel_env: dict[str, str], repo_root: Path) -> list[str]:
    """bwrap options that give the kernel a cleared environment with what it needs to run
    (:func:`kernel_environment`) and a private HOME; ``repo_root`` is dropped from
    ``PYTHONPATH`` (the kernel cannot see it)."""
    home = SANDBOX_HOME
    settings = {
        "HOME": home, "TMPDIR": "/tmp", "USER": "sandbox", "LOGNAME": "sandbox",
        "IPYTHONDIR": f"{home}/.ipython", "MPLCONFIGDIR": f"{home}/.config/matplotlib",
        "XDG_CACHE_HOME": f"{home}/.cache", "XDG_CONFIG_HOME": f"{home}/.config",
        "XDG_DATA_HOME": f"{home}/.local/share", "JUPYTER_CONFIG_DIR": f"{home}/.jupyter",
        "JUPYTER_DATA_DIR": f"{home}/.local/share/jupyter",
        "JUPYTER_RUNTIME_DIR": f"{home}/.local/share/jupyter/runtime",
        # no module of the working folder (the submission's files) imports while the kernel
        # starts (a submitted ipykernel_launcher.py ran before the agent, and in a kernel
        # started ahead, before its own run); the agent puts the folder back on sys.path
        "PYTHONSAFEPATH": "1",
    }
    args: list[str] = ["--clearenv"]  # JPY_PARENT_PID too (its poller would see PID 1 and exit)
    for name, value in {**kernel_environment(kernel_env), **settings}.items():
        args += ["--setenv", name, value]
    pythonpath = [p for p in kernel_env.get("PYTHONPATH", "").split(os.pathsep)
                  if p and Path(p).resolve() != repo_root]
    if pythonpath:
        args += ["--setenv", "PYTHONPATH", os.pathsep.join(pythonpath)]
    return args


def editable_paths() -> list[Path]:
    """Folders that editable installs put on ``sys.path`` (``.pth`` lines, editable finders)."""
    paths: list[Path] = []
    for sitedir in {*site.getsitepackages(), site.getusersitepackages()}:
        for pth in glob.glob(os.path.join(sitedir, "*.pth")):
            for line in Path(pth).read_text(errors="replace").splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "import")) and os.path.isdir(line):
                    paths.append(Path(line))
        for finder in glob.glob(os.path.join(sitedir, "__editable___*_finder.py")):
            paths.extend(finder_mapping(Path(finder)))
    return paths


def finder_mapping(finder: Path) -> list[Path]:
    """The package folders listed in a setuptools editable finder's ``MAPPING``."""
    tree = syntax.parse(finder.read_text(errors="replace"))
    for node in ast.walk(tree):
        target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
        if isinstance(target, ast.Name) and target.id == "MAPPING" and node.value is not None:
            try:
                mapping = ast.literal_eval(node.value)
            except ValueError:
                return []
            return [Path(p) for p in mapping.values()]
    return []


# Read-only caches of public data for the kernels, by the variable that points at them.
SHARED_CACHES = {"DLWORKSHOP_CACHE": ".cache/dlworkshop", "TORCH_HOME": ".cache/torch"}


def shared_caches(env: dict[str, str]) -> dict[str, Path]:
    """The :data:`SHARED_CACHES` that exist on the host, by variable (its value or the default
    under the host ``$HOME``)."""
    found = {}
    for name, below_home in SHARED_CACHES.items():
        path = Path(env.get(name) or Path(env.get("HOME") or Path.home()) / below_home)
        if path.is_dir():
            found[name] = path.resolve()
    return found


def run_folder() -> Path:
    """A new private folder for one kernel's connection file and sockets: under
    ``$GRADERS_KERNEL_RUN_ROOT`` when it is set and short enough, else the temporary folder."""
    root = os.environ.get(ENV_RUN_ROOT, "")
    if root and len(root) <= RUN_ROOT_MAX:
        os.makedirs(root, mode=0o700, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="sandbox-kernel-", dir=root))
    return Path(tempfile.mkdtemp(prefix="sandbox-kernel-"))
