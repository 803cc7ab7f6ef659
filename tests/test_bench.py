"""scripts/bench.py's arithmetic: the CPU peak model it divides by and the configurations it runs (no timing)."""

from __future__ import annotations

import argparse

import pytest
from script_loader import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench")


def _cpuinfo(tmp_path, model: str, family: int, flags: str, mhz: float = 2000.0) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(f"cpu family\t: {family}\nmodel name\t: {model}\ncpu MHz\t\t: {mhz}\nflags\t\t: {flags}\n")
    return str(path)


@pytest.mark.parametrize(
    ("model", "family", "flags", "kind", "fp32", "bf16"),
    [
        # 2 cores x 2.0 GHz x 64 fp32 FLOP/cycle; AMX: x 1024 bf16 FLOP/cycle
        (
            "Intel(R) Xeon(R) Processor",
            6,
            "fma avx2 avx512f avx512_bf16 amx_bf16 amx_tile",
            "AVX-512 + AMX-BF16",
            0.256,
            4.096,
        ),
        # Zen 5: two 512-bit FMA pipes, VDPBF16PS doubles the fp32 rate
        ("AMD EPYC 9B45", 0x1A, "fma avx2 avx512f avx512_bf16", "AVX-512 + native bf16", 0.256, 0.512),
        # Zen 4: AVX-512 on 256-bit units
        ("AMD EPYC 9B14", 0x19, "fma avx2 avx512f avx512_bf16", "AVX-512 + native bf16", 0.128, 0.256),
        # AVX2 only: bf16 is converted to fp32, so the fp32 peak
        ("Intel(R) Xeon(R) CPU", 6, "fma avx2", "AVX2 only", 0.128, 0.128),
    ],
)
def test_cpu_peak_model(bench, tmp_path, monkeypatch, model, family, flags, kind, fp32, bf16):
    import vpd_lightning.utils.cpu as cpu

    path, original = _cpuinfo(tmp_path, model, family, flags), cpu.cpu_info
    monkeypatch.setattr(cpu, "cpu_info", lambda: original(path))  # bench.cpu_info imports it when called
    monkeypatch.setattr(bench.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    info = bench.cpu_info()
    assert info["kind"] == kind
    assert info["peak_tflops"]["fp32"] == pytest.approx(fp32)
    assert info["peak_tflops"]["bf16"] == pytest.approx(bf16)
    assert ("AMX-BF16, 1024 FLOP/cycle" in info["peak_derivation"]) == ("amx_bf16" in flags)


def _args(**overrides) -> argparse.Namespace:
    values = dict(
        precision=["bf16", "bf16w"],
        compile=["none"],
        layout=["contiguous", "channels_last"],
        configs=None,
        baseline=True,
    )
    values.update(overrides)
    return argparse.Namespace(**values)


def test_configurations_baseline_subset_and_no_baseline(bench):
    names = [bench.label(*c) for c in bench.configurations(_args())]
    assert names == ["baseline", "bf16", "bf16+channels_last", "bf16w", "bf16w+channels_last"]
    subset = _args(configs=["bf16w+channels_last"])
    assert [bench.label(*c) for c in bench.configurations(subset)] == ["baseline", "bf16w+channels_last"]
    subset.baseline = False
    assert [bench.label(*c) for c in bench.configurations(subset)] == ["bf16w+channels_last"]
    with pytest.raises(SystemExit, match="unknown"):
        bench.configurations(_args(configs=["fp16"]))


def test_ratios_are_against_the_first_configuration_without_baseline(bench):
    report = {
        "reference": "bf16w",
        "configs": {
            "bf16w": {"device": "cpu", "precision": "bf16w", "train_step_s": 2.0},
            "bf16w+channels_last": {"device": "cpu", "precision": "bf16w", "train_step_s": 1.0},
        },
    }
    cpu = {"peak_tflops": {"fp32": 1.0, "bf16": 4.0}}
    bench.add_rates(report, {"train_step": 4e12}, cpu)
    fast = report["configs"]["bf16w+channels_last"]
    assert fast["train_step_vs_baseline"] == 0.5
    assert fast["train_step_tflops"] == 4.0 and fast["train_step_mfu"] == 1.0  # 4 TFLOP in 1 s on a 4 TFLOP/s peak
