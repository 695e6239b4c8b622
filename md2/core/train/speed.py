"""Opt-in speed flags of a training run: mixed precision (--amp), channels_last, torch.compile.

The flags change how the networks run, never what the step computes around them: every network output is
returned in float32, so view synthesis and the losses always run in full precision (bf16 noise of ~0.4% in
a photometric error would drown the 1e-5 tie-breaking noise of auto-masking).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from rich.console import Console
from torch import nn


def amp_dtype(device: torch.device) -> torch.dtype:
    """bf16 on the CPU and on GPUs that support it; fp16 (which needs gradient scaling) on older GPUs."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _to_float32(value):
    """Network outputs (tensors in dicts, lists, tuples) with floating tensors in float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {key: _to_float32(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(item) for item in value)
    return value


def _to_channels_last(value):
    """4-D tensors (also inside lists) in channels_last memory format; the values are unchanged."""
    if isinstance(value, torch.Tensor):
        return value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_channels_last(item) for item in value)
    return value


class FastNetwork(nn.Module):
    """One network run under autocast and/or with channels_last inputs; outputs always float32.

    ``dtype`` None means full precision. The wrapped module's parameters stay float32 (autocast casts per
    operation), so the optimiser and the saved weights are those of the plain path.
    """

    def __init__(self, module: nn.Module, device_type: str, dtype: torch.dtype | None, channels_last: bool):
        super().__init__()
        self.module = module
        self.device_type, self.dtype, self.channels_last = device_type, dtype, channels_last

    def forward(self, *inputs):
        if self.channels_last:
            inputs = _to_channels_last(inputs)
        if self.dtype is None:
            return self.module(*inputs)
        with torch.autocast(self.device_type, dtype=self.dtype):
            outputs = self.module(*inputs)
        return _to_float32(outputs)


def accelerate(networks: dict[str, nn.Module], device: torch.device, *, amp: bool,
               channels_last: bool) -> nn.ModuleDict:
    """``networks`` wrapped for --amp / --channels-last (returned as they are without either flag).

    With --channels-last the caller has already converted the parameters (``models.to(memory_format=...)``).
    """
    if not amp and not channels_last:
        return nn.ModuleDict(networks)
    dtype = amp_dtype(device) if amp else None
    return nn.ModuleDict({name: FastNetwork(module, device.type, dtype, channels_last)
                          for name, module in networks.items()})


def compile_networks(networks: nn.ModuleDict) -> nn.ModuleDict:
    """Each network through torch.compile (compilation itself happens lazily, at the first call)."""
    return nn.ModuleDict({name: torch.compile(module) for name, module in networks.items()})


def is_compiler_error(error: BaseException) -> bool:
    """Whether ``error`` came from torch.compile's machinery (Dynamo, AOTAutograd, Inductor, its C++ or Triton
    toolchain) rather than from the model or the data."""
    for kind in type(error).__mro__:
        module = getattr(kind, "__module__", "") or ""
        if module.startswith(("torch._dynamo", "torch._inductor", "torch._functorch", "triton")):
            return True
    return False


class CompileFallback:
    """Runs a step with compiled networks; if compilation turns out to be impossible here (no C++ compiler,
    an unsupported operation, no Triton on this GPU), says so once and continues with the eager networks."""

    def __init__(self, compiled: nn.ModuleDict | None, eager: nn.ModuleDict, console: Console) -> None:
        self.compiled, self.eager, self.console = compiled, eager, console

    @property
    def networks(self) -> nn.ModuleDict:
        return self.compiled if self.compiled is not None else self.eager

    def run(self, step: Callable[[nn.ModuleDict], object], cleanup: Callable[[], None] = lambda: None):
        """``step(networks)``; on a compiler error, ``cleanup()`` (e.g. zero the gradients) and eager again."""
        if self.compiled is None:
            return step(self.eager)
        try:
            return step(self.compiled)
        except Exception as error:  # noqa: BLE001 - only compiler errors are handled; others re-raised
            if not is_compiler_error(error):
                raise
            reason = " ".join(str(error).split("Set TORCHDYNAMO_VERBOSE")[0].split())[:200]
            self.console.print(f"[yellow]warning:[/yellow] --compile: torch.compile cannot compile the networks "
                               f"here ({type(error).__name__}: {reason}); training continues without it",
                               highlight=False)
            self.compiled = None
            cleanup()
            return step(self.eager)

