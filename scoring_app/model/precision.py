"""``Var.PRECISION``: the device's mixed-precision rewrite, and the guard
that measures what it changes before a worker serves with it.

``mixed`` turns on one of TensorFlow's Grappler rewrites, on the unmodified
SavedModel: ``auto_mixed_precision`` (fp16 on an NVIDIA GPU with tensor
cores, compute capability 7.0 or later) or
``auto_mixed_precision_onednn_bfloat16`` (bf16 through oneDNN, on a CPU with
AVX512_BF16 or AMX_BF16). Elsewhere ``mixed`` serves fp32, and ``detect``
says why in one log line.

How the fp32 reference is had in the same process (docs/precision.md):
Grappler's options are process-wide, but each eager call of a function
carries the options in force as its ``config_proto`` attribute, and
TensorFlow instantiates (and optimizes) a function once per attribute set.
So the same loaded signature, called with the rewrite off and then on, runs
two different graphs; and off again, the fp32 one, bit for bit
(tests/app/test_precision.py proves both on a model built to expose bf16).
The options are read per thread, when a thread first calls a function after
they change (``context.function_call_options``, thread-local): the guard runs
on the warm-up thread, before any other thread calls the model, and leaves
the served precision set.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import Var

log = logging.getLogger(__name__)

FP32, MIXED = "fp32", "mixed"
GPU_OPTION = "auto_mixed_precision"
CPU_OPTION = "auto_mixed_precision_onednn_bfloat16"
#: CPU flags (Linux ``/proc/cpuinfo``) of native bf16 arithmetic. oneDNN also
#: runs bf16 on plain AVX512F, emulated, slower than fp32 (TensorFlow's own
#: ``IsBF16SupportedByOneDNNOnThisCPU`` accepts that): ``mixed`` does not.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
MIN_GPU_CAPABILITY = (7, 0)  # tensor cores: Volta and later (T4 is 7.5)


@dataclasses.dataclass(frozen=True)
class Support:
    """What ``mixed`` means on this device: the Grappler option, or why none."""
    device: str
    option: str | None
    why_not: str = ""

    @property
    def kind(self) -> str:
        return {GPU_OPTION: "fp16", CPU_OPTION: "bf16"}.get(self.option or "", FP32)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def detect(tf: Any, flags: set[str] | None = None, environ=os.environ) -> Support:
    """The rewrite this device supports, for the device TensorFlow places the model on."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        name = details.get("device_name", gpus[0].name)
        capability = tuple(details.get("compute_capability") or (0, 0))
        device = f"GPU {name} (compute capability {'.'.join(map(str, capability))})"
        if capability >= MIN_GPU_CAPABILITY:
            return Support(device, GPU_OPTION)
        return Support(device, None, "fp16 needs tensor cores: compute capability 7.0 or later")
    flags = cpu_flags() if flags is None else flags
    native = sorted(f.upper() for f in BF16_CPU_FLAGS if f in flags)
    device = f"CPU ({', '.join(native) or 'no native bf16'})"
    if environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip() in ("0", "false", "False"):
        return Support(device, None, "TF_ENABLE_ONEDNN_OPTS=0 turns oneDNN, which runs bf16, off")
    if not native:
        return Support(device, None, "the CPU has neither AVX512_BF16 nor AMX_BF16; oneDNN "
                       "would emulate bf16, slower than fp32")
    return Support(device, CPU_OPTION)


def set_rewrite(tf: Any, option: str, on: bool) -> None:
    """Turn the rewrite on or off for calls made from now on (this thread's at once,
    other threads' from their next first call: see the module's docstring)."""
    tf.config.optimizer.set_experimental_options({option: on})


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Mixed against fp32 on the validation images."""
    images: int
    top1_agreement: float   # fraction of images whose best class is the same
    max_deviation: float    # largest absolute change in any served score

    def within(self, min_top1: float, max_deviation: float) -> bool:
        return self.top1_agreement >= min_top1 and self.max_deviation <= max_deviation


def compare(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2 or not len(reference):
        raise ValueError(f"cannot compare scores of shapes {reference.shape} and {candidate.shape}")
    same = reference.argmax(axis=1) == candidate.argmax(axis=1)
    return Agreement(len(reference), float(same.mean()), float(np.abs(reference - candidate).max()))


@dataclasses.dataclass(frozen=True)
class Report:
    """What a worker serves in, and why: logged, and exported as metrics."""
    requested: str
    served: str          # fp32, bf16 or fp16
    device: str
    reason: str
    agreement: Agreement | None = None


def validation_files(directory: str) -> list[Path]:
    """The images in ``Var.VALIDATION_DIR`` (every regular, non-hidden file,
    in name order), or a ValueError that says what is wrong with the directory."""
    path = Path(directory)
    if not path.is_dir():
        raise ValueError(f"{Var.VALIDATION_DIR}={directory!r} is not a directory")
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{Var.VALIDATION_DIR}={directory!r} holds no files")
    return files
