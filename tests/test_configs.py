"""The experiment configs: generated from their sources, complete, parsed by the CLI."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import yaml
from conftest import CONFIGS, QUIET, REPO_ROOT

from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.nets import MLPRegressor, build_classifier

EXPERIMENTS = sorted((CONFIGS / "experiments").rglob("*.yaml"))
#: Experiments instantiated with a random teacher: (config, teacher arch or "mlp", classes).
REPRESENTATIVE = [
    ("digits/cmi.yaml", "lenet5_bn", 10),
    ("digits/zskt.yaml", "lenet5_bn", 10),
    ("digits/deepinversion.yaml", "lenet5_bn", 10),
    ("regression/diabetes_generator.yaml", "mlp", 0),
    ("cifar10/fastdfkd_wrn_40_2_wrn_16_1.yaml", "wrn_40_2", 10),
    ("cifar100/dfq_resnet34_resnet18.yaml", "resnet34", 100),
    ("cifar10/quant_cmi_rgal_resnet20.yaml", "resnet20", 10),
    ("cifar100/quant_bn_inversion_resnet18.yaml", "resnet18", 100),
]


def _load_script() -> ModuleType:
    path = REPO_ROOT / "scripts" / "make_configs.py"
    spec = importlib.util.spec_from_file_location("make_configs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while the class is built
    writes_bytecode, sys.dont_write_bytecode = (
        sys.dont_write_bytecode,
        True,
    )  # no scripts/__pycache__
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return module


make_configs = _load_script()


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is written into the repository; argv is not pytest's."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dfkd"])


@pytest.fixture(scope="module")
def experiments() -> list[Any]:
    return make_configs.experiments(REPO_ROOT)


# --------------------------------------------------------------------------- generation
def test_regenerating_changes_nothing() -> None:
    differences = make_configs.compare(REPO_ROOT)
    assert not differences, (
        "configs/experiments/ is out of date with its sources; run "
        f"`python scripts/make_configs.py`:\n{differences.report()}"
    )


def test_check_lists_changed_added_and_removed_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    shutil.copytree(CONFIGS, root / "configs")
    experiments = root / "configs" / "experiments"
    edited = experiments / "digits" / "cmi.yaml"
    edited.write_text(edited.read_text().replace("kd_steps: 25", "kd_steps: 26"))
    (experiments / "digits" / "dafl.yaml").unlink()
    (experiments / "digits" / "handmade.yaml").write_text("trainer:\n  max_epochs: 1\n")

    assert make_configs.main(["--check", "--root", str(root)]) == 1
    report = capsys.readouterr().out
    assert "differs: configs/experiments/digits/cmi.yaml" in report
    assert "would be added: configs/experiments/digits/dafl.yaml" in report
    assert "would be removed (not generated): configs/experiments/digits/handmade.yaml" in report
    assert "zskt.yaml" not in report

    assert make_configs.main(["--root", str(root)]) == 0
    assert make_configs.main(["--check", "--root", str(root)]) == 0
    assert not (experiments / "digits" / "handmade.yaml").exists()
    assert edited.read_text() == (CONFIGS / "experiments" / "digits" / "cmi.yaml").read_text()


def test_a_method_edit_reaches_every_experiment_of_the_method(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(CONFIGS, root / "configs")
    method = root / "configs" / "methods" / "dfq.yaml"
    method.write_text(method.read_text().replace("balance: {term: ie, weight: 20.0}", "balance: 0"))
    changed = make_configs.compare(root).changed
    assert sorted(path.name for path in changed) == sorted(
        [f"dfq_{pair}.yaml" for pair in _datafree_pairs()] * 2 + ["dfq.yaml"]
    )


def _datafree_pairs() -> list[str]:
    return ["resnet34_resnet18", "wrn_40_2_wrn_16_1", "wrn_40_2_wrn_16_2", "wrn_40_2_wrn_40_1"]


def test_merge_replaces_a_component_whose_class_changes() -> None:
    base = {
        "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1, "momentum": 0.9}}
    }
    same = make_configs.deep_merge(base, {"optimizer": {"init_args": {"lr": 0.2}}})
    assert same["optimizer"]["init_args"] == {"lr": 0.2, "momentum": 0.9}
    other = {"optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}}}
    assert make_configs.deep_merge(base, other) == other
    assert base["optimizer"]["init_args"]["lr"] == 0.1  # inputs are not modified


@pytest.mark.parametrize(
    "value", [1e-3, 2e-4, 1e-5, 5e-4, 0.05, 0.1, 1.33, 250.0, 40960, -3.0, "32-true", True, None]
)
def test_scalars_read_back_as_written(value: Any) -> None:
    text = make_configs.scalar(value)
    assert yaml.safe_load(text) == value and type(yaml.safe_load(text)) is type(value)


def test_every_experiment_says_it_is_generated_and_from_what(experiments: list[Any]) -> None:
    assert {e.path for e in experiments} == {p.relative_to(REPO_ROOT) for p in EXPERIMENTS}
    for experiment in experiments:
        text = (REPO_ROOT / experiment.path).read_text()
        assert text.startswith("# Generated by scripts/make_configs.py from configs/"), text[:200]
        sources = " ".join(line for line in text.splitlines() if line.startswith("#"))
        for source in experiment.sources:
            assert source in sources, (experiment.path, source)


# --------------------------------------------------------------------------- single sources
def _leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    else:
        yield path, value


def _at(config: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(config, dict) or key not in config:
            return KeyError
        config = config[key]
    return config


def _replaces(base: Any, overlay: Any, path: tuple[str, ...]) -> bool:
    """Whether merging ``overlay`` replaces a mapping on ``path`` whole (its class changes)."""
    for depth in range(len(path)):
        part = _at(overlay, path[:depth])
        if isinstance(part, dict) and "class_path" in part:
            previous = _at(base, path[:depth])
            if not isinstance(previous, dict) or previous.get("class_path") != part["class_path"]:
                return True
    return False


def test_no_override_restates_what_its_sources_already_set(experiments: list[Any]) -> None:
    """Every value written in the table changes at least one experiment: the table holds no
    copy of a method, pair or data setting."""
    needed: dict[tuple[str, tuple[str, ...]], bool] = {}
    for experiment in experiments:
        merged: dict[str, Any] = {}
        for layer in experiment.layers:
            if layer.is_override:
                for path, value in _leaves(layer.config):
                    changed = _at(merged, path) != value or _replaces(merged, layer.config, path)
                    key = (layer.source, path)
                    needed[key] = needed.get(key, False) or changed
            merged = make_configs.deep_merge(merged, layer.config)
    redundant = sorted(
        f"{source}: {'.'.join(path)}" for (source, path), n in needed.items() if not n
    )
    assert not redundant, "overrides that change nothing:\n" + "\n".join(redundant)


def test_methods_and_pairs_are_the_single_source_of_models(experiments: list[Any]) -> None:
    methods = sorted((CONFIGS / "methods").glob("*.yaml"))
    pairs = sorted((CONFIGS / "pairs").glob("*.yaml"))
    used = {source for experiment in experiments for source in experiment.sources}
    for path in [*methods, *pairs]:
        assert path.relative_to(REPO_ROOT).as_posix() in used, f"{path.name} is used by nothing"
    blocks = [yaml.safe_load(path.read_text())["model"] for path in [*methods, *pairs]]
    assert len({yaml.safe_dump(block) for block in blocks}) == len(blocks), "duplicate sources"
    for experiment in experiments:
        for layer in experiment.layers:
            model = layer.config.get("model") or {}
            if layer.is_override:  # the class and the networks come from methods/ and pairs/
                assert "class_path" not in model, layer.source
                assert not {"teacher", "student", "arch"} & set(model.get("init_args") or {})


# --------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def parser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The CLI's parser (what ``dfkd fit`` parses with), built once."""
    teacher = CONFIGS / "experiments" / "digits" / "teacher_lenet5.yaml"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["dfkd"])
        patch.chdir(tmp_path_factory.mktemp("parser"))
        return DFKDCLI(args=["--config", str(teacher), *QUIET], run=False).parser


