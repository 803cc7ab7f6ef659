"""Where the configs are found (checkout or installed package), and what the wheel would carry of them."""

from __future__ import annotations

from pathlib import Path

import pytest

import vpd_lightning.config as config

REPO = Path(__file__).resolve().parents[1]


def test_checkout_uses_its_own_conf_folder():
    assert config.CONFIG_DIR == REPO / "conf" and config.CONFIG_PATH == str(REPO / "conf")
    assert config.find_config_dir() == (REPO / "conf", str(REPO / "conf"))


def test_installed_package_configs_are_found_through_pkg(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "CHECKOUT_CONFIG_DIR", tmp_path / "no-checkout" / "conf")
    monkeypatch.setattr(config, "_package_config_dir", lambda: REPO / "conf")
    assert config.find_config_dir() == (REPO / "conf", "pkg://vpd_lightning.conf")


def test_missing_configs_say_where_they_were_looked_for(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "CHECKOUT_CONFIG_DIR", tmp_path / "conf")
    monkeypatch.setattr(config, "_package_config_dir", lambda: None)
    with pytest.raises(config.ConfigNotFoundError) as info:
        config.find_config_dir()
    message = str(info.value)
    assert "the Hydra configs (train.yaml) were not found" in message and "\n" not in message
    assert "'vpd_lightning.conf'" in message and str(tmp_path / "conf") in message
    assert str(Path(config.__file__).resolve().parent / "conf") in message


def test_every_config_file_is_package_data():
    """pyproject.toml ships conf/**/*.yaml (+ __init__.py): any other file kind would be missing from a wheel."""
    files = [p for p in (REPO / "conf").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files and all(p.suffix == ".yaml" or p.name == "__init__.py" for p in files), [
        str(p) for p in files if p.suffix != ".yaml"
    ]
    assert (REPO / "conf" / "__init__.py").is_file()  # vpd_lightning.conf is a regular package in the wheel
