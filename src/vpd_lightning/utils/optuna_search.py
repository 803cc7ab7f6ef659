"""An Optuna search that records failed trials and goes on, and always writes its results.

Hydra's Optuna sweeper (``hydra_optuna_sweeper``) applies ``max_failure_rate`` to each batch of ``n_jobs``
trials: with ``n_jobs: 1`` a single failed trial is a failure rate of 100 % and ends the search, and
``optimization_results.yaml`` (written only after the last trial) is never written. :class:`OptunaSearch`
keeps the plugin's search space, sampler, storage and trial set-up, and changes what happens around the trials:

- a failed trial (an exception in the job, no objective, or a NaN objective) is told to Optuna as ``FAIL``
  with its error, and the search goes on;
- ``max_failure_rate`` is a share of the whole search: it stops once more than
  ``floor(max_failure_rate * n_trials)`` trials of this run have failed (``0.5`` of 20 trials: at the 11th
  failure; ``0``: at the first);
- ``<sweep dir>/optimization_results.yaml`` is written whatever happens (finished, stopped, interrupted): the
  best completed trial, the counts, and every failed trial with its job number and error;
- the search exits with status 0 when it ran its trials within the failure budget, even if some failed (they
  are listed), and non-zero when it stopped early or no trial completed, with a message saying which.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf
from optuna.trial import TrialState

__all__ = ["OptunaSearch", "SearchFailed"]

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"


class SearchFailed(RuntimeError):
    """The search stopped on too many failed trials, or no trial completed (its results file is written)."""


class OptunaSearch(OptunaSweeperImpl):
    """The Optuna plugin's sweeper with per-search failure accounting and a results file that is always written."""

    def sweep(self, arguments: list[str]) -> None:
        study, space, fixed = self._create_study(arguments)
        # what vpd_lightning's W&B run names read to find the swept keys (Hydra's basic sweeper writes it too)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        n_objectives = len(self._get_directions())
        allowed = math.floor(self.max_failure_rate * self.n_trials + 1e-9)
        errors: dict[int, dict[str, Any]] = {}
        launched, stopped = 0, None
        try:
            while launched < self.n_trials and stopped is None:
                batch = min(self.n_jobs, self.n_trials - launched)
                trials = [study.ask() for _ in range(batch)]
                overrides = self._configure_trials(trials, space, fixed)
                returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
                for i, (trial, ret) in enumerate(zip(trials, returns)):
                    error = self._tell(study, trial, ret, n_objectives)
                    if error is not None:
                        errors[trial.number] = {"trial": trial.number, "job": self.job_idx + i, "error": error}
                self.job_idx += len(returns)
                launched += batch
                if len(errors) > allowed:
                    stopped = (
                        f"{len(errors)} of {launched} trials failed, more than max_failure_rate="
                        f"{self.max_failure_rate} x n_trials={self.n_trials} allows ({allowed})"
                    )
        finally:
            n_completed = self._write_results(study, errors, launched, stopped, sweep_dir / RESULTS_FILE)
        if stopped is not None:
            raise SearchFailed(
                f"Optuna search stopped after {launched} of {self.n_trials} trials: {stopped}. "
                f"Results so far: {sweep_dir / RESULTS_FILE}"
            )
        if n_completed == 0:
            raise SearchFailed(
                f"Optuna search: every trial failed ({launched} of {launched}); nothing to "
                f"optimise. Errors: {sweep_dir / RESULTS_FILE} and {sweep_dir / 'summary.csv'}"
            )
        if errors:
            log.warning("%d of %d trials failed (listed in %s)", len(errors), launched, sweep_dir / RESULTS_FILE)

    def _create_study(self, arguments: list[str]) -> tuple[optuna.Study, dict, dict]:
        """The plugin's set-up: search space from ``params`` and the command line, grid sampler, study."""
        self._process_searchspace_config()
        params_conf = self._parse_sweeper_params_config()
        params_conf.extend(arguments)  # command-line sweeps (``'key=choice(1,100)'``) replace config entries
        space, fixed = create_params_from_overrides(params_conf)
        space = {**(self.search_space_distributions or {}), **space}
        if getattr(self.sampler, "func", None) is optuna.samplers.GridSampler:
            grid = {name: self._to_grid_sampler_choices(dist) for name, dist in space.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
            log.info("Grid sampler: %d trials", self.n_trials)
        for name in fixed:  # a fixed value on the command line takes the parameter out of the search
            space.pop(name, None)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.sampler,
            directions=self._get_directions(),
            load_if_exists=True,
        )
        log.info(
            "Study %s (storage %s, sampler %s), %d trials over %s",
            study.study_name,
            self.storage,
            type(self.sampler).__name__,
            self.n_trials,
            ", ".join(space) or "nothing",
        )
        return study, space, fixed

    @staticmethod
    def _tell(study: optuna.Study, trial: optuna.Trial, ret: JobReturn, n_objectives: int) -> str | None:
        """Tell Optuna the trial's objective; a failed job is told as ``FAIL``. Returns the error, if any."""
        try:
            value = ret.return_value  # re-raises the job's exception
            if value is None:
                raise ValueError("the job returned no objective (is the monitored metric logged?)")
            values = [float(v) for v in (value if n_objectives > 1 else [value])]
            if len(values) != n_objectives:
                raise ValueError(f"{len(values)} objective values for {n_objectives} directions")
            if any(math.isnan(v) for v in values):
                raise ValueError(f"objective is NaN: {values}")
        except Exception as err:  # any failure of the job is the trial's failure, not the search's
            study.tell(trial, state=TrialState.FAIL)
            message = f"{type(err).__name__}: {err}"
            log.warning("trial %d failed: %s", trial.number, message)
            return message[:1000]
        try:
            study.tell(trial, values=values)
        except RuntimeError as err:  # the grid sampler stops the study when its grid is exhausted
            if "Study.stop" not in str(err):
                raise
        return None

    def _write_results(
        self, study: optuna.Study, errors: dict[int, dict], launched: int, stopped: str | None, path: Path
    ) -> int:
        """Write ``optimization_results.yaml`` (best completed trial, counts, failed trials); return the number
        of completed trials of the study."""
        trials = study.trials
        completed = [t for t in trials if t.state == TrialState.COMPLETE]
        failed = [t for t in trials if t.state == TrialState.FAIL]
        if stopped is not None:
            status = f"stopped early: {stopped}"
        elif launched < self.n_trials:
            status = f"interrupted after {launched} of {self.n_trials} trials"
        elif not completed:
            status = "failed: no trial completed"
        else:
            status = "finished"
        results: dict[str, Any] = {"name": "optuna", "status": status}
        if len(self._get_directions()) == 1:
            best = study.best_trial if completed else None
            results.update(
                best_params=None if best is None else best.params,
                best_value=None if best is None else best.value,
                best_trial=None if best is None else best.number,
            )
            if best is not None:
                log.info("Best parameters: %s", best.params)
                log.info("Best value: %s", best.value)
        else:
            results["solutions"] = [{"params": t.params, "values": t.values} for t in study.best_trials]
        results.update(n_trials=len(trials), n_completed=len(completed), n_failed=len(failed))
        results["failed_trials"] = [{**errors.get(t.number, {"trial": t.number}), "params": t.params} for t in failed]
        OmegaConf.save(OmegaConf.create(results), path)
        log.info("Optuna search %s; results in %s", status, path)
        return len(completed)
