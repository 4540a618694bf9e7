"""Device, precision and thread choices, made once at run time so the same code runs on CPU and CUDA.

device = pick_device("auto")                 # cuda if present, else cpu
dtype = autocast_dtype(device, "auto")       # bf16 on CUDA and on CPUs with native bf16, else None
with autocast_context(device, dtype):
    loss = model(x, y)
mfu = flops_per_second / peak_flops(device, dtype or torch.float32)
weights_dtype = decode_dtype(device, "auto")  # sampling: fp32 on CPU, bf16 on CUDA, never autocast
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import time
from pathlib import Path

import torch

_PRECISIONS = ("auto", "bf16", "fp32")

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, in FLOP/s. Matched by
# substring of torch.cuda.get_device_name(), most specific first.
_CUDA_BF16_PEAK = (
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("B200", 2250e12),
    ("B100", 1750e12),
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("A6000", 155e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
)


def pick_device(preference: str = "auto") -> torch.device:
    """Resolve "auto" | "cpu" | "cuda" | "cuda:N" to a usable torch.device (on CPU, once per
    process, keep_freed_cpu_memory)."""
    pref = preference.strip().lower()
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref == "cpu":
        keep_freed_cpu_memory()
        return torch.device("cpu")
    if pref == "cuda" or pref.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {preference!r} requested but CUDA is not available; use device=cpu")
        device = torch.device(pref)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {preference!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return device
    raise ValueError(f"unknown device {preference!r}; expected auto, cpu, cuda or cuda:N")


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc refuses more on 64-bit


@functools.cache
def keep_freed_cpu_memory() -> bool:
    """Make glibc keep freed tensor memory for reuse instead of handing it back to the kernel.

    By default glibc serves blocks above a (self-adjusting) threshold with fresh mmaps and trims the
    heap top once freed memory passes a few MiB, so each training step's activations are page-faulted
    and zeroed by the kernel again: a fresh 4096x4096 bf16 matmul output ran at 0.65 vs 2.7 TFLOP/s
    into reused memory on the 2-core AMX Xeon, and the d4 step took ~10% longer. The cost is that the
    process keeps its peak footprint. False where the C library has no mallopt (musl, macOS)."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and mallopt(_M_TRIM_THRESHOLD, 1 << 30))


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AMX-BF16 or AVX512-BF16), so autocast pays off."""
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
    if {"amx_bf16", "avx512_bf16"} & flags:
        return True
    # Non-Linux hosts: ask torch's own cpuinfo probe (private API, hence the guard).
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """Dtype to autocast matmuls to, or None for plain fp32.

    "auto" picks bf16 on CUDA cards that support it and on CPUs with native bf16, fp32 elsewhere.
    Measured on a 2-core AVX512-BF16 EPYC without AMX (bench/train_throughput.py, depth 4, dim 256,
    seq 512, batch 8, Muon): matmuls 2.3x the fp32 rate (~420 vs ~180 GFLOP/s); a train step
    4.8k vs 3.1k tok/s eager and 6.9k vs 4.1k tok/s compiled, with the same loss curve.
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(_PRECISIONS)}")
    if precision == "fp32":
        return None
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not supported:
            raise RuntimeError(f"precision=bf16 requested but {torch.cuda.get_device_name(device)} lacks bf16")
        return torch.bfloat16 if supported else None
    if precision == "bf16" or cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def decode_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """Dtype the engine keeps its weights and KV cache in for sampling (it never autocasts).

    "auto" picks what decodes fastest: bf16 on CUDA cards that support it (half the bytes read
    per token), fp32 on every CPU. Measured on the 2-core AMX-BF16 Xeon, decode tok/s of the
    engine at depth 4 (dim 256, vocab 4096), prompt 64, 256 new tokens, greedy, medians of
    alternating runs in one session (shared machine, +-10%):

        engine, weights                        batch 1   batch 8
        fast path, fp32 (auto on CPU)              686     3,103
        fast path, bf16                            322     2,415
        GPT.forward, fp32                          429     2,007
        before: GPT.forward under bf16 autocast    218     1,365   (weights re-cast every step)

    Decoding one token is ~100 small kernels: at 1-8 rows oneDNN's bf16 matmul costs 50-100 us a
    call against ~10 us for fp32, so bf16 loses on this CPU even though it halves the bytes.
    The engine keeps its own copy of the weights in this dtype and refreshes it when the model's
    weights change (llmstack.decode.Decoder), so RL can sample from the model it trains.
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(_PRECISIONS)}")
    if precision == "fp32":
        return torch.float32
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not supported:
            raise RuntimeError(f"precision=bf16 requested but {torch.cuda.get_device_name(device)} lacks bf16")
        return torch.bfloat16 if supported else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for `dtype` on `device`, or a no-op context when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# (M, K, N) of the matmuls a CPU peak is the best of: squares and the d4-d6 training step's own shapes.
# One shape alone misleads: on the 2-core AMX Xeon a 1024^2 bf16 matmul reads ~1.2 TFLOP/s while
# the step's 4096x256x1024 reaches ~2.8, so a square-only peak overstated MFU by more than 2x.
PEAK_SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048), (4096, 256, 1024), (4096, 1024, 256), (4096, 384, 1536))


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (CUDA runs asynchronously); nothing to wait for on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measured_matmul_flops(device: torch.device, dtype: torch.dtype, m: int, k: int, n: int, seconds: float) -> float:
    """Best FLOP/s of an (m, k) x (k, n) matmul in `dtype` over about `seconds` of repeats.

    The best run of 4 rather than the mean: on a shared machine a neighbour's burst only slows some
    repeats, and a peak that is too low would overstate MFU."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - t) / 4)
    return 2.0 * m * k * n / best


