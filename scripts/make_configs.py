"""Write the experiment configs ``configs/experiments/<dir>/<name>.yaml`` from their sources.

Sources (see ``configs/README.md``):

- ``configs/experiments.yaml``: the table of experiments (suites of groups, each the cross
  product of datasets x methods x pairs | archs | variants), with the overrides and comments
  where an experiment departs from its method's paper settings;
- ``configs/data/<dataset>.yaml``: the data blocks;
- ``configs/methods/<method>.yaml``: one method's model block (and its ``max_epochs``);
- ``configs/pairs/<teacher>_<student>.yaml``: the teacher/student overlays.

Every experiment file is the deep merge of its sources, complete and standalone, so that
``dfkd fit --config configs/experiments/<dir>/<name>.yaml`` runs it and ``--print_config`` shows
all of it. Its header says it is generated and from which files.

Usage::

    python scripts/make_configs.py           # write configs/experiments/ (and remove stale files)
    python scripts/make_configs.py --check   # exit 1 listing the files that would change
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import re
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
TABLE = Path("configs/experiments.yaml")
OUTPUT = Path("configs/experiments")
LINE_WIDTH = 100

#: Axes of a group, by the name used in ``when`` rules and placeholders.
AXES = {
    "dataset": "datasets",
    "method": "methods",
    "pair": "pairs",
    "arch": "archs",
    "variant": "variants",
}
SUITE_KEYS = {"dir", "datasets", "overrides", "header", "comment", "groups"}
GROUP_KEYS = {
    "dir",
    "name",
    "overrides",
    "header",
    "comment",
    "when",
    "arch_argument",
    *AXES.values(),
}
ENTRY_KEYS = {"title", "overrides", "comment"}
RULE_KEYS = {"match", "overrides", "comment"}
#: Keys written first, in this order, in the mapping found under a path (``*``: any key).
KEY_ORDER: dict[tuple[str, ...], tuple[str, ...]] = {
    (): ("data", "model", "trainer"),
    ("*",): ("class_path", "init_args"),
    ("model", "init_args"): (
        "arch",
        "net",
        "teacher",
        "student",
        "teacher_checkpoint",
        "teacher_hidden",
        "student_hidden",
        "hidden",
        "activation",
        "batch_size",
        "synthesis_batch_size",
        "synthesis_size",
        "kd_steps",
        "g_steps",
        "warmup",
        "student_samples",
        "keep",
        "synthesizer",
        "synthesis_augment",
        "student_augment",
        "paired_views",
        "synthesis_loss",
        "student_loss",
    ),
    ("trainer",): ("accelerator", "devices"),
}
#: Keys written last, in this order.
KEY_ORDER_LAST: dict[tuple[str, ...], tuple[str, ...]] = {
    ("model", "init_args"): ("optimizer", "scheduler"),
    ("trainer",): ("logger", "callbacks"),
}
#: Mappings under these keys hold loss terms; a term's options are written in flow style.
OBJECTIVE_KEYS = {"synthesis_loss", "student_loss"}
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class ConfigSourceError(ValueError):
    """A source file or the table is malformed (unknown key, missing file, stale rule...)."""


# --------------------------------------------------------------------------- merging
def deep_merge(base: Any, overlay: Any) -> Any:
    """``overlay`` on top of ``base`` (neither is modified).

    Mappings merge key by key; anything else replaces. A mapping whose ``class_path`` differs
    from the base's replaces it whole (the new class does not inherit the old one's options).
    """
    if not (isinstance(base, Mapping) and isinstance(overlay, Mapping)):
        return copy.deepcopy(overlay)
    if "class_path" in overlay and overlay["class_path"] != base.get("class_path"):
        return copy.deepcopy(dict(overlay))
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        merged[key] = deep_merge(merged[key], value) if key in merged else copy.deepcopy(value)
    return merged


def substitute(value: Any, variables: Mapping[str, str], where: str) -> Any:
    """Replace ``{placeholder}`` in every string of ``value`` by ``variables``."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in variables:
                raise ConfigSourceError(
                    f"{where}: unknown placeholder {{{name}}} (known here: {sorted(variables)})"
                )
            return variables[name]

        return PLACEHOLDER.sub(replace, value)
    if isinstance(value, Mapping):
        return {key: substitute(item, variables, where) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, variables, where) for item in value]
    return value


