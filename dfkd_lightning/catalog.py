"""``dfkd list``: the registered methods, synthesizers and loss terms, one line each."""

from __future__ import annotations

import argparse
import inspect

from dfkd_lightning.methods import (
    DATA_FREE_METHODS,
    DIFFUSION_METHODS,
    ClassIncrementalLearning,
    DataFreeQuantization,
    DataFreeRegression,
)
from dfkd_lightning.synthesis.synthesizers import SYNTHESIZERS
from dfkd_lightning.synthesis.terms import TERMS

__all__ = ["catalog", "main"]


def _summary(obj: type) -> str:
    """``obj.summary`` or the first sentence of its docstring, on one line."""
    text = getattr(obj, "summary", "") or inspect.getdoc(obj) or ""
    first = " ".join(text.split("\n\n")[0].split())
    return first if len(first) <= 110 else first[:107] + "..."


def catalog() -> dict[str, dict[str, tuple[str, str]]]:
    """``{section: {name: (import path, summary)}}`` for methods, synthesizers and terms."""
    methods = {
        **DATA_FREE_METHODS,
        **DIFFUSION_METHODS,
        "regression": DataFreeRegression,
        "quantization": DataFreeQuantization,
        "incremental": ClassIncrementalLearning,
    }
    return {
        "methods": {
            name: (f"{cls.__module__.rpartition('.')[0]}.{cls.__name__}", _summary(cls))
            for name, cls in methods.items()
        },
        "synthesizers": {
            name: (f"dfkd_lightning.synthesis.synthesizers.{name}", _summary(cls))
            for name, cls in SYNTHESIZERS.items()
        },
        "terms": {
            name: (f"{cls.__module__}.{cls.__name__}", _summary(cls))
            for name, cls in sorted(TERMS.items())
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="dfkd list",
        description="The registered data-free methods, synthesizers and loss terms.",
    )
    parser.add_argument(
        "section", nargs="?", choices=["methods", "synthesizers", "terms"], help="one section"
    )
    parser.add_argument("--paths", action="store_true", help="also print each class_path")
    options = parser.parse_args(argv)
    for section, entries in catalog().items():
        if options.section and section != options.section:
            continue
        print(f"{section}:")
        width = max(len(name) for name in entries)
        for name, (path, summary) in entries.items():
            where = f" [{path}]" if options.paths else ""
            print(f"  {name:<{width}}  {summary}{where}")