def measured_peak(device: torch.device, dtype: torch.dtype, seconds: float = 0.1) -> tuple[float, str]:
    """(FLOP/s, what it was measured on): a data-sheet figure for known CUDA cards in bf16/fp16,
    an 8192^2 matmul on other CUDA devices, else the best of PEAK_SHAPES, `seconds` each."""
    if device.type == "cuda":
        if dtype in (torch.bfloat16, torch.float16):
            name = torch.cuda.get_device_name(device)
            for key, flops in _CUDA_BF16_PEAK:
                if key in name:
                    return flops, f"data sheet ({key})"
        return _measured_matmul_flops(device, dtype, 8192, 8192, 8192, seconds * 5), "8192^3 matmul"
    rates = {shape: _measured_matmul_flops(device, dtype, *shape, seconds) for shape in PEAK_SHAPES}
    best = max(rates, key=rates.__getitem__)
    return rates[best], "x".join(map(str, best)) + " matmul"


@functools.cache
def _peak_flops_cached(device_type: str, index: int | None, dtype: torch.dtype) -> float:
    device = torch.device(device_type, index) if index is not None else torch.device(device_type)
    return measured_peak(device, dtype)[0]


def peak_flops(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """Peak FLOP/s for MFU (measured_peak; about 0.5 s on a CPU, cached per device and dtype): the
    stage's MFU and bench/train_throughput.py's use the same peak."""
    return _peak_flops_cached(device.type, device.index, dtype)


def usable_cpu_cores() -> int:
    """Cores this process may use: OMP_NUM_THREADS when set (Snakemake sets it per job), else affinity."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no sched_getaffinity
        return os.cpu_count() or 1


def set_cpu_threads(world_size: int = 1) -> int:
    """Give each of `world_size` local ranks an equal share of the cores; returns the thread count.

    Without this every torchrun rank takes all cores and they oversubscribe (measured here:
    3.2k vs 4.6k tok/s for two ranks on two cores, STACK-NOTES.md)."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    threads = max(1, usable_cpu_cores() // world_size)
    torch.set_num_threads(threads)
    return threads


def setup_device(preference: str = "auto", threads: int = 0) -> torch.device:
    """pick_device, and on CPU use `threads` threads (0: every usable core) — for benchmarks and tools."""
    device = pick_device(preference)
    if device.type == "cpu":
        if threads:
            torch.set_num_threads(threads)
        else:
            set_cpu_threads(1)
    return device
