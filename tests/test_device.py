"""Hardware-aware speed settings: detection from CPU/GPU descriptions, the plan, what a run logs,
`kerascnn doctor`, and multi-worker training for real.

Tests that touch the real machine assert what its own flags imply, never a fixed answer, so
the suite passes on AVX2-only and AVX-512/AMX machines alike.
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

import kerascnn
from kerascnn import device, hardware
from tests.helpers import assert_usage_error, data_dir, free_port, run_cli

AVX2 = "processor : 0\nmodel name : AMD EPYC 7B12\nflags : fpu sse2 avx avx2 fma\n"
AVX512_BF16 = "model name : Intel Xeon Platinum 8380\nflags : avx avx2 fma avx512f avx512_bf16 avx512_vnni\n"
AMX = "model name : Intel Xeon 8480+\nflags : avx2 avx512f amx_tile amx_bf16 amx_int8\n"
ARM = "processor : 0\nFeatures : fp asimd evtstrm aes crc32 sve\nCPU implementer : 0x41\n"
ARM_BF16 = "processor : 0\nFeatures : fp asimd sve sve2 bf16 i8mm\n"
# x86 flags for which TensorFlow's Linux builds turn oneDNN on by themselves, written here without kerascnn
TENSORFLOW_ONEDNN_FLAGS = {"avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"}


def machine(cpuinfo: str, arch: str = "x86_64", gpus: tuple = ()) -> hardware.Machine:
    model, flags = hardware.parse_cpuinfo(cpuinfo, arch)
    return hardware.Machine(model, arch, 2, flags, gpus)


@pytest.mark.parametrize(
    "cpuinfo,arch,policy",
    [
        (AVX2, "x86_64", "float32"),
        (AVX512_BF16, "x86_64", "mixed_bfloat16"),
        (AMX, "x86_64", "mixed_bfloat16"),
        (ARM, "aarch64", "float32"),
        (ARM_BF16, "aarch64", "mixed_bfloat16"),
    ],
)
def test_auto_precision_on_cpus(cpuinfo, arch, policy):
    plan = hardware.plan(machine(cpuinfo, arch))
    assert plan.policy == policy and plan.precision == "auto"
    assert plan.jit is False and "no XLA on CPUs" in plan.reasons["jit"]
    assert ("natively" in plan.reasons["precision"]) is (policy == "mixed_bfloat16")


def test_cpu_description_is_parsed():
    model, flags = hardware.parse_cpuinfo(AVX512_BF16, "x86_64")
    assert model == "Intel Xeon Platinum 8380" and flags == {
        "avx",
        "avx2",
        "fma",
        "avx512f",
        "avx512_bf16",
        "avx512_vnni",
    }
    assert hardware.parse_cpuinfo(ARM, "aarch64") == ("aarch64 CPU", frozenset({"asimd", "sve"}))


@pytest.mark.parametrize("cc,policy", [((6, 1), "float32"), ((7, 0), "mixed_float16"), ((9, 0), "mixed_float16")])
def test_auto_precision_on_gpus(cc, policy):
    gpu = hardware.Gpu("NVIDIA test GPU", cc, 16384)
    plan = hardware.plan(machine(AVX2, gpus=(gpu,)))
    assert plan.policy == policy and plan.jit is True
    assert "compute capability" in plan.reasons["precision"]


def test_bfloat16_needs_tensorflows_onednn_and_readable_flags():
    model, flags = hardware.parse_cpuinfo(AVX512_BF16, "x86_64")
    off = hardware.Machine(model, "x86_64", 2, flags, onednn=False)  # TF_ENABLE_ONEDNN_OPTS=0
    plan = hardware.plan(off)
    assert plan.policy == "float32" and "without oneDNN" in plan.reasons["precision"]
    assert "avx512_bf16" in plan.reasons["precision"] and not off.native_bfloat16
    assert "without oneDNN" in hardware.plan(off, precision="mixed").warnings[0]
    assert hardware.plan(hardware.Machine(model, "x86_64", 2, flags, onednn=True)).policy == "mixed_bfloat16"
    unread = hardware.plan(hardware.Machine("Windows CPU", "x86_64", 2))  # no /proc/cpuinfo
    assert unread.policy == "float32" and "no CPU flags could be read" in unread.reasons["precision"]


@pytest.mark.parametrize(
    "cpuinfo,arch,system,env,value,why",
    [
        (AVX2, "x86_64", "Linux", {}, "1", "auto: TensorFlow leaves it off on AVX2 CPUs without neural-network"),
        (AVX2, "x86_64", "Linux", {"TF_ENABLE_ONEDNN_OPTS": "0"}, None, "TF_ENABLE_ONEDNN_OPTS=0 was set"),
        (AVX512_BF16, "x86_64", "Linux", {}, None, "TensorFlow's default: on for CPUs with avx512_vnni, avx512_bf16"),
        (AMX, "x86_64", "Linux", {}, None, "TensorFlow's default: on for CPUs with amx_tile, amx_bf16"),
        ("flags : sse4_2 avx\n", "x86_64", "Linux", {}, None, "TensorFlow's default: off on x86 CPUs without AVX2"),
        (AVX2, "x86_64", "Windows", {}, None, "TensorFlow's default on Windows x86_64"),
        (ARM_BF16, "aarch64", "Linux", {}, None, "TensorFlow's default on Linux aarch64"),
    ],
)
def test_onednn_is_turned_on_where_tensorflow_leaves_it_off(cpuinfo, arch, system, env, value, why):
    setting = hardware.onednn_setting(machine(cpuinfo, arch), env, system)
    assert setting[0] == value and setting[1].startswith(why)


def test_a_machine_warning_reaches_every_plan():
    slowed = hardware.Machine("AMD EPYC", "x86_64", 2, frozenset({"avx2"}), warnings=("oneDNN is off",))
    assert hardware.plan(slowed).warnings == ("oneDNN is off",)
    assert hardware.plan(slowed, precision="mixed").warnings[0] == "oneDNN is off"
    assert slowed.tags().get("kerascnn.why.onednn") is None
    assert hardware.Machine("x", "x86_64", 2, onednn_why="why").tags()["kerascnn.why.onednn"] == "why"


def _machine_in_a_subprocess(script: str) -> list:
    """``[onednn, onednn_why, plan warnings, TF_ENABLE_ONEDNN_OPTS afterwards]`` from a fresh Python
    running ``script`` then ``device.machine()``, with ``TF_ENABLE_ONEDNN_OPTS`` unset."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    report = (
        "m = device.machine(); print(json.dumps([m.onednn, m.onednn_why, list(hardware.plan(m).warnings), "
        "os.environ.get('TF_ENABLE_ONEDNN_OPTS')]))"
    )
    code = f"import json, os; from kerascnn import device, hardware; {script}; {report}"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64", reason="TensorFlow's x86 Linux rule")
