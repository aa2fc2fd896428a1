"""Float32 training-step time of each model family with TensorFlow's oneDNN off and on.

    python benchmarks/onednn.py               # 3 interleaved pairs per family
    python benchmarks/onednn.py --repeats 1 --only mnist_cnn lenet5

Each measurement is a fresh process (``TF_ENABLE_ONEDNN_OPTS=0`` or ``1``, set before
TensorFlow's import, which reads it once) that builds the model with ``create_model``,
compiles it with Adam, runs three untimed warm-up steps, then times one epoch of
``fit`` on cached random images (the input pipeline costs ~nothing). Pairs are interleaved
(off, on, off, on, ...) so the VM's speed drifts hit both. Prints a Markdown table and saves
JSON (with the CPU flags) under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# family: (image side, batch, timed steps) -- small enough for a 2-core VM, big enough to time
CASES = {
    "mnist_cnn": (28, 128, 40),
    "lenet5": (28, 128, 40),
    "alexnet": (64, 64, 10),
    "vgg11": (32, 32, 10),
    "vgg16": (32, 32, 10),
    "resnet18": (32, 32, 6),
    "resnet50": (32, 16, 6),
}


def child(name: str, side: int, batch: int, steps: int) -> None:
    """Times ``steps`` float32 training steps of ``name`` and prints ``{"ms_per_step": ...}``."""
    import numpy as np

    from kerascnn import device
    from kerascnn.models import create_model

    tf = device.import_tensorflow()
    model = create_model(name, input_shape=(side, side, 1), num_classes=10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, side, side, 1), dtype=np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, rng.integers(0, 10, len(x)))).batch(batch).cache()
    model.fit(data.take(3), epochs=1, verbose=0)  # warm-up: tracing and the first steps
    started = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    seconds = time.perf_counter() - started
    print(json.dumps({"onednn": device.machine().onednn, "ms_per_step": 1000 * seconds / steps}))


def measure(name: str, onednn: str) -> float:
    side, batch, steps = CASES[name]
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="2")
    args = [sys.executable, __file__, "--child", name, str(side), str(batch), str(steps)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} with oneDNN={onednn} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["onednn"] is not (onednn == "1"):
        raise RuntimeError(f"TF_ENABLE_ONEDNN_OPTS={onednn} had no effect: {result}")
    return float(result["ms_per_step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, *sizes = args.child
        child(name, *map(int, sizes))
        return
    from kerascnn import hardware

    rows: dict[str, dict[str, list[float]]] = {name: {"off": [], "on": []} for name in args.only}
    for repeat in range(args.repeats):
        for name in args.only:
            for state, value in (("off", "0"), ("on", "1")):
                rows[name][state].append(measure(name, value))
            off, on = rows[name]["off"][-1], rows[name]["on"][-1]
            print(f"  #{repeat + 1} {name}: off {off:.1f} ms, on {on:.1f} ms ({off / on:.2f}x)", flush=True)
    cpu = hardware.detect()
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu.describe_cpu(), "cases": CASES, "rows": rows}
    folder = ROOT / "benchmarks" / "results"
    folder.mkdir(exist_ok=True)
    (folder / f"onednn-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(report, indent=1))
    print(f"\n{report['date']}, {report['cpu']}\n")
    print("| model | input, batch | oneDNN off (ms/step) | oneDNN on (ms/step) | speed-up, median of pairs |")
    print("|---|---|---|---|---|")
    for name, times in rows.items():
        side, batch, _ = CASES[name]
        ratios = [off / on for off, on in zip(times["off"], times["on"], strict=True)]
        shown = {state: " / ".join(f"{t:.0f}" for t in values) for state, values in times.items()}
        print(
            f"| {name} | {side}x{side}x1, {batch} | {shown['off']} | {shown['on']} | {statistics.median(ratios):.2f}x |"
        )


if __name__ == "__main__":
    main()
