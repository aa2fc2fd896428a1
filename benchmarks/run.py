"""Side-by-side benchmarks; prints Markdown for BENCHMARKS.md and saves JSON under benchmarks/results/.

    python benchmarks/run.py --quick      # a few minutes: 1 repeat, short throughput runs
    python benchmarks/run.py              # 3 interleaved repeats, medians
    python benchmarks/run.py --only throughput
    python benchmarks/run.py --only accuracy --repeats 5   # 5 pairs instead of 3

1. time-to-accuracy: ``kerascnn train mnist_cnn --dataset mnist`` (tracked, no other
   flag: ``precision=auto``) vs the classic Keras script (benchmarks/classic_mnist.py),
   whole-process wall time, interleaved pairs; target >= 99.0% test accuracy at <= 0.30x
   the script's time. Then once each with ``--precision float32`` and ``--precision mixed``.
2. tracking overhead: the same command with and without ``--no-tracking``, interleaved
   pairs, half tracked first, in shuffled order (10 by default, ``--pairs``), a new store
   per run (``--kept-store``: one for all, as a user's repeated runs); target <= 3%.
3. throughput at 32x32: the kit's tf.data pipeline vs plain ``model.fit`` on NumPy
   arrays (same model, same compile), images/s and GFLOP/s (6 x MACs per image,
   the usual forward + backward estimate); target >= 1.0x.
4. where time goes: one mnist_cnn epoch split into input pipeline and steps.

MNIST comes from $KERASCNN_DATA_DIR (default ../shared/data beside the repo).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import kit_env  # (this folder is on the path of a script run from it)

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _env() -> dict[str, str]:
    return kit_env(TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def _timed(cmd: list[str], cwd: str) -> tuple[float, dict]:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return wall, json.loads(result.stdout.strip().splitlines()[-1])


def _kit(cwd: str, *extra: str) -> tuple[float, dict]:
    return _timed([PY, "-m", "kerascnn", "train", "mnist_cnn", "--dataset", "mnist", "--json", *extra], cwd)


def time_to_accuracy(repeats: int) -> dict:
    rows = []
    forced = {}
    for i in range(repeats):  # interleaved, so drifts of the machine hit both
        with tempfile.TemporaryDirectory() as cwd:
            classic_wall, classic = _timed([PY, str(ROOT / "benchmarks" / "classic_mnist.py")], cwd)
            kit_wall, kit = _kit(cwd)
        rows.append(
            {
                "classic_wall_s": classic_wall,
                "classic_accuracy": classic["test_accuracy"],
                "kit_wall_s": kit_wall,
                "kit_accuracy": kit["test_accuracy"],
                "ratio": kit_wall / classic_wall,
            }
        )
        print(
            f"  time-to-accuracy #{i + 1}: classic {classic_wall:.1f}s {classic['test_accuracy']:.4f} | "
            f"kit {kit_wall:.1f}s {kit['test_accuracy']:.4f} | ratio {kit_wall / classic_wall:.2f}",
            flush=True,
        )
    for precision in ("float32", "mixed"):  # once each, for the precision rows of the table
        with tempfile.TemporaryDirectory() as cwd:
            wall, result = _kit(cwd, "--precision", precision)
        forced[precision] = {"wall_s": wall, "accuracy": result["test_accuracy"]}
        print(f"  forced --precision {precision}: {wall:.1f}s {result['test_accuracy']:.4f}", flush=True)
    return {
        "runs": rows,
        "median_ratio": statistics.median(r["ratio"] for r in rows),
        "min_kit_accuracy": min(r["kit_accuracy"] for r in rows),
        "forced": forced,
    }


def tracking_overhead(pairs: int, repeats: int, kept_store: bool = False) -> dict:
    """Whole processes (the tracking writer's start, MLflow's import and the store's opening
    included), interleaved pairs, half of them tracked first, in a shuffled order (strict
    alternation locked onto the VMs' periodic speed phases: the order effect flipped sign
    between two runs); then pairs in one warm process. Each run gets a new store (a first run
    in a new folder: copied from the kit's cached empty store, made on a machine's first
    store, ``kerascnn.tracking.store.empty_store``), or with ``kept_store`` all runs share one
    folder, as a user's repeated runs do (the store is made by an untimed warm-up run)."""
    rows = []
    firsts = [True] * (pairs // 2) + [False] * (pairs - pairs // 2)
    random.Random(time.time_ns()).shuffle(firsts)
    with tempfile.TemporaryDirectory() as kept:
        if kept_store:
            _kit(kept, "--epochs", "1", "--train-samples", "512")
        for i, tracked_first in enumerate(firsts):
            times = {}
            for tracked in (True, False) if tracked_first else (False, True):
                folder = contextlib.nullcontext(kept) if kept_store else tempfile.TemporaryDirectory()
                with folder as cwd:
                    times[tracked], _ = _kit(cwd, *(() if tracked else ("--no-tracking",)))
            overhead = times[True] / times[False] - 1
            rows.append(
                {
                    "tracked_s": times[True],
                    "untracked_s": times[False],
                    "overhead": overhead,
                    "tracked_first": tracked_first,
                }
            )
            print(
                f"  tracking #{i + 1} ({'tracked' if tracked_first else 'untracked'} first): tracked "
                f"{times[True]:.1f}s untracked {times[False]:.1f}s overhead {100 * overhead:+.1f}%",
                flush=True,
            )
    warm = _warm_pairs(repeats)
    tracked, untracked = (
        statistics.median(r["tracked_s"] for r in rows),
        statistics.median(r["untracked_s"] for r in rows),
    )
    return {
        "kept_store": kept_store,
        "runs": rows,
        "median_overhead": statistics.median(r["overhead"] for r in rows),
        "median_tracked_s": tracked,
        "median_untracked_s": untracked,
        "ratio_of_medians": tracked / untracked - 1,
        "warm_runs": warm,
        "median_warm_overhead": statistics.median(r["overhead"] for r in warm),
    }


def _warm_pairs(repeats: int) -> list[dict]:
    """Tracked and untracked in one process that has started its writer and opened the store."""
    import kerascnn

    warm = []
    with tempfile.TemporaryDirectory() as cwd:
        here = os.getcwd()
        os.chdir(cwd)
        try:
            kerascnn.train("mnist_cnn", "mnist", epochs=1, train_samples=512, verbose=0)  # imports, writer, store
            for i in range(repeats):
                times = {}
                for tracked in (True, False) if i % 2 == 0 else (False, True):
                    start = time.perf_counter()
                    kerascnn.train("mnist_cnn", "mnist", tracking=tracked, verbose=0)
                    times[tracked] = time.perf_counter() - start
                warm.append(
                    {"tracked_s": times[True], "untracked_s": times[False], "overhead": times[True] / times[False] - 1}
                )
                print(
                    f"  tracking in a warm process #{i + 1}: tracked {times[True]:.1f}s untracked "
                    f"{times[False]:.1f}s overhead {100 * (times[True] / times[False] - 1):+.1f}%",
                    flush=True,
                )
        finally:
            os.chdir(here)
    return warm


def memory(quick: bool) -> dict:
    """RSS of `kerascnn tune` after each of 20 small trials (the reliability bound)."""
    import psutil

    with tempfile.TemporaryDirectory() as cwd:
        process = subprocess.Popen(
            [
                PY,
                "-m",
                "kerascnn",
                "tune",
                "mnist_cnn",
                "--dataset",
                "mnist",
                "--max-trials",
                "20",
                "--epochs",
                "1",
                "--train-samples",
                "200",
            ],
            cwd=cwd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ps = psutil.Process(process.pid)
        rss = [ps.memory_info().rss / 2**20 for line in process.stdout if line.startswith("kerascnn: trial ")]
        process.wait()
    growth = max(rss[5:]) - rss[4]
    print(f"  memory: RSS after trials 1..20 (MB): {[round(r) for r in rss]}; growth 5->20 {growth:.0f} MB", flush=True)
    return {"rss_mb": rss, "growth_5_20_mb": growth}


def throughput(quick: bool) -> dict:
    """Images/s of one steady-state epoch: kit pipeline vs plain arrays, same model and compile."""
    import keras
    import numpy as np

    from kerascnn import create_model, describe
    from kerascnn.data import load_dataset, make_pipeline, plan_adaptation

    plan = {"mnist_cnn": 4096 if quick else 16384, "vgg11": 1024 if quick else 4096, "resnet18": 128 if quick else 384}
    out = {}
    for name, n in plan.items():
        data = load_dataset("mnist", train_samples=n, validation_split=0.0)
        adapt = plan_adaptation(data.image_shape, 32, (32, 32, 3))
        x_u8, y = data.x_train, data.y_train
        pipe = make_pipeline(x_u8, y, batch_size=128, adaptation=adapt, training=True)
        arrays = np.concatenate(
            [b[0] for b in make_pipeline(x_u8, y, batch_size=1024, adaptation=adapt).as_numpy_iterator()]
        )
        kwargs = {"width": 16, "dense_units": (256, 256)} if name == "vgg11" else {}
        macs = describe(create_model(name, input_shape=(32, 32, 3), num_classes=10, **kwargs)).macs
        fits = {}
        for label in ("plain", "kit"):
            keras.utils.set_random_seed(0)
            model = create_model(name, input_shape=(32, 32, 3), num_classes=10, **kwargs)
            model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
            fits[label] = (
                functools.partial(model.fit, arrays, y, batch_size=128, epochs=1, verbose=0)
                if label == "plain"
                else functools.partial(model.fit, pipe, epochs=1, verbose=0)
            )
            fits[label]()  # warm-up epoch: tracing, allocation
        times: dict[str, list[float]] = {"plain": [], "kit": []}
        for _ in range(3 if quick else 5):  # interleaved: the machine's drift hits both
            for label in ("plain", "kit"):
                start = time.perf_counter()
                fits[label]()
                times[label].append(time.perf_counter() - start)
        result = {}
        for label in ("plain", "kit"):
            ips = n / statistics.median(times[label])
            result[label] = {"images_per_s": ips, "gflops": 6 * macs * ips / 1e9}
        result["ratio"] = result["kit"]["images_per_s"] / result["plain"]["images_per_s"]
        result["macs_per_image"] = macs
        out[name] = result
        print(
            f"  throughput {name}: plain {result['plain']['images_per_s']:.0f} img/s, kit "
            f"{result['kit']['images_per_s']:.0f} img/s ({result['ratio']:.2f}x), "
            f"{result['kit']['gflops']:.1f} GFLOP/s",
            flush=True,
        )
        keras.backend.clear_session()
    return out


def where_time_goes(quick: bool) -> dict:
    """One mnist_cnn epoch (the recipe's settings): input pipeline alone, compute alone, both."""
    from kerascnn import create_model, device, hardware
    from kerascnn.data import load_dataset, make_pipeline, plan_adaptation
    from kerascnn.models import get_family
    from kerascnn.recipes import make_optimizer

    recipe = get_family("mnist_cnn").recipe
    policy = hardware.plan(device.machine()).policy
    data = load_dataset("mnist", train_samples=20000 if quick else None)
    adapt = plan_adaptation(data.image_shape, 18)
    pipe = make_pipeline(data.x_train, data.y_train, batch_size=recipe.batch_size, adaptation=adapt, training=True)
    steps = sum(1 for _ in pipe)
    start = time.perf_counter()
    for _ in pipe:
        pass
    input_only = time.perf_counter() - start
    with _policy(policy):
        model = create_model("mnist_cnn", input_shape=(28, 28, 1), num_classes=10)
        model.compile(
            make_optimizer(recipe, steps),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=recipe.steps_per_execution,
        )
    one = pipe.take(1).cache().repeat(steps)  # the same batch again: no input work
    model.fit(one, epochs=1, verbose=0)
    model.fit(pipe, epochs=1, verbose=0)
    timings: dict[str, list[float]] = {"compute": [], "full": []}
    for _ in range(2 if quick else 4):  # interleaved, medians: the machine drifts
        for label, data_ in (("compute", one), ("full", pipe)):
            start = time.perf_counter()
            model.fit(data_, epochs=1, verbose=0)
            timings[label].append(time.perf_counter() - start)
    compute_only, full = statistics.median(timings["compute"]), statistics.median(timings["full"])
    out = {
        "steps": steps,
        "input_only_s": input_only,
        "compute_only_s": compute_only,
        "epoch_s": full,
        "input_share_if_serial": input_only / full,
        "overlap_cost": full / compute_only - 1,
    }
    print(
        f"  one epoch ({steps} steps): input pipeline alone {input_only:.2f}s, compute alone "
        f"{compute_only:.2f}s, together {full:.2f}s ({100 * (full / compute_only - 1):+.1f}% over compute)",
        flush=True,
    )
    return out


def _policy(name: str):
    from kerascnn.device import dtype_policy

    return dtype_policy(name)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> int:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    except (ValueError, OSError):
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repeat and short throughput runs")
    parser.add_argument("--only", choices=["accuracy", "tracking", "throughput", "profile", "memory"], action="append")
    parser.add_argument("--pairs", type=int, help="tracked/untracked pairs of the tracking benchmark (default 10)")
    parser.add_argument("--kept-store", action="store_true", help="tracking benchmark: one store for all runs")
    parser.add_argument("--repeats", type=int, help="time-to-accuracy pairs and warm tracking pairs (default 3)")
    args = parser.parse_args()
    os.environ.update({k: v for k, v in _env().items() if k.startswith(("KERASCNN", "TF_CPP"))})
    repeats = args.repeats or (1 if args.quick else 3)
    chosen = args.only or ["accuracy", "tracking", "throughput", "profile", "memory"]
    from kerascnn import device

    tf = device.import_tensorflow()  # before Keras: with the kit's oneDNN choice, as in its own runs
    import keras
    import mlflow

    machine = device.machine()
    report: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu_flags": " ".join(sorted(machine.cpu_flags)),
        "native_bfloat16": machine.native_bfloat16,
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores, {_memory_gib()} GiB RAM, no GPU"
        if not tf.config.list_physical_devices("GPU")
        else f"{_cpu_model()}, GPU",
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "mlflow": mlflow.__version__,
        },
        "quick": args.quick,
    }
    print(f"benchmarks ({'quick' if args.quick else 'full'}) on {report['machine']}", flush=True)
    if "accuracy" in chosen:
        report["time_to_accuracy"] = time_to_accuracy(repeats)
    if "tracking" in chosen:
        pairs = args.pairs or (2 if args.quick else 10)
        report["tracking_overhead"] = tracking_overhead(pairs, repeats, args.kept_store)
    if "throughput" in chosen:
        report["throughput"] = throughput(args.quick)
    if "profile" in chosen:
        report["where_time_goes"] = where_time_goes(args.quick)
    if "memory" in chosen:
        report["memory"] = memory(args.quick)
    folder = ROOT / "benchmarks" / "results"
    folder.mkdir(exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"\nsaved {path}\n")
    print(markdown(report))


