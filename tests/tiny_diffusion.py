"""Tiny diffusers models built in code and written with ``save_pretrained``, as diffusers'
own tests build them: a pixel-space DDPM pipeline, a Stable Diffusion pipeline whose CLIP
tokenizer reads a small vocabulary and merges file written here, and a Stable Diffusion image
variations pipeline with a tiny CLIP image encoder."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch


def save_tiny_pixel_pipeline(directory: Path, channels: int = 1, size: int = 8) -> Path:
    """A ``DDPMPipeline`` of an untrained two-level ``UNet2DModel`` (``channels`` x ``size``)."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(
        directory
    )
    return directory


def write_clip_tokenizer_files(directory: Path) -> tuple[Path, Path]:
    """A CLIP BPE vocabulary of single characters (and their word-final forms) with a few
    merges: enough to tokenize English prompts."""
    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + ".,")
    tokens = ["<|startoftext|>", "<|endoftext|>"] + symbols + [s + "</w>" for s in symbols]
    merges = ["#version: 0.2", "p h", "o t", "ph ot"]
    tokens += ["ph", "ot", "phot"]
    vocab_file, merges_file = directory / "vocab.json", directory / "merges.txt"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    merges_file.write_text("\n".join(merges) + "\n")
    return vocab_file, merges_file


def _tiny_latent_parts(sample_size: int, cross_attention_dim: int) -> tuple[Any, Any]:
    """A tiny ``UNet2DConditionModel`` on ``4 x sample_size^2`` latents and its
    ``AutoencoderKL`` (images twice that size)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=2 * sample_size,
    )
    return unet, vae


def _latent_scheduler() -> Any:
    """Stable Diffusion's noise schedule, over 100 training steps."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=100,
        beta_schedule="scaled_linear",
        steps_offset=1,
        clip_sample=False,
    )


def save_tiny_stable_diffusion(directory: Path, sample_size: int = 8) -> Path:
    """A ``StableDiffusionPipeline`` of tiny random parts: latents ``4 x sample_size^2``,
    images twice that size, a 2-layer CLIP text encoder of width 16."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet, vae = _tiny_latent_parts(sample_size, cross_attention_dim=16)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=100,
            max_position_embeddings=32,
        )
    )
    vocab, merges = write_clip_tokenizer_files(directory / "_tokenizer_source")
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=16)
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_latent_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory)
    return directory


def save_tiny_image_variations(
    directory: Path, sample_size: int = 8, clip_size: int = 32, projection_dim: int = 32
) -> Path:
    """A ``StableDiffusionImageVariationPipeline`` of tiny random parts: the latent parts of
    :func:`save_tiny_stable_diffusion` cross-attending to a 2-layer CLIP vision encoder of
    width 32 (``clip_size`` px input in patches of 8) projected to ``projection_dim``, and a
    ``CLIPImageProcessor`` for that input with CLIP's mean and std."""
    from diffusers import StableDiffusionImageVariationPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    torch.manual_seed(0)
    unet, vae = _tiny_latent_parts(sample_size, cross_attention_dim=projection_dim)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            image_size=clip_size,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=2,
            num_hidden_layers=2,
            projection_dim=projection_dim,
        )
    )
    processor = CLIPImageProcessor(
        size={"shortest_edge": clip_size},
        crop_size={"height": clip_size, "width": clip_size},
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
    )
    StableDiffusionImageVariationPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=_latent_scheduler(),
        safety_checker=None,
        feature_extractor=processor,
        requires_safety_checker=False,
    ).save_pretrained(directory)
    return directory
