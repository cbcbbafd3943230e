"""``similarity``: normalised fingerprints, a generated class with planted disguised copies, the
reports (HTML escaped, matches highlighted), and the command line. No kernel runs: student code
is only ever read."""

from __future__ import annotations

import copy
import csv
import difflib
import html
import re
import shutil
from itertools import combinations

import pytest
from nbformat.v4 import new_code_cell

from graders import cli, mutations, notebooks
from graders.course import REPO_ROOT, Course
from graders.similarity import Settings, compare_class, report, synthetic
from graders.similarity.extract import ADDED, read_cells, release_of, student_parts, student_runs
from graders.similarity.fingerprint import Vocabulary, fingerprints, tokens, winnow

ASSIGNMENT = "01_dnn"


def planted() -> dict[str, int]:
    """Whose work gets disguised copies: every alternative of 01_dnn that rewrites its cell
    (its own code, not the reference's), once; the first of them twice (a cluster of three)."""
    rewrites = sorted(f"alt-{v.name}" for v in mutations.load(ASSIGNMENT, Course(REPO_ROOT))
                      if v.kind == "alternative" and v.mutation.source is not None)
    assert len(rewrites) >= 4
    return {name: 2 if i == 0 else 1 for i, name in enumerate(rewrites)}


def norm(code: str) -> list[str]:
    return [t.text for t in tokens(code)]


# ------------------------------------------------------------------------------ tokens
def test_tokens_ignore_names_layout_comments_and_docstrings():
    original = '''
def step(self, grads):
    """Apply one update."""
    for k, g in grads.items():
        v = self.velocity[k]   # velocity
        v *= self.momentum
        self.params[k] -= self.lr * v
    return (v, k)
'''
    disguised = '''
def step(self, gradients):
    "Does the update step, written by me."
    # loop over parameters
    for name, grad in gradients.items() :
        vel = self.vel_buffer[ name ]
        vel *= self.mom; self.params[name] -= self.lr*vel
    return vel, name
'''
    assert norm(original) == norm(disguised)


def test_tokens_keep_what_renaming_cannot_change():
    # library attributes, builtins, keywords, numbers: different code stays different
    assert norm("db = dout.sum(axis=0)") != norm("db = dout.mean(axis=0)")
    assert norm("n = len(x)") != norm("n = max(x)")
    assert norm("y = x * 0.5") == norm("y = x * 0.50") != norm("y = x * 2")
    assert norm("f(a, b,)") == norm("f(a, b)")  # a trailing comma is layout
    assert norm("x = (a + b)") == norm("x = a + b")  # so are grouping parentheses
    assert norm("x = f(a + b)") != norm("x = f + (a + b)")  # a call is not grouping
    assert "S" in norm('x = "text"') and norm('"""doc"""\nx = 1') == norm("x = 1")


@pytest.mark.parametrize("junk", [
    "'''never closed", '"open\n', "x = (((", "\x00\xff garbage ` $ ?", "def f(:\n\tpass",
    "\\\n" * 5, "'" * 1001,
])
def test_tokenizer_never_fails_on_broken_text(junk):
    toks = tokens(junk)
    assert all(0 <= t.start < t.end <= len(junk) for t in toks)


def test_winnowing_keeps_a_minimum_of_every_window():
    hashes = [5, 3, 8, 3, 9, 1, 7, 7, 4]
    chosen = winnow(hashes, 4)
    for left in range(len(hashes) - 3):
        window = range(left, left + 4)
        assert any(i in chosen for i in window if hashes[i] == min(hashes[j] for j in window))
    assert winnow([4, 2], 4) == [1] and winnow([], 4) == []


def test_runs_leave_out_the_starter_code():
    starter = 'def f(x):\n    """Doc."""\n    # YOUR CODE HERE\n    raise NotImplementedError()\n'
    text = 'def f(x):\n    """Doc."""\n    y = x + 1\n\n    return y * 2\n\ndef g():\n    pass\n'
    runs = student_runs(starter, text)
    assert [text[a:b] for a, b in runs] == ["    y = x + 1\n\n    return y * 2\n",
                                            "def g():\n    pass\n"]


