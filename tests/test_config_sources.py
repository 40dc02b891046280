"""Every CIFAR experiment config against the source its header credits.

Each family (a method on CIFAR-10 and CIFAR-100, every pair) is checked value by value against
the paper or release script it names, so that an edit cannot drift from its source silently.
The sources (paths in the authors' repositories):

- DAFL paper (Chen et al., ICCV 2019) and DAFL-train.py (huawei-noah): oh 1, act (--a) 0.1, ie 5.
- Fast-Datafree (zju-vipa/Fast-Datafree) and CMI (zju-vipa/CMI): datafree_kd.py (student SGD
  momentum 0.9, wd 1e-4, cosine to 2e-4; DAFL's generator nz 512, the others 256) and
  scripts/dafl, dfq, deepinv, cmi/cmi_cifar10.sh, fast_cifar.sh.
- DFAD release (VainF/Data-Free-Adversarial-Distillation): generator Adam with default betas.
- ZSKT paper (Micaelli & Storkey, NeurIPS 2019): n_G 1, n_S 10 on one pseudo-batch, beta 250, T 1.
- RGAL release (Sharpiless/RGAL): the README's command and main.py (student SGD momentum 0.9,
  wd 1e-4, cosine over the epochs to 0; CDLoss's 1x1 adapters in the student's optimizer).
- DE-DFKD (Liu et al., 2024) has no release and its settings are not public: ours are DFQ's.
- DDA release (SLGSP/DDA): scripts/dda/dda_cifar10_wrn402_wrn161.sh and datafree_kd.py (student
  SGD momentum 0.9, wd 1e-4, cosine over the epochs to 0; KL + CE + 30 x MSE of the alignment
  head; the rotation head's loss at weight 10 in synthesis); its README's image-variations model
  (lambdalabs/sd-image-variations-diffusers: guidance 3, 25 steps).
- GDFQ release (xushoukai/GDFQ): cifar100_resnet20.hocon and trainer.py (the data-free
  quantization student recipe every quant_* config shares; the generator of quant_gdfq_*).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CONFIGS

CIFAR = ("cifar10", "cifar100")
DATAFREE_PAIRS = (
    "resnet34_resnet18",
    "wrn_40_2_wrn_16_1",
    "wrn_40_2_wrn_16_2",
    "wrn_40_2_wrn_40_1",
)


def _configs(family: str, pairs: tuple[str, ...] = DATAFREE_PAIRS) -> list[Path]:
    paths = [CONFIGS / "experiments" / d / f"{family}_{p}.yaml" for d in CIFAR for p in pairs]
    assert all(path.is_file() for path in paths), family
    return paths


def _at(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for key in dotted.split("."):
        value = value[key]
    return value


def _weight(entry: Any) -> float:
    """A loss term's weight, written as a number or as ``{weight: ...}``."""
    return float(entry["weight"] if isinstance(entry, dict) else entry)


def _option(entry: Any, name: str, default: Any) -> Any:
    return entry.get(name, default) if isinstance(entry, dict) else default


def _check(path: Path, expected: dict[str, Any]) -> None:
    config = yaml.safe_load(path.read_text())
    for dotted, value in expected.items():
        assert _at(config, dotted) == value, f"{path.name}: {dotted}"


#: The data-free student recipe of Fast-Datafree/CMI datafree_kd.py and their CIFAR scripts.
STUDENT = {
    "data.init_args.batch_size": 256,
    "data.init_args.steps_per_epoch": 400,  # --ep_steps 400
    "model.init_args.batch_size": 256,
    "model.init_args.synthesis_batch_size": 256,  # unset in the scripts: = batch_size
    "model.init_args.optimizer.class_path": "torch.optim.SGD",
    "model.init_args.optimizer.init_args.momentum": 0.9,
    "model.init_args.optimizer.init_args.weight_decay": 1.0e-4,
    "model.init_args.scheduler.class_path": "torch.optim.lr_scheduler.CosineAnnealingLR",
    "model.init_args.scheduler.init_args.T_max": 200,
    "model.init_args.scheduler.init_args.eta_min": 2.0e-4,
}


