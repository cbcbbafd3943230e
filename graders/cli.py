"""Command line of the course's grading tool: ``python -m graders [--root R] [--db-url URL] VERB``.

Every verb works on one :class:`~graders.course.Course`, built once from ``--root`` (default:
this repository) and its ``nbgrader_config.py``; ``--db-url`` (before or after the verb)
overrides the configured gradebook for every verb. Options live here; the work is done by the
modules each verb calls.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from graders import parallel, report, shards
from graders import release as release_links
from graders.course import REPO_ROOT, Course, NbgraderError
from graders.gradebook import NoGradebook
from graders.parallel import DISK_MB, MAX_PROCESSES, NOTEBOOK_TIMEOUT_CELLS
from graders.resources import KERNEL_GPU_MIB

DB_URL_HELP = (
    "gradebook URL for every command, e.g. postgresql://... "
    "(default: nbgrader_config.py's CourseDirectory.db_url, else sqlite:///<root>/gradebook.db)"
)


def course_of(args: argparse.Namespace) -> Course:
    """The course the command line names."""
    return Course(args.root, db_url=args.db_url)


def _assignments(course: Course, chosen: str | None) -> list[str]:
    known = course.assignments()
    if chosen is None:
        return known
    if chosen not in known:
        raise SystemExit(f"unknown assignment {chosen!r}; known: {', '.join(known)}")
    return [chosen]


def cmd_release(args: argparse.Namespace) -> int:
    """Generate release/ from source/ (and record the assignments in the gradebook)."""
    course = course_of(args)
    for assignment in _assignments(course, args.assignment):
        path = course.generate_release(assignment)
        print(f"released {assignment}: {path.relative_to(course.root)}")
        if args.zip:
            from graders.export import zip_release

            out = zip_release(course, assignment)
            print(f"student zip of {assignment}: {out.relative_to(course.root)}")
    shipped = [(a, course.release_path(a).relative_to(course.root).as_posix())
               for a in course.assignments() if course.release_path(a).is_file()]
    for line in release_links.publish_links(course.root, shipped):
        print(line)
    return 0


def cmd_autograde(args: argparse.Namespace) -> int:
    """Autograde submitted/ in parallel: each notebook by the real `nbgrader autograde` in a
    private scratch course (kernels sandboxed when bubblewrap works), merged into the gradebook
    by this process alone. Prints one line per submission (graded / flagged / timed out /
    crashed / missing / refused, with the reason); exits 0 only if every submission was
    graded."""
    course = course_of(args)
    shard = shard_from_args(args)
    settings = settings_from_args(args)
    students = [args.student] if args.student else None
    jobs = parallel.select_jobs(course, _assignments(course, args.assignment), students, shard)
    if not jobs:
        print("nothing to grade: no student folders in submitted/ (or in this shard)")
        return 0
    results = report.grade_and_report(course, jobs, settings)
    return 0 if all(r.graded for r in results) else 1


def cmd_grades(args: argparse.Namespace) -> int:
    """Print the gradebook and write it as CSV (nbgrader export)."""
    course = course_of(args)
    for assignment in _assignments(course, args.assignment):
        print_grades(course.grades(assignment).values())
    out = Path(args.csv).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    course.nbgrader("export", f"--to={out}")
    print(f"gradebook written to {out}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    """Import submissions from a folder or a Moodle/Canvas zip into submitted/ (see
    graders/collect.py for the layouts, student ids and the duplicate rule); exit 1 if any file
    was refused."""
    from graders import collect as collect_mod

    course = course_of(args)
    only = _assignments(course, args.assignment)[0] if args.assignment else None
    try:
        report = collect_mod.collect_into(course, Path(args.source), only=only)
    except collect_mod.CollectError as err:
        raise SystemExit(f"error: {err}") from None
    print(report.table())
    return report.exit_code


def cmd_feedback(args: argparse.Namespace) -> int:
    """Write feedback/<student>/<a>/<a>.html for autograded students with nbgrader's
    generate_feedback and the course's safe preprocessors: pass/fail, points and message per
    test cell, never the hidden tests' source."""
    from graders import feedback as feedback_mod

    course = course_of(args)
    return feedback_mod.report(course, _assignments(course, args.assignment), args.student)


