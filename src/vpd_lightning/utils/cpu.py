"""What ``/proc/cpuinfo`` says about this CPU: model, vector flags, clock (Linux; empty elsewhere)."""

from __future__ import annotations

import platform

__all__ = ["cpu_info"]


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """``{"model": str, "flags": set[str], "mhz": float | None, "family": int | None}`` of the first CPU listed
    in ``path``; the model falls back to ``platform.processor()`` and the flags to an empty set when the file
    cannot be read."""
    info: dict = {"model": None, "flags": set(), "mhz": None, "family": None}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "flags" and not info["flags"]:
                    info["flags"] = set(value.split())
                elif key == "model name" and info["model"] is None:
                    info["model"] = value
                elif key == "cpu MHz" and info["mhz"] is None:
                    info["mhz"] = float(value)
                elif key == "cpu family" and info["family"] is None:
                    info["family"] = int(value)
    except OSError:
        pass
    info["model"] = info["model"] or platform.processor() or platform.machine()
    return info
