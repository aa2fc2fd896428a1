"""``kerascnn doctor``: this machine, the versions, where data and runs go, and what every
``auto`` setting resolves to here and why; ``--probe`` measures the precision choice.

Example:
    >>> report = report(probe=False)  # doctest: +SKIP
    >>> report["auto"]["precision"]["policy"]  # doctest: +SKIP
    'float32'
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from kerascnn import device, hardware

PACKAGES = ("kerascnn", "tensorflow", "keras", "keras-tuner", "mlflow", "numpy")
PROBE_STEPS, PROBE_BATCH, PROBE_ROUNDS = 12, 128, 3


def _version(package: str) -> str | None:
    for name in (package, "tensorflow-cpu") if package == "tensorflow" else (package,):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _nvidia_smi() -> list[dict[str, Any]]:
    """The GPUs the NVIDIA driver sees (TensorFlow may see fewer: a CPU-only build, no CUDA)."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = "--query-gpu=name,compute_cap,memory.total,driver_version"
    try:
        found = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader,nounits"],
            capture_output=True,
            check=False,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if found.returncode != 0:  # no driver loaded, or one too old for the query's fields
        return []
    return [parse_nvidia_smi(line) for line in found.stdout.splitlines() if line.strip()]


def parse_nvidia_smi(line: str) -> dict[str, Any]:
    """One line of ``nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version``.

    Example:
        >>> parse_nvidia_smi("NVIDIA H200, 9.0, 143771, 570.86.15")
        {'name': 'NVIDIA H200', 'compute_capability': [9, 0], 'memory_mib': 143771, 'driver': '570.86.15'}
    """
    name, cc, memory, driver = ([*(p.strip() for p in line.split(",")), "", "", ""])[:4]
    major, _, minor = cc.partition(".")
    return {
        "name": name,
        "compute_capability": [int(major), int(minor)] if major.isdigit() and minor.isdigit() else [],
        "memory_mib": int(memory) if memory.isdigit() else None,
        "driver": driver,
    }


def _data() -> dict[str, Any]:
    from kerascnn.data import DATA_DIR_ENV, NAMED

    folder = os.environ.get(DATA_DIR_ENV)
    found = sorted(n for n in NAMED if folder and (Path(folder) / f"{n}.npz").is_file())
    report = {
        "env": DATA_DIR_ENV,
        "folder": folder,
        "datasets_there": found,
        "otherwise": "keras.datasets (downloads when online)",
    }
    if folder and not Path(folder).is_dir():  # what `train` refuses
        report["problem"] = "not a folder: training refuses it"
    return report


def _tracking() -> dict[str, Any]:
    from kerascnn.errors import ArgumentError
    from kerascnn.tracking import store

    try:
        uri = store.resolve_tracking_uri()
    except ArgumentError as e:
        return {"uri": os.environ.get("MLFLOW_TRACKING_URI"), "problem": str(e)}
    db = store.sqlite_path(uri)
    info: dict[str, Any] = {"uri": uri, "exists": db.exists() if db else None, "home": str(store.home(uri))}
    try:
        info["timeout_s"] = store.timeout_s()
    except ArgumentError as e:  # (a row of the report, not the end of it; and a server is not asked)
        info["timeout_s"], info["problem"] = None, str(e)
    if db is None and "problem" not in info:
        try:
            store.probe(uri)
            info["reachable"] = True
        except ArgumentError as e:
            info["reachable"], info["problem"] = False, str(e)
    spool = store.home(uri) / "spool"
    info["spooled_runs"] = len([p for p in spool.iterdir() if p.is_dir()]) if spool.is_dir() else 0
    return info


