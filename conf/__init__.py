"""The Hydra configs, installed as the package ``vpd_lightning.conf`` (see setup.py and vpd_lightning.config)."""
