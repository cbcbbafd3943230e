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
"""

from __future__ import annotations

from typing import Any

from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.nbgraderformat import MetadataValidator
from nbgrader.preprocessors import OverwriteCells


class RestoreCells(OverwriteCells):
    """``OverwriteCells`` that puts back every missing read-only cell (module docstring)."""

    def add_missing_grade_cells(self, nb: NotebookNode, resources: Any) -> tuple[NotebookNode, Any]:
        source = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        grade_cells = {c.name: c for c in source.grade_cells}
        solutions = {c.name for c in source.solution_cells}
        tasks = {c.name for c in source.task_cells}
        present = {self._gid(cell) for cell in nb.cells} - {None}
        position = -1  # insert after this index of nb.cells
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
