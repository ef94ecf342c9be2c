"""The one device and precision policy: which device, which autocast, which memory format.

`train` hands the resolved policy to Lightning Fabric; `evaluate` and `predict` use it directly. The defaults:
CUDA when visible, bf16 autocast there and fp32 on the CPU; channels_last on both (on 2 CPU cores it was faster
for every model measured: ResNet18 training +12 % at 64 px and +34 % at 128 px, EfficientNet-Lite0 inference at
224 px 58 -> 92 img/s).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from artextract.errors import ConfigError

_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


@dataclass(frozen=True)
class Runtime:
    accelerator: str  # "cpu" or "cuda"
    precision: str  # "32-true", "bf16-mixed" or "16-mixed" (Fabric's names)
    channels_last: bool

    @classmethod
    def resolve(cls, accelerator: str = "auto", precision: str = "auto", channels_last: bool = True) -> Runtime:
        if accelerator == "auto":
            accelerator = "cuda" if torch.cuda.is_available() else "cpu"
        elif accelerator.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ConfigError(f"{accelerator} asked for, but no CUDA device is visible; use cpu instead")
            accelerator = "cuda"
        elif accelerator != "cpu":
            raise ConfigError(f"unknown device {accelerator!r}: use auto, cpu or cuda")
        if precision == "auto":
            precision = "bf16-mixed" if accelerator == "cuda" else "32-true"
        return cls(accelerator, precision, channels_last)

    @property
    def device(self) -> torch.device:
        return torch.device(self.accelerator)

    def autocast(self, device: torch.device | None = None) -> contextlib.AbstractContextManager[Any]:
        dtype = _AUTOCAST_DTYPES.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast((device or self.device).type, dtype=dtype)

    def place(self, model: torch.nn.Module, device: torch.device | None = None) -> torch.nn.Module:
        """The model on the device, in the memory format the inputs will have."""
        model = model.to(device or self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def others_cpu_load(window_s: float = 0.25) -> float | None:
    """Cores' worth of CPU time that other processes used over the next `window_s` seconds (Linux: /proc), or None
    where that cannot be read."""
    def sample() -> tuple[float, float]:
        with open("/proc/stat") as handle:
            fields = [float(x) for x in handle.readline().split()[1:]]
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)  # all but idle and iowait
        with open("/proc/self/stat") as handle:
            own = handle.read().rsplit(")", 1)[1].split()
        return busy, float(own[11]) + float(own[12])  # utime + stime of this process, in clock ticks

    try:
        ticks = os.sysconf("SC_CLK_TCK")
        busy_before, own_before = sample()
        time.sleep(window_s)
        busy_after, own_after = sample()
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return max(0.0, (busy_after - busy_before) - (own_after - own_before)) / ticks / window_s


def cpu_threads_for(from_features: bool, configured: int = 0, otherwise: int | None = None,
                    load: Callable[[], float | None] = others_cpu_load) -> int:
    """torch's intra-op threads for a CPU training phase (`configured` > 0 wins; `otherwise`, default all cores).

    Training from cached maps is many small ops (the recurrent reader's time steps); after each, torch's threads
    meet at a barrier, and beside one other busy process a descheduled thread stalls the others for a time slice.
    Measured on 2 cores (bench/bench_contention.py): 2 threads 823 img/s alone but 240 beside one busy process;
    1 thread 533 alone and 554 beside it. So that phase takes one thread when other processes are using at least
    half a core at the start of the epoch, all of them otherwise. Phases through the backbone are few large ops
    and keep `otherwise`.
    """
    if configured:
        return configured
    every = otherwise or available_cores()
    if not from_features or every == 1:
        return every
    busy = load()
    return 1 if busy is not None and busy >= 0.5 else every


def parse_devices(text: str) -> int | str | list[int]:
    text = text.strip()
    if text == "auto":
        return "auto"
    try:
        return [int(d) for d in text.split(",") if d] if "," in text else int(text)
    except ValueError:
        raise ConfigError(f"train.devices must be 'auto', a count or a list like 0,1; got {text!r}") from None


def make_fabric(runtime: Runtime, devices_text: str, num_nodes: int):
    """A Fabric for `runtime`: DDP when more than one device or node takes part."""
    from lightning.fabric import Fabric

    devices = parse_devices(devices_text)
    if runtime.accelerator == "cpu" and devices == "auto":
        devices = 1
    many = devices not in (1, "auto") or num_nodes > 1
    return Fabric(accelerator=runtime.accelerator, devices=devices, num_nodes=num_nodes,
                  precision=runtime.precision, strategy="ddp" if many else "auto")
