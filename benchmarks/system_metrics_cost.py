"""CPU cost of MLflow's system-metrics sampler (on by default in kerascnn runs).

Process CPU seconds over an idle window with ``SystemMetricsMonitor`` sampling every second,
against the same window without it; prints the CPU time per sample and the share of one core
at the kit's default 10-s interval.

    python benchmarks/system_metrics_cost.py
"""

from __future__ import annotations

import os
import tempfile
import time

from mlflow import MlflowClient
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

WINDOW_S, INTERVAL_S, DEFAULT_INTERVAL_S = 40.0, 1.0, 10.0


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    uri = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("system-metrics-cost")).info.run_id
    start = _cpu()
    time.sleep(WINDOW_S)
    idle = _cpu() - start
    monitor = SystemMetricsMonitor(run, sampling_interval=INTERVAL_S, tracking_uri=uri)
    start = _cpu()
    monitor.start()
    time.sleep(WINDOW_S)
    monitor.finish()
    sampled = _cpu() - start
    samples = len(client.get_metric_history(run, "system/cpu_utilization_percentage"))
    per_sample = (sampled - idle) / max(samples, 1)
    print(
        f"idle {idle:.3f} s CPU; sampler every {INTERVAL_S:g} s: {sampled:.3f} s CPU over {WINDOW_S:g} s, "
        f"{samples} samples -> {1000 * per_sample:.1f} ms CPU per sample, "
        f"{100 * per_sample / DEFAULT_INTERVAL_S:.3f}% of one core at {DEFAULT_INTERVAL_S:g} s"
    )


if __name__ == "__main__":
    main()
