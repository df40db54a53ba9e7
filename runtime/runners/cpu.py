"""What kind of CPU this is, as far as reduced-precision inference cares.

A reduced-precision route (OpenVINO BF16 or INT8) is verified on one kind of
CPU and trusted only on that kind: the kernels a runtime picks, and so the
rounding, follow the instruction sets the CPU offers. The kind is the CPU's
model name, its architecture and the instruction sets that decide those
kernels; two workstations of the same model are the same kind, a virtual
machine that hides AVX-512 BF16 from its guest is not the same kind as the
host.

Standard library only: read by ``olvf.load``'s backend choice at every start.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

#: instruction sets that change which inference kernels run (x86 names as /proc/cpuinfo spells them)
KERNEL_ISA = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    # Arm
    "asimddp",
    "bf16",
    "i8mm",
    "sve",
)
#: any of these gives native BF16 arithmetic (x86 AVX-512 BF16 or AMX; Arm BF16)
BF16_ISA = ("avx512_bf16", "amx_bf16", "bf16")
#: 8-bit dot products (what makes INT8 faster than FP32)
INT8_ISA = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    model = platform.processor() or "unknown"
    flags: tuple[str, ...] = ()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and model in ("unknown", "x86_64", "aarch64", ""):
            model = value.strip()
        if key in ("flags", "Features") and not flags:
            flags = tuple(value.split())
    return model, flags


def cpu_flags() -> tuple[str, ...]:
    """The instruction sets of :data:`KERNEL_ISA` this CPU reports, in that order."""
    _, flags = _cpuinfo()
    return tuple(f for f in KERNEL_ISA if f in flags)


def cpu_kind() -> dict[str, Any]:
    """This CPU's kind: model name, architecture and kernel-relevant instruction sets."""
    model, _ = _cpuinfo()
    return {"model": model, "machine": platform.machine(), "isa": list(cpu_flags())}


def same_kind(recorded: dict[str, Any], here: dict[str, Any] | None = None) -> bool:
    """Whether a route verified on ``recorded`` may be trusted on this CPU."""
    here = here or cpu_kind()
    return (
        recorded.get("model") == here["model"]
        and recorded.get("machine") == here["machine"]
        and sorted(recorded.get("isa", [])) == sorted(here["isa"])
    )


def describe_kind(kind: dict[str, Any]) -> str:
    isa = ", ".join(kind.get("isa", [])) or "no listed extensions"
    return f"{kind.get('model', '?')} ({kind.get('machine', '?')}; {isa})"


def has_native_bf16() -> bool:
    return any(f in cpu_flags() for f in BF16_ISA)


def usable_cores() -> int:
    """Cores this process may use (its affinity, not the machine's count): more threads only contend."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