def _ordered(value: Any, path: tuple[str, ...] = ()) -> Any:
    """``value`` with the keys of its mappings in the order of :data:`KEY_ORDER`."""
    if isinstance(value, list):
        return [_ordered(item, path) for item in value]
    if not isinstance(value, Mapping):
        return value
    first = KEY_ORDER.get(path, KEY_ORDER.get(("*",), ()) if path else ())
    last = KEY_ORDER_LAST.get(path, ())
    keys = [key for key in first if key in value]
    keys += [key for key in value if key not in first and key not in last]
    keys += [key for key in last if key in value]
    return {key: _ordered(value[key], (*path, key)) for key in keys}


# --------------------------------------------------------------------------- writing YAML
def _float(value: float) -> str:
    """Shortest round-tripping float, small ones as ``1.0e-4`` (a float to every YAML reader)."""
    if not math.isfinite(value) or value == 0 or abs(value) >= 0.01:
        return _plain_scalar(value)
    for digits in range(17):
        mantissa, exponent = f"{value:.{digits}e}".split("e")
        if float(f"{mantissa}e{exponent}") == value:
            break
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}e{int(exponent):+d}"


def _plain_scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
    return text.rstrip("\n").removesuffix("\n...").strip()


def scalar(value: Any) -> str:
    """One scalar as YAML."""
    if isinstance(value, float):
        return _float(value)
    return _plain_scalar(value)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (Mapping, list))


