"""The suite's own machinery: pytest-xdist keeps an ``xdist_group`` on one worker.

The slow modules build a module fixture once (a whole class graded) and mark their tests with
``xdist_group`` so that one worker runs them all. When ``--dist loadgroup`` silently ignores the
mark (pytest 9.2 with pytest-xdist 3.8: the group was never added to the node id), every worker
builds those fixtures again, which cost the suite minutes.
"""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("xdist-check")
def test_xdist_groups_are_honoured(request):
    if not request.config.getoption("loadgroup", default=False):
        pytest.skip("not run by pytest-xdist with --dist loadgroup")
    assert request.node.nodeid.endswith("@xdist-check"), (
        f"{request.node.nodeid}: pytest-xdist ignored the test's xdist_group; use a pytest and "
        "pytest-xdist that work together (see the dev extra in pyproject.toml)")
