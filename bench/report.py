"""bench.json -> bench.md (tables a person reads) and bench.png (stage breakdown, latency against batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from olvf.bench.variants import STAGES


def markdown(report: dict[str, Any]) -> str:
    cpu = report["machine"]["cpu"]
    lines = [
        "# olvf latency benchmark" + (" (quick run: too few runs for stable figures)" if report["quick"] else ""),
        "",
        f"Machine: {cpu['model']}, {cpu['usable']} usable CPUs, flags {', '.join(cpu['flags']) or 'none'}; "
        f"GPU: {report['machine']['gpu'] or 'none'}.",
        f"Study: {report['study']['input']}; {report['study']['vertebrae']} vertebrae found.",
        f"Operations: detector {report['operations']['detector_gflop']} GFLOP + "
        f"{report['operations']['classifiers_gflop_per_crop']} GFLOP per crop = "
        f"{report['operations']['study_gflop']} GFLOP per study.",
        f"Ceiling: FP32 GEMM through ONNX Runtime {report['ceiling']['ort_fp32_gemm_gflops']} GFLOP/s"
        + (
            f", BF16 through torch {report['ceiling']['torch_bf16_gemm_gflops']} GFLOP/s"
            if "torch_bf16_gemm_gflops" in report["ceiling"]
            else ""
        )
        + f"; FP32 floor = operations / ceiling = **{report['floor_ms']} ms** per study.",
        "OpenVINO GEMM ceilings (the OpenVINO variants' own floors use them): "
        + ", ".join(
            f"{p.upper()} {report['ceiling'].get(f'openvino_{p}_gemm_gops') or 'n/a'}" for p in ("fp32", "bf16", "int8")
        )
        + " G(FL)OP/s (n/a: OpenVINO missing, or no native BF16 on this CPU).",
        "",
        "## End to end, per study (decode and writing included)",
        "",
        "| variant | p50 ms | p95 ms | p99 ms | x FP32 floor | x own floor | x faster than ORT FP32 "
        "| x faster than naive | read+write share | Grad-CAM share | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in report["variants"].items():
        if "skipped" in v:
            lines.append(f"| {name} | skipped: {v['skipped']} | | | | | | | | | |")
            continue
        lines.append(
            f"| {name} | {v['p50_ms']} | {v['p95_ms']} | {v['p99_ms']} | {v['ratio_to_floor']} | "
            f"{v.get('ratio_to_own_floor', '')} | {v.get('speedup_vs_ort_fp32')} | {v['speedup_vs_naive']} | "
            f"{v.get('read_write_share', 0):.1%} | {v['gradcam_share']:.2%} | {v['runs']} |"
        )
    lines += [
        "",
        "## Stages (p50 ms)",
        "",
        "| variant | " + " | ".join(STAGES) + " |",
        "|---" * (len(STAGES) + 1) + "|",
    ]
    for name, v in report["variants"].items():
        if "stages" in v:
            lines.append(f"| {name} | " + " | ".join(str(v["stages"][s]["p50_ms"]) for s in STAGES) + " |")
    cold, stream = report["cold_start"], report["throughput"]
    lines += [
        "",
        "## Start, memory, throughput",
        "",
        f"- Cold start (fresh process: import, bundle load with hash checks, first study): {cold['cold_start_ms']} ms; "
        f"peak resident memory {cold['peak_rss_mib']} MiB; torch imported: {cold['torch_imported']}.",
        "- Peak resident memory of a fresh process running one study, by route: "
        + ", ".join(f"{k} {m['peak_rss_mib']} MiB" for k, m in report.get("memory", {}).items())
        + ".",
        f"- Stream of {stream['studies']} studies: {stream['sequential_per_s']} studies/s one after another, "
        f"{stream['overlapped_per_s']} studies/s with reading and writing overlapped with inference.",
        "- Fused ensemble alone, by crops per call (ms): "
        + ", ".join(f"{k}: {v}" for k, v in report["ensemble_latency_ms_by_batch"].items()),
        "",
        "Notes: " + "; ".join(f"{k}: {v['notes']}" for k, v in report["variants"].items() if v.get("notes")),
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = {k: v for k, v in report["variants"].items() if "stages" in v}
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    bottom = [0.0] * len(variants)
    for stage in STAGES:
        values = [v["stages"][stage]["p50_ms"] for v in variants.values()]
        left.barh(list(variants), values, left=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values)]
    left.axvline(report["floor_ms"], color="black", linestyle="--", label="FP32 floor")
    left.set_xlabel("ms per study (p50 of each stage)")
    left.set_title("Where the time goes")
    left.legend(fontsize=8)
    sizes = report["ensemble_latency_ms_by_batch"]
    right.plot([int(k) for k in sizes], list(sizes.values()), marker="o")
    right.set_xlabel("crops per call")
    right.set_ylabel("ms (fused ensemble, ONNX Runtime CPU FP32)")
    right.set_title("Latency against batch size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
