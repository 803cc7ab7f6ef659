"""vpd_lightning: text-to-image diffusion models as perception backbones (VPD), on Lightning + Hydra."""

__version__ = "0.1.0"
