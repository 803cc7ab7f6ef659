"""Hydra plugin shell of vpd_lightning's Optuna sweeper (Hydra instantiates plugins only from ``hydra_plugins``).

``conf/sweep/optuna.yaml`` selects it with ``hydra.sweeper._target_``; the search itself is
:class:`vpd_lightning.utils.optuna_search.OptunaSearch`, imported only when a search starts (as the Optuna
plugin does), so that Hydra's plugin scan at every start stays cheap.
"""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_optuna_sweeper import optuna_sweeper


class VPDOptunaSweeper(optuna_sweeper.OptunaSweeper):
    """Hydra's Optuna sweeper with a search that survives failed trials and always writes its results."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: D107 -- the Optuna sweeper's arguments
        from vpd_lightning.utils.optuna_search import OptunaSearch

        self.sweeper = OptunaSearch(*args, **kwargs)
