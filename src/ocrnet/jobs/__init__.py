"""Batch jobs past one process: `predict` and `eval` on a Ray cluster (Ray Data).

They sit above the verbs and call the verbs' own per-image functions (decode + preprocess in
`ocrnet.data.loader`, `Engine.labels_at`, predict's PNG writer, `ConfusionMatrix.update`), so
their outputs are identical to an in-process run by construction. Nothing here imports Ray at
module load: `ocrnet.predict.predict(..., ray=ADDRESS)` and `ocrnet.evaluate.evaluate(...,
ray=ADDRESS)` import these modules, and they import Ray, only when a cluster is asked for.

`cluster.py` connects and sizes the actors, `shipping.py` carries the model to every node,
`worker.py` is the engine actor, `records.py` what actors send and how the driver collects it;
`predict.py` and `evaluate.py` are the two jobs.
"""
