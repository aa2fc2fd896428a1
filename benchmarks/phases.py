"""Where a tracked run's extra time lands: the default command's phases, tracked and untracked.

    python benchmarks/phases.py --rounds 6
    git worktree add /tmp/base <commit> && python benchmarks/phases.py --rounds 6 --baseline /tmp/base

Runs ``kerascnn train mnist_cnn --dataset mnist`` untracked, tracked, and (with ``--baseline``)
tracked by another checkout of the kit, as whole processes, each in a new folder, the arms in a
shuffled order per round. From the output lines it times each run's phases: Python start to the
first epoch (imports, data, model), epoch 1, epoch 2, and the end (the test pass, the model and
plots, the last writes confirmed). Epoch 1 over epoch 2 compares the first epoch, where the
writer's start-up competes with the steps, with a later one of the same process, which takes the
VM's speed at that moment out of the comparison; whole-process differences of a few percent
drown in it.
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from common import kit_env  # (this folder is on the path of a script run from it)

COMMAND = [sys.executable, "-m", "kerascnn", "train", "mnist_cnn", "--dataset", "mnist"]
PHASES = ("wall", "to_fit", "epoch1", "epoch2", "end")


def phases(command: list[str], checkout: str | None) -> dict[str, float]:
    """One run's wall time and phases (seconds), from when its epoch lines appear."""
    env = kit_env()
    if checkout:
        env["PYTHONPATH"] = checkout  # ahead of the installed kit
    marks: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("Epoch ") or " - val_accuracy" in line:
                marks.append(time.perf_counter() - start)
        wall = time.perf_counter() - start
    if process.wait() != 0 or len(marks) != 4:
        raise SystemExit(
            f"the run failed or printed other epochs. Received: exit code {process.returncode}, {len(marks)} marks"
        )
    begin1, end1, begin2, end2 = marks
    return {"wall": wall, "to_fit": begin1, "epoch1": end1 - begin1, "epoch2": end2 - begin2, "end": wall - end2}


def interleaved(
    arms: dict[str, Callable[[], dict[str, float]]], rounds: int, seed: int, shown: str
) -> dict[str, list[dict[str, float]]]:
    """``rounds`` rounds of every arm (a call that times one run), in a shuffled order per round;
    prints each round's ``shown`` figure per arm."""
    order = random.Random(seed)
    results: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    for number in range(1, rounds + 1):
        names = list(arms)
        order.shuffle(names)
        for name in names:
            results[name].append(arms[name]())
        print(
            f"round {number} ({', '.join(names)}): " + "; ".join(f"{n} {results[n][-1][shown]:.2f}" for n in arms),
            flush=True,
        )
    return results


def print_medians(results: dict[str, list[dict[str, float]]], measures: tuple[str, ...]) -> None:
    """One line per arm: the median of each measure."""
    print("\nmedians (s)      " + " ".join(f"{k:>11}" for k in measures))
    for name, runs in results.items():
        print(f"{name:16s} " + " ".join(f"{statistics.median(r[k] for r in runs):11.2f}" for k in measures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="rounds of every arm (default 6)")
    parser.add_argument("--baseline", help="another checkout of the kit: a third arm, tracked with its code")
    parser.add_argument("--seed", type=int, default=0, help="seed of the arms' order")
    args = parser.parse_args()
    arms: dict[str, Callable[[], dict[str, float]]] = {
        "untracked": functools.partial(phases, [*COMMAND, "--no-tracking"], None),
        "tracked": functools.partial(phases, COMMAND, None),
    }
    if args.baseline:
        arms["baseline"] = functools.partial(phases, COMMAND, args.baseline)
    results = interleaved(arms, args.rounds, args.seed, "wall")
    print_medians(results, PHASES)
    ratios = {name: statistics.median(r["epoch1"] / r["epoch2"] for r in runs) for name, runs in results.items()}
    print("epoch1/epoch2   " + ", ".join(f"{name} {ratio:.3f}" for name, ratio in ratios.items()))


if __name__ == "__main__":
    main()
