"""The demo's first hour: plain verdicts, the exact "same as" command, progress lines in a pipe, referring counts
and tokens, ``make help`` (the demo's run time is measured by scripts/time_demo.sh, not here)."""

from __future__ import annotations

import queue
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tiny_config import cli_env

from vpd_lightning import demo

REPO = Path(__file__).resolve().parents[1]


def test_verdicts_are_plain_words():
    worse = demo.verdict("depth", "RMSE", 0.913, 0.800, False, " m", epochs=1)
    assert "is worse than the baseline (predict the mean depth) by 14.1 %" in worse
    assert "RMSE 0.913 m vs 0.800 m" in worse
    assert f"beats it with {demo.TASKS['depth']['wins_from']} epochs or more (this run: 1;" in worse
    better = demo.verdict("depth", "RMSE", 0.4, 0.8, False, " m", epochs=6)
    assert "is better than the baseline (predict the mean depth) by 50.0 %" in better and "epochs" not in better
    seg = demo.verdict("segmentation", "mIoU", 0.250, 0.312, True, "", epochs=1)
    assert "is worse than the baseline (predict the most frequent class) by 6.2 points of mIoU" in seg
    ref = demo.verdict("referring", "oIoU", 0.5, 0.3, True, "", epochs=24)
    assert "is better than the baseline (predict the largest object) by 20.0 points of oIoU" in ref
    for line in (worse, better, seg, ref):
        assert "-" not in line and "+" not in line  # no "-14.1% lower", no "+-6.2 points"
    for task in demo.TASKS.values():
        assert task["wins_from"] is None or 1 <= task["wins_from"] <= task["epochs"]


class _Stop(Exception):
    pass


@pytest.mark.parametrize("task", ["depth", "referring", "multitask"])
def test_printed_command_composes_the_demo_config(task, tmp_path, monkeypatch, capsys, refer_root):
    """Running the printed ``python -m vpd_lightning.train ...`` composes exactly the demo's configuration (the
    same tiny model under paths.cache_dir, the same data, output folder and epochs)."""
    import vpd_lightning.backbone.tiny as tiny
    import vpd_lightning.train as train_module
    from vpd_lightning.data import synthetic

    seen = {}

    def fake_train(cfg):
        seen["cfg"] = cfg
        raise _Stop

    monkeypatch.setattr(tiny, "save_tiny_stable_diffusion", lambda root, **kw: Path(root))
    monkeypatch.setattr(synthetic, "generate_nyuv2", lambda root, *a, **kw: Path(root))
    monkeypatch.setattr(synthetic, "generate_ade20k", lambda root, *a, **kw: Path(root))
    monkeypatch.setattr(synthetic, "generate_refcoco", lambda root, *a, **kw: refer_root)
    monkeypatch.setattr(train_module, "train", fake_train)
    data, out = tmp_path / "my data", tmp_path / "run"
    with pytest.raises(_Stop):
        demo.main(["--task", task, "--data-dir", str(data), "--output", str(out), "--epochs", "2"])
    printed = [line for line in capsys.readouterr().out.splitlines() if "python -m vpd_lightning.train" in line]
    assert len(printed) == 1
    argv = shlex.split(printed[0].split("python -m vpd_lightning.train", 1)[1])

    from hydra import compose, initialize_config_dir

    from vpd_lightning.config import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        again = compose("train", overrides=argv, return_hydra_config=True)
    used = seen["cfg"]

    def plain(cfg):
        return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=False)

    assert plain(again) == plain(used)
    assert again.hydra.run.dir == used.hydra.run.dir == str(out)
    assert used.paths.cache_dir == str(demo.cache_dir(data, task))  # the demo's tiny model, not ~/.cache
    assert used.trainer.max_epochs == 2
    # not a terminal (captured): one line per epoch instead of a progress bar
    assert used.trainer.enable_progress_bar is False and "epoch_line" in used.callbacks


def test_progress_reaches_a_pipe_while_the_demo_runs(tmp_path):
    """The first ``[demo]`` line arrives through a pipe while the demo is still working (not at exit)."""
    cmd = [sys.executable, "-m", "vpd_lightning.demo", "--data-dir", str(tmp_path), "--output", str(tmp_path / "o")]
    env = {k: v for k, v in cli_env().items() if k != "PYTHONUNBUFFERED"}  # as in a plain shell
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        first = lines.get(timeout=300)
        still_running = proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    assert first.startswith("[demo] depth:") and still_running


def test_referring_demo_counts_and_tokens(refer_root, tmp_path):
    """The split counts printed are the data's; the demo's sentences fit its token budget (no truncation)."""
    from vpd_lightning.backbone.tiny import _write_tokenizer
    from vpd_lightning.data.refcoco import ReferData

    counts = demo._refcoco_counts(refer_root)
    data = ReferData.load(refer_root, "refcoco", "unc")
    per_split = {}
    for ref in data.refs:
        per_split.setdefault(ref["split"], set()).add(ref["image_id"])
    assert counts.startswith(f"{len(data.images)} images: ")
    for split, ids in per_split.items():
        sentences = sum(len(r["sentences"]) for r in data.refs if r["split"] == split)
        assert f"{split} {len(ids)} ({sentences} sentences)" in counts
    tokenizer = _write_tokenizer(tmp_path, demo.TINY_SD["referring"]["tokenizer"])
    budget = OmegaConf.load(REPO / "conf" / "experiment" / "demo_referring.yaml").data.max_tokens
    lengths = {len(tokenizer(s["sent"]).input_ids) for r in data.refs for s in r["sentences"]}
    assert max(lengths) <= budget
    assert len(tokenizer("the red square on the left").input_ids) == 8  # one token per word + start/end


def test_make_help_lists_every_demo_task():
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    demo_line = next(line for line in out.splitlines() if line.strip().startswith("demo"))
    assert all(task in demo_line for task in demo.TASKS)
