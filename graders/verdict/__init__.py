"""Verdicts outside the student's process.

Test cells (their visible and hidden parts) run in a trusted process that student code never ran
in (:mod:`graders.verdict.trusted`), against the student's kernel reached through a narrow
channel (:mod:`graders.verdict.wire`, :mod:`graders.verdict.remote`): names the student defined
come back as data or as proxies, calls ship data and return data. The student's notebook still
runs top to bottom in its own (sandboxed) kernel; nbgrader still scores the cells
(:class:`graders.verdict.execute.VerdictExecute` replaces its ``Execute``). The hidden tests'
source never enters the student's process. The README's "Threat model" says what this
guarantees and what it does not.

What crosses the channel (:mod:`graders.verdict.wire`), in both directions:

* **by value**: ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``, lists,
  tuples, dicts (any encodable keys), sets, NumPy arrays and scalars of numeric dtypes, PyTorch
  tensors (detached, on the CPU) except parameters and leaf tensors that require grad,
  ``torch.dtype``/``torch.device``/``torch.Size``, ``numpy.dtype``, ``slice``, ``range``,
  ``Ellipsis``; other numbers (``Fraction``) as the plain number they convert to;
* **by reference** (student to trusted only): everything else: functions, classes, models,
  optimizers, loaders, generators, parameters. The agent keeps the object and sends a handle with
  its class's name and MRO; the trusted side wraps it in a proxy that forwards attribute access,
  calls, iteration and so on (``graders.verdict.remote``). A reference the trusted side sends back
  is resolved to the object again.

The trusted side decodes what a student's kernel sends with ``wire.decode``, which accepts only
the tags above, numeric dtypes, consistent shapes and bounded nesting: a malicious kernel can
send wrong *values*, never code.
"""
