"""What tracking costs a Python script: ``kerascnn.train`` untracked, tracked and offline, timed inside.

    python benchmarks/api.py --rounds 6

Each run is a new process that imports Keras and the kit (as a script or a notebook does),
then calls ``kerascnn.train("mnist_cnn", "mnist", verbose=0)``, in a new folder; the arms go in a
shuffled order per round. It prints, per arm, the medians of: seconds from the process start to
``fit``, the first batch (tracing the step), epoch 1, and the start to ``train``'s return
(the run's end work included). Unlike the CLI, which starts its tracking writer before it
imports TensorFlow, a script has imported it before ``train`` starts the writer, so the
writer's warm-up overlaps the first epoch (BENCHMARKS.md, 2026-12-05 11:30).
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import kit_env  # (this folder is on the path of a script run from it)
from phases import interleaved, print_medians

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"untracked": {"tracking": False}, "tracked": {}, "offline": {"offline": True}}
SCRIPT = """
import json, os, sys, time
t0 = time.perf_counter()
import keras, kerascnn

class Marks(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.begin = time.perf_counter()
    def on_train_batch_end(self, batch, logs=None):
        self.first = getattr(self, "first", None) or time.perf_counter() - self.begin
    def on_epoch_end(self, epoch, logs=None):
        self.epoch1 = getattr(self, "epoch1", None) or time.perf_counter() - self.begin

marks = Marks()
kerascnn.train("mnist_cnn", "mnist", verbose=0, callbacks=[marks], **json.loads(sys.argv[1]))
print(json.dumps({"to_fit": marks.begin - t0, "first_batch": marks.first, "epoch1": marks.epoch1,
                  "train": time.perf_counter() - t0}))
"""
MEASURES = ("to_fit", "first_batch", "epoch1", "train")


def run(settings: dict[str, bool]) -> dict[str, float]:
    """One process's marks (seconds)."""
    env = kit_env(PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, json.dumps(settings)],
            check=False,
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        raise SystemExit(f"a run failed. Received: exit code {done.returncode}\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="rounds of every arm (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the arms' order")
    args = parser.parse_args()
    arms = {name: functools.partial(run, settings) for name, settings in ARMS.items()}
    print_medians(interleaved(arms, args.rounds, args.seed, "train"), MEASURES)


if __name__ == "__main__":
    main()
