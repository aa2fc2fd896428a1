"""Renders MLflow's compare view of real kit runs to docs/mlflow_compare.png with headless Chromium.

    python docs/screenshot.py [--experiment notebooks-architectures] [--tracking-uri sqlite:///mlruns/mlflow.db]

Needs Debian's chromium (``apt-get install chromium``) and the runs that
notebooks/02_architectures.ipynb logs into the repository's store.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiment", default="notebooks-architectures")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{ROOT / 'mlruns' / 'mlflow.db'}")
    parser.add_argument("--output", default=str(ROOT / "docs" / "mlflow_compare.png"))
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("docs/screenshot.py: needs chromium (apt-get install chromium)")
    import mlflow

    mlflow.set_tracking_uri(args.tracking_uri)
    experiment = mlflow.get_experiment_by_name(args.experiment)
    if experiment is None:
        sys.exit(f"docs/screenshot.py: no experiment {args.experiment!r}; run notebooks/02_architectures.ipynb first")
    runs = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=4,
    )
    ids = list(runs["run_id"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "kerascnn", "ui", "--port", str(port), "--tracking-uri", args.tracking_uri],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        query = urllib.parse.urlencode({"runs": json.dumps(ids), "experiments": json.dumps([experiment.experiment_id])})
        url = f"{base}/#/compare-runs?{query}"
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--hide-scrollbars",
                    f"--user-data-dir={profile}",
                    "--window-size=1600,1250",
                    "--virtual-time-budget=30000",
                    f"--screenshot={args.output}",
                    url,
                ],
                check=True,
                capture_output=True,
                timeout=180,
            )
        print(f"saved {args.output} ({url})")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
