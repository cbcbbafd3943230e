"""``python -m graders demo`` (``make demo``): the whole grading path on sample submissions.

For each assignment: release it, derive the sample submissions (:mod:`graders.samples`, the
adversarial ones included), hand two more students in through :mod:`graders.collect`, autograde
them all with :mod:`graders.parallel`, print the table and whether each sample got the status
(and lost the test cells) it deserves, write every graded student's feedback and check that no
hidden-test line is in it. Finally the export (:mod:`graders.export`) of the whole gradebook,
Canvas's and Moodle's grade import files, and each assignment's similarity report
(:mod:`graders.similarity`: the most similar pairs of the sample class).
"""

from __future__ import annotations

import shutil
import time

import nbformat
from nbformat import NotebookNode

from graders import collect, export, notebooks, parallel, report, samples, similarity
from graders.course import Course
from graders.gradebook import SubmissionGrade

COLLECTED = ("renamed", "text-only")  # students the demo hands in through `collect`
CELL_TIMEOUT = 90  # s: the longest real cell takes 10 to 30 s on 2 busy cores


def demo_students(course: Course, assignments: list[str]) -> list[str]:
    """Every student id the demo uses for these assignments."""
    names = {*samples.ADVERSARIAL_STUDENTS, *samples.HOSTILE_STUDENTS, *COLLECTED}
    for assignment in assignments:
        names.update(samples.student_names(assignment, course=course))
    return sorted(names)


def run(course: Course, assignments: list[str]) -> bool:
    """Run the demo for ``assignments``; True when every sample was graded as expected."""
    sandboxed = parallel.plan_sandbox(True).active
    ok = True
    # Earlier demo students block regenerating a changed notebook (nbgrader refuses to change
    # cells that have submissions): remove them (with all their grades) once, before grading
    # anything, so that every assignment's demo grades stay in the gradebook for the export.
    # Real students are left alone.
    course.remove_students(demo_students(course, assignments))
    for assignment in assignments:
        start = time.perf_counter()
        built = prepare(course, assignment, escape=sandboxed)
        print(f"\n== {assignment}: autograding {len(built)} sample submissions in parallel ...")
        jobs = [parallel.Job(assignment, s.student) for s in built]
        settings = parallel.Settings(cell_timeout=CELL_TIMEOUT)
        results = report.grade_and_report(course, jobs, settings)
        ok &= check(built, results)
        ok &= write_feedback(course, assignment, results)
        print(f"({time.perf_counter() - start:.0f} s)")
    print()
    print(export.write_reports(course).summary())
    for platform in ("canvas", "moodle"):
        print(export.write_lms(course, platform).summary())
    for assignment in assignments:
        print(f"\n== {assignment}: similarity of the sample class")
        print(similarity.run(course, assignment).summary())
    print("every sample graded as expected" if ok else "SOME SAMPLES WERE NOT GRADED AS EXPECTED")
    return ok


def prepare(course: Course, assignment: str, escape: bool) -> list[samples.Sample]:
    """Release ``assignment`` and submit its samples (replacing earlier submissions of it);
    ``escape`` adds the students that write outside their folder or fill the disk (only safe
    sandboxed)."""
    course.generate_release(assignment)
    built = samples.build(course, assignment)
    built += samples.adversarial(course, assignment, escape=escape, disk=escape)
    built += samples.hostile_samples(course, assignment)
    for student in course.submitted_students():
        shutil.rmtree(course.folder("submitted", student, assignment), ignore_errors=True)
    for sample in built:
        course.submit(sample.student, assignment, sample.notebook)
    return built + hand_in_through_collect(course, assignment, built[0].notebook)


def hand_in_through_collect(
    course: Course, assignment: str, reference: NotebookNode
) -> list[samples.Sample]:
    """Hand two more students in the way a class does, through ``collect``: one saved the
    notebook as "Copy of <a>.ipynb" (renamed on the way in, then graded in full), one handed in
    a text file (refused, so missing at grading)."""
    inbox = course.reports / "demo-inbox" / assignment
    shutil.rmtree(inbox, ignore_errors=True)
    (inbox / "renamed").mkdir(parents=True)
    nbformat.write(reference, str(inbox / "renamed" / f"Copy of {assignment}.ipynb"))
    (inbox / "text-only").mkdir()
    (inbox / "text-only" / "answers.txt").write_text("I did the tasks on paper.\n")
    for student in COLLECTED:
        shutil.rmtree(course.folder("submitted", student, assignment), ignore_errors=True)
    report = collect.collect_into(course, inbox, only=assignment)
    print(f"\n== {assignment}: collect {inbox.relative_to(course.root)}")
    print(report.table())
    return [
        samples.Sample("renamed", reference, "saved under another name; collect renamed it"),
        samples.Sample(
            "text-only", b"", "handed in a text file, refused by collect", status="missing"
        ),
    ]


def check(built: list[samples.Sample], results: list[SubmissionGrade]) -> bool:
    """Print whether each sample got the status (and, if graded, the lost test cells) it
    deserves; True when all did."""
    by_student = {r.student: r for r in results}
    width = max(len(s.student) for s in built)
    all_ok = True
    for sample in built:
        result = by_student[sample.student]
        ok = result.status == sample.status
        if ok and result.graded:
            failed = set(result.failed())
            ok = sample.must_fail <= failed and not (failed - sample.must_fail - sample.may_fail)
        all_ok &= ok
        mark = "ok" if ok else "UNEXPECTED"
        print(f"  [{mark}] {sample.student:<{width}}  {result.status}: {sample.description}")
    return all_ok


def secret_lines(course: Course, assignment: str) -> list[str]:
    """Hidden-test lines of the source notebook that the release does not show (stripped, 6
    characters or more: shorter ones say nothing)."""
    source = notebooks.read(course.source_path(assignment))
    release = notebooks.read(course.release_path(assignment))
    visible = {line.strip() for cell in release.cells for line in cell.source.splitlines()}
    hidden = {
        line.strip()
        for cell in notebooks.test_cells(source)
        for line in notebooks.hidden_test_lines(cell.source, course.settings.hidden_tests)
    }
    return sorted(h for h in hidden if len(h) >= 6 and h not in visible)


def write_feedback(course: Course, assignment: str, results: list[SubmissionGrade]) -> bool:
    """Write every graded student's feedback page; True when every graded student got one and
    none holds a hidden test line."""
    from graders import feedback

    written, failed = feedback.write_feedback(course, assignment)
    secrets = secret_lines(course, assignment)
    leaks = [s for s, fb in written.items() if any(line in fb.path.read_text() for line in secrets)]
    missing = [r.student for r in results if r.graded and r.student not in written]
    print(
        f"  feedback: {course.folder('feedback')}/<student>/{assignment}/{assignment}.html"
        f" for {len(written)} students; hidden test lines found in feedback: {len(leaks)}"
        + (f"; no page for {', '.join(missing)}: {failed.get(missing[0], '?')}" if missing else "")
    )
    return not leaks and not missing