def report(probe: bool = False) -> dict[str, Any]:
    """Everything ``kerascnn doctor`` prints, as a JSON-able dict."""
    machine = device.machine()
    driver = _nvidia_smi()
    plan = hardware.plan(machine)
    mixed = hardware.plan(machine, precision="mixed")
    result: dict[str, Any] = {
        "machine": {
            "os": platform.platform(),
            "python": platform.python_version(),
            "cpu": machine.cpu_model,
            "arch": machine.arch,
            "cores": machine.cores,
            "cpu_flags": sorted(machine.cpu_flags),
            "native_bfloat16": machine.native_bfloat16,
            "onednn": machine.onednn,
            "gpus": _gpus(machine.gpus, driver),
            "nvidia_smi": driver,
        },
        "versions": {p: _version(p) for p in PACKAGES},
        "data": _data(),
        "tracking": _tracking(),
        "auto": {
            "precision": {"policy": plan.policy, "why": plan.reasons["precision"]},
            "jit": {"value": plan.jit, "why": plan.reasons["jit"]},
            "strategy": {"value": hardware.auto_strategy(machine)[0], "why": plan.reasons["strategy"]},
            "onednn": {"value": machine.onednn, "why": machine.onednn_why},
            "mixed_if_forced": {
                "policy": mixed.policy,
                "warnings": [w for w in mixed.warnings if w not in machine.warnings],
            },
        },
        "warnings": list(machine.warnings),
    }
    if probe:
        result["probe"] = run_probe(machine)
    return result


def run_probe(machine: hardware.Machine) -> list[dict[str, Any]]:
    """Images/s of ``mnist_cnn`` training steps in float32, mixed precision (and with XLA on
    a GPU), on random 28x28 images. Every variant is built and warmed up first, then timed in
    ``PROBE_ROUNDS`` alternating rounds; each keeps its fastest, so that one slow moment of
    the machine does not decide the ranking."""
    import keras
    import numpy as np

    variants = [("float32", False), ("mixed", False)] + ([("mixed", True)] if machine.gpus else [])
    plans = [hardware.plan(machine, precision=precision, jit=jit) for precision, jit in variants]
    rng = np.random.default_rng(0)
    x = rng.random((PROBE_BATCH * PROBE_STEPS, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, len(x))
    with device.cpp_lines_hidden():  # e.g. oneDNN's "bfloat16 only with AVX-512" on an AVX2 CPU
        models = [_warm_model(plan, x, y) for plan in plans]
        rounds = [[_time_fit(model, x, y) for model in models] for _ in range(PROBE_ROUNDS)]
    del models
    keras.backend.clear_session()  # the probe's models leave no state behind (a notebook calling report())
    return [
        {
            "precision": plan.precision,
            "policy": plan.policy,
            "jit": plan.jit,
            "steps": PROBE_STEPS,
            "rounds": PROBE_ROUNDS,
            "ms_per_step": round(seconds / PROBE_STEPS * 1000, 1),
            "images_per_s": round(len(x) / seconds, 1),
        }
        for plan, seconds in zip(plans, map(min, zip(*rounds)))
    ]


def _warm_model(plan: hardware.SpeedPlan, x: Any, y: Any) -> Any:
    """``mnist_cnn`` compiled as ``plan`` says (policy, XLA), its training step traced by a short fit."""
    from kerascnn.models import create_model

    with device.dtype_policy(plan.policy):
        model = create_model("mnist_cnn")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=plan.jit)
    model.fit(x[: PROBE_BATCH * 3], y[: PROBE_BATCH * 3], batch_size=PROBE_BATCH, epochs=1, verbose=0)
    return model


def _time_fit(model: Any, x: Any, y: Any) -> float:
    started = time.perf_counter()
    model.fit(x, y, batch_size=PROBE_BATCH, epochs=1, verbose=0)
    return time.perf_counter() - started


