"""What this machine can do, and the speed settings that follow from it: one place decides.

``detect()`` reads the CPU (model, cores, the instruction-set flags that matter for
training speed) without TensorFlow; the GPUs TensorFlow sees are passed in by
:mod:`kerascnn.device`. ``plan()`` turns the requested ``precision``, ``jit`` and
``steps_per_execution`` into what a run uses, with the reason for each choice:

* ``precision="auto"``: ``mixed_float16`` on NVIDIA GPUs of compute capability >= 7.0
  (tensor cores); ``mixed_bfloat16`` on CPUs that do bfloat16 natively (x86
  ``avx512_bf16`` or ``amx_bf16``, aarch64 ``bf16``); ``float32`` everywhere else --
  without native support TensorFlow emulates bfloat16, several times slower than float32.
* ``jit="auto"``: XLA on GPUs; off on CPUs, where it measured 2-4x slower (BENCHMARKS.md).
* ``steps_per_execution``: as asked (the recipe's by default), 1 under the
  multi-worker strategy (keras-team/keras#19246).
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from kerascnn.errors import ArgumentError

PRECISIONS = ("auto", "float32", "mixed")
# Flags worth reporting: vector width, fused multiply-add, and native low-precision math.
X86_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
ARM_FLAGS = ("asimd", "asimdhp", "sve", "sve2", "bf16", "i8mm")
BF16_FLAGS = {"x86_64": ("avx512_bf16", "amx_bf16"), "aarch64": ("bf16",), "arm64": ("bf16",)}
TENSOR_CORES_FROM = (7, 0)


@dataclass(frozen=True)
class Gpu:
    """One GPU as TensorFlow sees it."""

    name: str
    compute_capability: tuple[int, int] | None = None
    memory_mib: int | None = None

    def describe(self) -> str:
        cc = ".".join(map(str, self.compute_capability)) if self.compute_capability else "?"
        memory = f", {self.memory_mib / 1024:.0f} GiB" if self.memory_mib else ""
        return f"{self.name} (compute capability {cc}{memory})"


@dataclass(frozen=True)
class Machine:
    """The CPU and the GPUs of this process's machine."""

    cpu_model: str
    arch: str
    cores: int
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    gpus: tuple[Gpu, ...] = ()

    @property
    def native_bfloat16(self) -> bool:
        """Whether the CPU computes in bfloat16 natively (not emulated).

        Example:
            >>> Machine("x", "x86_64", 2, frozenset({"avx2"})).native_bfloat16
            False
        """
        return any(flag in self.cpu_flags for flag in BF16_FLAGS.get(self.arch, ()))

    def describe_cpu(self) -> str:
        """``"AMD EPYC (x86_64, 2 cores; avx avx2 fma)"``."""
        flags = " ".join(sorted(self.cpu_flags)) or "no flags read"
        return f"{self.cpu_model} ({self.arch}, {self.cores} cores; {flags})"

    def tags(self) -> dict[str, str]:
        """The machine as MLflow run tags."""
        tags = {
            "kerascnn.cpu": self.cpu_model,
            "kerascnn.cpu_flags": " ".join(sorted(self.cpu_flags)),
            "kerascnn.cpu_cores": str(self.cores),
        }
        if self.gpus:
            tags["kerascnn.gpu"] = "; ".join(g.describe() for g in self.gpus)
        return tags


def parse_cpuinfo(text: str, arch: str) -> tuple[str, frozenset[str]]:
    """The CPU model and the flags that matter, from ``/proc/cpuinfo``'s text.

    Example:
        >>> model, flags = parse_cpuinfo("model name : AMD EPYC\\nflags : fpu avx avx2 fma\\n", "x86_64")
        >>> model, sorted(flags)
        ('AMD EPYC', ['avx', 'avx2', 'fma'])
    """
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    relevant = X86_FLAGS if arch in ("x86_64", "amd64") else ARM_FLAGS
    return model or f"{arch} CPU", frozenset(f for f in flags if f in relevant)


def _macos_cpu(arch: str) -> tuple[str, frozenset[str]]:
    def sysctl(name: str) -> str:
        try:
            found = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False)
            return found.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    flags = {"bf16"} if sysctl("hw.optional.arm.FEAT_BF16") == "1" else set()
    return sysctl("machdep.cpu.brand_string") or f"{arch} CPU", frozenset(flags)


def detect(gpus: tuple[Gpu, ...] = ()) -> Machine:
    """Reads this machine's CPU; ``gpus`` are the GPUs TensorFlow sees (see ``device.machine()``).

    Example:
        >>> detect().cores >= 1
        True
    """
    arch = platform.machine().lower() or "unknown"
    arch = {"amd64": "x86_64", "arm64": "arm64" if platform.system() == "Darwin" else "aarch64"}.get(arch, arch)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model, flags = parse_cpuinfo(cpuinfo.read_text(errors="replace"), arch)
    elif platform.system() == "Darwin":
        model, flags = _macos_cpu(arch)
    else:
        model, flags = platform.processor() or f"{arch} CPU", frozenset()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Machine(cpu_model=model, arch=arch, cores=cores, cpu_flags=flags, gpus=tuple(gpus))


