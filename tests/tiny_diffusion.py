"""Tiny diffusers models built in code and written with ``save_pretrained``, as diffusers'
own tests build them: a pixel-space DDPM pipeline and a Stable Diffusion pipeline whose CLIP
tokenizer reads a small vocabulary and merges file written here."""

from __future__ import annotations

import json
import string
from pathlib import Path

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


def save_tiny_stable_diffusion(directory: Path, sample_size: int = 8) -> Path:
    """A ``StableDiffusionPipeline`` of tiny random parts: latents ``4 x sample_size^2``,
    images twice that size, a 2-layer CLIP text encoder of width 16."""
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
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
        scheduler=DDPMScheduler(
            num_train_timesteps=100,
            beta_schedule="scaled_linear",
            steps_offset=1,
            clip_sample=False,
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory)
    return directory
