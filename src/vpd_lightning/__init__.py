"""vpd_lightning: text-to-image diffusion models as perception backbones (VPD), on Lightning + Hydra."""

import logging as _logging

__version__ = "0.1.0"

# torchao (8-bit AdamW of the memory presets) tries its CUDA kernels at import and diffusers imports it whenever
# it is installed: on a CPU-only torch that prints "Failed to load ..._C_cutlass_90a.so", "Unable to import
# `torchao` Tensor objects" and torch pytree deprecation notes at every start, none of which concerns us.
for _name in ("torchao", "diffusers.quantizers.torchao.torchao_quantizer", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)
