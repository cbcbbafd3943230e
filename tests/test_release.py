"""release/ is exactly what nbgrader generates from source/ now, and leaks nothing."""

from __future__ import annotations

import json
import re

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel

from graders import notebooks
from graders import release as release_mod
from graders.course import REPO_ROOT, Course

COURSE = Course()
ASSIGNMENTS = COURSE.assignments()
pytestmark = pytest.mark.xdist_group("nbgrader")


def _inside_markers(source: str, begin: str, end: str) -> list[str]:
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip().startswith(begin):
            inside = True
        elif line.strip().startswith(end):
            inside = False
        elif inside:
            lines.append(line.strip())
    return lines


def _without_python_version(nb: dict) -> dict:
    """The notebook, but ``language_info.version`` (the Python that made the release: the
    course's environment, which CI on another Python does not share; its form is checked in
    test_release_metadata_is_what_jupyterlab_writes)."""
    nb["metadata"].get("language_info", {}).pop("version", None)
    return nb


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_is_in_sync_with_source(released, assignment):
    generated = released.release_path(assignment)
    committed = COURSE.release_path(assignment)
    assert committed.exists(), f"{committed} is missing: run `make release` and commit it"
    assert _without_python_version(json.loads(committed.read_text())) == _without_python_version(
        json.loads(generated.read_text())), (
        f"{committed} differs from what `nbgrader generate_assignment` makes from source/ now: "
        "run `make release` and commit the result"
    )
    shipped = sorted(p.name for p in committed.parent.iterdir())
    assert shipped == sorted(p.name for p in generated.parent.iterdir())


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_contains_no_solution_and_no_hidden_test(assignment):
    source = notebooks.read(COURSE.source_path(assignment))
    release = notebooks.read(COURSE.release_path(assignment))
    text = COURSE.release_path(assignment).read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS"):
        assert marker not in text, f"release notebook contains {marker!r}"
    by_id = {notebooks.grade_id(c): c for c in release.cells}
    for cell in source.cells:
        gid = notebooks.grade_id(cell)
        if notebooks.is_solution(cell):
            secret = _inside_markers(cell.source, "### BEGIN SOLUTION", "### END SOLUTION")
        elif notebooks.is_test(cell):
            secret = _inside_markers(cell.source, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
        else:
            continue
        visible = notebooks.strip_hidden_tests(cell.source) if notebooks.is_test(cell) else ""
        released = {ln.strip() for ln in by_id[gid].source.splitlines()}
        shown = {ln.strip() for ln in visible.splitlines()}
        leaked = [ln for ln in secret if len(ln) > 12 and ln in released and ln not in shown]
        assert not leaked, f"{gid}: release shows {leaked[:3]}"
        assert secret, f"{gid}: has no solution/hidden block (is it marked up correctly?)"


# ------------------------------------------------------------------- metadata JupyterLab writes
def _kernel_reports() -> tuple[dict, dict]:
    """(kernelspec as JupyterLab writes it, language_info) of a real ``python3`` kernel."""
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        info = kc.kernel_info(reply=True, timeout=60)["content"]["language_info"]
        spec = km.kernel_spec
        return {"display_name": spec.display_name, "language": spec.language,
                "name": km.kernel_name}, info
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_metadata_is_what_a_real_ipykernel_reports():
    kernelspec, language_info = _kernel_reports()
    assert release_mod.KERNELSPEC == kernelspec
    assert release_mod.language_info() == language_info
    assert release_mod.notebook_metadata() == {"kernelspec": kernelspec,
                                                "language_info": language_info}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_metadata_is_what_jupyterlab_writes(assignment):
    """Opening a release notebook changes nothing: JupyterLab sets kernelspec and language_info
    from the kernel (a no-op when equal) and the server saves with nbformat (same bytes)."""
    path = COURSE.release_path(assignment)
    raw = path.read_text(encoding="utf-8")
    meta = json.loads(raw)["metadata"]
    version = meta.get("language_info", {}).get("version", "")
    assert re.fullmatch(r"3\.\d+\.\d+", version), (
        f"{path}: language_info.version {version!r} is not a Python version: run `make release`")
    assert meta == {**meta, **release_mod.notebook_metadata(version)}, (
        f"{path}: kernelspec/language_info are not what JupyterLab writes: run `make release`")
    nb = nbformat.reads(raw, as_version=4)
    saved = nbformat.writes(nb)
    assert saved + ("" if saved.endswith("\n") else "\n") == raw, (
        f"{path}: saving it unchanged through nbformat (as jupyter_server does) changes the file")


def test_clean_metadata_rewrites_only_what_differs(tmp_path):
    path = tmp_path / "a.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", id="c1")])
    nb.metadata = {"kernelspec": {"name": "python3"}, "language_info": {"name": "python"},
                   "course": {"kept": True}}
    nbformat.write(nb, str(path))
    assert release_mod.clean_metadata(path, python_version="3.12.4") is True
    meta = nbformat.read(path, as_version=4).metadata
    assert meta["course"] == {"kept": True}, "other metadata is kept"
    assert meta["kernelspec"] == release_mod.KERNELSPEC
    assert meta["language_info"]["version"] == "3.12.4"
    assert meta["language_info"]["pygments_lexer"] == "ipython3"
    before = path.read_bytes()
    assert release_mod.clean_metadata(path, python_version="3.12.4") is False
    assert path.read_bytes() == before