def test_onednn_follows_the_cpu_and_who_imported_tensorflow():
    """Imported by the kit: on where the kit's rule says, and the environment left as it was.
    Imported before the kit: TensorFlow's own default, with a warning where the kit would turn it on."""
    onednn, why, warnings, env_after = _machine_in_a_subprocess("device.import_tensorflow()")
    assert onednn is _onednn_expected({}) and env_after is None and not warnings
    assert why.startswith(("auto: TensorFlow leaves it off on AVX2", "TensorFlow's default"))
    onednn, why, warnings, env_after = _machine_in_a_subprocess("import tensorflow")
    tensorflows_default = bool(_proc_cpuinfo_flags() & TENSORFLOW_ONEDNN_FLAGS)
    missed = _onednn_expected({}) and not tensorflows_default
    assert onednn is tensorflows_default and env_after is None
    assert (why == "off: TensorFlow was imported before kerascnn") is missed
    assert len(warnings) == int(missed)
    assert all("set TF_ENABLE_ONEDNN_OPTS=1 before importing them" in w for w in warnings)


def test_gpu_reasons_name_the_gpus_without_tensor_cores():
    new, old = hardware.Gpu("H100", (9, 0)), hardware.Gpu("GT 1030", (6, 1))
    plan = hardware.plan(machine(AVX2, gpus=(new, old)))
    assert plan.policy == "float32" and "GT 1030" in plan.reasons["precision"]
    assert "H100" not in plan.reasons["precision"] and plan.jit is True
    assert "MirroredStrategy over the 2 GPUs" in plan.reasons["strategy"]
    assert hardware.auto_strategy(machine(AVX2, gpus=(new,)))[0] == "default"
    metal = hardware.plan(machine(AVX2, gpus=(hardware.Gpu("METAL"),)))  # not CUDA: no capability
    assert metal.policy == "float32" and "unknown capability" in metal.reasons["precision"]
    assert metal.jit is False and "no CUDA compute capability" in metal.reasons["jit"]
    exact = hardware.plan(machine(AVX2, gpus=(new,)), deterministic=True)  # (Keras would warn and turn XLA off)
    assert exact.jit is False and exact.reasons["jit"] == "auto: no XLA with deterministic ops (Keras turns it off)"