def test_short_units_give_no_fingerprints():
    found, count = fingerprints("x = 1", [(0, 5)], Vocabulary())
    assert found == [] and count == 3


# ------------------------------------------------------------------------ generated class
@pytest.fixture(scope="module")
def generated() -> tuple[dict, object]:
    """The generated class of 01_dnn and its comparison."""
    course = Course(REPO_ROOT)
    klass = synthetic.generated_class(course, ASSIGNMENT, planted())
    release = notebooks.read(course.release_path(ASSIGNMENT))
    reference = course.reference_submission(ASSIGNMENT)
    cmp = compare_class(ASSIGNMENT, release.cells, {k: nb.cells for k, nb in klass.items()},
                        reference.cells)
    return klass, cmp


def _copy_pairs() -> set[tuple[str, str]]:
    pairs = set()
    for name, n in planted().items():
        group = [name] + [f"copy{j}-{name}" for j in range(1, n + 1)]
        pairs.update(tuple(sorted(p)) for p in combinations(group, 2))
    return pairs


def test_every_planted_copy_ranks_above_every_independent_pair(generated):
    klass, cmp = generated
    copy_pairs = _copy_pairs()
    originals = [s for s in klass if not s.startswith("copy")]
    assert len(originals) >= 30  # the reference, every mutant and alternative
    scores = {(p.a, p.b): p.overall for p in cmp.pairs}
    independent = [scores.get(tuple(sorted(p)), 0.0) for p in combinations(originals, 2)]
    # copies of tiny work (under 10 fingerprints: a two-line cell) say little either way and
    # can tie with unrelated pairs; every other copy ranks above every independent pair and is
    # flagged (at or above the threshold)
    def tiny(a: str, b: str) -> bool:
        return min(cmp.students[a].kept_count(), cmp.students[b].kept_count()) < 10

    real = {p for p in copy_pairs if not tiny(*p)}
    assert len(real) >= 0.8 * len(copy_pairs), sorted(copy_pairs - real)  # the test has teeth
    copies = [scores.get(p, 0.0) for p in real]
    assert min(copies) > max(independent), (min(copies), max(independent))
    for a, b in real:
        assert scores[a, b] >= cmp.settings.threshold, (a, b, scores[a, b])
    ranked = [(p.a, p.b) for p in cmp.pairs]
    assert real <= set(ranked[: len(copy_pairs)])  # the copies top the ranking
    # the score is where the copied work is: the cell the alternative rewrote
    cells = {f"alt-{v.name}": v.mutation.cell for v in mutations.load(ASSIGNMENT)}
    for name in planted():
        pair = cmp.pair(name, f"copy1-{name}")
        if tiny(name, f"copy1-{name}") and pair is None:  # nothing left to share (see above)
            continue
        assert max(pair.scores, key=pair.scores.get) == cells[name]


def test_three_students_sharing_one_solution_form_a_cluster(generated):
    _, cmp = generated
    name = next(iter(planted()))
    assert [c.students for c in cmp.clusters] == [sorted([name, f"copy1-{name}",
                                                          f"copy2-{name}"])]
    cell = next(v.mutation.cell for v in mutations.load(ASSIGNMENT) if f"alt-{v.name}" == name)
    assert cmp.clusters[0].tasks == [cell]


