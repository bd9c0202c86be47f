"""The Ray executor: `predict` and `eval` past one process (Ray Data actors).

It runs the work layer's kernels (`ocrnet.work.kernels`: decode + preprocess, `Engine`,
encode / score) in its actors, so its outputs are identical to an in-process run by
construction; it imports the work layer and below, never a verb. Nothing here imports Ray at
module load: a verb imports `ocrnet.jobs.executor`, and that imports Ray, only when a cluster
is asked for (`ray=ADDRESS`).

`cluster.py` connects and sizes the actors, `shipping.py` carries the model to every node,
`worker.py` is the kernel actor (and the engine-free task), `records.py` what actors send and
how the driver collects it, `executor.py` the `RayExecutor` the verbs call.
"""
