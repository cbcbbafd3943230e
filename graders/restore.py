"""Put back the read-only cells a student deleted, before nbgrader grades the notebook.

nbgrader's ``OverwriteCells`` (with ``add_missing_cells``) re-inserts a missing *test* cell
after the previous cell it tracks, and it tracks only test and solution cells: when the cell
before the deleted one is a read-only run cell (``part0_fit`` in 01_dnn), the lookup raises
``KeyError`` and the whole notebook fails (a correct submission scored 0 / 27). Deleted
read-only cells are not put back at all, so the cells after them run without the names they
define.

:class:`RestoreCells` is ``OverwriteCells`` with that step replaced: every missing cell of the
instructor's notebook that the student cannot edit (test cells, read-only code and markdown
cells; not solution cells, which hold the student's own work) is put back from the gradebook
right after the nearest cell before it (in the instructor's order) that the submission still
has, with nbgrader's note that it was missing. Everything else ``OverwriteCells`` does (restore
edited read-only cells, points, checksums) is unchanged. The course configuration uses it in
place of ``OverwriteCells`` (``Autograde.sanitize_preprocessors``).

:class:`CleanMetadata`, the first of those steps, gives every cell the instructor's nbgrader
metadata for its grade_id, or none (copied, pasted and edited cells; its docstring).
"""

from __future__ import annotations

from typing import Any

from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.nbgraderformat import MetadataValidator
from nbgrader.preprocessors import NbGraderPreprocessor, OverwriteCells

from graders import notebooks


class CleanMetadata(NbGraderPreprocessor):
    """The first step of the grading: every cell's nbgrader metadata as the instructor's
    notebook has it, or none (and no half of an emoji that no UTF-8 file can hold:
    :func:`graders.notebooks.without_lone_surrogates`).

    A student edits metadata by accident (Jupyter's copy and paste keeps it: a cell pasted
    from another assignment, a test cell copied) or on purpose (``grade`` switched off, a
    solution turned into a 100-point test, a string instead of a dict). nbgrader's own steps
    then crash on the notebook (``KeyError: 'grade_id'``) and a correct submission scores 0.
    Here a cell whose ``grade_id`` is one of the assignment's gets exactly the instructor's
    flags for that id (type, grade, solution, locked, task, points); any other nbgrader
    metadata is removed, so the cell runs as a cell of the student's own. Duplicates of an id
    are left to nbgrader's ``DeduplicateIds`` (the last copy keeps the id).
    """

    def preprocess(self, nb: NotebookNode, resources: Any) -> tuple[NotebookNode, Any]:
        notebooks.without_lone_surrogates(nb)  # else nbgrader cannot write its copy
        ids = resources["nbgrader"]
        with Gradebook(ids["db_url"]) as gb:
            source = gb.find_notebook(ids["notebook"], ids["assignment"])
            points = {c.name: float(c.max_score) for c in source.grade_cells}
            solutions = {c.name for c in source.solution_cells}
            tasks = {c.name for c in source.task_cells}
            known = {c.name: (c.cell_type, bool(c.locked)) for c in source.source_cells}
        for index, cell in enumerate(nb.cells):
            meta = cell.get("metadata", {}).get("nbgrader")
            if meta is None:
                continue
            gid = meta.get("grade_id") if isinstance(meta, dict) else None
            if not isinstance(gid, str) or gid not in known:
                self.log.warning("Cell %d: nbgrader metadata of no cell of this assignment "
                                 "(%r) removed", index, gid)
                del cell.metadata["nbgrader"]
                continue
            cell_type, locked = known[gid]
            clean = {"cell_type": cell_type, "grade": gid in points, "grade_id": gid,
                     "locked": locked, "schema_version": 3, "solution": gid in solutions,
                     "task": gid in tasks}
            if gid in points:
                clean["points"] = points[gid]
            if {k: meta.get(k) for k in clean} != clean:
                self.log.warning("Cell %s: nbgrader metadata put back as the instructor's", gid)
            cell.metadata["nbgrader"] = clean
        return nb, resources


class RestoreCells(OverwriteCells):
    """``OverwriteCells`` that puts back every missing read-only cell (module docstring)."""

    def preprocess(self, nb: NotebookNode, resources: Any) -> tuple[NotebookNode, Any]:
        # nbgrader's DeduplicateIds leaves an empty nbgrader dict on the earlier copies of a
        # duplicated cell, and its add_missing_task_cells reads every such dict's grade_id
        for cell in nb.cells:
            if "nbgrader" in cell.get("metadata", {}) and not self._gid(cell):
                del cell.metadata["nbgrader"]
        return super().preprocess(nb, resources)

    def add_missing_grade_cells(self, nb: NotebookNode, resources: Any) -> tuple[NotebookNode, Any]:
        source = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        grade_cells = {c.name: c for c in source.grade_cells}
        solutions = {c.name for c in source.solution_cells}
        tasks = {c.name for c in source.task_cells}
        present = {self._gid(cell) for cell in nb.cells} - {None}
        # insert after this index of nb.cells; in a notebook that kept none of the instructor's
        # cells (its code pasted into a new notebook, its metadata stripped) every cell goes at
        # the end: put at the top, the tests would run before any of the student's code
        anchored = any(c.name in present for c in source.source_cells)
        position = -1 if anchored else len(nb.cells) - 1
        for source_cell in source.source_cells:  # in the instructor's order
            name = source_cell.name
            if name in present:
                position = next(i for i, c in enumerate(nb.cells) if self._gid(c) == name)
                continue
            if name in solutions or name in tasks:
                continue  # the student's own work (or a task, which nbgrader appends itself)
            if name in grade_cells:
                cell = self.missing_cell_transform(source_cell, grade_cells[name].max_score)
            elif source_cell.locked:
                cell = self._read_only_cell(source_cell)
            else:
                continue
            self.log.warning("Missing cell %s put back into the notebook", name)
            position += 1
            nb.cells.insert(position, cell)
            present.add(name)
        return nb, resources

    @staticmethod
    def _gid(cell: NotebookNode) -> str | None:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        return meta.get("grade_id") if isinstance(meta, dict) else None

    def _read_only_cell(self, source_cell: Any) -> NotebookNode:
        note = self.missing_cell_notification.format(cell_id=source_cell.name)
        cell = {
            "cell_type": source_cell.cell_type,
            "metadata": {
                "deletable": False,
                "editable": False,
                "nbgrader": {
                    "grade": False,
                    "grade_id": source_cell.name,
                    "locked": True,
                    "checksum": source_cell.checksum,
                    "solution": False,
                },
            },
            "source": note + source_cell.source,
        }
        if cell["cell_type"] == "code":
            cell.update(execution_count=None, outputs=[], source="# " + cell["source"])
        cell = MetadataValidator().upgrade_cell_metadata(NotebookNode(cell))
        assert utils.is_locked(cell)
        return cell
