"""What this machine can do, and the speed settings that follow from it: one place decides.

``detect()`` reads the CPU (model, cores, the instruction-set flags that matter for
training speed) without TensorFlow; the GPUs TensorFlow sees are passed in by
:mod:`kerascnn.device`. ``onednn_setting()`` decides, before TensorFlow's import, whether
its CPU kernels run through oneDNN. ``plan()`` turns the requested ``precision``, ``jit``
and ``steps_per_execution`` into what a run uses, with the reason for each choice:

* oneDNN: TensorFlow's Linux x86 builds turn it on by themselves only on CPUs with
  neural-network instructions (``ONEDNN_BY_TENSORFLOW``); the kit turns it on on the other
  AVX2 CPUs too, where float32 training steps measured 1.2-2.6x faster with it (median
  per model family, BENCHMARKS.md). ``TF_ENABLE_ONEDNN_OPTS``, when set, is left to decide.
* ``precision="auto"``: ``mixed_float16`` on NVIDIA GPUs of compute capability >= 7.0
  (tensor cores); ``mixed_bfloat16`` on CPUs that do bfloat16 natively (x86
  ``avx512_bf16`` or ``amx_bf16``, aarch64 ``bf16``) while TensorFlow runs its CPU kernels
  through oneDNN (the library that uses those instructions); ``float32`` everywhere else --
  without native support TensorFlow emulates bfloat16, several times slower than float32.
* ``jit="auto"``: XLA on CUDA GPUs; off on CPUs, where it measured 2-4x slower (BENCHMARKS.md).
* ``steps_per_execution``: as asked (the recipe's by default), 1 under the
  multi-worker strategy (keras-team/keras#19246).
* ``strategy="auto"``: ``MirroredStrategy`` over more than one GPU, else none (one device).
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kerascnn.errors import ArgumentError

PRECISIONS = ("auto", "float32", "mixed")
# Flags worth reporting: vector width, fused multiply-add, and native low-precision math.
X86_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
ARM_FLAGS = ("asimd", "asimdhp", "sve", "sve2", "bf16", "i8mm")
BF16_FLAGS = {"x86_64": ("avx512_bf16", "amx_bf16"), "aarch64": ("bf16",), "arm64": ("bf16",)}
TENSOR_CORES_FROM = (7, 0)
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
# x86 CPU flags for which TensorFlow's Linux builds run oneDNN by themselves (amx_int8 comes with amx_tile).
ONEDNN_BY_TENSORFLOW = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16")
ONEDNN_SPEEDUP = "1.2-2.6x"  # float32 training steps with oneDNN on AVX2, median per family (BENCHMARKS.md)


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
    onednn: bool | None = None  # whether TensorFlow runs its CPU kernels through oneDNN (None: unknown)
    onednn_why: str = ""  # why it does or does not (``onednn_setting``)
    warnings: tuple[str, ...] = ()  # what makes runs here slower than they could be

    @property
    def bfloat16_flags(self) -> tuple[str, ...]:
        """The CPU's flags for native bfloat16 math (``("avx512_bf16",)``; empty without)."""
        return tuple(flag for flag in BF16_FLAGS.get(self.arch, ()) if flag in self.cpu_flags)

    @property
    def native_bfloat16(self) -> bool:
        """Whether bfloat16 runs natively here (not emulated): the CPU has the instructions and
        TensorFlow's oneDNN, which uses them, is not off.

        Example:
            >>> Machine("x", "x86_64", 2, frozenset({"avx2"})).native_bfloat16
            False
            >>> Machine("x", "x86_64", 2, frozenset({"avx512_bf16"}), onednn=False).native_bfloat16
            False
        """
        return bool(self.bfloat16_flags) and self.onednn is not False

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
        if self.onednn is not None:
            tags["kerascnn.onednn"] = "on" if self.onednn else "off"
        if self.onednn_why:
            tags["kerascnn.why.onednn"] = self.onednn_why
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


