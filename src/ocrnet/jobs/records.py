"""What actors send back and how the driver takes it in.

Each output row is an image's index and one JSON record (its result, or why it was skipped or
failed, plus the actor and task that made it). `collect` streams them under one progress bar and
counts each image once, however often Ray retried the task that produced it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ocrnet.errors import OcrnetError
from ocrnet.progress import progress_bar


@dataclass
class Collected:
    """Each image's record by its index (first arrival wins), and which worker did what."""

    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    repeats: int = 0
    workers: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    tasks: dict[tuple[str, int], set[tuple[float, float]]] = field(default_factory=dict)
    first_at: float | None = None  # perf_counter when the first and last outputs arrived
    first_n: int = 0  # images in the first output batch
    last_at: float | None = None

    def rates(self) -> dict[str, float | None]:
        """img/s over the whole job (actor start included) and after the first output batch
        (steady state: what adding images costs)."""
        n = len(self.records)
        span = (self.last_at or 0.0) - (self.first_at or 0.0)
        steady = (n - self.first_n) / span if span > 0 and n > self.first_n else None
        return {"images_per_second": round(n / self.seconds, 3) if self.seconds else None,
                "steady_images_per_second": round(steady, 3) if steady else None,
                "dispatch_overhead_ms_per_image": self.overhead_ms_per_image()}

    def workers_json(self) -> list[dict[str, Any]]:
        """Each actor: where it ran, its engine settings, images, busy and idle seconds."""
        out = []
        for key, worker in sorted(self.workers.items()):
            tasks = sorted(self.tasks.get(key, ()))
            if tasks:
                busy = sum(end - start for start, end in tasks)
                span = max(end for _, end in tasks) - tasks[0][0]
                worker = {**worker, "tasks": len(tasks), "busy_s": round(busy, 3),
                          "idle_between_tasks_s": round(max(0.0, span - busy), 3)}
            out.append(worker)
        return out

    def overhead_ms_per_image(self) -> float | None:
        """Actor time spent waiting for the next task, per image: what Ray's dispatch costs
        (from each actor's first task start to its last task end, minus its task time)."""
        idle = sum(w.get("idle_between_tasks_s", 0.0) for w in self.workers_json())
        images = sum(w["images"] for w in self.workers.values())
        return round(idle / images * 1000, 2) if images else None


def collect(ds: Any, total: int, *, desc: str, progress: bool,
            on_record: Callable[[int, dict[str, Any]], str | None]) -> Collected:
    """Stream the job's output rows (`index`, `record` JSON) into a `Collected`.

    A task Ray retried after its actor died may deliver an image again: only the first record
    of each index counts, so nothing is double-counted. `on_record` sees each new record (it
    may raise to stop the job) and returns the progress bar's postfix, or None.
    """
    out = Collected()
    start = time.perf_counter()
    with progress_bar(total, progress, desc) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for index, text in zip(batch["index"], batch["record"], strict=True):
                i = int(index)
                if i in out.records:
                    out.repeats += 1
                    continue
                record = json.loads(text)
                out.records[i] = record
                worker = record.pop("worker", None)
                task = record.pop("task", None)
                if worker:
                    key = (worker["node"], worker["pid"])
                    seen = out.workers.setdefault(key, {**worker, "images": 0})
                    seen["images"] += 1
                    if task:
                        out.tasks.setdefault(key, set()).add(tuple(task))
                postfix = on_record(i, record)
                if postfix:
                    bar.set_postfix_str(postfix, refresh=False)
                bar.update(1)
            out.last_at = time.perf_counter()
            if out.first_at is None:
                out.first_at, out.first_n = out.last_at, len(out.records)
    out.seconds = time.perf_counter() - start
    missing = total - len(out.records)
    if missing:  # a Ray bug or a lost block, never silently a shorter result
        raise OcrnetError(f"the Ray job returned {len(out.records)} of {total} images; "
                          "run it again")
    return out


def encode_records(indices: list[int], records: list[dict[str, Any]]) -> dict[str, Any]:
    """A `map_batches` output batch: int64 indices and one JSON record per image."""
    import numpy as np

    return {"index": np.asarray(indices, dtype=np.int64),
            "record": np.asarray([json.dumps(r) for r in records], dtype=object)}
