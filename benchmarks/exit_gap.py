"""How long a reader of ``kerascnn train``'s stderr waits after the command has exited.

    python benchmarks/exit_gap.py --runs 3

Runs the default command with its output in pipes (as ``subprocess.run(capture_output=True)`` or
``2>&1 | tee`` read it) and prints, per run, when the process exited and when its pipes closed.
The tracking writer's stdout and stderr are the command's stderr, so that pipe ends only when the
writer lets go of it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time

from common import kit_env  # (this folder is on the path of a script run from it)


def gap(extra: list[str]) -> tuple[float, float]:
    """(seconds to the process's exit, seconds to the end of its pipes) of one run."""
    env = kit_env()
    command = [sys.executable, "-m", "kerascnn", "train", "mnist_cnn", "--dataset", "mnist", *extra]
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        exited: list[float] = []
        waiter = threading.Thread(target=lambda: (process.wait(), exited.append(time.perf_counter() - start)))
        waiter.start()
        process.communicate()
        closed = time.perf_counter() - start
        waiter.join()
    return exited[0], closed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.runs):
        for extra in ([], ["--no-tracking"]):
            exited, closed = gap(extra)
            label = "untracked" if extra else "tracked"
            later = 1000 * (closed - exited)
            print(f"{label:9s} exited {exited:6.2f} s, pipes closed {closed:6.2f} s: {later:4.0f} ms later")


if __name__ == "__main__":
    main()