def markdown(r: dict) -> str:
    lines = [
        f"Run {r['date']} on {r['machine']} (CPU flags: {r.get('cpu_flags', '?')}); "
        f"Python {r['versions']['python']}, TensorFlow "
        f"{r['versions']['tensorflow']}, Keras {r['versions']['keras']}, MLflow {r['versions']['mlflow']}"
        f"{' (quick)' if r['quick'] else ''}.",
        "",
    ]
    if "time_to_accuracy" in r:
        t = r["time_to_accuracy"]
        lines += [
            "| run | classic script | accuracy | kit (tracked) | accuracy | kit / classic |",
            "|---|---|---|---|---|---|",
        ]
        for i, row in enumerate(t["runs"], 1):
            lines.append(
                f"| {i} | {row['classic_wall_s']:.1f} s | {row['classic_accuracy']:.4f} | "
                f"{row['kit_wall_s']:.1f} s | {row['kit_accuracy']:.4f} | {row['ratio']:.2f}x |"
            )
        lines += [
            f"\nMedian ratio **{t['median_ratio']:.2f}x** (target <= 0.30x); lowest kit accuracy "
            f"**{t['min_kit_accuracy']:.4f}** (target >= 0.990).",
            "",
        ]
        for precision, row in t.get("forced", {}).items():
            lines.append(f"Forced `--precision {precision}`: {row['wall_s']:.1f} s, {row['accuracy']:.4f}.")
        lines.append("")
    if "tracking_overhead" in r:
        t = r["tracking_overhead"]
        lines += [
            f"Store: {'one for all runs' if t.get('kept_store') else 'a new one for each run'}.",
            "",
            "| pair | first | tracked | untracked | overhead |",
            "|---|---|---|---|---|",
        ]
        for i, row in enumerate(t["runs"], 1):
            first = {True: "tracked", False: "untracked"}.get(row.get("tracked_first"), "?")
            lines.append(
                f"| {i} | {first} | {row['tracked_s']:.1f} s | {row['untracked_s']:.1f} s | "
                f"{100 * row['overhead']:+.1f}% |"
            )
        warm_list = ", ".join(f"{100 * w['overhead']:+.1f}%" for w in t["warm_runs"])
        lines += [
            f"\nMedian overhead **{100 * t['median_overhead']:+.1f}%** over {len(t['runs'])} pairs as whole "
            f"processes (target <= 3%); medians tracked {t['median_tracked_s']:.1f} s, untracked "
            f"{t['median_untracked_s']:.1f} s ({100 * t['ratio_of_medians']:+.1f}%); in a warm process "
            f"{100 * t['median_warm_overhead']:+.1f}% ({warm_list}).",
            "",
        ]
    if "throughput" in r:
        lines += [
            "| model (32x32x3) | MACs/image | plain fit on arrays | kit pipeline | kit / plain | kit GFLOP/s |",
            "|---|---|---|---|---|---|",
        ]
        for name, t in r["throughput"].items():
            lines.append(
                f"| {name} | {t['macs_per_image'] / 1e6:.1f} M | {t['plain']['images_per_s']:.0f} img/s | "
                f"{t['kit']['images_per_s']:.0f} img/s | {t['ratio']:.2f}x | {t['kit']['gflops']:.1f} |"
            )
        lines.append("")
    if "where_time_goes" in r:
        t = r["where_time_goes"]
        lines.append(
            f"One mnist_cnn epoch ({t['steps']} steps, recipe settings): input pipeline alone "
            f"{t['input_only_s']:.2f} s, compute alone {t['compute_only_s']:.2f} s, together "
            f"{t['epoch_s']:.2f} s ({100 * t['overlap_cost']:+.1f}% over compute alone)."
        )
    if "memory" in r:
        m = r["memory"]
        lines.append(
            f"\nRSS of a 20-trial search after each trial: {', '.join(str(round(x)) for x in m['rss_mb'])} MB; "
            f"growth from trial 5 to 20: {m['growth_5_20_mb']:.0f} MB (bound: 250 MB)."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