def detect(gpus: tuple[Gpu, ...] = (), onednn: bool | None = None) -> Machine:
    """Reads this machine's CPU; ``gpus`` are the GPUs TensorFlow sees and ``onednn`` whether it
    uses oneDNN (``device.machine()`` fills them in, with the reason for oneDNN).

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
    return Machine(cpu_model=model, arch=arch, cores=cores, cpu_flags=flags, gpus=tuple(gpus), onednn=onednn)


def onednn_setting(cpu: Machine, environ: Mapping[str, str], system: str) -> tuple[str | None, str]:
    """The ``TF_ENABLE_ONEDNN_OPTS`` value to import TensorFlow with on ``cpu`` (``None``: leave
    TensorFlow's default), and why.

    Args:
        cpu: This machine (from :func:`detect`; GPUs do not matter here).
        environ: The process environment; a ``TF_ENABLE_ONEDNN_OPTS`` there is kept.
        system: ``platform.system()``; only TensorFlow's Linux x86 builds were measured.

    Example:
        >>> onednn_setting(Machine("AMD EPYC", "x86_64", 2, frozenset({"avx", "avx2"})), {}, "Linux")[0]
        '1'
    """
    if ONEDNN_ENV in environ:
        return None, f"{ONEDNN_ENV}={environ[ONEDNN_ENV]} was set"
    if system != "Linux" or cpu.arch != "x86_64":
        return None, f"TensorFlow's default on {system} {cpu.arch}"
    own = [flag for flag in ONEDNN_BY_TENSORFLOW if flag in cpu.cpu_flags]
    if own:
        return None, f"TensorFlow's default: on for CPUs with {', '.join(own)}"
    if "avx2" in cpu.cpu_flags:
        return "1", (
            "auto: TensorFlow leaves it off on AVX2 CPUs without neural-network instructions; "
            f"float32 training steps measured {ONEDNN_SPEEDUP} faster with it (BENCHMARKS.md)"
        )
    return None, "TensorFlow's default: off on x86 CPUs without AVX2 (not measured with oneDNN)"


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
        return _gpu_precision(machine.gpus, precision)
    lacking = _why_not_native_bfloat16(machine)
    if precision == "mixed":
        warn = (
            [
                f"mixed precision on this CPU ({machine.cpu_model}) is likely emulated, several times slower "
                f"per step than float32: {lacking}; precision 'auto' picks float32 here"
            ]
            if lacking
            else []
        )
        return "mixed_bfloat16", "asked for mixed precision on a CPU", warn
    if lacking:
        return "float32", f"auto: {lacking}; emulated bfloat16 is slower", []
    return "mixed_bfloat16", f"auto: the CPU does bfloat16 natively ({', '.join(machine.bfloat16_flags)})", []


def _why_not_native_bfloat16(machine: Machine) -> str | None:
    """Why bfloat16 may be emulated on ``machine``'s CPU, or ``None`` where it is native."""
    if machine.native_bfloat16:
        return None
    if machine.bfloat16_flags:
        return (
            f"TensorFlow runs without oneDNN here ({ONEDNN_ENV}=0, or a build without it), "
            f"which the CPU's {', '.join(machine.bfloat16_flags)} needs"
        )
    if not machine.cpu_flags:
        return "no CPU flags could be read to confirm native bfloat16"
    return f"the CPU has no native bfloat16 ({' or '.join(BF16_FLAGS.get(machine.arch, ('bf16',)))})"


def _gpu_precision(gpus: tuple[Gpu, ...], precision: str) -> tuple[str, str, list[str]]:
    """(policy, reason, warnings) for ``auto`` or ``mixed`` on ``gpus``: float16 needs tensor cores on all."""
    old = [g for g in gpus if not (g.compute_capability and g.compute_capability >= TENSOR_CORES_FROM)]
    shown = ", ".join(g.describe() for g in (old or gpus))
    below = "below compute capability 7.0" + (
        "" if all(g.compute_capability for g in old) else " or of unknown capability"
    )
    lacking = f"{shown} {'is' if len(old) == 1 else 'are'} {below} (no tensor cores)"
    if precision == "mixed":
        warn = [f"mixed float16 on GPUs without tensor cores is not faster than float32: {lacking}"] if old else []
        return "mixed_float16", "asked for mixed precision on a GPU", warn
    if old:
        return "float32", f"auto: {lacking}", []
    return (
        "mixed_float16",
        f"auto: {shown} {'has' if len(gpus) == 1 else 'have'} tensor cores (compute capability >= 7.0)",
        [],
    )


def _auto_jit(gpus: tuple[Gpu, ...]) -> tuple[bool, str]:
    """(jit, reason) for ``jit="auto"``: XLA where every GPU is a CUDA one, never on CPUs."""
    if not gpus:
        return False, "auto: no XLA on CPUs (measured 2-4x slower)"
    unknown = [g.name for g in gpus if g.compute_capability is None]
    if unknown:
        verb = "reports" if len(unknown) == 1 else "report"
        return False, f"auto: XLA on CUDA GPUs only; {', '.join(unknown)} {verb} no CUDA compute capability"
    return True, "auto: XLA on GPUs"


def auto_strategy(machine: Machine) -> tuple[str, str]:
    """(``"mirrored"`` or ``"default"``, reason) for ``strategy="auto"`` on ``machine``.

    Example:
        >>> auto_strategy(Machine("cpu", "x86_64", 2))[0]
        'default'
    """
    if len(machine.gpus) > 1:
        return "mirrored", f"auto: MirroredStrategy over the {len(machine.gpus)} GPUs"
    return "default", "auto: one device, no tf.distribute strategy"


def plan(
    machine: Machine,
    *,
    precision: str = "auto",
    jit: bool | str = "auto",
    steps_per_execution: int = 1,
    strategy: str | None = "auto",
    deterministic: bool = False,
) -> SpeedPlan:
    """Resolves the speed settings of a run on ``machine``.

    Args:
        machine: From :func:`detect` (or a description, in tests).
        precision: ``auto``, ``float32`` or ``mixed``.
        jit: ``True``, ``False`` or ``"auto"`` (XLA on CUDA GPUs only).
        steps_per_execution: Batches per compiled call (1 under ``multiworker``).
        strategy: The distribution strategy's name (``None`` where none is used: a tuner's trials).
        deterministic: TensorFlow's op determinism is on: ``"auto"`` jit is off (Keras runs no XLA then).

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
    warnings = [*machine.warnings, *warnings]
    if jit == "auto" and deterministic:
        use_jit, why_jit = False, "auto: no XLA with deterministic ops (Keras turns it off)"
    elif jit == "auto":
        use_jit, why_jit = _auto_jit(machine.gpus)
    else:
        use_jit, why_jit = bool(jit), f"asked for jit={jit}"
    steps, why_steps = steps_per_execution, "the recipe's, or asked for"
    if strategy == "multiworker" and steps > 1:  # Keras' multi-step loop fails across workers (keras#19246)
        steps, why_steps = 1, f"{steps_per_execution} -> 1 under the multiworker strategy (keras-team/keras#19246)"
        warnings.append(f"steps_per_execution {steps_per_execution} -> 1 under the multiworker strategy")
    reasons = {"precision": why_precision, "jit": why_jit, "steps_per_execution": why_steps}
    if strategy is not None:
        reasons["strategy"] = auto_strategy(machine)[1] if strategy == "auto" else f"asked for {strategy}"
    return SpeedPlan(precision, policy, use_jit, steps, reasons, tuple(warnings))