def test_forced_mixed_warns_where_it_is_slow():
    slow = hardware.plan(machine(AVX2), precision="mixed")
    assert slow.policy == "mixed_bfloat16" and len(slow.warnings) == 1 and "emulated" in slow.warnings[0]
    assert not hardware.plan(machine(AMX), precision="mixed").warnings
    old_gpu = hardware.plan(machine(AVX2, gpus=(hardware.Gpu("P100", (6, 0)),)), precision="mixed")
    assert old_gpu.policy == "mixed_float16" and "tensor cores" in old_gpu.warnings[0]
    assert hardware.plan(machine(AMX), precision="float32").policy == "float32"


def test_multiworker_runs_one_step_per_call():
    plan = hardware.plan(machine(AVX2), steps_per_execution=8, strategy="multiworker")
    assert plan.steps_per_execution == 1 and "keras#19246" in plan.reasons["steps_per_execution"]
    assert hardware.plan(machine(AVX2), steps_per_execution=8).steps_per_execution == 8


def test_bad_precision_and_jit_are_refused():
    with pytest.raises(ValueError, match="Received: precision='half'"):
        hardware.plan(machine(AVX2), precision="half")
    with pytest.raises(ValueError, match="Received: jit='yes'"):
        hardware.plan(machine(AVX2), jit="yes")
    assert_usage_error(run_cli("train", "mnist_cnn", "--precision", "bf16"), "Received: precision='bf16'")


def _proc_cpuinfo_flags() -> set[str]:
    """The words of /proc/cpuinfo's flag lines (x86 ``flags``, arm ``Features``), read without kerascnn's parser."""
    with open("/proc/cpuinfo") as f:
        return {w for line in f if line.lower().startswith(("flags", "features")) for w in line.split()}


def _onednn_expected(env: dict[str, str]) -> bool:
    """The rule for a process whose TensorFlow kerascnn imports, on x86 Linux, read here without
    kerascnn: ``TF_ENABLE_ONEDNN_OPTS`` if set; else on for CPUs with neural-network features
    (TensorFlow's own default: AVX512_VNNI, AVX512_BF16, AVX_VNNI, AMX) and for AVX2 CPUs (the kit's)."""
    setting = env.get("TF_ENABLE_ONEDNN_OPTS", "").lower()
    if setting in ("0", "false", "1", "true"):
        return setting in ("1", "true")
    return bool(_proc_cpuinfo_flags() & (TENSORFLOW_ONEDNN_FLAGS | {"avx2"}))


def _bfloat16_flags_in_proc_cpuinfo(here: hardware.Machine) -> bool:
    """Read here without kerascnn's parser where Linux has /proc/cpuinfo: does a CPU line list
    avx512_bf16, amx_bf16 or (arm) bf16?"""
    if not os.path.exists("/proc/cpuinfo"):
        return bool(here.bfloat16_flags)
    return bool(_proc_cpuinfo_flags() & {"avx512_bf16", "amx_bf16", "bf16"})


def test_this_machine_follows_its_own_flags():
    here = device.machine()
    assert here.cores >= 1 and here.cpu_model and here.onednn_why
    plan = hardware.plan(here)
    if here.gpus:
        assert plan.jit is all(g.compute_capability for g in here.gpus)
    else:
        native = _bfloat16_flags_in_proc_cpuinfo(here) and here.onednn is not False
        assert plan.policy == ("mixed_bfloat16" if native else "float32")


def test_device_options_are_applied_and_logged(tracking_uri, tmp_path, monkeypatch):
    data_dir()
    monkeypatch.chdir(tmp_path)
    result = kerascnn.train(
        "lenet5",
        "mnist",
        epochs=1,
        train_samples=300,
        test_samples=100,
        precision="mixed",
        jit=False,
        steps_per_execution=4,
        tracking_uri=tracking_uri,
        verbose=0,
    )
    run = MlflowClient(tracking_uri).get_run(result.run_id)
    params = run.data.params
    gpus = device.machine().gpus
    policy = "mixed_float16" if gpus else "mixed_bfloat16"
    assert params["precision"] == "mixed" and params["dtype_policy"] == policy
    assert params["jit_compile"] == "False" and params["steps_per_execution"] == "4"
    assert params["strategy"] == "auto" and params["replicas"] == str(max(1, len(gpus)))
    assert run.data.tags["kerascnn.why.precision"] == f"asked for mixed precision on a {'GPU' if gpus else 'CPU'}"
    model = result.model
    assert model.get_layer("block1_conv").compute_dtype == policy.removeprefix("mixed_")
    assert model.get_layer("predictions").compute_dtype == "float32"  # the output stays float32
    assert model.jit_compile is False


