"""Regional compilation: ``torch.compile`` the UNet's repeated blocks, not the whole model.

A UNet is built from a few block types repeated many times (SD-1.5: 16 ``BasicTransformerBlock`` and 22
``ResnetBlock2D`` in the UNet, 8 more resnets in the VAE encoder). Compiling those blocks instead of the whole
model (like diffusers' ``compile_repeated_blocks``) means one compilation per distinct block shape, reused by every
instance (dynamo treats the parameters of inlined modules as inputs), so compile time stays a fraction of
whole-model compilation, and everything around the blocks stays eager:

- the feature taps (forward hooks on ``up_blocks[0].resnets[1]``, ``attentions[1]`` and ``up_blocks[3]``): only a
  block's ``forward`` is compiled, never ``Module.__call__``, so hooks run eagerly around the compiled code;
- the attention capture: the processors run inside the compiled transformer blocks; handing a map to the
  :class:`~vpd_lightning.backbone.attention.CrossAttentionStore` is excluded from compilation
  (``torch.compiler.disable``), one graph break per captured layer, so the store's Python lists never become
  guards that change every step.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["COMPILE_MODES", "REPEATED_BLOCKS", "compile_repeated_blocks"]

#: class names of the blocks that regional compilation compiles
REPEATED_BLOCKS: tuple[str, ...] = ("BasicTransformerBlock", "ResnetBlock2D")

#: compiled variants allowed per block type (distinct input/parameter shapes)
RECOMPILE_LIMIT = 64

#: ``backbone.compile`` values
COMPILE_MODES = ("none", "regional")

CompileMode = Literal["none", "regional"]


def compile_repeated_blocks(model: nn.Module, **compile_kwargs) -> int:
    """Replace the ``forward`` of every :data:`REPEATED_BLOCKS` module in ``model`` by its ``torch.compile``'d
    version (in place; parameters, state-dict keys, hooks and processors untouched). Returns how many blocks."""
    # every instance of a block type shares one code object, hence one cache of compiled variants: one entry per
    # distinct shape (SD-1.5 + VAE: ~20 resnet shapes), more than dynamo's default limit of 8, past which it
    # would silently fall back to eager
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    count = 0
    for module in model.modules():
        if type(module).__name__ in REPEATED_BLOCKS and not getattr(module, "_vpd_compiled", False):
            module.forward = torch.compile(module.forward, **compile_kwargs)
            module._vpd_compiled = True
            count += 1
    return count
