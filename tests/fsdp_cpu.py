"""Test-only: Lightning's FSDPStrategy on CPU processes (gloo), to exercise trainer=fsdp without GPUs.

Lightning refuses FSDP without CUDA (``accelerator_connector`` checks ``type(strategy) is FSDPStrategy``) and
passes ``device_id=None`` for a CPU root device, which torch's FSDP rejects; full state dicts gathered with
``offload_to_cpu=True`` crash on a CPU-only torch. This subclass changes only those three things.
"""

from __future__ import annotations

import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.strategies import FSDPStrategy
from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, OptimStateKeyType, StateDictType
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP


class CPUFSDPStrategy(FSDPStrategy):
    def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
        if not any(isinstance(m, FSDP) for m in model.modules()):
            model = FSDP(
                module=model,
                cpu_offload=self.cpu_offload,
                mixed_precision=self.mixed_precision_config,
                sharding_strategy=self.sharding_strategy,
                device_id=torch.device("cpu"),
                **self.kwargs,
            )
        if self.global_rank == 0:  # read by the test
            units = [type(m.module).__name__ for m in model.modules() if isinstance(m, FSDP)]
            print("FSDP units:", " ".join(units), flush=True)
        return model

    def _full(self):
        return FSDP.state_dict_type(
            self.model,
            StateDictType.FULL_STATE_DICT,
            FullStateDictConfig(offload_to_cpu=False, rank0_only=True),
            FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=True),
        )

    def lightning_module_state_dict(self):
        with self._full():
            return self.model.state_dict()

    def optimizer_state(self, optimizer):
        if isinstance(optimizer, LightningOptimizer):
            optimizer = optimizer._optimizer
        with self._full():
            state = FSDP.optim_state_dict(self.model, optimizer)
            if self.global_rank == 0:
                state = FSDP.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model)
            return state