@dataclass(frozen=True)
class SpeedPlan:
    """The speed settings a run uses, each with the reason it was chosen."""

    precision: str
    policy: str
    jit: bool
    steps_per_execution: int
    reasons: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def params(self) -> dict[str, object]:
        """The plan as run params: what was asked and what it resolved to."""
        return {
            "precision": self.precision,
            "dtype_policy": self.policy,
            "jit_compile": self.jit,
            "steps_per_execution": self.steps_per_execution,
        }

    def tags(self) -> dict[str, str]:
        """The reasons as run tags (``kerascnn.why.precision`` ...)."""
        return {f"kerascnn.why.{key}": why for key, why in self.reasons.items()}


def _precision(machine: Machine, precision: str) -> tuple[str, str, list[str]]:
    """(policy, reason, warnings) for ``precision`` on ``machine``."""
    if precision == "float32":
        return "float32", "asked for float32", []
    if machine.gpus:
        ccs = [g.compute_capability for g in machine.gpus]
        modern = all(cc is not None and cc >= TENSOR_CORES_FROM for cc in ccs)
        shown = ", ".join(g.describe() for g in machine.gpus)
        if precision == "mixed":
            warn = (
                []
                if modern
                else [
                    f"mixed float16 on {shown}: below compute capability 7.0 (no tensor cores) "
                    "it is not faster than float32"
                ]
            )
            return "mixed_float16", "asked for mixed precision on a GPU", warn
        if modern:
            return "mixed_float16", f"auto: {shown} has tensor cores (compute capability >= 7.0)", []
        return "float32", f"auto: {shown} is below compute capability 7.0 (no tensor cores)", []
    native = [f for f in BF16_FLAGS.get(machine.arch, ()) if f in machine.cpu_flags]
    if precision == "mixed":
        warn = (
            []
            if native
            else [
                f"mixed precision on this CPU ({machine.cpu_model}, no native bfloat16) is emulated "
                "and several times slower per step than float32; --precision auto picks float32 "
                "here"
            ]
        )
        return "mixed_bfloat16", "asked for mixed precision on a CPU", warn
    if native:
        return "mixed_bfloat16", f"auto: the CPU does bfloat16 natively ({', '.join(native)})", []
    wanted = " or ".join(BF16_FLAGS.get(machine.arch, ("bf16",)))
    return "float32", f"auto: the CPU has no native bfloat16 ({wanted}); emulated bfloat16 is slower", []


def plan(
    machine: Machine,
    *,
    precision: str = "auto",
    jit: bool | str = "auto",
    steps_per_execution: int = 1,
    strategy: str = "auto",
) -> SpeedPlan:
    """Resolves the speed settings of a run on ``machine``.

    Args:
        machine: From :func:`detect` (or a description, in tests).
        precision: ``auto``, ``float32`` or ``mixed``.
        jit: ``True``, ``False`` or ``"auto"`` (XLA on GPUs only).
        steps_per_execution: Batches per compiled call (1 under ``multiworker``).
        strategy: The distribution strategy's name.

    Example:
        >>> plan(Machine("cpu", "x86_64", 2, frozenset({"avx2"}))).policy
        'float32'
    """
    if precision not in PRECISIONS:
        raise ArgumentError(
            f"`precision` must be one of {', '.join(map(repr, PRECISIONS))}. Received: precision={precision!r}"
        )
    if jit != "auto" and not isinstance(jit, bool):
        raise ArgumentError(f"`jit` must be True, False or 'auto'. Received: jit={jit!r}")
    policy, why_precision, warnings = _precision(machine, precision)
    if jit == "auto":
        use_jit = bool(machine.gpus)
        why_jit = "auto: XLA on GPUs" if use_jit else "auto: no XLA on CPUs (measured 2-4x slower)"
    else:
        use_jit, why_jit = bool(jit), f"asked for jit={jit}"
    steps, why_steps = steps_per_execution, "the recipe's, or asked for"
    if strategy == "multiworker" and steps > 1:  # Keras' multi-step loop fails across workers (keras#19246)
        steps, why_steps = 1, f"{steps_per_execution} -> 1 under the multiworker strategy (keras-team/keras#19246)"
        warnings.append(f"steps_per_execution {steps_per_execution} -> 1 under the multiworker strategy")
    reasons = {"precision": why_precision, "jit": why_jit, "steps_per_execution": why_steps}
    return SpeedPlan(precision, policy, use_jit, steps, reasons, tuple(warnings))
