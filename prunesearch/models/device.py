"""Where and in what precision models run: the CPU in fp32 by default, or an accelerator PyTorch can reach
(``cuda``, ``cuda:1``, ``mps``), in bf16 or fp16 where its memory calls for it.

Every forward in the project sends its inputs to ``model.device``, and every statistic it keeps is reduced there
and brought back to the CPU, so choosing a device is choosing where the dense model is loaded. Timings wait for
the device's queued work (``synchronize``): an accelerator returns from a forward before it has computed it.
"""

from __future__ import annotations

import platform

import torch

from prunesearch.errors import PrunesearchError

AUTO = "auto"
"""The first CUDA device when PyTorch sees one, else the CPU."""

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""The weight precisions a model may be loaded in. Statistics, losses and refit solves are computed in fp32 (or
fp64) whatever the weights' precision; on a CPU without AVX-512 bf16 runs ~6x slower than fp32."""


def resolve_device(spec: str | torch.device = AUTO) -> torch.device:
    """The device ``spec`` names (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``), refused with a clear error when
    PyTorch cannot use it here rather than failing on the first forward."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    if spec == AUTO:
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise PrunesearchError(f"device '{spec}' is not a device name (auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise PrunesearchError(f"device '{spec}': PyTorch sees no CUDA device here (torch {torch.__version__})")
        index = 0 if device.index is None else device.index
        if index >= count:
            raise PrunesearchError(f"device '{spec}': PyTorch sees {count} CUDA device(s), numbered from 0")
        return torch.device("cuda", index)
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise PrunesearchError(f"device '{spec}': PyTorch sees no MPS device here")
        return device
    raise PrunesearchError(f"device '{spec}' is not supported (auto, cpu, cuda, cuda:N or mps)")


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """The weight precision ``name`` names (``float32``, ``bfloat16``, ``float16``), or a clear error."""
    if isinstance(name, torch.dtype):
        name = dtype_name(name)
    if name not in DTYPES:
        raise PrunesearchError(f"dtype '{name}' is not supported (choose from {', '.join(DTYPES)})")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """The name ``resolve_dtype`` takes for ``dtype``."""
    return str(dtype).removeprefix("torch.")


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has run everything queued on it (nothing to wait for on the CPU)."""
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


def describe_device(device: torch.device = torch.device("cpu")) -> str:
    """What a timing on ``device`` depends on: the CPU model and PyTorch's threads, or the accelerator's name."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, cuda {torch.version.cuda}"
    if device.type != "cpu":
        return f"{device.type}: torch {torch.__version__}"
    name = platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), name)
    except OSError:
        pass
    return f"cpu: {name}, {torch.get_num_threads()} threads, torch {torch.__version__}"
