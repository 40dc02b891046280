"""Recognising configs written for the layout before synthesizers and loss terms."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["LEGACY_KEYS", "legacy_config_message"]

#: Flat method options of the earlier layout and where each lives now.
LEGACY_KEYS: dict[str, str] = {
    **{
        key: "synthesis_loss (a term weight)"
        for key in ("bn", "oh", "adv", "cr", "tv", "l2", "act", "ie", "balance")
    },
    "temperature": "student_loss: {kd: {temperature: ...}}",
    **{
        key: "synthesizer.init_args"
        for key in (
            "nz",
            "ngf",
            "lr_g",
            "g_betas",
            "generator_output",
            "lr_z",
            "meta_update",
            "reptile_scale",
            "reset_l0",
            "reset_l0_epoch",
            "clip_pixels",
            "generator_hidden",
            "direct_steps",
            "direct_lr",
            "g_weight_decay",
            "box",
        )
    },
    "bn_momentum": "synthesis_loss: {bn: {momentum: ...}}",
    "first_bn_multiplier": "synthesis_loss: {bn: {first_bn_multiplier: ...}}",
    **{
        key: "synthesis_loss: {cr: {...}}"
        for key in ("cr_temperature", "cr_mode", "bank_size", "n_neg", "head_dim", "local_scale")
    },
    "tv_norm": "synthesis_loss: {tv: {norm: ...}}",
    "ie_log_base": "synthesis_loss: {ie: {log_base: ...}}",
    "competition_temperature": "synthesis_loss: {competition: {temperature: ...}}",
    "js_variant": "synthesis_loss: {competition: {js_variant: ...}}",
    "jitter": "synthesis_augment (dfkd_lightning.synthesis.augment.RandomJitter)",
    "synthesis_crop_padding": "synthesis_augment (dfkd_lightning.synthesis.augment.BatchAugment)",
    "synthesis_flip": "synthesis_augment (dfkd_lightning.synthesis.augment.BatchAugment)",
    "reuse_synthesis_batch": "student_samples: reuse",
    "beta": "student_loss: {at: weight} (ZSKT); regression: synthesis_loss: {input_norm: "
    "weight} (generator) or synthesizer weight_decay (direct)",
    "teacher_stages": "student_loss: {at: {teacher_stages: ...}}",
    "student_stages": "student_loss: {at: {student_stages: ...}}",
    "strategy": "synthesizer (TabularGenerator, DirectOptimization, GaussianSampler, ...)",
    "alpha": "student_loss: {mixed_mse: {alpha: ...}}",
    "gamma": "synthesis_loss: {student_norm: weight}",
    "input_penalty": "synthesis_loss: {input_norm: {penalty: ...}}",
}

_DATA_FREE = (
    "DAFL",
    "ZSKT",
    "DFAD",
    "DFQ",
    "DeepInversion",
    "CMI",
    "FastDFKD",
    "DataFreeRegression",
)


def _is_data_free(class_path: Any) -> bool:
    return isinstance(class_path, str) and class_path.rpartition(".")[2] in _DATA_FREE


def _config_files(args: Sequence[str]) -> list[Path]:
    files = []
    for index, arg in enumerate(args):
        if arg == "--config" and index + 1 < len(args):
            files.append(Path(args[index + 1]))
        elif arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1]))
    return files


def _legacy_keys_in_file(path: Path) -> list[str]:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []  # the CLI reports unreadable files itself
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict) or not _is_data_free(model.get("class_path")):
        return []
    init_args = model.get("init_args") or {}
    return [key for key in init_args if key in LEGACY_KEYS]


def legacy_config_message(args: Sequence[str]) -> str | None:
    """A short message when ``args`` give a data-free method options of the earlier layout
    (in a ``--config`` file or as ``--model.init_args.<key>``), else None."""
    found: dict[str, str] = {}
    for path in _config_files(args):
        for key in _legacy_keys_in_file(path):
            found[key] = str(path)
    for arg in args:
        key = arg.removeprefix("--model.init_args.").split("=", 1)[0]
        if arg.startswith("--model.init_args.") and key in LEGACY_KEYS:
            found[key] = "the command line"
    if not found:
        return None
    moves = "\n".join(f"  {key} ({where}) -> {LEGACY_KEYS[key]}" for key, where in found.items())
    return (
        "error: this config predates the component layout of the data-free methods "
        "(synthesizer + weighted loss terms). Move these options:\n"
        f"{moves}\n"
        "See configs/methods/<method>.yaml for each method in the current layout, or "
        "README 'Architecture'."
    )
