"""``dfkd demo``: the offline digits pipeline, end to end, on the CPU.

Trains the LeNet-5 (BN) teacher on scikit-learn's bundled digits, distils it into
LeNet-5-half with the real training data (the upper bound) and without any real
data (the default data-free method, FastDFKD), and prints the test accuracies
(final epoch, real test split).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

from dfkd_lightning.cli import DFKDCLI

TEACHER_CONFIG = "experiments/digits/teacher_lenet5_bn.yaml"
KD_CONFIG = "experiments/digits/kd_lenet5_bn_lenet5_half.yaml"
DATA_FREE_CONFIG = "experiments/digits/fastdfkd.yaml"


def find_configs_dir(configs: str | None) -> Path:
    """``--configs`` if given, else ``./configs``, else the repository's ``configs/``."""
    candidates = (
        [Path(configs)]
        if configs
        else [Path("configs"), Path(__file__).resolve().parents[1] / "configs"]
    )
    for candidate in candidates:
        if (candidate / TEACHER_CONFIG).is_file():
            return candidate
    raise FileNotFoundError(
        f"no {TEACHER_CONFIG} under {', '.join(map(str, candidates))}; run `dfkd demo` from "
        "the repository root or pass --configs PATH/TO/configs"
    )


def run_stage(config: Path, extra: list[str]) -> tuple[float, str]:
    """Fit (and test) one experiment; return its test accuracy and final checkpoint."""
    cli = DFKDCLI(args=["fit", "--config", str(config), *extra])
    accuracy = float(cli.trainer.callback_metrics["test/acc"])
    checkpoint = next(cb for cb in cli.trainer.callbacks if isinstance(cb, ModelCheckpoint))
    return accuracy, checkpoint.last_model_path or checkpoint.best_model_path


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="dfkd demo", description=__doc__)
    parser.add_argument("--configs", help="the configs/ directory (default: ./configs)")
    args, extra = parser.parse_known_args(argv)
    configs = find_configs_dir(args.configs)

    teacher_acc, teacher_ckpt = run_stage(configs / TEACHER_CONFIG, extra)
    with_teacher = [*extra, "--model.init_args.teacher_checkpoint", teacher_ckpt]
    kd_acc, _ = run_stage(configs / KD_CONFIG, with_teacher)
    data_free_acc, _ = run_stage(configs / DATA_FREE_CONFIG, with_teacher)

    print("\n== dfkd demo: digits (scikit-learn), final-epoch test accuracy ==")
    print(f"teacher  LeNet-5 (BN)   supervised                      {teacher_acc:.4f}")
    print(f"student  LeNet-5-half   KD with the real training data  {kd_acc:.4f}")
    print(f"student  LeNet-5-half   data-free (FastDFKD)            {data_free_acc:.4f}")
    return {"teacher_acc": teacher_acc, "kd_acc": kd_acc, "data_free_acc": data_free_acc}
