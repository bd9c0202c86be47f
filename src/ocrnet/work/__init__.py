"""The work layer: how `predict` and `eval` run, below the verbs and beside nothing.

* `plan.py`: everything decided before any work (items, output names, checked options, and the
  run record a resumed `predict` compares: `record.py`).
* `kernels.py`: one kernel per job kind over an open engine and a chunk of items: decode ->
  preprocess -> engine -> encode PNGs / score confusion matrices, yielding `(index, record)`.
* `formats.py`: the one table of output formats and their encoders.
* `tally.py`: the one sum of a run's records (matrices, counts, skipped files and why).
* `local.py`: the in-process executor (threads + one engine); the Ray executor is
  `ocrnet.jobs` (it imports this layer, never a verb).

Nothing is imported here: `import ocrnet.work.formats` stays as light as that module.
"""
