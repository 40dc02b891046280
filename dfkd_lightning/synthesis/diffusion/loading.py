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
    ImageVariationDenoiser,
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


def _has(index: dict, *parts: str) -> bool:
    """Whether the pipeline has all of ``parts`` (an optional part saved as None is absent)."""
    return all(part in index and index[part] != [None, None] for part in parts)


def _box_size(box: Any) -> tuple[int, int] | None:
    """``(height, width)`` of a processor's ``size``/``crop_size`` (an int, or a dict of
    height/width or shortest_edge), None when it says neither."""
    if isinstance(box, int):
        return box, box
    get = getattr(box, "get", None)
    if get is None:
        return None
    if get("height") and get("width"):
        return int(get("height")), int(get("width"))
    return (int(get("shortest_edge")),) * 2 if get("shortest_edge") else None


def _clip_preprocessing(
    pretrained: str, index: dict, image_encoder: Any, common: dict[str, Any]
) -> dict[str, Any]:
    """The image encoder's input size and normalisation, from the pipeline's
    ``feature_extractor`` (a ``CLIPImageProcessor``; the crop size when it crops); without
    one, the encoder's ``image_size`` and CLIP's mean and std."""
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    size = int(image_encoder.config.image_size)
    defaults = {
        "image_size": (size, size),
        "image_mean": OPENAI_CLIP_MEAN,
        "image_std": OPENAI_CLIP_STD,
    }
    if not _has(index, "feature_extractor"):
        return defaults
    from transformers import CLIPImageProcessor

    processor = _load(CLIPImageProcessor, pretrained, "feature_extractor", **common)
    crop = processor.crop_size if getattr(processor, "do_center_crop", False) else None
    box = _box_size(crop) or _box_size(processor.size)
    return {
        "image_size": box or defaults["image_size"],
        "image_mean": list(processor.image_mean or OPENAI_CLIP_MEAN),
        "image_std": list(processor.image_std or OPENAI_CLIP_STD),
    }


def _latent_parts(pretrained: str, torch_dtype: torch.dtype, common: dict[str, Any]) -> dict:
    """A latent pipeline's ``unet`` (a ``UNet2DConditionModel``) and ``vae``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    return {
        "unet": _load(UNet2DConditionModel, pretrained, "unet", torch_dtype=torch_dtype, **common),
        "vae": _load(AutoencoderKL, pretrained, "vae", torch_dtype=torch_dtype, **common),
    }


def _image_variations(
    pretrained: str,
    index: dict,
    torch_dtype: torch.dtype,
    guidance_scale: float,
    common: dict[str, Any],
) -> ImageVariationDenoiser:
    """An image-variations pipeline's denoiser (UNet, VAE, CLIP image encoder)."""
    from transformers import CLIPVisionModelWithProjection

    encoder = _load(
        CLIPVisionModelWithProjection,
        pretrained,
        "image_encoder",
        torch_dtype=torch_dtype,
        **common,
    )
    return ImageVariationDenoiser(
        **_latent_parts(pretrained, torch_dtype, common),
        image_encoder=encoder,
        dtype=torch_dtype,
        guidance_scale=guidance_scale,
        **_clip_preprocessing(pretrained, index, encoder, common),
    )


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
    Diffusion), a latent image-variations one (``vae``, ``image_encoder``, ``unet``:
    ``StableDiffusionImageVariationPipeline``; ``prompt`` and ``class_names`` unused) or a
    pixel-space one (``unet`` a ``UNet2DModel``: ``DDPMPipeline``)."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    index = model_index(pretrained, local_files_only)
    torch_dtype = DTYPES[dtype]
    common = dict(local_files_only=local_files_only)
    from diffusers import DDPMScheduler

    scheduler_config = dict(DDPMScheduler.load_config(pretrained, subfolder="scheduler", **common))
    if _has(index, "unet", "vae", "text_encoder", "tokenizer"):
        from transformers import CLIPTextModel, CLIPTokenizer

        denoiser: Denoiser = LatentTextDenoiser(
            **_latent_parts(pretrained, torch_dtype, common),
            text_encoder=_load(
                CLIPTextModel, pretrained, "text_encoder", torch_dtype=torch_dtype, **common
            ),
            tokenizer=_load(CLIPTokenizer, pretrained, "tokenizer", **common),
            dtype=torch_dtype,
            prompt=prompt,
            class_names=class_names,
            guidance_scale=guidance_scale,
        )
    elif _has(index, "unet", "vae", "image_encoder"):
        denoiser = _image_variations(pretrained, index, torch_dtype, guidance_scale, common)
    elif "unet" in index and "UNet2DModel" in index["unet"]:
        from diffusers import UNet2DModel

        unet = _load(UNet2DModel, pretrained, "unet", torch_dtype=torch_dtype, **common)
        denoiser = PixelDenoiser(unet, torch_dtype)
    else:
        parts = sorted(k for k in index if not k.startswith("_"))
        raise ConfigError(
            f"{pretrained} is a {index.get('_class_name', 'pipeline')} with parts {parts}; the "
            "diffusion synthesizer takes a latent text-to-image pipeline (Stable Diffusion: "
            "unet, vae, text_encoder, tokenizer), a latent image-variations pipeline "
            "(StableDiffusionImageVariationPipeline: unet, vae, image_encoder) or a pixel-space "
            "UNet2DModel (DDPMPipeline)"
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
