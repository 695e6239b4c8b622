"""torch's Adam for md2's training, without importing torch's compiler in a run that compiles nothing.

torch.optim wraps ``Optimizer.add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` in
``torch._disable_dynamo``, which imports ``torch._dynamo`` at its first call, and ``Adam.step`` in a wrapper that
imports it at every call (then turns grad mode off and marks graph breaks for the compiler). Outside
``torch.compile`` there is nothing to disable and no graph to break, yet importing the compiler costs 1.1-1.5 s
of start-up on the 2-core CI machine (and ~0.3 s more at exit): a fifth of a short run's time outside its steps.

:func:`adam` returns torch's Adam whose step is called as torch's wrapper calls it for a non-differentiable
optimiser (under ``torch.no_grad``), with the four methods marked as already disabled (torch caches the disabled
function on the wrapped one; outside compilation it is the function itself). The update, the state dict and
adam.pth are torch's, bit for bit (tested). With ``--compile``, or where torch arranges its wrappers otherwise,
it is plain ``torch.optim.Adam``.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterable

import torch

_DISABLED_METHODS = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
_CACHE_ATTRIBUTE = "__dynamo_disable"  # where torch._disable_dynamo keeps the disabled function


def _plain_step():
    """torch's Adam.step under its wrappers, or None where it is not wrapped as expected."""
    step = inspect.unwrap(torch.optim.Adam.step)
    return step if step is not torch.optim.Adam.step and step.__qualname__ == "Adam.step" else None


_ADAM_STEP = _plain_step()


class _EagerAdam(torch.optim.Adam):
    """``torch.optim.Adam`` whose step does not import torch._dynamo (the same update)."""

    def step(self, closure=None):
        with torch.no_grad():  # torch's wrapper sets grad mode to defaults["differentiable"]: False
            return _ADAM_STEP(self, closure)


def adam(parameters: Iterable[torch.nn.Parameter], learning_rate: float, *, eager: bool = True) -> torch.optim.Adam:
    """Adam over ``parameters`` (foreach: one kernel per operation over all tensors, 5x faster on the CPU).

    ``eager``: the run compiles nothing (no ``--compile``), so the optimiser need not import the compiler."""
    if eager and _ADAM_STEP is not None and _skip_compiler_import():
        return _EagerAdam(parameters, learning_rate, foreach=True)
    return torch.optim.Adam(parameters, learning_rate, foreach=True)


def _skip_compiler_import() -> bool:
    """Mark the optimiser methods torch disables for its compiler as disabled already (outside torch.compile
    the disabled function is the function), unless torch._dynamo is loaded anyway. Whether they are marked."""
    if "torch._dynamo" in sys.modules:
        return False
    methods = [getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None) for name in _DISABLED_METHODS]
    if any(method is None for method in methods):
        return False
    for method in methods:
        if getattr(method, _CACHE_ATTRIBUTE, None) is None:
            setattr(method, _CACHE_ATTRIBUTE, method)
    return True
