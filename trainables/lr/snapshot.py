"""An in-memory snapshot of everything a few training steps can change, restorable exactly."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

from trainables.rng import capture_rng, restore_rng


class _Scaler(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


@dataclass(eq=False, repr=False)
class TrainingSnapshot:
    """Model (parameters, grads, buffers, train/eval flags), optimizer, grad scaler and RNGs.

    Build it with :meth:`capture`; :meth:`restore` puts everything back (repeatably). Used as a
    context manager it restores on exit, always, and lets any exception propagate.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: _Scaler | None
    generators: tuple[torch.Generator, ...]
    model_state: dict[str, Any]
    extra_buffers: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    training_flags: dict[str, bool]
    optimizer_state: dict[str, Any]
    scaler_state: dict[str, Any] | None
    rng: dict[str, Any]
    generator_states: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def capture(
        cls,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: _Scaler | None = None,
        generators: Sequence[torch.Generator] = (),
    ) -> TrainingSnapshot:
        """Deep-copy the current state (tensors cloned); nothing is written to disk."""
        gens = tuple(generators)
        with torch.no_grad():
            model_state = {k: _clone(v) for k, v in model.state_dict().items()}
            extra_buffers = {
                name: buf.detach().clone()
                for name, buf in model.named_buffers()
                if name not in model_state
            }
            grads = {
                name: None if p.grad is None else p.grad.detach().clone()
                for name, p in model.named_parameters()
            }
        scaler_state = None
        if scaler is not None:
            scaler_state = copy.deepcopy(scaler.state_dict()) or None  # {} when disabled
        return cls(
            model=model,
            optimizer=optimizer,
            scaler=scaler,
            generators=gens,
            model_state=model_state,
            extra_buffers=extra_buffers,
            grads=grads,
            training_flags={name: m.training for name, m in model.named_modules()},
            optimizer_state=copy.deepcopy(optimizer.state_dict()),
            scaler_state=scaler_state,
            rng=capture_rng(),
            generator_states=[g.get_state().clone() for g in gens],
        )

    def restore(self) -> None:
        """Put everything back exactly; may be called any number of times."""
        with torch.no_grad():
            # load_state_dict copies into the existing tensors, so the optimizer keeps its params
            self.model.load_state_dict(self.model_state)
            buffers = dict(self.model.named_buffers())
            for name, saved in self.extra_buffers.items():
                buffers[name].copy_(saved)
            for name, p in self.model.named_parameters():
                saved_grad = self.grads.get(name)
                p.grad = None if saved_grad is None else saved_grad.clone()
        for name, module in self.model.named_modules():
            if name in self.training_flags:
                module.training = self.training_flags[name]
        # the optimizer may alias the tensors it is given: hand it a copy, keep ours pristine
        self.optimizer.load_state_dict(copy.deepcopy(self.optimizer_state))
        if self.scaler is not None and self.scaler_state is not None:
            self.scaler.load_state_dict(copy.deepcopy(self.scaler_state))
        restore_rng(self.rng)
        for gen, state in zip(self.generators, self.generator_states, strict=True):
            gen.set_state(state)

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the snapshot (tensors and numpy arrays)."""
        return sum(
            _nbytes(part)
            for part in (
                self.model_state,
                self.extra_buffers,
                self.grads,
                self.optimizer_state,
                self.scaler_state,
                self.rng,
                self.generator_states,
            )
        )

    def __enter__(self) -> TrainingSnapshot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        self.restore()
        return False

    def __repr__(self) -> str:
        return (
            f"TrainingSnapshot({len(self.model_state)} model tensors, "
            f"{len(self.generator_states)} generators, ~{self.nbytes / 2**20:.1f} MiB)"
        )


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return copy.deepcopy(value)


def _nbytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_nbytes(v) for v in obj)
    return 0