def test_reference_code_and_common_code_do_not_count(generated):
    klass, cmp = generated
    assert cmp.students["ref"].kept_count() == 0  # the reference: what everyone may write
    course = Course(REPO_ROOT)
    release = notebooks.read(course.release_path(ASSIGNMENT))
    reference = course.reference_submission(ASSIGNMENT).cells
    for mutant in [v for v in mutations.load(ASSIGNMENT) if v.kind == "mutant"]:
        three = {"a": klass["ref"].cells, "b": klass["ref"].cells,
                 "c": klass[f"mut-{mutant.name}"].cells}
        kept = compare_class(ASSIGNMENT, release.cells, three, None, Settings(max_share=1.0))
        if kept.pair("a", "c").overall < 1.0:  # (a string changed: same tokens)
            break
    assert compare_class(ASSIGNMENT, release.cells, three, reference).pair("a", "b") is None
    assert kept.pair("a", "b").overall == 1.0  # without the reference, a and b are copies
    assert kept.pair("a", "c").overall > 0.8  # c differs in one place
    common = compare_class(ASSIGNMENT, release.cells, three, None,
                           Settings(max_share=0.7, min_common=3))
    assert common.excluded["common"] > 0  # code all three share is ignored
    assert set(common.pair("a", "b").shared) == {mutant.mutation.cell}  # where c differs


def test_html_shows_the_matching_regions_side_by_side(generated, tmp_path):
    klass, cmp = generated
    page = report.write_html(cmp, tmp_path / "r.html").read_text()
    reference = Course(REPO_ROOT).reference_submission(ASSIGNMENT)
    ref_lines = {line.strip() for c in reference.cells for line in c.source.splitlines()}
    for variant in mutations.load(ASSIGNMENT):
        name = f"alt-{variant.name}"
        if name not in planted():
            continue
        pair = cmp.pair(name, f"copy1-{name}")
        if pair is None or pair.overall < cmp.settings.threshold:  # tiny copied work (see the
            # ranking test): its disguise can leave it nothing in common with the original
            assert min(cmp.students[name].kept_count(),
                       cmp.students[f"copy1-{name}"].kept_count()) < 10
            continue
        section = re.search(rf'<section id="pair-\d+"><h3>\d+\. {re.escape(name)} and '
                            rf"copy1-{re.escape(name)}: .*?</section>", page, re.S)
        assert section, f"{name} and its copy have their own section"
        assert section.group().count("<pre>") == 2 * len(cmp.pair(name, f"copy1-{name}").shared)
        assert f"<h4>{variant.mutation.cell}: " in section.group()
        assert '<span class="starter">' in section.group()  # release code shown dimmed
        marked = html.unescape("".join(re.findall(r'<span class="match">(.*?)</span>',
                                                  section.group(), re.S)))
        # the alternative's own code (lines the reference does not have) is highlighted
        own = [line.strip() for line in variant.mutation.source.splitlines()
               if len(line.strip()) > 12 and line.strip() not in ref_lines
               and not line.strip().startswith(("#", '"'))]
        longest = max(difflib.SequenceMatcher(None, line, marked, autojunk=False)
                      .find_longest_match().size for line in own)
        assert longest >= 12, (name, own, marked[:300])
    rows = list(csv.DictReader(open(report.write_csv(cmp, tmp_path / "p.csv"))))
    assert (rows[0]["rank"], float(rows[0]["overall"])) == ("1", cmp.pairs[0].overall)
    assert set(cmp.tasks) <= set(rows[0])


def test_terminal_table_lists_pairs_and_clusters(generated):
    _, cmp = generated
    text = report.table(cmp)
    assert f"copy1-{next(iter(planted()))}" in text and "cluster of 3" in text
    assert text.splitlines()[2].split()[0] == "1"


# --------------------------------------------------------------------------- hostile input
HOSTILE = '</pre><script>alert("x")</script><img src=x onerror=alert(1)>'


