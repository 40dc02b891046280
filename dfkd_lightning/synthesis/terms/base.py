"""Loss terms, their registry and the weighted objective a YAML mapping describes.

An objective is written in YAML as a mapping from a name to a weight or to the term's options::

    synthesis_loss:
      bn: 1.0                                   # registered term, weight 1
      adv: {weight: 0.5, temperature: 3.0}      # options of the term
      prior: {term: tv, weight: 1.0e-4}         # a registered term under another name
      mine: {class_path: my_pkg.MyTerm, weight: 0.1, scale: 2}   # a user's term
      cr: {weight: 0.8, after_warmup: true}     # only once the student trains
      adv: {weight: 1.1, start_epoch: 19}       # from epoch 19 (counted from 0) on

A weight of 0 switches a term off (it is neither bound nor computed). Each term is logged under
its name.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.terms.context import Needs, StepContext

__all__ = [
    "TERMS",
    "LossTerm",
    "Objective",
    "ObjectiveSpec",
    "build_objective",
    "register_term",
]

#: A YAML objective: term name -> weight, or -> options (``weight``, ``term``, ``class_path``,
#: ``after_warmup``, ``start_epoch`` and the term's own keyword arguments).
ObjectiveSpec = Mapping[str, float | Mapping[str, Any]]


class LossTerm(nn.Module):
    """One named loss term: ``forward(ctx)`` returns a scalar to minimise.

    Subclasses declare :attr:`needs` (what the step's forwards must return) and may hold
    parameters (trained by the synthesizer's optimizer), per-rank state (:meth:`rank_state`)
    and round bookkeeping (:meth:`end_round`).
    """

    #: Set by :func:`register_term`.
    registered_name: str = ""
    #: One-line summary shown by ``dfkd list``; defaults to the docstring's first line.
    summary: str = ""
    #: Whether a negative weight makes sense (a term to maximise); otherwise it is an error.
    accepts_negative_weight: bool = False

    @property
    def needs(self) -> Needs:
        return Needs()

    def parameter_group_options(self) -> dict[str, Any]:
        """Optimizer options of a parameter group of the term's own (e.g. CMI's head's Adam
        betas); empty: its parameters train with the synthesizer's settings."""
        return {}

    def bind(self, module: Any) -> None:
        """Build what depends on the networks (``module.teacher``, ``module.student``)."""

    def forward(self, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError

    def end_round(self, best: SyntheticBatch) -> None:
        """After a synthesis round, with the batch that goes on (extras from ``ctx.keep``)."""

    def rank_state(self) -> dict[str, Any]:
        """Per-rank state for checkpoints (tensors and primitives)."""
        return {}

    def load_rank_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`rank_state`."""


#: Registered terms by name.
TERMS: dict[str, type[LossTerm]] = {}

Term = TypeVar("Term", bound=type[LossTerm])


def register_term(name: str) -> Callable[[Term], Term]:
    """Class decorator: make a term available by ``name`` in objectives."""

    def register(cls: Term) -> Term:
        if name in TERMS and TERMS[name] is not cls:
            raise ValueError(f"a loss term named {name!r} is already registered")
        cls.registered_name = name
        TERMS[name] = cls
        return cls

    return register


def _import(path: str) -> type[LossTerm]:
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"cannot import loss term class_path {path!r}: {error}") from None
    if not (isinstance(cls, type) and issubclass(cls, LossTerm)):
        raise ConfigError(f"{path} is not a LossTerm subclass")
    return cls


def _term_class(name: str, options: dict[str, Any]) -> type[LossTerm]:
    if "class_path" in options:
        return _import(options.pop("class_path"))
    registered = options.pop("term", name)
    if registered not in TERMS:
        raise ConfigError(
            f"unknown loss term {registered!r}; registered terms: {sorted(TERMS)} "
            "(or give a class_path to your own LossTerm)"
        )
    return TERMS[registered]


class Objective(nn.Module):
    """Named, weighted loss terms: ``loss = sum_k w_k * term_k(ctx)``."""

    def __init__(
        self,
        terms: Mapping[str, LossTerm],
        weights: Mapping[str, float],
        after_warmup: set[str] | frozenset[str] = frozenset(),
        start_epochs: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.terms = nn.ModuleDict(dict(terms))
        self.weights = {name: float(weights[name]) for name in terms}
        self.after_warmup = frozenset(after_warmup)
        self.start_epochs = dict(start_epochs or {})

    def __contains__(self, name: str) -> bool:
        return name in self.terms

    def __len__(self) -> int:
        return len(self.terms)

    def of_type(self, cls: type[LossTerm]) -> list[LossTerm]:
        return [term for term in self.terms.values() if isinstance(term, cls)]

    def active(self, student_trains: bool = True, epoch: int | None = None) -> dict[str, float]:
        """The non-zero weights of the terms that run now (``after_warmup`` ones only once the
        student trains, ``start_epoch`` ones from that epoch of the run on)."""
        return {
            name: weight
            for name, weight in self.weights.items()
            if weight != 0
            and (student_trains or name not in self.after_warmup)
            and (epoch is None or epoch >= self.start_epochs.get(name, 0))
        }

    def needs(self, names: Mapping[str, float] | None = None) -> Needs:
        total = Needs()
        for name, term in self.terms.items():
            if names is None or name in names:
                total = total | term.needs
        return total

    def forward(
        self, ctx: StepContext, weights: Mapping[str, float]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted sum of the terms in ``weights`` and every term's unweighted value (with
        what the terms put in ``ctx.logs``)."""
        values = {name: self.terms[name](ctx) for name in weights}
        loss = sum(weights[name] * value for name, value in values.items())
        if not isinstance(loss, torch.Tensor):  # no active term
            loss = ctx.inputs.new_zeros(())
        return loss, {**values, **ctx.logs}

    def bind(self, module: Any) -> None:
        """Bind the terms that run (weight != 0): a switched-off term builds nothing, so it
        draws no random numbers and adds no parameters."""
        for name, term in self.terms.items():
            if self.weights[name] != 0:
                term.bind(module)

    def separate_parameter_groups(self, optimizer: torch.optim.Optimizer) -> None:
        """Move the parameters of each term with :meth:`LossTerm.parameter_group_options` out
        of their group of ``optimizer`` (before its first step) into a group of their own."""
        for term in self.terms.values():
            options = term.parameter_group_options()
            params = [p for p in term.parameters() if p.requires_grad]
            if not options or not params:
                continue
            moved = {id(p) for p in params}
            for group in optimizer.param_groups:
                group["params"] = [p for p in group["params"] if id(p) not in moved]
            optimizer.param_groups = [g for g in optimizer.param_groups if g["params"]]
            optimizer.add_param_group({"params": params, **options})

    def end_round(self, best: SyntheticBatch) -> None:
        for term in self.terms.values():
            term.end_round(best)

    def rank_state(self) -> dict[str, Any]:
        return {name: state for name, term in self.terms.items() if (state := term.rank_state())}

    def load_rank_state(self, state: Mapping[str, Any]) -> None:
        for name, term_state in state.items():
            if name in self.terms:
                self.terms[name].load_rank_state(term_state)


def _checked_weight(name: str, weight: Any, cls: type[LossTerm]) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
        raise ConfigError(f"loss term {name!r}: the weight must be a finite number, got {weight!r}")
    if weight < 0 and not cls.accepts_negative_weight:
        raise ConfigError(
            f"loss term {name!r}: negative weight {weight} would maximise the term; "
            f"{cls.__name__} is a loss to minimise: give a weight >= 0 (0 switches it off)"
        )
    return float(weight)


def build_objective(spec: ObjectiveSpec | None) -> Objective:
    """An :class:`Objective` from its YAML mapping (see the module docstring)."""
    terms: dict[str, LossTerm] = {}
    weights: dict[str, float] = {}
    after_warmup: set[str] = set()
    start_epochs: dict[str, int] = {}
    for name, entry in (spec or {}).items():
        if isinstance(entry, Mapping):
            options = dict(entry)
        elif isinstance(entry, int | float) and not isinstance(entry, bool):
            options = {"weight": entry}
        else:
            raise ConfigError(
                f"loss term {name!r}: expected a weight or a mapping of options, got {entry!r}"
            )
        weight = options.pop("weight", 1.0)
        if options.pop("after_warmup", False):
            after_warmup.add(name)
        start_epoch = options.pop("start_epoch", 0)
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ConfigError(
                f"loss term {name!r}: start_epoch must be an epoch >= 0, got {start_epoch!r}"
            )
        if start_epoch:
            start_epochs[name] = start_epoch
        cls = _term_class(name, options)
        weights[name] = _checked_weight(name, weight, cls)
        options.update(options.pop("init_args", None) or {})
        try:
            terms[name] = cls(**options)
        except TypeError as error:
            raise ConfigError(f"loss term {name!r} ({cls.__name__}): {error}") from None
    return Objective(terms, weights, after_warmup, start_epochs)