def _contains(resolved: Any, written: Any, path: str = "") -> list[str]:
    """Where ``written`` is not part of ``resolved``."""
    if isinstance(written, dict):
        if not isinstance(resolved, dict):
            return [path]
        return [
            miss
            for key, value in written.items()
            for miss in _contains(resolved.get(key, KeyError), value, f"{path}.{key}")
        ]
    if isinstance(written, list) and isinstance(resolved, list) and len(written) == len(resolved):
        return [
            miss for w, r in zip(written, resolved, strict=True) for miss in _contains(r, w, path)
        ]
    return [] if resolved == written else [f"{path}: {written!r} -> {resolved!r}"]


def test_every_experiment_prints_its_whole_resolved_config(parser: Any) -> None:
    for config in EXPERIMENTS:
        out = io.StringIO()
        with pytest.raises(SystemExit) as info, contextlib.redirect_stdout(out):
            parser.parse_args(["--config", str(config), "--print_config"])
        assert info.value.code == 0, config
        resolved = yaml.safe_load(out.getvalue())
        missing = _contains(resolved, yaml.safe_load(config.read_text()))
        assert not missing, f"{config}: {missing}"


def test_sources_compose_on_the_command_line(parser: Any, experiments: list[Any]) -> None:
    """A method file, a pair file and a data block make a config by themselves too."""
    first: dict[str, Any] = {}
    for experiment in experiments:
        first.setdefault(experiment.variables["method"], experiment)
    for method, experiment in first.items():
        data = next(source for source in experiment.sources if "/data/" in source)
        args = [f"--config={REPO_ROOT / s}" for s in experiment.sources if "/data/" not in s]
        args = [arg for arg in args if not arg.endswith("experiments.yaml")]
        out = io.StringIO()
        with pytest.raises(SystemExit) as info, contextlib.redirect_stdout(out):
            parser.parse_args([*args, "--data", str(REPO_ROOT / data), "--print_config"])
        assert info.value.code == 0, method
        resolved = yaml.safe_load(out.getvalue())
        written = yaml.safe_load((CONFIGS / "methods" / f"{method}.yaml").read_text())
        assert not _contains(resolved, written), method


