"""The one message a user error ends with (what is wrong, how to fix it)."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re

from jsonargparse import ArgumentError
from lightning.fabric.utilities.exceptions import MisconfigurationException

from dfkd_lightning.errors import causes, find_user_error

__all__ = ["closest_keys", "user_error_message"]

_UNKNOWN_OPTION = re.compile(r"Option '([^']+)' is not accepted")
_CLASS_PATH = re.compile(r"class_path '([\w.]+)'")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.+)", re.IGNORECASE)
_PARSER_KEY = re.compile(r'Parser key "([^"]+)":')
_PROBLEM_WITH_CLASS = re.compile(r"Problem with given class_path '([\w.]+)':")
#: Lines of jsonargparse's explanations that say nothing to the user.
_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "Given value:",
    "Expected a <class 'NoneType'>",
    "Expected a path but",
)
#: Top-level options of every subcommand.
_TOP_LEVEL = ("config", "print_config", "seed_everything", "ckpt_path", "test_after_fit")


def closest_keys(key: str, known: list[str], count: int = 3) -> list[str]:
    """The valid keys nearest to a misspelt ``key``."""
    return difflib.get_close_matches(key, known, n=count, cutoff=0.6)


def _init_parameters(class_path: str) -> list[str]:
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        names += [
            p.name
            for p in inspect.signature(init).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    return sorted(set(names))


def _condensed(text: str) -> str:
    """``Parser key "model": ... class_path 'X': ... Parser key "k": reason`` -> the path to the
    value and the reason: ``model (X) -> k: reason``."""
    path: list[str] = []
    reasons: list[str] = []
    for raw in text.splitlines():
        line = raw.strip().lstrip("-").strip()
        if not line or line.startswith(_NOISE):
            continue
        if key := _PARSER_KEY.fullmatch(line):
            path.append(key.group(1))
        elif problem := _PROBLEM_WITH_CLASS.fullmatch(line):
            owner = path.pop() + " " if path else ""
            path.append(f"{owner}({problem.group(1).rsplit('.', 1)[-1]})")
        else:
            reasons.append(line)
    if not reasons:
        return text.strip().splitlines()[0]
    return (" -> ".join(path) + ": " if path else "") + "; ".join(dict.fromkeys(reasons))


def _unrecognized_message(arguments: str) -> str:
    from lightning.pytorch import Trainer

    hints = []
    for option in re.findall(r"--([\w.]+)", arguments):
        group, _, key = option.rpartition(".")
        known = _init_parameters(f"{Trainer.__module__}.Trainer") if group == "trainer" else []
        known = known if group else list(_TOP_LEVEL)
        prefix = f"--{group}." if group else "--"
        if near := closest_keys(key, known):
            suggestions = " or ".join(prefix + name for name in near)
            hints.append(f"--{option}: did you mean {suggestions}?")
    return f"unrecognized arguments: {arguments}" + ("; " + " ".join(hints) if hints else "")


def _argument_message(error: ArgumentError) -> str:
    """jsonargparse's explanation, shortened; a misspelt option names the closest ones."""
    chain = [str(cause) for cause in causes(error)]
    text = "\n".join(chain)
    unknown = _UNKNOWN_OPTION.search(text)
    classes = _CLASS_PATH.findall(text[: unknown.start()]) if unknown else []
    if unknown and classes:
        key, cls = unknown.group(1), classes[-1]
        known = _init_parameters(cls)
        near = closest_keys(key, known)
        hint = f"did you mean {' or '.join(near)}? " if near else ""
        name = cls.rsplit(".", 1)[-1]
        return f"{name} has no option {key!r}; {hint}its options: {', '.join(known)}"
    if unrecognized := _UNRECOGNIZED.search(chain[0]):
        return _unrecognized_message(unrecognized.group(1).strip())
    return _condensed(chain[0])


def user_error_message(error: BaseException) -> str | None:
    """The message to end with, or None for a bug (which keeps its traceback)."""
    user = find_user_error(error)
    if user is not None:
        return str(user)
    for cause in causes(error):
        if isinstance(cause, ArgumentError):
            return _argument_message(cause)
        if isinstance(cause, MisconfigurationException):
            return str(cause)
    return None
