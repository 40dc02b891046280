"""Loading a diffusers model from a hub id or a local directory, with the errors a user fixes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch

from dfkd_lightning.errors import ConfigError, MissingFileError
from dfkd_lightning.producers import command_that_writes
from dfkd_lightning.synthesis.diffusion.denoisers import (
    Denoiser,
    LatentTextDenoiser,
    PixelDenoiser,
)

__all__ = ["DTYPES", "SchedulerName", "build_scheduler", "load_denoiser", "model_index"]

SchedulerName = Literal["ddpm", "ddim"]
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
INDEX_FILE = "model_index.json"
#: The model of the paper configs, named in the advice on how to get a missing model.
_STABLE_DIFFUSION = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def _looks_like_path(pretrained: str) -> bool:
    """A hub id is ``owner/name``; anything else (or anything that exists) is a path."""
    return (
        Path(pretrained).exists()
        or pretrained.startswith((".", "/", "~"))
        or pretrained.count("/") != 1
    )


def model_index(pretrained: str, local_files_only: bool = False) -> dict:
    """The pipeline's ``model_index.json`` (which components it has), from ``pretrained`` (a
    directory written by ``save_pretrained`` or a hub id); a :class:`MissingFileError` that
    names the directory and how to get the model when it is not there."""
    path = Path(pretrained).expanduser()
    paper = f"`huggingface-cli download {_STABLE_DIFFUSION} --local-dir {pretrained}`"
    if _looks_like_path(pretrained):
        if not (path / INDEX_FILE).is_file():
            how = command_that_writes(path) or (
                f"download it once on a machine with internet (the paper's model: {paper})"
            )
            what = "does not exist" if not path.exists() else f"has no {INDEX_FILE}"
            raise MissingFileError(f"no diffusers model at {path} ({path.resolve()} {what}); {how}")
        return json.loads((path / INDEX_FILE).read_text())
    from diffusers import DiffusionPipeline

    try:
        with _quiet_loading():
            index = DiffusionPipeline.load_config(pretrained, local_files_only=local_files_only)
        return dict(index)
    except (OSError, ValueError) as err:
        name = pretrained.rpartition("/")[2]
        raise MissingFileError(
            f"no diffusers model {pretrained!r}: {path.resolve()} is not a directory, and the "
            f"Hugging Face hub (or its cache) does not have it ({str(err).splitlines()[0][:100]}). "
            f"Download it once on a machine with internet: `huggingface-cli download {pretrained} "
            f"--local-dir models/{name}` for a hub id, or for the paper's model {paper}; then set "
            "pretrained to that directory"
        ) from err


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Without the libraries' loading chatter (progress bars, the advice to install
    ``accelerate``); errors still show."""
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, hub_logging, transformers_logging)
    levels = [library.get_verbosity() for library in libraries]
    for library in libraries:
        library.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for library, level in zip(libraries, levels, strict=True):
            library.set_verbosity(level)
        transformers_logging.enable_progress_bar()


def _load(cls: Any, pretrained: str, subfolder: str, **kwargs: Any) -> Any:
    with _quiet_loading():
        return cls.from_pretrained(pretrained, subfolder=subfolder, **kwargs)


def load_denoiser(
    pretrained: str,
    dtype: str = "float32",
    local_files_only: bool = False,
    prompt: str = "A realistic photo.",
    class_names: Sequence[str] | None = None,
    guidance_scale: float = 3.0,
) -> tuple[Denoiser, dict[str, Any]]:
    """The frozen denoiser of ``pretrained`` in ``dtype`` and its scheduler's config: a latent
    text-to-image pipeline (``vae``, ``text_encoder``, ``tokenizer``, ``unet``: Stable
    Diffusion) or a pixel-space one (``unet`` a ``UNet2DModel``: ``DDPMPipeline``)."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    index = model_index(pretrained, local_files_only)
    torch_dtype = DTYPES[dtype]
    common = dict(local_files_only=local_files_only)
    from diffusers import DDPMScheduler

    scheduler_config = dict(DDPMScheduler.load_config(pretrained, subfolder="scheduler", **common))
    if {"unet", "vae", "text_encoder", "tokenizer"} <= index.keys():
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        denoiser: Denoiser = LatentTextDenoiser(
            unet=_load(UNet2DConditionModel, pretrained, "unet", torch_dtype=torch_dtype, **common),
            vae=_load(AutoencoderKL, pretrained, "vae", torch_dtype=torch_dtype, **common),
            text_encoder=_load(
                CLIPTextModel, pretrained, "text_encoder", torch_dtype=torch_dtype, **common
            ),
            tokenizer=_load(CLIPTokenizer, pretrained, "tokenizer", **common),
            dtype=torch_dtype,
            prompt=prompt,
            class_names=class_names,
            guidance_scale=guidance_scale,
        )
    elif "unet" in index and "UNet2DModel" in index["unet"]:
        from diffusers import UNet2DModel

        unet = _load(UNet2DModel, pretrained, "unet", torch_dtype=torch_dtype, **common)
        denoiser = PixelDenoiser(unet, torch_dtype)
    else:
        parts = sorted(k for k in index if not k.startswith("_"))
        raise ConfigError(
            f"{pretrained} is a {index.get('_class_name', 'pipeline')} with parts {parts}; the "
            "diffusion synthesizer takes a latent text-to-image pipeline (Stable Diffusion: "
            "unet, vae, text_encoder, tokenizer) or a pixel-space UNet2DModel (DDPMPipeline)"
        )
    return denoiser.freeze(), scheduler_config


def build_scheduler(name: SchedulerName, config: dict[str, Any]) -> Any:
    """A DDPM or DDIM scheduler with the pipeline's noise schedule (its ``scheduler`` config:
    betas, timesteps, prediction type)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    schedulers = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}
    if name not in schedulers:
        raise ConfigError(f"scheduler must be one of {list(schedulers)}, got {name!r}")
    return schedulers[name].from_config(config)