def test_print_config_of_fit_shows_a_generated_experiment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = CONFIGS / "experiments" / "cifar100" / "fastdfkd_resnet34_resnet18.yaml"
    with pytest.raises(SystemExit) as info:
        DFKDCLI(args=["fit", "--config", str(config), "--print_config"])
    assert info.value.code == 0
    model = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    assert model["synthesis_loss"]["oh"] == 0.5 and model["synthesis_loss"]["adv"]["weight"] == 1.33
    assert model["synthesizer"]["init_args"]["reset_l0_epoch"] == 139


def _fake_teacher(directory: Path, arch: str, num_classes: int, config: dict[str, Any]) -> Path:
    path = directory / f"{arch}_{num_classes}.pt"
    if arch == "mlp":
        hidden = config["model"]["init_args"]["teacher_hidden"]
        net: torch.nn.Module = MLPRegressor(10, 1, hidden, "tanh")  # diabetes: 10 features
    else:
        channels = config["data"]["init_args"].get("channels") or 3
        net = build_classifier(arch, num_classes=num_classes, in_channels=channels)
    torch.save(net.state_dict(), path)
    return path


@pytest.mark.parametrize(
    ("name", "arch", "num_classes"), REPRESENTATIVE, ids=[r[0] for r in REPRESENTATIVE]
)
def test_representative_experiments_instantiate(
    name: str, arch: str, num_classes: int, tmp_path: Path
) -> None:
    path = CONFIGS / "experiments" / name
    config = yaml.safe_load(path.read_text())
    teacher = _fake_teacher(tmp_path, arch, num_classes, config)
    args = ["--config", str(path), "--model.init_args.teacher_checkpoint", str(teacher)]
    cli = DFKDCLI(args=[*args, "--trainer.logger", "false"], run=False)
    written = config["model"]["init_args"]
    assert type(cli.model).__name__ == config["model"]["class_path"].rsplit(".", 1)[1]
    assert (
        type(cli.model.synthesizer).__name__
        == written["synthesizer"]["class_path"].rsplit(".", 1)[1]
    )
    assert set(cli.model.synthesis_objective.terms) == set(written.get("synthesis_loss") or {})
    assert set(cli.model.student_objective.terms) == set(written["student_loss"])
    assert (cli.model.kd_steps, cli.model.g_steps) == (written["kd_steps"], written["g_steps"])
    assert cli.trainer.max_epochs == config["trainer"]["max_epochs"]