def test_doctor_json_reports_the_machine_and_the_choices(tracking_uri):
    result = run_cli("doctor", "--probe", "--json", env={"MLFLOW_TRACKING_URI": tracking_uri}, check=True)
    report = json.loads(result.stdout)
    assert not re.search(r"^[IWEF]\d{4} ", result.stderr, re.MULTILINE)  # no C++ log line (oneDNN's bf16 note)
    here = device.machine()
    assert report["machine"]["cpu_flags"] == sorted(here.cpu_flags) and report["machine"]["cores"] == here.cores
    assert report["machine"]["native_bfloat16"] is (
        bool(here.bfloat16_flags) and report["machine"]["onednn"] is not False
    )  # the CLI imports TensorFlow itself, so its oneDNN may differ from this process's
    if sys.platform == "linux" and here.arch == "x86_64":
        assert report["machine"]["onednn"] is _onednn_expected(dict(os.environ))
    assert report["versions"]["keras"].startswith("3.") and report["versions"]["mlflow"]
    assert report["tracking"]["uri"] == tracking_uri and report["data"]["folder"]
    assert report["auto"]["precision"]["policy"] == hardware.plan(here).policy
    assert report["auto"]["strategy"]["value"] == ("mirrored" if len(here.gpus) > 1 else "default")
    probes = {p["policy"]: p for p in report["probe"]}
    assert set(probes) >= {"float32", "mixed_bfloat16" if not here.gpus else "mixed_float16"}
    assert all(p["images_per_s"] > 0 and p["rounds"] == 3 and p["steps"] == 12 for p in probes.values())
    text = run_cli("doctor", env={"MLFLOW_TRACKING_URI": tracking_uri}, check=True).stdout
    chosen = hardware.plan(here)
    why = chosen.reasons["precision"].removeprefix("auto: ")
    assert f"precision   auto -> {chosen.policy}: {why}\n" in text and here.cpu_model in text
    assert ("(not created yet: the first tracked run creates it)" in text) is (report["tracking"]["exists"] is False)
    onednn = report["auto"]["onednn"]
    if onednn["why"].startswith("auto: "):
        assert f"onednn      auto -> on: {onednn['why'].removeprefix('auto: ')}\n" in text


def test_doctor_without_onednn_picks_float32_on_a_cpu(tracking_uri):
    """With TensorFlow's oneDNN off, bfloat16 is emulated even on a CPU that has it. (And a data folder
    that does not exist, or a bad tracking timeout, is reported as the problem it is for ``train``.)"""
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "TF_ENABLE_ONEDNN_OPTS": "0", "KERASCNN_DATA_DIR": "/no/such/dir"}
    env["KERASCNN_TRACKING_TIMEOUT"] = "abc"  # (a row of the report too: it ended the report)
    report = json.loads(run_cli("doctor", "--json", env=env, check=True).stdout)
    assert report["data"]["folder"] == "/no/such/dir" and report["data"]["problem"].startswith("not a folder")
    assert report["tracking"]["problem"].endswith("Received: KERASCNN_TRACKING_TIMEOUT='abc'")
    assert report["machine"]["onednn"] is False and report["machine"]["native_bfloat16"] is False
    assert report["auto"]["onednn"] == {"value": False, "why": "TF_ENABLE_ONEDNN_OPTS=0 was set"}
    if not report["machine"]["gpus"]:
        assert report["auto"]["precision"]["policy"] == "float32"
        assert report["auto"]["mixed_if_forced"]["warnings"]