@pytest.mark.parametrize("path", _configs("dafl"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_dafl_weights_are_the_papers_and_the_schedule_the_scripts(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    model = config["model"]["init_args"]
    loss = model["synthesis_loss"]
    # DAFL paper / DAFL-train.py: oh 1, a 0.1, ie 5 (the scripts' act 0.001 + balance 20 are
    # the documented alternative).
    assert (_weight(loss["oh"]), _weight(loss["act"]), _weight(loss["ie"])) == (1.0, 0.1, 5.0)
    # Fast-Datafree/CMI dafl scripts: 5 kd steps, 1 g step, lr_g 1e-3, lr 0.1, 200 epochs; nz 512.
    _check(
        path,
        {
            **STUDENT,
            "model.init_args.kd_steps": 5,
            "model.init_args.g_steps": 1,
            "model.init_args.synthesizer.init_args.nz": 512,
            "model.init_args.synthesizer.init_args.lr": 1.0e-3,
            "model.init_args.optimizer.init_args.lr": 0.1,
            "trainer.max_epochs": 200,
        },
    )
    assert _option(model["student_loss"]["kd"], "temperature", 1.0) == 1.0  # their KL at T = 1


@pytest.mark.parametrize("path", _configs("zskt"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_zskt_follows_the_paper(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    model = config["model"]["init_args"]
    # ZSKT paper: n_G 1, n_S 10 on the same pseudo-batch, beta 250, T 1, the paper's KL.
    assert (model["g_steps"], model["kd_steps"], model["student_samples"]) == (1, 10, "reuse")
    student, adversary = model["student_loss"], model["synthesis_loss"]["adv"]
    assert _weight(student["at"]) == 250.0
    for term in (student["kd"], adversary):
        assert _option(term, "temperature", 1.0) == 1.0
        assert _option(term, "reduction", "batchmean") == "batchmean"
    assert _option(adversary, "agreeing_only", True) is False  # Eq. 1: every sample
    _check(path, {**STUDENT, "model.init_args.synthesizer.init_args.nz": 256})


@pytest.mark.parametrize("path", _configs("dfad"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_dfad_follows_the_paper_and_its_release(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    model = config["model"]["init_args"]
    assert _option(model["synthesis_loss"]["adv"], "term", "adv") == "adv_l1"  # Eq. 4-5
    assert set(model["student_loss"]) == {"l1"}  # Eq. 6
    # DFAD_cifar.py: optim.Adam(generator.parameters(), lr=1e-3) (default betas); nz 256;
    # CMI's dfad script: 5 kd steps per g step.
    _check(
        path,
        {
            **STUDENT,
            "model.init_args.kd_steps": 5,
            "model.init_args.g_steps": 1,
            "model.init_args.synthesizer.init_args.lr": 1.0e-3,
            "model.init_args.synthesizer.init_args.betas": [0.9, 0.999],
            "model.init_args.synthesizer.init_args.nz": 256,
        },
    )


@pytest.mark.parametrize("path", _configs("dfq"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_dfq_follows_cmis_scripts(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    loss = config["model"]["init_args"]["synthesis_loss"]
    # CMI scripts/dfq: bn 1, oh 1, adv 1 (all samples, KL at T = 1), balance 20.
    assert (_weight(loss["bn"]), _weight(loss["oh"]), _weight(loss["adv"])) == (1.0, 1.0, 1.0)
    assert _option(loss["adv"], "agreeing_only", True) is False
    assert _option(loss["adv"], "temperature", 1.0) == 1.0
    assert (loss["balance"]["term"], _weight(loss["balance"])) == ("ie", 20.0)
    # dfq_cifar10_res34_res18.sh runs CIFAR-100 ResNet-34 -> ResNet-18 at lr 0.05; the
    # WRN script lr 0.1.
    lr = 0.05 if path.stem == "dfq_resnet34_resnet18" and path.parent.name == "cifar100" else 0.1
    _check(
        path,
        {
            **STUDENT,
            "model.init_args.kd_steps": 10,
            "model.init_args.g_steps": 1,
            "model.init_args.synthesizer.init_args.lr": 1.0e-3,
            "model.init_args.optimizer.init_args.lr": lr,
        },
    )


@pytest.mark.parametrize(
    "path", _configs("deepinversion"), ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_deepinversion_follows_the_deepinv_script_and_cmis_prior(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    loss = config["model"]["init_args"]["synthesis_loss"]
    # deepinv_cifar.sh: bn 10, oh 1, adv 1 (the competition, jsdiv at T = 3).
    assert (_weight(loss["bn"]), _weight(loss["oh"])) == (10.0, 1.0)
    assert (_weight(loss["competition"]), loss["competition"]["temperature"]) == (1.0, 3.0)
    # CMI datafree_kd.py: tv=0.001 on get_image_prior_losses, the L1 mean of the differences.
    assert (_weight(loss["tv"]), _option(loss["tv"], "norm", "l2")) == (1.0e-3, "l1")
    # deepinversion.py: Adam([inputs], lr_g, betas=[0.5, 0.99]); the script's lr_g 0.1, 1000 steps.
    _check(
        path,
        {
            **STUDENT,
            "model.init_args.kd_steps": 400,
            "model.init_args.g_steps": 1000,
            "model.init_args.synthesizer.init_args.lr": 0.1,
            "model.init_args.synthesizer.init_args.betas": [0.5, 0.99],
        },
    )


@pytest.mark.parametrize("path", _configs("cmi"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_cmi_follows_cmi_cifar10_sh(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    loss = config["model"]["init_args"]["synthesis_loss"]
    # scripts/cmi/cmi_cifar10.sh: batch 256, bn 1, oh 1, adv 0.5, cr 0.8, cr_T 0.2; the
    # synthesizer's bank 40960, 4096 negatives; datafree_kd.py: head_dim 256, nz 256.
    assert [_weight(loss[name]) for name in ("bn", "oh", "adv", "cr")] == [1.0, 1.0, 0.5, 0.8]
    cr = loss["cr"]
    assert (cr["temperature"], cr["bank_size"], cr["n_neg"], cr["head_dim"]) == (
        0.2,
        40960,
        4096,
        256,
    )
    # datafree_kd.py: layer1-4 for a ResNet-34 teacher, every BN layer otherwise.
    assert _option(cr, "feature_layers", "auto") == "auto"
    _check(
        path,
        {
            **STUDENT,
            "model.init_args.kd_steps": 400,
            "model.init_args.g_steps": 200,
            "model.init_args.synthesizer.init_args.lr": 1.0e-3,
            "model.init_args.synthesizer.init_args.nz": 256,
        },
    )


@pytest.mark.parametrize("path", _configs("fastdfkd"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fastdfkd_follows_fast_cifar_sh_fast5(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    loss = config["model"]["init_args"]["synthesis_loss"]
    # fast_cifar.sh (Fast-5): oh 0.4 / adv 1.1 for WRN pairs, oh 0.5 / adv 1.33 for ResNet-34.
    resnet = path.stem.endswith("resnet34_resnet18")
    assert (_weight(loss["oh"]), _weight(loss["adv"])) == ((0.5, 1.33) if resnet else (0.4, 1.1))
    assert (_weight(loss["bn"]), loss["bn"]["momentum"]) == (10.0, 0.9)  # --bn 10 --bn_mmt 0.9
    # fast_meta.py: adv once its round counter (from 1) reaches warmup: epoch 19 from 0.
    assert loss["adv"]["start_epoch"] == config["model"]["init_args"]["warmup"] - 1
    _check(
        path,
        {
            **{key: value for key, value in STUDENT.items() if "T_max" not in key},
            "model.init_args.kd_steps": 400,
            "model.init_args.g_steps": 5,
            "model.init_args.warmup": 20,
            "model.init_args.synthesizer.init_args.lr": 3.0e-3,
            "model.init_args.synthesizer.init_args.lr_z": 0.01,
            "model.init_args.synthesizer.init_args.meta_update": "maml",  # --is_maml 1
            "model.init_args.synthesizer.init_args.reset_l0": True,
            # reset at its (120 + warmup)-th round, counted from 1
            "model.init_args.synthesizer.init_args.reset_l0_epoch": 139,
            "model.init_args.student_loss.kd.temperature": 20.0,  # --T 20
            "model.init_args.optimizer.init_args.lr": 0.2,
            "model.init_args.scheduler.init_args.T_max": 200,
            "trainer.max_epochs": 220,
        },
    )


@pytest.mark.parametrize("path", _configs("rgal"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_rgal_follows_the_release_readme_command(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    model = config["model"]["init_args"]
    synthesis, student = model["synthesis_loss"], model["student_loss"]
    # --adv 1 --bn 1 --oh 1 --triplet 0.1 --striplet 0.1 --cd_loss 0.1 --T 20; TriLoss margin 0.2
    assert [_weight(synthesis[name]) for name in ("bn", "oh", "adv", "triplet")] == [1, 1, 1, 0.1]
    assert [_weight(student[name]) for name in ("kd", "cd", "striplet")] == [1.0, 0.1, 0.1]
    assert synthesis["triplet"]["sign"] == "paper"  # the release's is an option
    assert synthesis["triplet"]["margin"] == student["striplet"]["margin"] == 0.2
    _check(
        path,
        {
            "model.class_path": "dfkd_lightning.methods.RGAL",
            "data.init_args.steps_per_epoch": 400,  # --ep_steps 400
            # --batch_size 128 --pair_sample: 128 pool images, two views each
            "model.init_args.batch_size": 256,
            "model.init_args.paired_views": True,
            "model.init_args.synthesis_batch_size": 256,
            "model.init_args.kd_steps": 400,
            "model.init_args.g_steps": 400,
            "model.init_args.synthesizer.class_path": (
                "dfkd_lightning.synthesis.synthesizers.ResetGenerator"
            ),
            "model.init_args.synthesizer.init_args.lr": 1.0e-3,
            "model.init_args.synthesizer.init_args.nz": 256,
            "model.init_args.synthesizer.init_args.ngf": 64,
            "model.init_args.student_loss.kd.temperature": 20.0,
            "model.init_args.optimizer.init_args.lr": 0.1,
            "model.init_args.optimizer.init_args.momentum": 0.9,
            "model.init_args.optimizer.init_args.weight_decay": 1.0e-4,
            "model.init_args.scheduler.init_args.T_max": 200,
            "trainer.max_epochs": 200,
        },
    )
    assert "eta_min" not in model["scheduler"]["init_args"]  # CosineAnnealingLR(T_max=epochs)


RGAL_TERMS = {"synthesis_loss": ("triplet",), "student_loss": ("cd", "striplet")}


@pytest.mark.parametrize(
    "path",
    _configs("cmi_rgal") + _configs("fastdfkd_rgal"),
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_rgal_inserted_is_the_method_plus_rgals_terms(path: Path) -> None:
    """``<method>_rgal_<pair>``: the method's own config with RGAL's terms and paired views."""
    inserted = yaml.safe_load(path.read_text())
    method = path.stem.split("_rgal_")[0]
    plain = yaml.safe_load(path.with_name(path.name.replace("_rgal_", "_")).read_text())
    model = inserted["model"]["init_args"]
    assert model.pop("paired_views") is True
    for objective, names in RGAL_TERMS.items():
        added = {name: model[objective].pop(name) for name in names}
        assert [_weight(term) for term in added.values()] == [0.1] * len(names), method
    assert inserted["model"] == plain["model"]
    assert inserted["data"] == plain["data"]
    assert inserted["trainer"]["max_epochs"] == plain["trainer"]["max_epochs"]


@pytest.mark.parametrize(
    "path",
    _configs("teacher", ("resnet34", "wrn_40_2", "vgg11"))
    + _configs("kd", ("resnet34_resnet18", "vgg11_resnet18", *DATAFREE_PAIRS[1:])),
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_teacher_and_kd_follow_the_recipe_their_headers_state(path: Path) -> None:
    # configs/methods/teacher.yaml and kd.yaml: SGD 0.1, momentum 0.9, wd 5e-4, cosine over
    # 200 epochs; KD at T = 4 on the teacher alone.
    expected = {
        "model.init_args.optimizer.init_args.lr": 0.1,
        "model.init_args.optimizer.init_args.momentum": 0.9,
        "model.init_args.optimizer.init_args.weight_decay": 5.0e-4,
        "model.init_args.scheduler.init_args.T_max": 200,
        "trainer.max_epochs": 200,
    }
    if path.stem.startswith("kd_"):
        expected |= {"model.init_args.temperature": 4.0, "model.init_args.ce_weight": 0.0}
    _check(path, expected)


@pytest.mark.parametrize("path", _configs("dedfkd"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_dedfkd_shares_dfqs_loop(path: Path) -> None:
    """DE-DFKD publishes no settings: ours are DFQ's loop, optimisers and schedule, so that the
    conditional generator and the metric-learning term are what differs."""
    config = yaml.safe_load(path.read_text())
    dfq = yaml.safe_load(path.with_name(path.name.replace("dedfkd_", "dfq_")).read_text())
    model, dfq_model = config["model"]["init_args"], dfq["model"]["init_args"]
    synthesizer, dfq_synthesizer = model.pop("synthesizer"), dfq_model.pop("synthesizer")
    assert synthesizer["class_path"].endswith("ConditionalGenerator")
    assert synthesizer["init_args"].pop("conditioning") == "product"
    assert synthesizer["init_args"].pop("targets") == "balanced"
    assert synthesizer["init_args"] == dfq_synthesizer["init_args"]
    losses = model.pop("synthesis_loss"), model.pop("student_loss")
    dfq_model.pop("synthesis_loss"), dfq_model.pop("student_loss")
    assert [_weight(losses[0][name]) for name in ("oh", "bn", "adv", "ml")] == [1, 1, 1, 1]
    assert losses[0]["adv"]["agreeing_only"] is False
    assert [_weight(losses[1][name]) for name in ("kd", "ce")] == [1, 0]
    if path.parent.name == "cifar100" and "resnet34" in path.stem:  # DFQ's script's lr 0.05
        assert dfq_model.pop("optimizer")["init_args"].pop("lr") == 0.05
        assert model.pop("optimizer")["init_args"].pop("lr") == 0.1
    assert model == dfq_model
    assert config["data"] == dfq["data"] and config["model"]["class_path"].endswith("DEDFKD")
    assert config["trainer"]["max_epochs"] == dfq["trainer"]["max_epochs"]


DDA_PAIRS = ("wrn_40_2_wrn_16_1", "resnet34_resnet18")


@pytest.mark.parametrize(
    "path",
    _configs("dda", DDA_PAIRS) + _configs("dda_release", DDA_PAIRS),
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_dda_follows_the_release_script(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    model = config["model"]["init_args"]
    synthesis, student = model["synthesis_loss"], model["student_loss"]
    # datafree_kd.py: KLDiv(T) + CE(s, y) + args.fea (30) * MSE(alignhead(s_feat), t_feat)
    assert student["kd"]["temperature"] == 20.0  # --T 20
    assert _weight(student["ce"]) == 1.0
    assert (_weight(student["cd"]), student["cd"]["penultimate"]) == (30.0, True)
    assert _weight(student["rotation"]) == 1.0  # train_head: the head's CE alone
    if "release" in path.stem:  # --dda 10 --adv 0 --bn 1.0 --oh 1.0, no variations
        weights = {name: _weight(entry) for name, entry in synthesis.items()}
        assert weights == {"bn": 1.0, "oh": 1.0, "adv": 0.0, "cr": 0.0, "rotation_adv": 10.0}
        callbacks = [c["class_path"] for c in config["trainer"]["callbacks"]]
        assert not any("Variations" in c or "Similarity" in c for c in callbacks)
    else:  # the paper's contrastive inversion, with CMI's CIFAR weights
        assert [_weight(synthesis[name]) for name in ("bn", "oh", "adv", "cr")] == [
            1.0,
            1.0,
            0.5,
            0.8,
        ]
        [varier] = [c for c in config["trainer"]["callbacks"] if "Variations" in c["class_path"]]
        diffusion = varier["init_args"]["synthesizer"]["init_args"]
        assert (diffusion["guidance_scale"], diffusion["num_inference_steps"]) == (3.0, 25)
        assert diffusion["guidance_step"] == 0.0
    _check(
        path,
        {
            "data.init_args.batch_size": 128,  # --batch_size 128
            "data.init_args.steps_per_epoch": 2000,  # --ep_steps 2000
            "model.init_args.batch_size": 128,
            "model.init_args.synthesis_batch_size": 400,
            "model.init_args.kd_steps": 2000,
            "model.init_args.g_steps": 200,
            "model.init_args.synthesizer.init_args.lr": 1.0e-3,
            "model.init_args.synthesizer.init_args.nz": 256,
            "model.init_args.synthesizer.init_args.ngf": 64,
            "model.init_args.optimizer.class_path": "torch.optim.SGD",
            "model.init_args.optimizer.init_args.lr": 0.1,
            "model.init_args.optimizer.init_args.momentum": 0.9,
            "model.init_args.optimizer.init_args.weight_decay": 1.0e-4,
            "model.init_args.scheduler.init_args.T_max": 200,
            "trainer.max_epochs": 200,
        },
    )


QUANTIZED = ("resnet20", "resnet18")
QUANTIZATION_SOURCES = ("noise", "bn_inversion", "gdfq", "cmi", "cmi_rgal")
#: GDFQ's release (xushoukai/GDFQ): cifar100_resnet20.hocon and trainer.py.
GDFQ_STUDENT = {
    "data.init_args.steps_per_epoch": 200,  # trainer.py: iters = 200
    "model.init_args.batch_size": 200,  # batchSize = 200
    "model.init_args.weight_bits": 4,  # qw = 4
    "model.init_args.activation_bits": 4,  # qa = 4
    "model.init_args.batch_norm": "fixed",  # self.model.eval() while fine-tuning
    "model.init_args.optimizer.class_path": "torch.optim.SGD",
    "model.init_args.optimizer.init_args.lr": 1.0e-4,  # lr_S
    "model.init_args.optimizer.init_args.momentum": 0.9,
    "model.init_args.optimizer.init_args.nesterov": True,
    "model.init_args.optimizer.init_args.weight_decay": 1.0e-4,
    "model.init_args.scheduler.init_args.gamma": 0.1,  # decayRate_S
    "model.init_args.warmup": 4,  # warmup_epochs
    "trainer.max_epochs": 400,  # nEpochs
}


@pytest.mark.parametrize(
    "path",
    [
        CONFIGS / "experiments" / d / f"quant_{source}_{arch}.yaml"
        for d in CIFAR
        for source in QUANTIZATION_SOURCES
        for arch in QUANTIZED
    ],
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_quantization_follows_gdfqs_release(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    init = config["model"]["init_args"]
    # step_S = [100, 200, 300] counted from epoch 0; our scheduler counts after the warmup
    assert [m + init["warmup"] for m in init["scheduler"]["init_args"]["milestones"]] == [
        100,
        200,
        300,
    ]
    assert init["student_loss"]["kd"]["temperature"] == 20.0  # temperature = 20
    if "noise" in path.stem:
        _check(path, {**GDFQ_STUDENT, "model.init_args.warmup": 0})
        return
    _check(path, GDFQ_STUDENT)
    if "gdfq" in path.stem:  # loss_G = CE + 0.1 BNS; Adam lr_G 1e-3, b1 0.5, b2 0.999; latent 100
        generator = init["synthesizer"]["init_args"]
        assert (generator["lr"], generator["betas"], generator["nz"]) == (1e-3, [0.5, 0.999], 100)
        assert {k: _weight(v) for k, v in init["synthesis_loss"].items()} == {"oh": 1.0, "bn": 0.1}
        assert _weight(init["student_loss"]["ce"]) == 1.0  # loss_fn_kd adds the CE
