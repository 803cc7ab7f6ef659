"""Joint multi-task VPD: one :class:`DiffusionBackbone` fine-tuned for depth, segmentation and referring at once.

The model owns ONE backbone and, per task, the task's own LightningModule (:class:`DepthEstimationTask`,
:class:`SemanticSegmentationTask`, :class:`ReferringSegmentationTask`) built from the task's usual config, with the
backbone shared (it is registered once, under ``backbone.``; the task modules hold a plain reference). Each task
keeps its text context and text adapter (or one adapter shared by all: ``shared_text_adapter``), its head, its
attention-map variant (depth: none, the others A32; one UNet pass per task batch), its loss, its evaluation
protocol and metrics, and the learning-rate rules of its own parameters.

**Per-task backward.** Training uses manual optimisation: at each step the tasks of the step run one after the
other, each with its own forward and ``backward`` of its weighted loss, so its activations are freed before the
next task runs; the gradients add up in ``.grad`` and one optimiser step follows. Peak memory is that of the
largest single task, not the sum. Under DDP all but the step's last backward (last task, last micro-batch) run
without gradient synchronisation (``no_sync``); the last one synchronises the accumulated gradients once, and it
touches (x 0) every trainable parameter its own graph does not reach, so DDP never meets an unused parameter
(``find_unused_parameters`` stays off) whichever tasks a step holds. Parameters of tasks that sat a step out get
no gradient (``None``), so AdamW leaves them, their moments included, untouched, as without DDP.

**Per-task gradient accumulation** (``accumulate={task: N}``, set per task by the ``memory=`` presets): the task's
batch of the step (N micro-batches of ``data.<task>.batch_size``, loaded at once) runs as N forward + backward
passes of one micro-batch each, each loss weighted by its share of the batch's images, so peak memory is one
micro-batch of the largest task; one optimiser step per training step. As with Lightning's
``accumulate_grad_batches``, the step's loss is the mean of the micro-batch losses: for a loss that is a mean over
samples of equal weight (cross-entropy over fully labelled crops) that is the loss of the whole batch, and the
gradient the one of the whole batch; SiLog (the square root of whole-batch statistics) is taken per micro-batch.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from vpd_lightning.backbone import DiffusionBackbone, TextAdapter
from vpd_lightning.backbone.diffusion_backbone import ATTENTION_LEVELS
from vpd_lightning.data.multitask import KNOWN_TASKS, check_accumulate, check_task_list
from vpd_lightning.tasks.base import VPDTask
from vpd_lightning.utils.errors import ConfigError

__all__ = [
    "DEFAULT_ATTENTION",
    "DEFAULT_SCORE_METRICS",
    "LOWER_IS_BETTER",
    "SAMPLINGS",
    "MultiTaskModel",
    "attention_variant",
    "normalised_score",
]

#: the attention-map variant each task uses in VPD
DEFAULT_ATTENTION = {"depth": "none", "segmentation": "a32", "referring": "a32"}
#: the metric of each task that enters ``val/multitask_score`` (see :func:`normalised_score`)
DEFAULT_SCORE_METRICS = {"depth": "d1", "segmentation": "miou", "referring": "oiou"}
#: metrics where lower is better (errors); every other metric is an accuracy in [0, 1]
LOWER_IS_BETTER = frozenset({"rmse", "rmse_log", "abs_rel", "sq_rel", "log10", "silog", "loss"})
#: Kendall et al. (2018): a regression loss is weighted 1/(2 sigma^2), a classification loss 1/sigma^2
_REGRESSION = frozenset({"depth"})
#: how the tasks of a training step are chosen
SAMPLINGS = ("all", "uniform", "proportional", "weights", "round_robin")
WEIGHTINGS = ("fixed", "uncertainty")


def normalised_score(metric: str, value: float) -> float:
    """A task metric mapped to "higher is better, 1 at best": accuracies (δ1, mIoU, oIoU ...) as they are, errors
    ``e`` (RMSE ...) as ``1 / (1 + e)``. ``val/multitask_score`` is the mean of these over the trained tasks."""
    value = float(value)
    return 1.0 / (1.0 + value) if metric in LOWER_IS_BETTER else value


@contextlib.contextmanager
def attention_variant(backbone: DiffusionBackbone, variant: str) -> Iterator[None]:
    """Run ``backbone`` with the attention-map variant ``variant`` (``none``, ``a32``, ``a64``): the maps of
    other levels are neither concatenated nor counted in ``out_channels``. The capture processors installed for
    the backbone's own variant stay in place (a level they do not capture cannot be asked for)."""
    levels = ATTENTION_LEVELS[variant]
    if not levels <= backbone.attention_levels | getattr(backbone, "_built_levels", backbone.attention_levels):
        raise ConfigError(
            f"attention variant '{variant}' needs maps the backbone does not capture (backbone.attention="
            f"{backbone.attention}); set backbone.attention to the widest variant of the tasks"
        )
    saved = backbone.attention, backbone.attention_levels
    backbone.attention, backbone.attention_levels = variant, levels
    try:
        yield
    finally:
        backbone.attention, backbone.attention_levels = saved


