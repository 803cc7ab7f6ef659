"""Packaging beside pyproject.toml: the Hydra configs ship inside the package.

The repository keeps its configs in ``conf/`` (beside ``src/``); this maps the package ``vpd_lightning.conf`` onto
that folder, so that a wheel (and an editable install) holds them as ``vpd_lightning/conf/**/*.yaml`` (package data
in pyproject.toml), found at run time through Hydra's package search path ``pkg://vpd_lightning.conf``.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages("src", include=["vpd_lightning*", "hydra_plugins*"]), "vpd_lightning.conf"],
    package_dir={"": "src", "vpd_lightning.conf": "conf"},
)
