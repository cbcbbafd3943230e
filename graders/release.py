"""What ``graders release`` adds to ``nbgrader generate_assignment``: notebook metadata that
JupyterLab would write itself, and the students' links (install line, "Open in Colab").

**Metadata.** nbgrader copies the source notebook's metadata into the release; JupyterLab, on
opening a notebook, replaces ``kernelspec`` and ``language_info`` with what the kernel reports
and marks the notebook modified when they differ, and autosave then rewrites the file.
:func:`clean_metadata` writes exactly what a Python 3 ipykernel reports (``kernel_info`` reply),
for the Python that makes the release (the course's environment), so opening a release notebook
changes nothing.

**Links.** The course's repository is configured in the course root's ``pyproject.toml``::

    [tool.dlworkshop]
    repository = "https://github.com/<owner>/<repo>"
    branch = "main"          # optional, default "main"

From it come the students' install line (``pip install "dlworkshop @ git+<repository>@<branch>"``)
and, for a GitHub repository, an "Open in Colab" link per release notebook. ``graders release``
prints them and rewrites the block of the course's ``README.md`` between :data:`BEGIN` and
:data:`END` (nothing else of the README).
"""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "BEGIN", "BADGE", "END", "KERNELSPEC", "ReleaseLinks", "clean_metadata", "language_info",
    "notebook_metadata", "publish_links", "readme_block", "repository_config", "update_readme",
]  # fmt: skip

#: the kernelspec of ipykernel's default kernel, as JupyterLab writes it
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
BEGIN = "<!-- release links: begin (written by `python -m graders release`; do not edit) -->"
END = "<!-- release links: end -->"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
_GITHUB = re.compile(r"^https://github\.com/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+?)(?:\.git)?/?$")


# ---------------------------------------------------------------------------------- metadata
def language_info(python_version: str | None = None) -> dict:
    """``language_info`` as ipykernel's ``kernel_info`` reply gives it for Python
    ``python_version`` (default: this interpreter's, e.g. ``"3.11.7"``)."""
    version = python_version or platform.python_version()
    major = int(version.split(".")[0])
    return {
        "codemirror_mode": {"name": "ipython", "version": major},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": f"ipython{major}",
        "version": version,
    }


def notebook_metadata(python_version: str | None = None) -> dict:
    """The notebook-level ``kernelspec`` and ``language_info`` JupyterLab writes."""
    return {"kernelspec": dict(KERNELSPEC), "language_info": language_info(python_version)}


def clean_metadata(path: str | Path, python_version: str | None = None) -> bool:
    """Give the notebook at ``path`` :func:`notebook_metadata` (other metadata keys are kept);
    the file is rewritten only if that changes it. Returns whether it did."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    wanted = notebook_metadata(python_version)
    if all(nb.metadata.get(k) == v for k, v in wanted.items()):
        return False
    nb.metadata.update(nbformat.from_dict(wanted))
    nbformat.write(nb, str(path))
    return True


# ------------------------------------------------------------------------------------- links
@dataclass(frozen=True)
class ReleaseLinks:
    """The course repository (``[tool.dlworkshop]`` of ``pyproject.toml``) and its links."""

    repository: str = ""
    branch: str = "main"

    @property
    def install_line(self) -> str | None:
        """The pip command that installs the course package (None without a repository)."""
        if not self.repository:
            return None
        return f'pip install "dlworkshop @ git+{self.repository}@{self.branch}"'

    def colab_url(self, repo_path: str) -> str | None:
        """Colab's URL opening ``repo_path`` (a file of the repository, e.g.
        ``release/01_dnn/01_dnn.ipynb``) from GitHub; None unless it is a GitHub repository."""
        match = _GITHUB.match(self.repository)
        if not match:
            return None
        return (f"https://colab.research.google.com/github/{match['owner']}/{match['repo']}"
                f"/blob/{self.branch}/{repo_path}")


def repository_config(root: str | Path) -> ReleaseLinks:
    """``[tool.dlworkshop]`` ``repository`` and ``branch`` of ``root/pyproject.toml``
    (empty when the file or the table is absent). ValueError for a malformed repository."""
    path = Path(root) / "pyproject.toml"
    table = {}
    if path.is_file():
        with path.open("rb") as fh:
            table = tomllib.load(fh).get("tool", {}).get("dlworkshop", {})
    repository = str(table.get("repository", "")).strip().rstrip("/")
    branch = str(table.get("branch", "main")).strip() or "main"
    if repository and not re.match(r"^[a-z][a-z0-9+.-]*://\S+$", repository):
        raise ValueError(
            f"{path}: [tool.dlworkshop] repository = {repository!r} is not a URL "
            "(e.g. https://github.com/<owner>/<repo>)")
    return ReleaseLinks(repository, branch)


def readme_block(config: ReleaseLinks, notebooks: Iterable[tuple[str, str]]) -> str:
    """The README's release-links block (markers included) for ``(assignment, repo_path)``."""
    lines = [BEGIN]
    if config.install_line:
        lines.append(f"Install line: `{config.install_line}` (in Colab: `!{config.install_line}` "
                     "in a first cell).")
    else:
        lines.append("Install line: `pip install \"dlworkshop @ git+<course repository URL>\"` "
                     "(instructors: set `repository = \"https://github.com/<owner>/<repo>\"` "
                     "under `[tool.dlworkshop]` in `pyproject.toml` and run `python -m graders "
                     "release`: the URL and an \"Open in Colab\" link per notebook appear here; "
                     "the repository is not configured yet).")
    lines += ["", "| assignment | notebook | Colab |", "| --- | --- | --- |"]
    for assignment, path in notebooks:
        url = config.colab_url(path)
        colab = f"[![Open In Colab]({BADGE})]({url})" if url else "-"
        lines.append(f"| `{assignment}` | [`{path}`]({path}) | {colab} |")
    lines.append(END)
    return "\n".join(lines)


def update_readme(readme: str | Path, block: str) -> bool:
    """Replace the block between :data:`BEGIN` and :data:`END` of ``readme`` by ``block``.
    Returns whether the file changed; False (untouched) when it lacks the markers."""
    readme = Path(readme)
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return False
    new = text[:start] + block + text[end + len(END):]
    if new == text:
        return False
    readme.write_text(new, encoding="utf-8")
    return True


def publish_links(root: str | Path, notebooks: Iterable[tuple[str, str]]) -> list[str]:
    """Update ``root/README.md``'s block for ``(assignment, repo_path)`` pairs (paths relative
    to ``root``, the repository's root) from ``root/pyproject.toml``; return the lines
    ``graders release`` prints: the install line and each notebook's Colab link, or a hint."""
    root, notebooks = Path(root), list(notebooks)
    config = repository_config(root)
    if not config.repository:
        out = ["no course repository configured ([tool.dlworkshop] repository in "
               "pyproject.toml): no install line or Colab links"]
    else:
        out = [f"students install with: {config.install_line}"]
        out += [f"open {a} in Colab: {config.colab_url(p)}" for a, p in notebooks
                if config.colab_url(p)]
    if update_readme(root / "README.md", readme_block(config, notebooks)):
        out.append("README.md: release links updated")
    return out
