"""Small helpers shared by the entry points."""

from vpd_lightning.utils.run import format_metrics, instantiate_list

__all__ = ["format_metrics", "instantiate_list"]
