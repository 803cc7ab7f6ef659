"""A Hydra callback that keeps one line per multirun job: its overrides, status, objective and folder."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

__all__ = ["SweepSummary"]

FIELDS = ["job", "status", "objective", "overrides", "output_dir", "error"]


class SweepSummary(Callback):
    """Append each finished job of a multirun to ``<sweep dir>/summary.csv`` (and ``<job dir>/result.json``).

    Failed jobs are recorded with their error and the others go on (Hydra's basic launcher runs every job of
    the batch, then exits non-zero; Optuna marks the trial failed and continues up to ``max_failure_rate``), so
    a crash in one job never loses the results of the rest. Single runs are left alone.
    """

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra_cfg = job_return.hydra_cfg.hydra if job_return.hydra_cfg is not None else None
        if hydra_cfg is None or hydra_cfg.get("mode") != RunMode.MULTIRUN:
            return
        failed = job_return.status != JobStatus.COMPLETED
        value = job_return._return_value
        objective = None
        if not failed and isinstance(value, (int, float)) and not math.isnan(float(value)):
            objective = float(value)
        row = {
            "job": hydra_cfg.job.num,
            "status": "failed" if failed else "completed",
            "objective": objective,
            "overrides": " ".join(job_return.overrides or []),
            "output_dir": hydra_cfg.runtime.output_dir,
            "error": f"{type(value).__name__}: {value}"[:500] if failed else "",
        }
        out = Path(hydra_cfg.runtime.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(row, indent=2) + "\n")
        summary = Path(hydra_cfg.sweep.dir) / "summary.csv"
        new = not summary.exists()
        with summary.open("a", newline="") as f:  # one short append per job
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
