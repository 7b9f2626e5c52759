"""What machine and software a measurement came from, recorded beside every number.

A ratio between two runtimes depends on the CPU's vector extensions (VNNI for int8, AVX-512 vs AVX2 for
fp32 GEMM kernels) and its caches, so the record names the exact CPU and those features, not just the
marketing name (which on cloud VMs is often only "AMD EPYC").
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# The instruction-set extensions that decide which GEMM/int8/bf16 kernels onnxruntime, OpenVINO and
# torch pick. /proc/cpuinfo names them this way.
FLAGS_THAT_MATTER = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
                     "amx_tile", "amx_int8", "amx_bf16")


def _cpuinfo_fields() -> dict[str, str]:
    """The first processor's `key: value` lines of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    return _cpuinfo_fields().get("model name") or platform.processor() or platform.machine()


def physical_cores() -> int | None:
    """Distinct (package, core) pairs; None where /proc/cpuinfo does not say."""
    pairs: set[tuple[str, str]] = set()
    package = core = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    package = value.strip()
                elif key == "core id":
                    core = value.strip()
                elif not line.strip() and package is not None and core is not None:
                    pairs.add((package, core))
                    package = core = None
    except OSError:
        return None
    if package is not None and core is not None:
        pairs.add((package, core))
    return len(pairs) or None


def cache_sizes(cpu: int = 0) -> dict[str, str]:
    """Cache sizes of one logical CPU as sysfs reports them, e.g. {"L1d": "32K", "L2": "512K", "L3": "32768K"}."""
    out: dict[str, str] = {}
    base = Path(f"/sys/devices/system/cpu/cpu{cpu}/cache")
    for index in sorted(base.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        out[f"L{level}{suffix}"] = size
    return out


def last_level_cache_bytes(cpu: int = 0) -> int | None:
    """Bytes of the highest cache level sysfs lists for this CPU (sizes like "32768K"), or None."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    best: tuple[int, int] | None = None
    for name, size in cache_sizes(cpu).items():
        level = int(name[1]) if name[1:2].isdigit() else 0
        number, unit = size[:-1], size[-1:].upper()
        if unit not in units or not number.isdigit() or name.endswith("i"):
            continue
        if best is None or level > best[0]:
            best = (level, int(number) * units[unit])
    return best[1] if best else None


def cpu_facts() -> dict[str, Any]:
    """Vendor, family/model/stepping, the flags that matter (present or not), and caches."""
    info = _cpuinfo_fields()
    flags = set(info.get("flags", "").split())
    return {
        "vendor": info.get("vendor_id"),
        "family": info.get("cpu family"),
        "model": info.get("model"),
        "stepping": info.get("stepping"),
        "flags": {name: name in flags for name in FLAGS_THAT_MATTER},
        "caches": cache_sizes(),
    }


# The CPU flags with which bfloat16 is computed in hardware.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bfloat16 in hardware (avx512_bf16 or AMX). Elsewhere runtimes emulate it, or
    quietly run fp32 instead, so a bf16 row there would measure something else than its name says."""
    flags = set(_cpuinfo_fields().get("flags", "").split())
    return bool(flags.intersection(NATIVE_BF16_FLAGS))


def machine_info() -> dict[str, Any]:
    mem_gb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": cpu_model(),
        **cpu_facts(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def machine_label(info: dict[str, Any] | None = None) -> str:
    """One line naming the machine a number came from, for tables and READMEs."""
    info = info or machine_info()
    flags = [name for name, present in (info.get("flags") or {}).items() if present and name.startswith(("avx512", "amx", "avx_vnni"))]
    cpu = info.get("cpu") or "unknown CPU"
    fms = "/".join(str(info.get(k)) for k in ("family", "model", "stepping") if info.get(k) is not None)
    parts = [cpu + (f" (family/model/stepping {fms})" if fms else ""), f"{info.get('usable_cores')} cores"]
    l3 = (info.get("caches") or {}).get("L3")
    if l3:
        parts.append(f"L3 {l3}")
    parts.append(", ".join(flags) if flags else "no AVX-512/AMX")
    return ", ".join(parts)
