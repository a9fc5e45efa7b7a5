"""Declared model selection: when training evaluates the dev split, what it keeps, when it stops.

:class:`Selector` follows the dev WER of the evaluated steps under ``training.selection``
(:class:`~speech_repro.parameters.SelectionParams`): the best step so far (its weights too, when
the criterion keeps them), how many evaluations in a row failed to improve on it, and whether
patience ran out. Its state goes into every checkpoint, so a resumed run selects the step an
uninterrupted one would. :meth:`Selector.record` says which step was selected and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from speech_repro.parameters import SelectionParams


@dataclass
class Selector:
    """The selection state of one training run (see the module docstring).

    ``every`` is the resolved evaluation interval in steps (0: never), ``total_steps`` the steps
    the schedule plans.
    """

    params: SelectionParams
    every: int
    total_steps: int
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    best_step: int | None = None
    best_wer: float | None = None
    best_weights: dict[str, torch.Tensor] | None = None
    since_best: int = 0
    stopped_at: int | None = None

    @classmethod
    def start(cls, params: SelectionParams, steps_per_epoch: int, epochs: int) -> Selector:
        """A fresh selector; ``eval_every_steps`` None means once per epoch."""
        every = steps_per_epoch if params.eval_every_steps is None else params.eval_every_steps
        return cls(params, every, steps_per_epoch * epochs)

    def due(self, step: int) -> bool:
        """Whether the dev split is evaluated after ``step``: every ``every`` steps and the last."""
        return self.every > 0 and (step % self.every == 0 or step == self.total_steps)

    @property
    def stopped(self) -> bool:
        """Whether patience ran out: training stops at :attr:`stopped_at`."""
        return self.stopped_at is not None

    def observe(self, step: int, epoch: int, wer: float, net: torch.nn.Module) -> None:
        """Take the dev WER of ``step``; keep ``net``'s weights if it is the best so far and the
        criterion returns the best step's weights."""
        self.evaluations.append({"step": step, "epoch": epoch, "dev_wer": wer})
        if self.best_wer is None or wer < self.best_wer - self.params.min_delta:
            self.best_step, self.best_wer, self.since_best = step, wer, 0
            if self.params.criterion == "best_dev_wer":
                # Copies: the optimizer goes on changing the live tensors in place.
                self.best_weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            self.since_best += 1
        patience = self.params.patience
        if patience is not None and self.since_best >= patience and step < self.total_steps:
            self.stopped_at = step

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the selection (the best weights included)."""
        return {
            "evaluations": self.evaluations,
            "best_step": self.best_step,
            "best_wer": self.best_wer,
            "best_weights": self.best_weights,
            "since_best": self.since_best,
            "stopped_at": self.stopped_at,
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Continue from a checkpoint's :meth:`state_dict`; None (a checkpoint written before
        selection existed) leaves the selection fresh."""
        if state is None:
            return
        if (
            self.params.criterion == "best_dev_wer"
            and state["best_step"] is not None
            and state["best_weights"] is None
        ):
            # Continuing a run that kept no best weights (criterion last): the best step so far
            # cannot be returned, and silently dropping it would select another step.
            raise ValueError(
                "the checkpoint was written under training.selection.criterion last and holds "
                f"no weights of its best step ({state['best_step']}): continue it with "
                "criterion last, or train from scratch with best_dev_wer"
            )
        self.evaluations = list(state["evaluations"])
        self.best_step, self.best_wer = state["best_step"], state["best_wer"]
        self.best_weights = state["best_weights"]
        self.since_best, self.stopped_at = state["since_best"], state["stopped_at"]

    def weights(self, net: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The weights the criterion selects: the best step's, or ``net``'s own (``last``)."""
        if self.params.criterion == "best_dev_wer":
            if self.best_weights is None:
                raise ValueError(
                    f"training.selection.criterion best_dev_wer found no evaluation of the "
                    f"{self.params.split!r} split to select by"
                )
            return {k: v.cpu() for k, v in self.best_weights.items()}
        return net.cpu().state_dict()

    def record(self, last_step: int) -> dict[str, Any]:
        """Which step was selected and why, as JSON (the ``model_selection`` dataset)."""
        params = self.params
        by_step = {e["step"]: e["dev_wer"] for e in self.evaluations}
        selected = self.best_step if params.criterion == "best_dev_wer" else last_step
        if params.criterion == "best_dev_wer":
            reason = (
                f"lowest {params.split} WER ({_percent(self.best_wer)}) of "
                f"{len(self.evaluations)} evaluations"
            )
        else:
            reason = "the last step's weights (criterion last)"
        if self.stopped:
            reason += (
                f"; stopped early at step {self.stopped_at} of {self.total_steps}: "
                f"{self.since_best} evaluations without improving on step {self.best_step}'s "
                f"{_percent(self.best_wer)} by more than {params.min_delta} "
                f"(patience {params.patience})"
            )
        return {
            "criterion": params.criterion,
            "split": params.split,
            "eval_every_steps": self.every,
            "patience": params.patience,
            "min_delta": params.min_delta,
            "selected_step": selected,
            "dev_wer": by_step.get(selected),
            "best_step": self.best_step,
            "best_dev_wer": self.best_wer,
            "last_step": last_step,
            "planned_steps": self.total_steps,
            "stopped_early": self.stopped,
            "reason": reason,
            "evaluations": self.evaluations,
        }


def _percent(wer: float | None) -> str:
    return "none" if wer is None or math.isnan(wer) else f"{wer:.2%}"
