"""Work every forked ``nbgrader autograde`` would repeat, done once in the forkserver of
:class:`graders.runner.ForkedNbgrader` (imported there, never elsewhere): measured on 2 cores,
the first autograde in a process takes 0.2 to 0.25 s until the notebook's kernel starts, a
second one 0.06 to 0.09 s.

- nbformat compiles a JSON-schema validator per schema version, and nbconvert validates with
  additional properties allowed and disallowed (about 0.05 s each, per minor version);
- SQLAlchemy configures nbgrader's mappers and imports its SQLite dialect on first use;
- :func:`graders.sandbox.sandbox_status` runs a trial ``bwrap`` (cached per process).
"""

from __future__ import annotations

import contextlib

import nbformat
import nbgrader.api  # noqa: F401 (its mappers, configured below)
import sqlalchemy.dialects.sqlite  # noqa: F401 (imported for the forks)
import sqlalchemy.orm
from nbformat import validator

from graders import sandbox

#: nbformat 4 minor versions whose validators are compiled ahead: all of them (a notebook is
#: validated against its own minor version; Colab saves 4.0, Jupyter 4.4 or 4.5).
MINORS = range(nbformat.current_nbformat_minor + 1)

for _minor in MINORS:
    for _relax in (False, True):
        with contextlib.suppress(Exception):
            validator.get_validator(version=4, version_minor=_minor, relax_add_props=_relax)
sqlalchemy.orm.configure_mappers()
sandbox.sandbox_status()
