"""Settings that make a training step faster on CPU (measured in docs/performance.md).

* :func:`use_channels_last`: the networks' weights (hence their activations) in channels-last
  layout. oneDNN's CPU convolutions run about 15% faster; part of that is lost again because the
  weight gradients come back contiguous from the convolutions and are copied to the weights' layout.
* :class:`FlatViewAdam`: the fused Adam over flat views of those channels-last weights. Given the
  4-D channels-last tensors themselves, its CPU kernel copies them to contiguous and back: the
  optimiser step took 26 instead of 10 ms at the ``cpu`` accuracy preset.
* :func:`keep_freed_memory`: glibc hands freed blocks of more than a few MB back to the system, so
  every step's large temporaries (activations, gradients, the loss's batched warps) page-fault
  anew: about 7% of a step at the ``cpu`` preset. Raising the thresholds keeps them in the process.
* :func:`flush_denormals`: subnormal floats computed as zero. x86 CPUs take microcode assists on
  them; once a trained network makes them (a saturated sigmoid, vanishing gradients) every
  convolution touching them slows down: steps took 1.7-2.4x longer without it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

import torch
from torch import Tensor, nn

LOG = logging.getLogger(__name__)

# mallopt parameters (malloc.h) and the largest mmap threshold glibc accepts on 64-bit systems
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MAX_MMAP_THRESHOLD = 32 * 2**20
_TRIM_THRESHOLD = 2**30


def use_channels_last(model: nn.Module) -> None:
    """Store the 4-D weights of ``model`` channels-last (in place)."""
    model.to(memory_format=torch.channels_last)


def keep_freed_memory() -> bool:
    """Keep freed blocks of up to 32 MB, and up to 1 GB of free heap, in the process (glibc only).

    Returns whether the setting was applied (False on systems without glibc's ``mallopt``).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    applied = bool(mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    LOG.debug("glibc malloc thresholds raised: %s", applied)
    return applied


def flush_denormals() -> bool:
    """Compute subnormal floats (below 1.2e-38 in fp32) as zero from now on, in this process.

    Returns whether the CPU has the mode (x86's FTZ/DAZ; False elsewhere, where nothing changes). A loss
    never sees the difference: what is flushed is 30 orders of magnitude below anything it sums.
    """
    applied = torch.set_flush_denormal(True)
    LOG.debug("subnormal floats flushed to zero: %s", applied)
    return applied


def is_channels_last_only(tensor: Tensor) -> bool:
    """Whether ``tensor`` is 4-D, dense in channels-last order and not contiguous (so not 1x1 spatial)."""
    return tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()


def flat_view(tensor: Tensor) -> Tensor:
    """The elements of a channels-last tensor in memory order, 1-D (a view for a dense channels-last tensor)."""
    return tensor.permute(0, 2, 3, 1).reshape(-1)


def unflatten_like(flat: Tensor, like: Tensor) -> Tensor:
    """The inverse of :func:`flat_view`: ``flat`` as a channels-last tensor of ``like``'s shape (a view)."""
    n, c, h, w = like.shape
    return flat.view(n, h, w, c).permute(0, 3, 1, 2)


class FlatViewAdam(torch.optim.Adam):
    """``torch.optim.Adam`` (pass ``fused=True``) that updates channels-last weights through 1-D views.

    Adam is element-wise, so the memory order of a weight, its gradient and its two moments does not
    matter as long as they share it. The optimiser holds, for each channels-last weight, a 1-D
    parameter over the same storage; :meth:`step` points its gradient at the weight's gradient (which
    autograd keeps in the weight's layout) and the update lands in the weight. The model's own
    parameters keep their gradients (:meth:`zero_grad` clears them). State dicts hold the moments in
    the weights' 4-D shapes, so checkpoints are the same as a plain Adam's and load into either.
    A ``GradScaler`` unscales before :meth:`step` sets the views' gradients, so this class is for
    unscaled (fp32 or bf16) training; channels-last weights are used on CPU only.
    """

    def __init__(self, parameters, **options: Any):
        self.views: list[tuple[nn.Parameter, nn.Parameter]] = []  # (model weight, flat view)
        own = []
        for parameter in parameters:
            if is_channels_last_only(parameter):
                view = nn.Parameter(flat_view(parameter.detach()), requires_grad=parameter.requires_grad)
                self.views.append((parameter, view))
                own.append(view)
            else:
                own.append(parameter)
        super().__init__(own, **options)
        self.register_state_dict_post_hook(FlatViewAdam._moments_as_weights)
        self.register_load_state_dict_pre_hook(FlatViewAdam._moments_as_views)

    @torch.no_grad()
    def step(self, closure=None):
        for weight, view in self.views:
            view.grad = None if weight.grad is None else flat_view(weight.grad)
        return super().step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for weight, _ in self.views:
            if set_to_none:
                weight.grad = None
            elif weight.grad is not None:
                weight.grad.zero_()

    def _weights_by_index(self) -> dict[int, nn.Parameter]:
        """State-dict parameter index -> model weight, for the parameters that are views."""
        of_view = {id(view): weight for weight, view in self.views}
        ordered = [p for group in self.param_groups for p in group["params"]]
        return {i: of_view[id(p)] for i, p in enumerate(ordered) if id(p) in of_view}

    def _map_moments(self, state_dict: dict[str, Any], convert) -> dict[str, Any]:
        """``state_dict`` with ``convert(value, weight)`` applied to the state of every view parameter."""
        state = dict(state_dict["state"])
        for index, weight in self._weights_by_index().items():
            if index in state:
                state[index] = {k: convert(v, weight) for k, v in state[index].items()}
        return {**state_dict, "state": state}

    @staticmethod
    def _moments_as_weights(optimizer: FlatViewAdam, state_dict: dict[str, Any]) -> dict[str, Any]:
        def as_weight(value: Any, weight: Tensor) -> Any:
            flat = torch.is_tensor(value) and value.dim() == 1 and value.numel() == weight.numel()
            return unflatten_like(value, weight) if flat else value

        return optimizer._map_moments(state_dict, as_weight)

    @staticmethod
    def _moments_as_views(optimizer: FlatViewAdam, state_dict: dict[str, Any]) -> dict[str, Any]:
        def as_view(value: Any, weight: Tensor) -> Any:
            shaped = torch.is_tensor(value) and value.shape == weight.shape
            return flat_view(value.contiguous(memory_format=torch.channels_last)) if shaped else value

        return optimizer._map_moments(state_dict, as_view)
