"""A command's timeline: its output lines and the CPU time of it and its children, sampled.

    python benchmarks/timeline.py -- python -m kerascnn train mnist_cnn --dataset mnist
    python benchmarks/timeline.py -- python -m kerascnn train mnist_cnn --dataset mnist --no-tracking

Prints each output line with the second it appeared, then every ``--every`` seconds the CPU
seconds used so far by the command and by each child process (the tracking writer, for a
tracked ``train``). Comparing a tracked and an untracked timeline shows where tracking costs
time (before ``fit``, during the first epoch, at the end), which differences of whole-process
wall times on a noisy VM cannot. Uses psutil (installed with the kit).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import threading
import time

import psutil


def cpu_seconds(process: psutil.Process) -> float | None:
    """User + system CPU seconds of ``process`` so far (``None`` once it is gone)."""
    try:
        times = process.cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between printed samples (default 1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given. Received: command=[]")
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.perf_counter() - start, line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples: list[tuple[float, float | None, dict[int, float | None]]] = []
    watched = psutil.Process(process.pid)
    kids: dict[int, psutil.Process] = {}
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            kids.update((child.pid, child) for child in watched.children())
        at = time.perf_counter() - start
        samples.append((at, cpu_seconds(watched), {pid: cpu_seconds(child) for pid, child in kids.items()}))
        time.sleep(0.25)
    wall = time.perf_counter() - start
    reader.join(timeout=2)
    for at, line in lines:
        if line.strip():
            print(f"{at:7.1f}s  {line[-160:]}")
    print(f"\nwall {wall:.1f} s; CPU seconds so far: the command, then each child (pid)")
    step = max(1, round(args.every / 0.25))
    for at, own, of_kids in samples[::step]:
        kids_text = "  ".join(f"{pid}: {cpu:.2f}" for pid, cpu in of_kids.items() if cpu is not None)
        print(f"{at:7.1f}s  {own if own is not None else float('nan'):7.2f}  {kids_text}")


if __name__ == "__main__":
    main()
