"""Another kind of CPU, stood in on this one: both sides of each CPU-dependent choice run on every machine.

olvf asks two things of the CPU: the instruction sets /proc/cpuinfo lists (:mod:`olvf.runtime.runners.cpu`, the kind a
verified route is recorded for) and what OpenVINO's CPU plugin offers
(:func:`olvf.runtime.runners.openvino.optimization_capabilities`, which decides whether BF16 may run). A fake kind
replaces both answers. It cannot lend the arithmetic: a CPU without BF16 that is told it has it still compiles FP32,
and olvf must notice that (the runner reads the precision back).
"""

from __future__ import annotations

from typing import Any

import pytest

from olvf.runtime.runners import cpu

#: the kinds this project's machines have been seen to be (lscpu of each; model names shortened)
KINDS: dict[str, dict[str, Any]] = {
    "intel-no-bf16": {"model": "Intel Xeon (no BF16)", "isa": ("avx2", "fma", "f16c", "avx512f", "avx512_vnni")},
    "amd-zen4-bf16": {
        "model": "AMD EPYC (Zen 4)",
        "isa": ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16"),
    },
    "intel-amx": {
        "model": "Intel Xeon (AMX)",
        "isa": ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                "amx_bf16", "amx_int8"),
    },
}  # fmt: skip


def bf16_kinds() -> list[str]:
    return [k for k, v in KINDS.items() if set(v["isa"]) & set(cpu.BF16_ISA)]


def use_cpu_kind(patch: pytest.MonkeyPatch, name: str) -> dict[str, Any]:
    """Make olvf see CPU kind ``name`` until ``patch`` is undone; returns the kind as olvf records it."""
    from olvf.runtime.runners import openvino

    kind = KINDS[name]
    flags = tuple(kind["isa"])
    patch.setattr(cpu, "_cpuinfo", lambda: (kind["model"], flags))
    offered = {"FP32", "INT8", "BIN", "EXPORT_IMPORT"} | ({"BF16"} if set(flags) & set(cpu.BF16_ISA) else set())
    patch.setattr(openvino, "optimization_capabilities", lambda _core: set(offered))
    return cpu.cpu_kind()