# --------------------------------------------------------------- students' links (README, Colab)
def _course_root(tmp_path, table: str, readme: str | None = None):
    (tmp_path / "pyproject.toml").write_text(f"[project]\nname = 'x'\n\n{table}\n")
    if readme is not None:
        (tmp_path / "README.md").write_text(readme)
    return tmp_path


NOTEBOOKS = [("01_dnn", "release/01_dnn/01_dnn.ipynb"), ("02_cnn", "release/02_cnn/02_cnn.ipynb")]


def test_links_from_a_github_repository(tmp_path):
    root = _course_root(tmp_path, '[tool.dlworkshop]\nrepository = "https://github.com/uni/dl-course.git"\n')
    config = release_mod.repository_config(root)
    assert config == release_mod.ReleaseLinks("https://github.com/uni/dl-course.git", "main")
    assert config.install_line == (
        'pip install "dlworkshop @ git+https://github.com/uni/dl-course.git@main"')
    assert config.colab_url("release/01_dnn/01_dnn.ipynb") == (
        "https://colab.research.google.com/github/uni/dl-course/blob/main/"
        "release/01_dnn/01_dnn.ipynb")
    assert release_mod.ReleaseLinks("https://github.com/uni/dl-course", "ws26").colab_url(
        "a.ipynb") == "https://colab.research.google.com/github/uni/dl-course/blob/ws26/a.ipynb"


def test_links_from_another_host_have_no_colab_link(tmp_path):
    root = _course_root(tmp_path, '[tool.dlworkshop]\nrepository = "https://gitlab.com/uni/dl"\n'
                                  'branch = "stable"\n')
    config = release_mod.repository_config(root)
    assert config.install_line == 'pip install "dlworkshop @ git+https://gitlab.com/uni/dl@stable"'
    assert config.colab_url("release/01_dnn/01_dnn.ipynb") is None
    block = release_mod.readme_block(config, NOTEBOOKS)
    assert "colab.research.google.com" not in block and "| - |" in block


def test_unconfigured_or_malformed_repository(tmp_path):
    assert release_mod.repository_config(tmp_path) == release_mod.ReleaseLinks()
    config = release_mod.repository_config(_course_root(tmp_path, "[tool.dlworkshop]\n"))
    assert config.install_line is None and config.colab_url("a.ipynb") is None
    assert "not configured yet" in release_mod.readme_block(config, NOTEBOOKS)
    _course_root(tmp_path, '[tool.dlworkshop]\nrepository = "github.com/uni/dl"\n')
    with pytest.raises(ValueError, match="is not a URL"):
        release_mod.repository_config(tmp_path)


def test_publish_links_rewrites_only_the_readme_block(tmp_path):
    readme = f"# Course\n\nbefore\n{release_mod.BEGIN}\nold\n{release_mod.END}\nafter\n"
    root = _course_root(tmp_path, '[tool.dlworkshop]\nrepository = "https://github.com/uni/dl"\n',
                        readme)
    out = release_mod.publish_links(root, NOTEBOOKS)
    assert out[0] == 'students install with: pip install "dlworkshop @ git+https://github.com/uni/dl@main"'
    assert out[1] == ("open 01_dnn in Colab: https://colab.research.google.com/github/uni/dl/blob/"
                      "main/release/01_dnn/01_dnn.ipynb")
    assert out[-1] == "README.md: release links updated"
    text = (root / "README.md").read_text()
    assert text.startswith("# Course\n\nbefore\n") and text.endswith("\nafter\n")
    assert "old" not in text
    colab = "https://colab.research.google.com/github/uni/dl/blob/main/release/02_cnn/02_cnn.ipynb"
    assert f"| `02_cnn` | [`release/02_cnn/02_cnn.ipynb`](release/02_cnn/02_cnn.ipynb) | " \
           f"[![Open In Colab]({release_mod.BADGE})]({colab}) |" in text
    assert release_mod.publish_links(root, NOTEBOOKS)[-1] != "README.md: release links updated"
    assert (root / "README.md").read_text() == text, "a second run changes nothing"
    (root / "README.md").write_text("no markers\n")
    release_mod.publish_links(root, NOTEBOOKS)
    assert (root / "README.md").read_text() == "no markers\n"


def test_readme_links_are_up_to_date():
    shipped = [(a, COURSE.release_path(a).relative_to(COURSE.root).as_posix()) for a in ASSIGNMENTS]
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert release_mod.BEGIN in text, "README.md lacks the release-links block"
    block = release_mod.readme_block(release_mod.repository_config(REPO_ROOT), shipped)
    assert block in text, "README.md's release links are stale: run `make release`"
