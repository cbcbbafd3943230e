"""Work every forked ``nbgrader autograde`` would repeat, done once in the forkserver of
:class:`graders.runner.ForkedNbgrader` (imported there, never elsewhere): measured on 2 cores,
the first autograde in a process takes 0.2 to 0.25 s until the notebook's kernel starts, a
second one 0.06 to 0.09 s.

- nbformat compiles a JSON-schema validator per schema version, and nbconvert validates with
  additional properties allowed and disallowed (about 0.05 s each, per minor version);
- SQLAlchemy configures nbgrader's mappers and imports its SQLite dialect on first use;
- :func:`graders.sandbox.sandbox_status` runs a trial ``bwrap`` (cached per process);
- threadpoolctl finds the loaded thread pools (:func:`graders.runner.thread_pools`, 20 ms)
  before each fork caps them;
- nbgrader checks every cell's metadata with ``jsonschema.validate``, which checks nbgrader's
  own schema again on every call: 18 ms per pass over a 02_cnn notebook (33 cells), 1.8 ms with
  the schema checked once, and a grading makes two or three passes. :class:`SchemaChecked` is
  ``jsonschema.validate`` with each schema checked once, given to nbgrader's metadata module in
  the forkserver; it changes no result (``tests/test_runner.py`` compares the errors).

One more change to nbgrader, made in each forked nbgrader only (it grades one notebook in its
private gradebook, then exits): :func:`open_gradebooks_once`. These two are the only ones.
"""

from __future__ import annotations

import contextlib
from typing import Any

import jsonschema
import nbformat
import nbgrader.api  # noqa: F401 (its mappers, configured below)
import nbgrader.nbgraderformat.common
import sqlalchemy.dialects.sqlite  # noqa: F401 (imported for the forks)
import sqlalchemy.orm
from nbformat import validator

from graders import runner, sandbox

#: nbformat 4 minor versions whose validators are compiled ahead: all of them (a notebook is
#: validated against its own minor version; Colab saves 4.0, Jupyter 4.4 or 4.5).
MINORS = range(nbformat.current_nbformat_minor + 1)

for _minor in MINORS:
    for _relax in (False, True):
        with contextlib.suppress(Exception):
            validator.get_validator(version=4, version_minor=_minor, relax_add_props=_relax)
sqlalchemy.orm.configure_mappers()
sandbox.sandbox_status()
runner.thread_pools()


class SchemaChecked:
    """What nbgrader's metadata validator uses as ``jsonschema``: ``validate`` is
    ``jsonschema.validate`` (the schema's validator class, the best-matching error) with each
    schema checked the first time it is seen instead of on every call."""

    ValidationError = jsonschema.ValidationError

    def __init__(self) -> None:
        self._validators: dict[int, tuple[Any, Any]] = {}

    def validate(self, instance: Any, schema: Any) -> None:
        known = self._validators.get(id(schema))
        if known is None or known[0] is not schema:  # the schema is kept: its id stays its own
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            known = self._validators[id(schema)] = (schema, cls(schema))
        error = jsonschema.exceptions.best_match(known[1].iter_errors(instance))
        if error is not None:
            raise error


nbgrader.nbgraderformat.common.jsonschema = SchemaChecked()


def open_gradebooks_once() -> None:
    """In this process, open each gradebook as nbgrader's :class:`~nbgrader.api.Gradebook`
    does only the first time: its schema checked table by table (and stamped when new) and its
    course row looked up; later opens of the same URL and course reuse that engine and make a
    new session. Called by the forked nbgrader alone (:func:`graders.runner.nbgrader_main`),
    which grades one notebook in its private gradebook and exits: nbgrader opens it 10 times
    per notebook, 4 to 8 ms each on 2 cores. Never in a long-lived process, where a gradebook
    file may be removed and made again under the same URL."""
    from nbgrader.api import Gradebook
    from sqlalchemy.orm import scoped_session, sessionmaker

    original = Gradebook.__init__
    opened: dict[tuple[str, str], Any] = {}

    def init(self: Gradebook, db_url: str, course_id: str = "default_course",
             authenticator: Any = None) -> None:
        engine = opened.get((db_url, course_id))
        if engine is None:
            original(self, db_url, course_id, authenticator)
            opened[(db_url, course_id)] = self.engine
            return
        # what nbgrader's __init__ sets, without its checks (tests/test_runner.py compares)
        self.engine = engine
        self.db = scoped_session(sessionmaker(autoflush=True, bind=engine, future=True))
        self.course_id = course_id
        self.authenticator = authenticator

    Gradebook.__init__ = init
