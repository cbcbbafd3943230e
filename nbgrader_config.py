"""nbgrader configuration of the course (the course root is this folder).

Every choice below is explained in README.md ("Grading rules"); keep them in sync.
"""

import os
import sys

from dlworkshop.grading import HARMLESS_STDERR_PATTERN

c = get_config()  # noqa: F821  (nbgrader injects get_config)

# Kernels inherit this process's environment. Cap BLAS/torch threads (graders/ sets one share
# per parallel worker; a plain `nbgrader autograde` gets up to 4), and turn progress bars off.
_threads = os.environ.get("DLWORKSHOP_THREADS") or str(min(4, os.cpu_count() or 1))
for _var in ("DLWORKSHOP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _threads)
os.environ.setdefault("DLWORKSHOP_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

c.CourseDirectory.course_id = "dl-models-python-s5"
# Data files an assignment ships next to its notebook are copied into the release; nothing else.
# source/<a>/grading/ (mutants, calibration) is never copied: not to release/, not to autograded/.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "grading"]

# Students see this in every stub; the `raise` is what makes an untouched stub score zero.
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE\nraise NotImplementedError()",
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Per-cell limit. The longest cell (training a network on 3,500 MNIST digits) takes about
# 15 s on 2 CPU cores; 180 s leaves room for a busy grading machine without letting an endless
# loop hold a grader for long. A cell that times out scores zero and grading goes on.
c.Execute.timeout = 180
c.Execute.interrupt_on_timeout = True

# Verdicts outside the student's process (README, "Threat model"): nbgrader's Execute is replaced
# by graders.verdict's, which runs every test cell (visible and hidden parts, from the gradebook)
# in the grading process and reaches the student's kernel only through a narrow channel. Student
# kernels run in the bubblewrap sandbox when it works on this machine ("auto"; "on" requires it).
c.Autograde.autograde_preprocessors = [
    "graders.verdict.execute.VerdictExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.VerdictExecute.sandbox = "auto"
# OverwriteCells, but every read-only cell a student deleted is put back in place (graders/
# restore.py): nbgrader's own re-insertion fails on a deleted test cell that follows a
# read-only run cell, and never puts back read-only run cells. Before nbgrader's steps, every
# cell's nbgrader metadata becomes the instructor's for its grade_id, or goes (CleanMetadata):
# a cell pasted from another notebook or edited flags crashed nbgrader (the notebook scored 0).
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "graders.restore.CleanMetadata",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "graders.restore.RestoreCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# A deleted or de-tagged test cell is put back (from gradebook.db) and run, so a student can
# neither dodge a failing test by deleting it nor lose points for honest work by accident.
c.OverwriteCells.add_missing_cells = True

# nbgrader gives a grade cell zero when it writes anything to stderr. Library warnings and
# progress bars are not failures (the assertions decide), so their stderr chunks are dropped.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = HARMLESS_STDERR_PATTERN

# Feedback (`nbgrader generate_feedback`, the formgrader's buttons, `python -m graders feedback`)
# is rebuilt by graders/feedback_preprocessor.py: test cells without their hidden block and with
# the trusted runner's one-line results, the student's cells with the outputs of the notebook
# they submitted (never those of the grading run). nbgrader imports it by name when it makes
# feedback (a course copy without graders/ next to this file then fails instead of leaking).
_here = os.path.dirname(os.path.abspath(__file__))  # traitlets sets __file__
if os.path.isdir(os.path.join(_here, "graders")) and _here not in sys.path:
    sys.path.append(_here)
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "graders.feedback_preprocessor.SafeFeedback",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
# A feedback page shows outputs of the student's own notebook: no script of theirs runs when
# the student or the instructor opens it (nbconvert sanitizes HTML and drops JavaScript).
c.HTMLExporter.sanitize_html = True
# nbgrader's feedback and formgrade templates render markdown cells (and grading comments)
# without that sanitizer: every page nbgrader renders gets them cleaned first (a student's
# script in a markdown cell ran in the feedback page and in the instructor's formgrader).
c.HTMLExporter.preprocessors = ["graders.safe_markdown.SafeMarkdown"]
