"""What a busy neighbour process costs the training: the default untracked command alone, and
beside a one-thread Python busy loop in a session of its own at nice 19 or at ``SCHED_IDLE``.

    python benchmarks/neighbour.py --rounds 3
    python benchmarks/neighbour.py --rounds 3 --arms alone nice19

The tracking writer warms up at nice 19 (its session's autogroup) while the training process
imports TensorFlow; this shows what the part of that warm-up that outlasts the imports costs
the steps. Linux only (autogroups, ``SCHED_IDLE``). Prints each run's wall time and Keras'
per-epoch ``ms/step``, then each arm's median wall time.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time

from common import kit_env  # (this folder is on the path of a script run from it)

COMMAND = [sys.executable, "-m", "kerascnn", "train", "mnist_cnn", "--dataset", "mnist", "--no-tracking"]
LOOP = """
import os, sys
parent = os.getppid()
os.setsid()
if sys.argv[1] == "idle":
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
else:
    open("/proc/self/autogroup", "w").write("19")
while os.getppid() == parent:  # (ends with this script, however it ends)
    for _ in range(100_000):
        pass
"""
ARMS = {"alone": None, "nice19": "19", "idle": "idle"}


def one_run(arm: str, folder: str, env: dict[str, str]) -> tuple[float, list[int]]:
    """The command's wall time and per-epoch ms/step, beside the arm's busy loop (if any)."""
    loop = None if ARMS[arm] is None else subprocess.Popen([sys.executable, "-c", LOOP, str(ARMS[arm])])
    try:
        start = time.perf_counter()
        done = subprocess.run(COMMAND, cwd=folder, env=env, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()
    return wall, [int(ms) for ms in re.findall(r" - (\d+)ms/step", done.stdout)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs every arm once (default 3)")
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS), help="arms, in round order")
    args = parser.parse_args()
    env = kit_env()
    walls: dict[str, list[float]] = {arm: [] for arm in args.arms}
    with tempfile.TemporaryDirectory() as folder:  # one kept folder: the untracked model files pile up there
        for _ in range(args.rounds):
            for arm in args.arms:
                wall, steps = one_run(arm, folder, env)
                walls[arm].append(wall)
                print(f"{arm:7s} {wall:6.2f} s  ms/step per epoch: {steps}", flush=True)
    for arm, values in walls.items():
        print(f"{arm:7s} median {statistics.median(values):.2f} s of {len(values)}")


if __name__ == "__main__":
    main()