def test_the_cli_imports_tensorflow_without_keras_extras(tmp_path):
    """The CLI's Keras skips pandas, scikit-learn and matplotlib, which stay importable afterwards."""
    import importlib.util

    assert all(importlib.util.find_spec(name) for name in device.KERAS_EXTRAS)  # installed (MLflow brings them)
    script = (
        "import json, sys\n"
        "from kerascnn.cli import main\n"
        "code = main(['describe', 'mnist_cnn'])\n"
        f"loaded = [name for name in sys.modules if name.split('.')[0] in {device.KERAS_EXTRAS!r}]\n"
        "from keras.src.trainers.data_adapters import array_slicing\n"
        "import matplotlib.pyplot, pandas, sklearn\n"
        "print(json.dumps([code, loaded, array_slicing.pandas is None, pandas.__name__]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == [0, [], True, "pandas"]


_COUNT_FULL_COLLECTIONS = (
    "import gc, json, sys\n"
    "full = []\n"
    "gc.callbacks.append(lambda phase, info: phase == 'stop' and info['generation'] == 2 and full.append(1))\n"
)


@pytest.mark.parametrize(
    "who, script, frozen",
    [
        ("a notebook", "import kerascnn\nkerascnn.create_model('mnist_cnn')\n", False),
        ("the CLI", "from kerascnn.cli import main\nassert main(['describe', 'mnist_cnn']) == 0\n", True),
    ],
    ids=["notebook", "cli"],
)
def test_tensorflow_imports_without_full_collections(tmp_path, who, script, frozen):
    """Python's collector is paused while TensorFlow imports (six full collections rescanned its objects
    before; one may come after it), then on again; the CLI's process also freezes what the import made."""
    report = "print(json.dumps([len(full), gc.isenabled(), gc.get_freeze_count() > 0]))\n"
    code = _COUNT_FULL_COLLECTIONS + script + report
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    full, enabled, frozen_now = json.loads(result.stdout.splitlines()[-1])
    assert full <= 1 and enabled and frozen_now == frozen, (who, full, enabled, frozen_now)


@pytest.mark.parametrize("stop,replayed", [(ValueError, True), (KeyboardInterrupt, False)])
def test_hidden_cpp_lines_come_back_with_an_error_not_with_ctrl_c(stop, replayed, capfd):
    with pytest.raises(stop), device.cpp_lines_hidden():
        os.write(2, b"I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on.\n")
        raise stop
    assert ("oneDNN custom operations" in capfd.readouterr().err) is replayed


def test_the_collector_is_paused_only_in_the_block():
    enabled = gc.isenabled()
    try:
        gc.enable()
        with device.collector_paused():
            assert not gc.isenabled()
            with device.collector_paused():
                pass
            assert not gc.isenabled()  # an inner block leaves it to the outer one
        assert gc.isenabled()
        gc.disable()
        with device.collector_paused():
            pass
        assert not gc.isenabled()  # off before, off after
    finally:
        (gc.enable if enabled else gc.disable)()


def test_doctor_lists_gpus_with_the_memory_the_driver_reports():
    from kerascnn import doctor

    driver = [
        doctor.parse_nvidia_smi(line)
        for line in ("Tesla P100-PCIE-16GB, 6.0, 16384, 535.1", "NVIDIA H200, 9.0, 143771, 570.8")
    ]
    gpus = doctor._gpus((hardware.Gpu("NVIDIA H200", (9, 0)), hardware.Gpu("Tesla P100-PCIE-16GB", (6, 0))), driver)
    assert [(g["name"], g["compute_capability"], g["memory_mib"]) for g in gpus] == [
        ("NVIDIA H200", [9, 0], 143771),
        ("Tesla P100-PCIE-16GB", [6, 0], 16384),
    ]
    assert doctor._gpu_line(gpus[0]) == "NVIDIA H200 (compute capability 9.0, 140 GiB)"
    assert doctor.parse_nvidia_smi("NVIDIA A100, [N/A], [N/A], 1")["memory_mib"] is None


def test_two_workers_train_together_and_only_the_chief_tracks(tracking_uri, tmp_path, spawn):
    data_dir()
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    cmd = [
        sys.executable,
        "-m",
        "kerascnn",
        "train",
        "mnist_cnn",
        "--dataset",
        "mnist",
        "--strategy",
        "multiworker",
        "--epochs",
        "1",
        "--train-samples",
        "1024",
        "--test-samples",
        "256",
        "--tracking-uri",
        tracking_uri,
        "--json",
    ]
    procs = [
        spawn(
            cmd,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})),
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    chief, other = (json.loads(out) for out, _ in outputs)
    assert chief["run_id"] and other["run_id"] is None
    assert chief["test_accuracy"] == other["test_accuracy"]  # one model, trained together
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_id for r in runs] == [chief["run_id"]]
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert run.data.params["strategy"] == "multiworker" and run.data.params["replicas"] == "2"
    assert run.data.params["train_size"] == "922"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [0]
