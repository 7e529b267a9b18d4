"""Parameter schemas, one module per experiment: every parameter's type, default, help, range
and choices (:class:`lfakit.params.Spec`), and the checks across parameters.

A schema module imports nothing heavy (no torch), so ``lfakit list`` and parameter validation
answer at once; the experiment's code lives in ``lfakit/experiments/<experiment>.py``.
"""