def test_student_text_cannot_inject_script(tmp_path):
    course = Course(REPO_ROOT)
    release = notebooks.read(course.release_path(ASSIGNMENT))
    nb = synthetic.variants(course, ASSIGNMENT)[next(iter(planted()))][0]
    evil = copy.deepcopy(nb)
    for cell in evil.cells:
        if notebooks.is_solution(cell) and cell.cell_type == "code":
            cell.source = cell.source.replace("\n", f"  # {HOSTILE}\n", 3) + f'\ns = "{HOSTILE}"\n'
    evil.cells.append(new_code_cell(f"# {HOSTILE}\nvalue = compute_things(1, 2, 3) + other(4)\n"
                                    f"print('{HOSTILE}')"))
    klass = {"<b>mallory</b>": evil.cells, "trudy": evil.cells, "ref": nb.cells}
    cmp = compare_class(ASSIGNMENT, release.cells, klass, None, Settings(min_common=9))
    assert cmp.pair("<b>mallory</b>", "trudy").overall == 1.0
    assert ADDED in cmp.pair("<b>mallory</b>", "trudy").scores
    page = report.write_html(cmp, tmp_path / "r.html").read_text()
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "<b>mallory" not in page and "&lt;b&gt;mallory&lt;/b&gt;" in page
    assert html.escape(HOSTILE) in page or html.escape(HOSTILE, quote=True) in page
    assert "default-src 'none'" in page  # and a policy that forbids scripts anyway


def test_odd_notebooks_are_read_as_data_or_skipped(tmp_path):
    bad = tmp_path / "bad.ipynb"
    for content in (b"not json", b"[1, 2]", b'{"cells": 5}'):
        bad.write_bytes(content)
        with pytest.raises(ValueError):
            read_cells(bad)
    release = release_of([{"cell_type": "code", "source": "x = 1",
                           "metadata": {"nbgrader": {"grade_id": "t", "solution": True}}}])
    odd = [5, None, {"cell_type": "code", "source": ["y = ", 2, "3\n"], "metadata": []},
           {"cell_type": "code", "source": {"a": 1}, "metadata": {"nbgrader": "x"}}]
    assert student_parts(odd, release) == {ADDED: student_parts(odd[2:3], release)[ADDED]}


# ------------------------------------------------------------------------------ command line
def test_cli_similarity_writes_reports_and_skips_broken_files(tmp_path, capsys):
    root = tmp_path / "course"
    course = Course.scratch(root)
    shutil.copytree(REPO_ROOT / "release" / ASSIGNMENT, root / "release" / ASSIGNMENT)
    alt = next(iter(planted()))
    klass = synthetic.generated_class(Course(REPO_ROOT), ASSIGNMENT, {alt: 2})
    mutant = next(name for name in klass if name.startswith("mut-"))
    for name in ("ref", alt, f"copy1-{alt}", f"copy2-{alt}", mutant):
        course.submit(name, ASSIGNMENT, klass[name])
    course.submit("broken", ASSIGNMENT, b"{ not json")
    (root / "submitted" / "other-assignment-only" / "02_cnn").mkdir(parents=True)
    out = tmp_path / "out"
    code = cli.main(["--root", str(root), "similarity", ASSIGNMENT, "--threshold", "0.6",
                     "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "5 submissions compared, 1 skipped; threshold 60%" in text
    assert "skipped broken: not a readable notebook" in text
    assert f"cluster of 3: {alt}, copy1-{alt}, copy2-{alt}" in text
    assert (out / "pairs.csv").is_file() and (out / "report.html").is_file()
    assert "other-assignment-only" not in (out / "pairs.csv").read_text()
    with pytest.raises(SystemExit, match="threshold"):
        cli.main(["--root", str(root), "similarity", ASSIGNMENT, "--threshold", "2"])
    with pytest.raises(SystemExit, match="unknown assignment"):
        cli.main(["--root", str(root), "similarity", "nope"])
    default = cli.main(["--root", str(root), "similarity", ASSIGNMENT])
    assert default == 0 and (root / "reports/similarity" / ASSIGNMENT / "report.html").is_file()


def test_render_code_marks_starter_student_and_matching_text():
    text = "def f(x):\n    y = x + 1\n    return y\n"
    runs = [(10, 37)]
    got = report.render_code(text, runs, [(14, 23), (20, 27)])
    assert got == ('<span class="starter">def f(x):\n</span>    '
                   '<span class="match">y = x + 1\n   </span> return y\n')
    assert report.spreadsheet_safe("=cmd()") == "'=cmd()"
    assert report.spreadsheet_safe("ann") == "ann"