def _flow(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{scalar(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(item) for item in value) + "]"
    return scalar(value)


def _flowable(value: Any) -> bool:
    """Scalars, and lists/mappings of scalars or of scalar lists."""
    if isinstance(value, Mapping):
        return all(_is_scalar(v) or (isinstance(v, list) and _flowable(v)) for v in value.values())
    if isinstance(value, list):
        return all(_is_scalar(item) for item in value)
    return True


def _emit(value: Mapping[str, Any], indent: int, lines: list[str], parent: str | None) -> None:
    pad = " " * indent
    for key, item in value.items():
        head = f"{pad}{scalar(key)}:"
        if _is_scalar(item):
            lines.append(f"{head} {scalar(item)}")
        elif not item:
            lines.append(f"{head} {'{}' if isinstance(item, Mapping) else '[]'}")
        elif isinstance(item, list) and _flowable(item):
            lines.append(f"{head} {_flow(item)}")
        elif isinstance(item, list):
            lines.append(head)
            for entry in item:
                _emit_list_entry(entry, indent + 2, lines)
        elif (
            parent in OBJECTIVE_KEYS
            and _flowable(item)
            and len(f"{head} {_flow(item)}") <= LINE_WIDTH
        ):
            lines.append(f"{head} {_flow(item)}")
        else:
            lines.append(head)
            _emit(item, indent + 2, lines, str(key))


def _emit_list_entry(entry: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    if not isinstance(entry, Mapping) or not entry:
        lines.append(f"{pad}- {_flow(entry)}")
        return
    nested: list[str] = []
    _emit(entry, indent + 2, nested, None)
    lines.append(f"{pad}- {nested[0].lstrip()}")
    lines.extend(nested[1:])


def dump(config: Mapping[str, Any]) -> str:
    """``config`` as block-style YAML (flow style for scalar lists and loss-term options)."""
    lines: list[str] = []
    _emit(config, 0, lines, None)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- sources
def load_yaml(path: Path) -> Any:
    """A YAML file, or a clear error naming it."""
    if not path.is_file():
        raise ConfigSourceError(f"{path}: no such file")
    with path.open() as handle:
        return yaml.safe_load(handle)


def leading_comment(path: Path) -> tuple[str, list[str]]:
    """The first line (title) and the other lines (notes) of a file's leading comment."""
    lines: list[str] = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    if not lines:
        raise ConfigSourceError(f"{path}: starts with no comment (its first line is its title)")
    return lines[0], [line for line in lines[1:] if line]


@dataclass(frozen=True)
class Layer:
    """One overlay of an experiment and where it comes from."""

    source: str
    config: Mapping[str, Any]
    #: Written by hand in the table (as opposed to a whole source file).
    is_override: bool = False


@dataclass
class Experiment:
    """One experiment file: its path, sources, overlays and header."""

    path: Path
    #: ``<table>: suites.<suite>.groups.<group>``, the entry that makes it.
    group: str
    #: The table, then the data, method and pair files.
    sources: list[str]
    layers: list[Layer]
    variables: dict[str, str]
    header: list[str] = field(default_factory=list)

    def config(self) -> dict[str, Any]:
        """The merged, substituted and ordered config."""
        merged: dict[str, Any] = {}
        for layer in self.layers:
            merged = deep_merge(merged, layer.config)
        return _ordered(substitute(merged, self.variables, str(self.path)))

    def render(self) -> str:
        """The file's text: the header, then the config."""
        table, entry = self.group.split(": ", 1)
        files = ", ".join([f"{table} ({entry})", *self.sources[1:]])
        generated = textwrap.wrap(
            f"Generated by scripts/make_configs.py from {files}.",
            LINE_WIDTH - 2,
            break_on_hyphens=False,
        )
        generated.append("Do not edit: edit those, then run `python scripts/make_configs.py`.")
        header = [*generated, "", *self.header]
        comment = "\n".join(f"# {line}".rstrip() for line in header)
        return f"{comment}\n{dump(self.config())}"


def _axis(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """An axis as ``{name: {title, overrides, comment}}``."""
    if value is None:
        return {}
    if isinstance(value, list):
        return {str(name): {} for name in value}
    if not isinstance(value, Mapping):
        raise ConfigSourceError(f"{where}: expected a list of names or a mapping")
    entries = {}
    for name, options in value.items():
        options = options or {}
        unknown = set(options) - ENTRY_KEYS
        if unknown:
            raise ConfigSourceError(f"{where}.{name}: unknown keys {sorted(unknown)}")
        entries[str(name)] = dict(options)
    return entries


def _comment_lines(text: Any) -> list[str]:
    return [line.rstrip() for line in str(text).strip().splitlines()] if text else []


def _check_keys(value: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(value) - allowed
    if unknown:
        raise ConfigSourceError(
            f"{where}: unknown keys {sorted(unknown)} (known: {sorted(allowed)})"
        )


def _matches(rule: Mapping[str, Any], chosen: Mapping[str, str | None], where: str) -> bool:
    for axis, wanted in rule.items():
        if axis not in AXES:
            raise ConfigSourceError(f"{where}: cannot match on {axis!r} (axes: {sorted(AXES)})")
        names = wanted if isinstance(wanted, list) else [wanted]
        if chosen.get(axis) not in [str(name) for name in names]:
            return False
    return True


def _format_header(template: str, variables: Mapping[str, str], where: str) -> list[str]:
    lines: list[str] = []
    for line in template.strip("\n").splitlines():
        text = substitute(line, variables, where)
        if line.strip() and not text.strip():
            continue  # a placeholder line that expanded to nothing
        lines.extend(part.rstrip() for part in text.splitlines())
    return lines


class Sources:
    """The source files under ``root/configs``, read once each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[Path, Any] = {}

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def read(self, path: Path) -> Any:
        if path not in self._files:
            self._files[path] = load_yaml(path)
        return self._files[path]

    def data(self, name: str) -> tuple[Path, dict[str, Any]]:
        path = self.root / "configs" / "data" / f"{name}.yaml"
        return path, {"data": self.read(path)}

    def method(self, name: str) -> tuple[Path, dict[str, Any]]:
        path = self.root / "configs" / "methods" / f"{name}.yaml"
        config = self.read(path)
        _check_keys(config, {"model", "data", "trainer"}, self.relative(path))
        return path, config

    def pair(self, name: str) -> tuple[Path, dict[str, Any]]:
        path = self.root / "configs" / "pairs" / f"{name}.yaml"
        config = self.read(path)
        init_args = ((config or {}).get("model") or {}).get("init_args") or {}
        if not {"teacher", "student"} <= set(init_args):
            raise ConfigSourceError(
                f"{self.relative(path)}: expected model.init_args.teacher and .student"
            )
        return path, config


def experiments(root: Path = REPO_ROOT) -> list[Experiment]:
    """Every experiment of the table under ``root``, in table order."""
    sources = Sources(root)
    table_path = root / TABLE
    table = load_yaml(table_path)
    table_name = sources.relative(table_path)
    _check_keys(table, {"defaults", "suites"}, table_name)
    defaults = Layer(f"{table_name}: defaults", table.get("defaults") or {}, is_override=True)
    found: list[Experiment] = []
    for suite_name, suite in table["suites"].items():
        _check_keys(suite, SUITE_KEYS, f"{table_name}: suites.{suite_name}")
        for group_name, group in suite["groups"].items():
            where = f"{table_name}: suites.{suite_name}.groups.{group_name}"
            _check_keys(group, GROUP_KEYS, where)
            found.extend(_group(sources, where, defaults, suite, group, table_name))
    paths = [experiment.path for experiment in found]
    duplicates = sorted({path.as_posix() for path in paths if paths.count(path) > 1})
    if duplicates:
        raise ConfigSourceError(f"{table_name}: several experiments write {duplicates}")
    return found


def _group(
    sources: Sources,
    where: str,
    defaults: Layer,
    suite: Mapping[str, Any],
    group: Mapping[str, Any],
    table_name: str,
) -> Iterator[Experiment]:
    spec = {key: value for key, value in suite.items() if key != "groups"}
    spec.update(group)
    for key in ("dir", "name", "header", "methods"):
        if key not in spec:
            raise ConfigSourceError(f"{where}: needs {key!r}")
    axes = {axis: _axis(spec.get(key), f"{where}.{key}") for axis, key in AXES.items()}
    if not axes["dataset"]:
        raise ConfigSourceError(f"{where}: needs datasets")
    rules = spec.get("when") or []
    used_rules: set[int] = set()
    for index, rule in enumerate(rules):
        _check_keys(rule, RULE_KEYS, f"{where}.when[{index}]")
    names = {axis: list(entries) or [None] for axis, entries in axes.items()}
    for combination in itertools.product(*names.values()):
        chosen: dict[str, str | None] = dict(zip(names, combination, strict=True))
        layers: list[Layer] = [defaults]
        used: list[str] = [table_name]
        variables: dict[str, str] = {}
        comments = _comment_lines(spec.get("comment"))

        dataset = chosen["dataset"]
        assert dataset is not None
        path, config = sources.data(dataset)
        layers.append(Layer(sources.relative(path), config))
        used.append(sources.relative(path))
        stem = Path(dataset).name
        variables.update(
            dataset=stem, dataset_title=str(axes["dataset"][dataset].get("title", stem))
        )

        method = chosen["method"]
        assert method is not None
        path, config = sources.method(method)
        layers.append(Layer(sources.relative(path), config))
        used.append(sources.relative(path))
        title, notes = leading_comment(path)
        variables.update(method=method, method_title=title, method_notes="\n".join(notes))

        if chosen["pair"] is not None:
            path, config = sources.pair(chosen["pair"])
            layers.append(Layer(sources.relative(path), config))
            used.append(sources.relative(path))
            init_args = config["model"]["init_args"]
            variables.update(
                pair=chosen["pair"],
                pair_title=leading_comment(path)[0],
                teacher=str(init_args["teacher"]),
                student=str(init_args["student"]),
            )
        if chosen["arch"] is not None:
            arch = chosen["arch"]
            argument = group.get("arch_argument", "arch")  # the model argument it sets
            layers.append(Layer(f"{where}.archs", {"model": {"init_args": {argument: arch}}}))
            variables.update(arch=arch, arch_title=str(axes["arch"][arch].get("title", arch)))
            if argument == "teacher":
                variables["teacher"] = arch
        if chosen["variant"] is not None:
            variables["variant"] = chosen["variant"]

        for owner, key in (("suite", "overrides"), ("group", "overrides")):
            overlay = (suite if owner == "suite" else group).get(key)
            if overlay:
                label = where.rsplit(".groups.", 1)[0] if owner == "suite" else where
                layers.append(Layer(f"{label}.overrides", overlay, is_override=True))
        for axis, key in AXES.items():
            name = chosen[axis]
            if name is None:
                continue
            entry = axes[axis][name]
            if entry.get("overrides"):
                label = f"{where}.{key}.{name}.overrides"
                layers.append(Layer(label, entry["overrides"], is_override=True))
            comments += _comment_lines(entry.get("comment"))
        for index, rule in enumerate(rules):
            if _matches(rule.get("match") or {}, chosen, f"{where}.when[{index}]"):
                used_rules.add(index)
                if rule.get("overrides"):
                    label = f"{where}.when[{index}].overrides"
                    layers.append(Layer(label, rule["overrides"], is_override=True))
                comments += _comment_lines(rule.get("comment"))

        variables["dir"] = substitute(str(spec["dir"]), variables, f"{where}.dir")
        variables["name"] = substitute(str(spec["name"]), variables, f"{where}.name")
        template = str(spec["header"])
        variables["comment"] = "\n".join(comments)
        header = _format_header(template, variables, f"{where}.header")
        if comments and "{comment}" not in template:
            header += comments
        yield Experiment(
            path=OUTPUT / variables["dir"] / f"{variables['name']}.yaml",
            group=where,
            sources=used,
            layers=layers,
            variables=variables,
            header=header,
        )
    stale = [index for index in range(len(rules)) if index not in used_rules]
    if stale:
        raise ConfigSourceError(f"{where}: when rules {stale} match no experiment")


# --------------------------------------------------------------------------- files
def generate(root: Path = REPO_ROOT) -> dict[Path, str]:
    """``{path relative to root: text}`` of every experiment file."""
    return {experiment.path: experiment.render() for experiment in experiments(root)}


@dataclass
class Differences:
    """What writing the generated files would change under ``configs/experiments``."""

    changed: list[Path] = field(default_factory=list)
    added: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed)

    def report(self) -> str:
        """One line per file."""
        lines = [f"differs: {path}" for path in self.changed]
        lines += [f"would be added: {path}" for path in self.added]
        lines += [f"would be removed (not generated): {path}" for path in self.removed]
        return "\n".join(lines)


def existing(root: Path = REPO_ROOT) -> list[Path]:
    """The experiment files on disk, relative to ``root``."""
    return sorted(path.relative_to(root) for path in (root / OUTPUT).rglob("*.yaml"))


def compare(root: Path = REPO_ROOT) -> Differences:
    """How the files on disk differ from the generated ones."""
    generated = generate(root)
    on_disk = set(existing(root))
    differences = Differences()
    for path, text in sorted(generated.items()):
        if path not in on_disk:
            differences.added.append(path)
        elif (root / path).read_text() != text:
            differences.changed.append(path)
    differences.removed = sorted(on_disk - set(generated))
    return differences


def write(root: Path = REPO_ROOT) -> Differences:
    """Write every generated file and remove the experiment files that are not generated."""
    differences = compare(root)
    for path, text in generate(root).items():
        target = root / path
        if path in differences.added or path in differences.changed:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    for path in differences.removed:
        (root / path).unlink()
    return differences


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the experiment files, or ``--check`` them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing the files that differ, would be added or removed",
    )
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the repository root")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        if args.check:
            differences = compare(root)
            if differences:
                print(differences.report())
                print("run `python scripts/make_configs.py` to regenerate", file=sys.stderr)
                return 1
            print(f"{len(existing(root))} experiment files are up to date")
            return 0
        differences = write(root)
    except ConfigSourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(differences.report() or "nothing to change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