def format_report(r: dict[str, Any]) -> str:
    """The report as aligned text."""
    m, t, d = r["machine"], r["tracking"], r["data"]
    gpus = "; ".join(_gpu_line(g) for g in m["gpus"]) or "none visible to TensorFlow"
    driver = "; ".join(_gpu_line(g) + f", driver {g['driver']}" for g in m["nvidia_smi"])
    lines = [
        f"machine     {m['cpu']} ({m['arch']}, {m['cores']} cores), {m['os']}, Python {m['python']}",
        f"cpu flags   {' '.join(m['cpu_flags']) or 'none'} (of those the kit reads); "
        f"native bfloat16: {'yes' if m['native_bfloat16'] else 'no'}"
        + {True: "; TensorFlow's oneDNN: on", False: "; TensorFlow's oneDNN: off", None: ""}[m["onednn"]],
        f"gpus        {gpus}" + (f"; the driver sees {driver}" if driver else ""),
        "versions    " + ", ".join(f"{k} {v or 'not installed'}" for k, v in r["versions"].items()),
        f"data        {d['env']}={d['folder'] or '(unset)'}"
        + (f": {', '.join(d['datasets_there'])}" if d["datasets_there"] else "")
        + (f" (problem: {d['problem']})" if d.get("problem") else f"; otherwise {d['otherwise']}"),
        f"tracking    {t.get('uri')}"
        + (f" (problem: {t['problem']})" if t.get("problem") else "")
        + (" (not created yet: the first tracked run creates it)" if t.get("exists") is False else "")
        + (f"; {t['spooled_runs']} run(s) waiting in the spool (kerascnn sync)" if t.get("spooled_runs") else ""),
        f"precision   auto -> {r['auto']['precision']['policy']}: {_why(r['auto']['precision'])}",
        f"xla (jit)   auto -> {'on' if r['auto']['jit']['value'] else 'off'}: {_why(r['auto']['jit'])}",
        f"strategy    auto -> {r['auto']['strategy']['value']}: {_why(r['auto']['strategy'])}",
        _onednn_line(r["auto"]["onednn"]),
    ]
    for warning in r["warnings"]:
        lines.append(f"warning     {warning}")
    for warning in r["auto"]["mixed_if_forced"]["warnings"]:
        lines.append(f"note        --precision mixed here: {warning}")
    for p in r.get("probe", []):
        lines.append(
            f"probe       {p['policy']:<15} jit={'on ' if p['jit'] else 'off'} {p['ms_per_step']:>7.1f} ms/step "
            f"{p['images_per_s']:>8.1f} images/s ({p['steps']} steps of {PROBE_BATCH})"
        )
    return "\n".join(lines)


def _gpus(gpus: tuple[hardware.Gpu, ...], driver: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TensorFlow's GPUs, with the memory the driver reports for the GPU of the same name."""
    unclaimed = list(driver)
    found = []
    for gpu in gpus:
        same = next((d for d in unclaimed if d["name"] == gpu.name), None)
        if same is not None:
            unclaimed.remove(same)
        memory = gpu.memory_mib or (same or {}).get("memory_mib")
        found.append({"name": gpu.name, "compute_capability": list(gpu.compute_capability or ()), "memory_mib": memory})
    return found


def _onednn_line(choice: dict[str, Any]) -> str:
    """``onednn      auto -> on: <why>``, or ``on: <why>`` where the kit did not decide it."""
    state = {True: "on", False: "off", None: "unknown"}[choice["value"]]
    why = str(choice["why"]).removeprefix(f"{state}: ")
    auto = "auto -> " if why.startswith("auto: ") else ""
    return f"onednn      {auto}{state}: {why.removeprefix('auto: ')}"


def _why(choice: dict[str, Any]) -> str:
    """A choice's reason without the ``auto: `` its MLflow tag starts with (the line says ``auto ->``)."""
    return str(choice["why"]).removeprefix("auto: ")


def _gpu_line(gpu: dict[str, Any]) -> str:
    cc = ".".join(map(str, gpu["compute_capability"])) or "?"
    memory = f", {gpu['memory_mib'] / 1024:.0f} GiB" if gpu.get("memory_mib") else ""
    return f"{gpu['name']} (compute capability {cc}{memory})"
