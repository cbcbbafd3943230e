"""Verdicts outside the student's process.

Test cells (their visible and hidden parts) run in a trusted process that student code never ran
in (:mod:`graders.verdict.trusted`), against the student's kernel reached through a narrow
channel (:mod:`graders.verdict.wire`, :mod:`graders.verdict.remote`): names the student defined
come back as data or as proxies, calls ship data and return data. The student's notebook still
runs top to bottom in its own (sandboxed) kernel; nbgrader still scores the cells
(:class:`graders.verdict.execute.VerdictExecute` replaces its ``Execute``). The hidden tests'
source never enters the student's process. The README's "Threat model" says what this
guarantees and what it does not.
"""