def cmd_export(args: argparse.Namespace) -> int:
    """Write the gradebook as CSV (one row per student x assignment: status, reason, total and
    per-cell scores) plus reports/score_distribution.png and reports/cell_failures.csv; with
    --format canvas|moodle also reports/<format>-grades.csv, the platform's grade import file
    (or --template, the platform's own gradebook export, with the assignment's column filled)."""
    from graders import export as export_mod
    from graders.lms import LmsError

    course = course_of(args)
    chosen = [args.assignment] if args.assignment else None
    csv_path = Path(args.csv).resolve() if args.csv else None
    if args.template and not args.format:
        raise SystemExit("error: --template needs --format canvas|moodle")
    reports = export_mod.write_reports(course, chosen, csv_path)
    print(reports.summary())
    if args.format:
        template = Path(args.template).resolve() if args.template else None
        if template is not None and not template.is_file():
            raise SystemExit(f"error: no roster file {template}")
        try:
            written = export_mod.write_lms(course, args.format, chosen, template, args.missing)
        except LmsError as err:
            raise SystemExit(f"error: {err}") from None
        print(written.summary())
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    """Compare what the students wrote for one assignment (solution cells without the release's
    starter code, and cells they added; renaming, reformatting, reordering, comments and dead
    code do not hide a copy): prints the most similar pairs and clusters, writes
    reports/similarity/<a>/pairs.csv (every pair that shares code, per task and overall) and
    report.html (matching code side by side). Student code is only read, never run."""
    from graders import similarity

    course = course_of(args)
    assignment = _assignments(course, args.assignment)[0]
    for name in ("threshold", "max_share"):
        value = getattr(args, name)
        if not 0 < value <= 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be in (0, 1], not {value}")
    settings = similarity.Settings(threshold=args.threshold, max_share=args.max_share)
    out = Path(args.out).resolve() if args.out else None
    try:
        report = similarity.run(course, assignment, settings, out)
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None
    except KeyError as err:  # the reference cannot be built: release/ older than source/
        raise SystemExit(f"error: {err.args[0]} (run `python -m graders release`)") from None
    print(report.summary())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Release every assignment, autograde freshly derived sample submissions (adversarial ones
    included) with the parallel grader, print the table and check each got what it deserves."""
    from graders import demo

    course = course_of(args)
    return 0 if demo.run(course, _assignments(course, args.assignment)) else 1


def _failures(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if "ERROR" in line) or log[-2000:]


def print_grades(subs) -> None:
    """One line per student: score, maximum and the test cells that lost points."""
    subs = sorted(subs, key=lambda s: s.student)
    if not subs:
        print("(no graded submissions)")
        return
    width = max(len(s.student) for s in subs)
    for s in subs:
        failed = ", ".join(s.failed()) or "-"
        print(f"{s.student:<{width}}  {s.score:5.1f} / {s.max_score:<5.1f}  lost: {failed}")


# ------------------------------------------------------------------------- autograde options
def add_autograde_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``autograde`` options (see ``python -m graders autograde --help``)."""
    parser.add_argument("--student", help="only this student")
    parser.add_argument(
        "--shard", help="only shard K of N (K/N): students split by a hash of their name"
    )
    parser.add_argument(
        "--shard-from-env",
        action="store_true",
        help="take K/N from the job engine (see deploy/): " + shards.ENV_HELP
        + "; an explicit --shard wins",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="parallel notebooks (default: one per CPU core)",
    )
    parser.add_argument(
        "--gpu-workers",
        type=int,
        help="how many of them grade on the GPUs, the others on the CPU with CUDA hidden "
        f"(default: as many as the GPUs' memory holds at {KERNEL_GPU_MIB} MiB each; 0: none)",
    )
    parser.add_argument(
        "--cell-timeout",
        type=int,
        help="seconds per cell, nbgrader's Execute.timeout (default: nbgrader_config.py's)",
    )
    parser.add_argument(
        "--notebook-timeout",
        type=float,
        help=f"wall-clock seconds per notebook (default: {NOTEBOOK_TIMEOUT_CELLS} x cell timeout)",
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        help="a grading run (nbgrader and its kernel) over this proportional set size is killed "
        "(default: 80%% of RAM / workers)",
    )
    parser.add_argument(
        "--max-processes",
        type=int,
        default=MAX_PROCESSES,
        help=f"a grading run with more processes is killed (default: {MAX_PROCESSES})",
    )
    parser.add_argument(
        "--disk-mb",
        type=int,
        default=DISK_MB,
        help=f"MiB a sandboxed kernel may write; past it, it is killed (default: {DISK_MB})",
    )
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run student code without the bubblewrap sandbox (with your rights!)",
    )
    parser.add_argument(
        "--no-prestart",
        action="store_true",
        help="start each kernel in its own grading run, not ahead while the previous "
        "submission is graded (default: ahead, when sandboxed; see graders/prestart.py)",
    )