def _plain(config: Any) -> dict:
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return copy.deepcopy(dict(config))


def _share(module: nn.Module, name: str, shared: nn.Module) -> None:
    """Make ``module.<name>`` a plain reference to ``shared`` (registered elsewhere), so its parameters are
    counted, saved and optimised once."""
    module._modules.pop(name, None)
    module.__dict__[name] = shared


class MultiTaskModel(VPDTask):
    """VPD for several tasks at once on one backbone (see the module docstring).

    Args:
        backbone: the shared :class:`DiffusionBackbone` (or its Hydra config); its ``attention`` must cover every
            task's variant (``a32`` for the VPD tasks).
        tasks: the trained tasks, e.g. ``["depth", "segmentation"]`` (each once).
        depth, segmentation, referring: each task's model config (``conf/model/<task>.yaml``; its ``backbone`` is
            ignored). Only the trained tasks' are built.
        loss_weights: ``{task: weight}`` (default 1 each); a weight for a task that is not trained is an error.
        weighting: ``fixed`` (loss = sum of weight x loss) or ``uncertainty`` (Kendall et al. 2018, learned
            ``s = log sigma^2`` per task: ``w (exp(-s) L + s) / 2`` for depth, ``w (exp(-s) L + s / 2)`` for the
            classification tasks).
        sampling: which tasks a step trains: ``all`` (every task with a batch), ``round_robin``
            (``tasks_per_step`` tasks in turn), or ``tasks_per_step`` drawn without replacement ``uniform``-ly,
            ``proportional`` to the training set sizes, or by ``sampling_weights``. Draws depend on
            ``(seed, global step)`` only: identical on every process and after a resume.
        sampling_weights: ``{task: weight}`` for ``sampling=weights``.
        tasks_per_step: tasks per step for the sampled modes.
        accumulate: ``{task: N}``: the task's step batch runs as N micro-batches, each forward + backward alone
            (see the module docstring); default 1. Entries of tasks not trained are ignored.
        shared_text_adapter: one text adapter for every task instead of one per task.
        backbone_task: the task whose optimiser, learning-rate rules and schedule the shared backbone (and a shared
            text adapter, the uncertainty weights) follows; default the first of ``tasks``.
        attention: ``{task: variant}`` overrides of :data:`DEFAULT_ATTENTION`.
        score_metrics: ``{task: metric}`` overrides of :data:`DEFAULT_SCORE_METRICS`; ``val/multitask_score`` is
            the mean of their :func:`normalised_score`.
        seed: seed of the task draws.
        prebuilt: ``{task: {argument: object}}`` handed to a task's constructor instead of building it from the
            config (used when a model is rebuilt from a checkpoint: zero class embeddings, a CLIP text encoder).
    """

    monitor = "val/multitask_score"
    mode = "max"
    prog_bar_metrics = ("multitask_score",)

    def __init__(
        self,
        backbone: DiffusionBackbone | Any,
        tasks: Sequence[str],
        depth: Any = None,
        segmentation: Any = None,
        referring: Any = None,
        loss_weights: Mapping[str, float] | None = None,
        weighting: str = "fixed",
        sampling: str = "all",
        sampling_weights: Mapping[str, float] | None = None,
        tasks_per_step: int = 1,
        accumulate: Mapping[str, int] | None = None,
        shared_text_adapter: bool = False,
        backbone_task: str | None = None,
        attention: Mapping[str, str] | None = None,
        score_metrics: Mapping[str, str] | None = None,
        seed: int = 0,
        prebuilt: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        names = check_task_list(tasks)
        if not isinstance(backbone, nn.Module):
            from hydra.utils import instantiate

            backbone = instantiate(backbone, _convert_="all")
        super().__init__(backbone, optimizer=None, scheduler=None)  # type: ignore[arg-type]
        self.automatic_optimization = False  # one backward per task (see the module docstring)
        self.task_names = names
        trained = ", ".join(names)

        def check_keys(option: str, mapping: Mapping | None) -> dict:
            mapping = dict(mapping or {})
            for key in mapping:
                if key not in names:
                    raise ConfigError(f"{option}: '{key}' is not trained in this run; the trained tasks are {trained}")
            return mapping

        weights = check_keys("multitask.loss_weights", loss_weights)
        self.loss_weights = {t: float(weights.get(t, 1.0)) for t in names}
        if any(not math.isfinite(w) or w < 0 for w in self.loss_weights.values()):
            raise ConfigError(f"multitask.loss_weights must be numbers >= 0, got {self.loss_weights}")
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"multitask.weighting must be one of {list(WEIGHTINGS)}, got '{weighting}'")
        if sampling not in SAMPLINGS:
            raise ConfigError(f"multitask.sampling must be one of {list(SAMPLINGS)}, got '{sampling}'")
        self.sampling_weights = check_keys("multitask.sampling_weights", sampling_weights)
        if sampling == "weights":
            values = [float(self.sampling_weights.get(t, 0.0)) for t in names]
            if any(v < 0 for v in values) or sum(values) <= 0:
                raise ConfigError(
                    "multitask.sampling=weights needs multitask.sampling_weights >= 0 with a positive sum over "
                    f"{trained}"
                )
        if not 1 <= int(tasks_per_step) <= len(names):
            raise ConfigError(f"multitask.tasks_per_step must be in [1, {len(names)}], got {tasks_per_step}")
        self.tasks_per_step = int(tasks_per_step)
        self.accumulate = check_accumulate(accumulate, names)
        self.weighting, self.sampling, self.seed = weighting, sampling, int(seed)
        self.backbone_task = backbone_task or names[0]
        if self.backbone_task not in names:
            raise ConfigError(
                f"multitask.backbone_task: '{self.backbone_task}' is not trained; the trained tasks are {trained}"
            )
        variants = check_keys("multitask.attention", attention)
        self.attention = {t: str(variants.get(t, DEFAULT_ATTENTION[t])) for t in names}
        for t, v in self.attention.items():
            if v not in ATTENTION_LEVELS:
                raise ConfigError(f"multitask.attention.{t} must be one of {sorted(ATTENTION_LEVELS)}, got '{v}'")
        self.backbone._built_levels = frozenset(self.backbone.attention_levels)
        metrics = check_keys("multitask.score_metrics", score_metrics)
        self.score_metrics = {t: str(metrics.get(t, DEFAULT_SCORE_METRICS[t])) for t in names}

        configs = {"depth": depth, "segmentation": segmentation, "referring": referring}
        missing = [t for t in names if configs[t] is None]
        if missing:
            have = [t for t, c in configs.items() if c is not None]
            raise ConfigError(
                f"multitask.tasks lists '{missing[0]}' but model.{missing[0]} is missing; task models are given for: "
                f"{', '.join(have) or 'none'}"
            )
        prebuilt = check_keys("prebuilt", prebuilt)
        built: dict[str, VPDTask] = {}
        for t in names:
            built[t] = self._build_task(t, configs[t], dict(prebuilt.get(t) or {}))
        self.tasks = nn.ModuleDict(built)
        if shared_text_adapter:
            self.text_adapter = TextAdapter(self.backbone.context_dim)
            for sub in built.values():
                _share(sub, "text_adapter", self.text_adapter)
        if weighting == "uncertainty":
            self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in names})
        self._sizes: dict[str, int] | None = None
        self.save_hyperparameters(
            {
                "tasks": names,
                "loss_weights": self.loss_weights,
                "weighting": weighting,
                "sampling": sampling,
                "sampling_weights": {t: float(v) for t, v in self.sampling_weights.items()},
                "tasks_per_step": self.tasks_per_step,
                "accumulate": self.accumulate,
                "shared_text_adapter": bool(shared_text_adapter),
                "backbone_task": self.backbone_task,
                "attention": self.attention,
                "score_metrics": self.score_metrics,
                "seed": self.seed,
            }
        )

    def _build_task(self, task: str, config: Any, prebuilt: dict) -> VPDTask:
        from hydra.utils import instantiate

        if isinstance(config, VPDTask):
            raise TypeError("pass the task's model config, not a built task: the backbone is shared")
        node = _plain(config)
        for key in ("backbone", *prebuilt):
            node.pop(key, None)
        factory = instantiate(node, _partial_=True, _convert_="all")
        with attention_variant(self.backbone, self.attention[task]):  # the head's widths follow the variant
            sub = factory(backbone=self.backbone, **prebuilt)
        _share(sub, "backbone", self.backbone)
        return sub

    # ------------------------------------------------------------------------------------------ plumbing
    @property
    def trainer(self):
        return VPDTask.trainer.fget(self)

    @trainer.setter
    def trainer(self, trainer) -> None:
        VPDTask.trainer.fset(self, trainer)
        if "tasks" in self._modules:
            for sub in self.tasks.values():
                sub.trainer = trainer

    @property
    def text_encoder(self) -> nn.Module | None:
        """The referring task's frozen CLIP text encoder (``None`` without referring)."""
        return self.tasks["referring"].text_encoder if "referring" in self.tasks else None

    def variant(self, task: str):
        """Context in which the backbone runs with ``task``'s attention-map variant."""
        return attention_variant(self.backbone, self.attention[task])

    def owner(self, name: str) -> tuple[str | None, str]:
        """``(task, name inside the task module)`` of a parameter: the task it belongs to (``None`` for the shared
        backbone and text adapter), and the name the task's own learning-rate rules see."""
        if name.startswith("tasks."):
            task, _, rest = name[len("tasks.") :].partition(".")
            return task, rest
        if name.startswith("log_vars."):
            return name[len("log_vars.") :], name
        return None, name

    # ------------------------------------------------------------------------------------------ optimiser
    def parameter_groups(self) -> list[dict]:
        """One group per (task whose rules apply, lr multiplier, decay): each task's parameters with its own
        optimiser's ``lr``/``weight_decay``/``betas`` and its own :meth:`lr_scale_and_decay`; the shared backbone
        and text adapter, and the uncertainty weights (lr x1, no decay), with ``backbone_task``'s."""
        groups: dict[tuple[str, float, bool], list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            task, local = self.owner(name)
            if name.startswith("log_vars."):
                key = (self.backbone_task, 1.0, False)
            else:
                rules = self.tasks[task or self.backbone_task]
                key = (task or self.backbone_task, *rules.lr_scale_and_decay(local, param))
            groups.setdefault(key, []).append(param)
        result = []
        for (task, scale, decay), params in groups.items():
            options = dict(getattr(self.tasks[task].optimizer_factory, "keywords", {}))
            if options.get("lr") is None:
                raise ConfigError(f"model.{task}.optimizer must set lr (e.g. `lr: 5.0e-4`)")
            group = {
                "params": params,
                "lr": options["lr"] * scale,
                "lr_scale": scale,
                "weight_decay": options.get("weight_decay", 0.0) if decay else 0.0,
                "name": f"{task}_x{scale:g}" + ("" if decay else "_no_wd"),
                "task": task,
            }
            if "betas" in options:
                group["betas"] = tuple(options["betas"])
            result.append(group)
        return result

    def _task_lambda(self, task: str, **schedule) -> Any:
        """The lr factor of ``task``'s own schedule, as a function of the step (its scheduler built on a
        one-parameter copy of its optimiser)."""
        sub = self.tasks[task]
        if sub.scheduler_factory is None:
            return lambda step: 1.0
        dummy = sub.optimizer_factory(params=[nn.Parameter(torch.zeros(1))])
        return sub.scheduler_factory(dummy, **schedule).lr_lambdas[0]

    def configure_optimizers(self):
        optimizer = self.tasks[self.backbone_task].optimizer_factory(params=self.parameter_groups())
        trainer = self.trainer
        total = int(trainer.estimated_stepping_batches)
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        steps_per_epoch = None
        if max_epochs and trainer.max_steps in (-1, None):
            steps_per_epoch = max(total // max_epochs, 1)
        schedule = {"total_steps": total, "max_epochs": max_epochs, "steps_per_epoch": steps_per_epoch}
        lambdas = {t: self._task_lambda(t, **schedule) for t in self.task_names}
        scheduler = LambdaLR(optimizer, [lambdas[g["task"]] for g in optimizer.param_groups])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------------------------------ training
    def step_tasks(self, step: int) -> list[str]:
        """The tasks trained at optimiser step ``step`` (in ``tasks`` order); a function of ``(seed, step)``."""
        names, k = self.task_names, self.tasks_per_step
        if self.sampling == "all":
            return list(names)
        if self.sampling == "round_robin":
            start = (step * k) % len(names)
            chosen = {names[(start + i) % len(names)] for i in range(k)}
            return [t for t in names if t in chosen]
        if self.sampling == "uniform":
            weights = [1.0] * len(names)
        elif self.sampling == "proportional":
            sizes = self._sizes or {}
            weights = [float(sizes.get(t, 1)) for t in names]
        else:
            weights = [float(self.sampling_weights.get(t, 0.0)) for t in names]
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + int(step)) % (2**63))
        drawn = torch.multinomial(torch.tensor(weights, dtype=torch.float64), k, replacement=False, generator=generator)
        chosen = {names[int(i)] for i in drawn}
        return [t for t in names if t in chosen]

    def weighted_loss(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        """``task``'s contribution to the total loss (fixed weight, or Kendall's uncertainty weighting)."""
        weight = self.loss_weights[task]
        if self.weighting == "fixed":
            return weight * loss
        s = self.log_vars[task]
        if task in _REGRESSION:
            return weight * 0.5 * (torch.exp(-s) * loss + s)
        return weight * (torch.exp(-s) * loss + 0.5 * s)

    def _untouched(self, task: str) -> torch.Tensor:
        """0 x the first element of every trainable parameter of the other tasks (see the module docstring)."""
        zero = None
        for name, param in self.named_parameters():
            if param.requires_grad and self.owner(name)[0] not in (None, task):
                term = param.reshape(-1)[:1].sum() * 0.0
                zero = term if zero is None else zero + term
        return zero

    def micro_batches(self, task: str, batch: Mapping[str, Any]) -> list[tuple[dict, float]]:
        """``task``'s step batch cut into ``accumulate[task]`` micro-batches along the first dimension (tensors and
        per-sample lists), each with its share of the batch's samples; empty pieces (a batch smaller than N) left
        out."""
        n = self.accumulate[task]
        size = _batch_len(batch)
        if n == 1 or size is None:
            return [(dict(batch), 1.0)]
        pieces = []
        for index in torch.arange(size).tensor_split(n):
            if len(index) == 0:
                continue
            start, stop = int(index[0]), int(index[-1]) + 1
            micro = {
                k: v[start:stop] if isinstance(v, (torch.Tensor, list, tuple)) and len(v) == size else v
                for k, v in batch.items()
            }
            pieces.append((micro, (stop - start) / size))
        return pieces

    def _backward(self, loss: torch.Tensor, sync: bool) -> None:
        """``manual_backward`` (all but the step's last backward without DDP's gradient synchronisation); a plain
        ``backward`` outside a Trainer."""
        if self._trainer is None:
            loss.backward()
            return
        block = getattr(self.trainer.strategy, "block_backward_sync", None)
        with contextlib.nullcontext() if sync or block is None else block():
            self.manual_backward(loss)

    def backward_tasks(self, batch: Mapping[str, Any], tasks: Sequence[str]) -> tuple[torch.Tensor, dict]:
        """Forward and backward of each task of ``tasks`` on its batch in ``batch``, one micro-batch at a time (see
        the module docstring); gradients accumulate in ``.grad``. Returns the step's total weighted loss and
        ``{task: loss}`` (the micro-batch losses weighted by their shares), both detached."""
        plan = [(task, micro, share) for task in tasks for micro, share in self.micro_batches(task, batch[task])]
        total = torch.zeros((), device=self.device)
        losses: dict[str, torch.Tensor] = {}
        for i, (task, micro, share) in enumerate(plan):
            last = i == len(plan) - 1
            with self.variant(task):
                loss = self.tasks[task].training_loss(micro)
            weighted = self.weighted_loss(task, loss) * share
            if last:
                zero = self._untouched(task)
                weighted = weighted if zero is None else weighted + zero
            self._backward(weighted, sync=last)
            losses[task] = losses.get(task, 0.0) + loss.detach() * share
            total = total + weighted.detach()
        return total, losses

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        chosen = [t for t in self.step_tasks(self.global_step) if batch.get(t) is not None]
        optimizer.zero_grad()
        total, losses = self.backward_tasks(batch, chosen)
        for task, loss in losses.items():
            size = _batch_len(batch[task]) or 1
            self.log(f"train/{task}/loss", loss, batch_size=size)
            if self.weighting == "uncertainty":
                self.log(f"train/{task}/log_var", self.log_vars[task].detach(), batch_size=size)
        idle = set(self.task_names) - set(chosen)
        for name, param in self.named_parameters():  # tasks that sat the step out: no update, moments kept
            if self.owner(name)[0] in idle:
                param.grad = None
        if chosen:
            optimizer.step()
        scheduler.step()
        self.log("train/loss", total, prog_bar=True, batch_size=1)
        return total

    def on_train_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if hasattr(datamodule, "train_sizes"):
            self._sizes = datamodule.train_sizes()
        states, self._loader_states = getattr(self, "_loader_states", None), None
        if not states:
            return
        loaders = self.trainer.train_dataloader
        loaders = list(loaders.values()) if isinstance(loaders, Mapping) else list(loaders)
        for loader, state in zip(loaders, states):
            if hasattr(loader, "load_state_dict"):
                loader.load_state_dict(state)

    # ------------------------------------------------------------------------------------------ evaluation
    def _eval(self, stage: str, batch: dict, batch_idx: int, dataloader_idx: int) -> None:
        task = self.task_names[dataloader_idx]
        sub = self.tasks[task]
        with self.variant(task):
            sub._eval_step(batch, getattr(sub, f"{stage}_metrics"), batch_idx)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval("val", batch, batch_idx, dataloader_idx)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval("test", batch, batch_idx, dataloader_idx)

    def _log_metrics(self, metrics, stage: str) -> None:
        """Every task's metrics as ``<stage>/<task>/<name>`` and their normalised mean as
        ``<stage>/multitask_score``; ``metrics`` is unused (each task has its own)."""
        scores = []
        for task in self.task_names:
            sub = self.tasks[task]
            task_metrics = getattr(sub, f"{stage}_metrics")
            values = task_metrics.compute()
            for name, value in values.items():
                if value.ndim == 0:
                    shown = name in sub.prog_bar_metrics[:1]
                    self.log(f"{stage}/{task}/{name}", value.float(), prog_bar=shown, sync_dist=True)
            scores.append(normalised_score(self.score_metrics[task], float(values[self.score_metrics[task]])))
            sub.on_metrics_computed(task_metrics, stage)
            task_metrics.reset()
        self.log(f"{stage}/multitask_score", sum(scores) / len(scores), prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(None, "val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(None, "test")

    def example_panels(self, attention: bool = True) -> dict:
        """Every task's pictures, named ``<task>/<picture>``."""
        panels = {}
        for task in self.task_names:
            with self.variant(task):
                for name, image in self.tasks[task].example_panels(attention=attention).items():
                    panels[f"{task}/{name}"] = image
        return panels

    @property
    def per_class(self) -> list:
        sub = self.tasks["segmentation"] if "segmentation" in self.tasks else None
        return getattr(sub, "per_class", [])

    @property
    def per_class_table(self) -> str | None:
        sub = self.tasks["segmentation"] if "segmentation" in self.tasks else None
        return getattr(sub, "per_class_table", None)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        raise ConfigError(
            f"a multi-task model predicts one task at a time: use vpd_lightning.predict with task=<one of "
            f"{', '.join(self.task_names)}>"
        )


def _batch_len(batch: Mapping[str, Any]) -> int | None:
    """Samples in a task batch: the first dimension of its first tensor."""
    return next((int(v.shape[0]) for v in batch.values() if isinstance(v, torch.Tensor) and v.ndim > 0), None)


def task_state_dict(state_dict: Mapping[str, torch.Tensor], task: str) -> dict[str, torch.Tensor]:
    """The state dict of ``task``'s single-task model, cut from a multi-task one: the shared backbone (and shared
    text adapter) as they are, ``tasks.<task>.*`` without the prefix; other tasks and uncertainty weights dropped."""
    prefix = f"tasks.{task}."
    out = {}
    for key, value in state_dict.items():
        if key.startswith(("backbone.", "text_adapter.")):
            out[key] = value
        elif key.startswith(prefix):
            out[key[len(prefix) :]] = value
    return out


__all__ += ["KNOWN_TASKS", "task_state_dict"]
