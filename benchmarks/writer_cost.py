"""CPU seconds of each piece of work the tracking writer does before and for a run.

    python benchmarks/writer_cost.py

In a fresh process, in the writer's order: its own module, each module of
``kerascnn.tracking.writer.WARM``, and creating a
new SQLite store (in a temporary folder) as the writer does: a copy of the cached empty store
(``kerascnn.tracking.store.empty_store``), or MLflow's migrations where there is none yet
(``KERASCNN_CACHE_DIR=/dev/null/x``, a cache that cannot be made, shows that case). Each
figure is the process's CPU time across the step (``time.process_time``), so another
process's load does not inflate it.
"""

from __future__ import annotations

import importlib
import tempfile
import time
from pathlib import Path


def main() -> None:
    started = time.process_time()
    mark = started

    def step(what: str) -> None:
        nonlocal mark
        now = time.process_time()
        print(f"{what:50s} {now - mark:5.2f} s", flush=True)
        mark = now

    from kerascnn.device import import_tensorflow, import_without_keras_extras
    from kerascnn.tracking import writer

    import_without_keras_extras()  # as the writer's main() does
    step("kerascnn.tracking.writer")
    for name in writer.WARM:
        if name == "tensorflow":
            import_tensorflow()
        else:
            importlib.import_module(name)
        step(f"import {name}")
    from kerascnn.tracking import store

    cached = store.empty_store_path().is_file()
    with tempfile.TemporaryDirectory() as folder:
        store.client(f"sqlite:///{Path(folder) / 'mlflow.db'}")
        step("a new store (a copy of the cached empty one)" if cached else "a new store's tables (and the cache's)")
    print(f"{'total':50s} {time.process_time() - started:5.2f} s")


if __name__ == "__main__":
    main()