def shard_from_args(args: argparse.Namespace) -> tuple[int, int] | None:
    """The shard ``(K, N)`` to grade: ``--shard K/N``, else with ``--shard-from-env`` the job
    engine's (printed with the variables it came from), else None (everyone)."""
    try:
        if args.shard:
            if getattr(args, "shard_from_env", False):
                print(f"note: --shard {args.shard} given; the environment's shard is not used",
                      file=sys.stderr)
            return shards.parse_shard(args.shard)
        if getattr(args, "shard_from_env", False):
            found = shards.shard_from_env()
            print(f"shard {found.k}/{found.n} (from {found.source})", flush=True)
            return found.k, found.n
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    return None


def settings_from_args(args: argparse.Namespace) -> parallel.Settings:
    """:class:`~graders.parallel.Settings` from the parsed ``autograde`` options."""
    names = ("workers", "cell_timeout", "notebook_timeout", "memory_mb", "max_processes", "disk_mb")
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be positive, not {value}")
    gpu_workers = getattr(args, "gpu_workers", None)
    if gpu_workers is not None and gpu_workers < 0:
        raise SystemExit(f"error: --gpu-workers must be 0 or more, not {gpu_workers}")
    return parallel.Settings(
        workers=args.workers,
        gpu_workers=gpu_workers,
        cell_timeout=args.cell_timeout,
        notebook_timeout=args.notebook_timeout,
        memory_mb=args.memory_mb,
        max_processes=args.max_processes,
        disk_mb=args.disk_mb,
        sandbox=not args.no_sandbox,
        prestart=not getattr(args, "no_prestart", False),
    )


# ----------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="python -m graders",
        description="Release, autograde and report the course's assignments (nbgrader inside).",
    )
    parser.add_argument("--root", default=str(REPO_ROOT), help="course root (default: repo)")
    parser.add_argument("--db-url", default=None, help=DB_URL_HELP)
    verbs = parser.add_subparsers(dest="verb", required=True)

    def verb(name: str, func, assignment: bool = True) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=func.__doc__, description=func.__doc__)
        if assignment:
            p.add_argument("assignment", nargs="?", help="one assignment (default: all)")
        # also accepted after the verb; it does not hide a --db-url given before it
        p.add_argument("--db-url", default=argparse.SUPPRESS, help=DB_URL_HELP)
        p.set_defaults(func=func)
        return p

    p = verb("release", cmd_release)
    p.add_argument("--zip", action="store_true", help="also write reports/release/<a>.zip")
    add_autograde_arguments(verb("autograde", cmd_autograde))
    p = verb("grades", cmd_grades)
    p.add_argument("--csv", default="reports/grades.csv", help="where to write the CSV")
    verb("demo", cmd_demo)
    p = verb("feedback", cmd_feedback)
    p.add_argument("--student", help="only this student")
    p = verb("export", cmd_export)
    p.add_argument("--csv", help="where to write the CSV (default: reports/gradebook.csv)")
    p.add_argument("--format", choices=("canvas", "moodle"),
                   help="also write the platform's grade import file reports/<format>-grades.csv")
    p.add_argument("--template", help="the platform's gradebook export (a roster) to fill in, "
                   "keeping its rows and columns")
    p.add_argument("--missing", choices=("empty", "zero"), default="empty",
                   help="grade of a student without a submission (default: empty, which leaves "
                   "the platform's grade alone)")
    p = verb("similarity", cmd_similarity, assignment=False)
    p.add_argument("assignment", help="the assignment whose submissions to compare")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="pairs scoring this or more (0..1) are listed and form clusters "
                   "(default: 0.5)")
    p.add_argument("--max-share", type=float, default=0.5,
                   help="code found in more than this share of the class is ignored as "
                   "common (default: 0.5)")
    p.add_argument("--out", help="folder for pairs.csv and report.html "
                   "(default: reports/similarity/<a>/)")
    p = verb("collect", cmd_collect, assignment=False)
    p.add_argument("source", help="a folder or a .zip export of a learning platform")
    p.add_argument("--assignment", help="collect only this assignment's notebooks")
    return parser


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (``kill``, a job engine's time limit, ``timeout``) stops like
    Ctrl-C: the batch kills its grading runs and removes its scratch courses, where Python's
    default would end the process on the spot and leave them."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():
            return args.func(args)
    except NbgraderError as err:
        print(f"error: {_failures(str(err))}", file=sys.stderr)
        return 2
    except NoGradebook as err:
        raise SystemExit(f"error: {err}") from None
