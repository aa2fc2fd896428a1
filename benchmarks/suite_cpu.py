"""Where the test suite's CPU goes: every Python process it starts, by kind and by test.

    python benchmarks/suite_cpu.py [PYTEST ARGS...]

Runs ``python -m pytest`` with a ``sitecustomize`` on ``PYTHONPATH`` that appends one JSON line
per Python process when it exits (``atexit`` or ``os._exit``; SIGKILLed ones are missed): its
``argv``, its own CPU seconds (``getrusage``) and the test that was running (subprocesses inherit
``PYTEST_CURRENT_TEST``). Then prints the CPU by kind of process and the tests whose
subprocesses used the most.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOOK = """
import atexit, json, os, resource, sys
def _record():
    try:
        r = resource.getrusage(resource.RUSAGE_SELF)
        line = json.dumps({"argv": sys.argv[:3], "cpu": r.ru_utime + r.ru_stime,
                           "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]})
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, (line + "\\n").encode())
        os.close(fd)
    except Exception:
        pass
atexit.register(_record)
_exit = os._exit
os._exit = lambda code: (_record(), _exit(code))
"""


def kind(argv: list[str]) -> str:
    """``cli:train``, ``writer``, ``pytest`` or the command's start."""
    if argv and argv[0].endswith("kerascnn/tracking/writer.py"):  # `-m` leaves the module's path in argv[0]
        return "writer"
    if argv and argv[0].endswith(("kerascnn/__main__.py", "bin/kerascnn")):
        return f"cli:{argv[1] if len(argv) > 1 else ''}"
    if argv == ["-c"]:
        return "pytest-xdist workers (in-process tests)"
    if argv and argv[0].endswith("pytest/__main__.py"):
        return "pytest"
    return " ".join(argv)[:60]


def main() -> None:
    with tempfile.TemporaryDirectory() as hook:
        log = Path(hook) / "log.jsonl"
        (Path(hook) / "sitecustomize.py").write_text(f"LOG = {str(log)!r}\n{HOOK}")
        path = os.pathsep.join(p for p in (hook, os.environ.get("PYTHONPATH")) if p)
        env = dict(os.environ, PYTHONPATH=path)
        code = subprocess.call([sys.executable, "-m", "pytest", *sys.argv[1:]], cwd=ROOT, env=env)
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    count: collections.Counter[str] = collections.Counter()
    cpu: dict[str, float] = collections.defaultdict(float)
    by_test: dict[str, float] = collections.defaultdict(float)
    for row in rows:
        name = kind(row["argv"])
        count[name] += 1
        cpu[name] += row["cpu"]
        if row["test"]:
            by_test[row["test"]] += row["cpu"]
    print(f"\n{sum(r['cpu'] for r in rows):.0f} CPU-s in {len(rows)} Python processes (pytest exit code {code})")
    print(f"{'CPU-s':>8} {'procs':>6}  kind")
    for name in sorted(cpu, key=lambda k: -cpu[k]):
        print(f"{cpu[name]:8.1f} {count[name]:6d}  {name}")
    print(f"\n{'CPU-s':>8}  test (its subprocesses)")
    for test in sorted(by_test, key=lambda k: -by_test[k])[:20]:
        print(f"{by_test[test]:8.1f}  {test}")
    sys.exit(code)


if __name__ == "__main__":
    main()
