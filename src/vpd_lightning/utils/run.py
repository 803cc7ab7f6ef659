"""Helpers of the entry points: instantiating callback/logger groups and printing metric tables."""

from __future__ import annotations

from collections.abc import Mapping

from hydra.utils import instantiate
from omegaconf import DictConfig

__all__ = ["format_metrics", "instantiate_list"]


def instantiate_list(group: DictConfig | None) -> list:
    """Instantiate every entry of a named mapping of ``_target_`` nodes (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def format_metrics(metrics: Mapping[str, float], title: str = "metrics") -> str:
    """A two-column text table of ``metrics``."""
    rows = [(k, f"{float(v):.4f}") for k, v in metrics.items()]
    width = max([len(k) for k, _ in rows] + [len(title)])
    lines = [f"{title:<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)
