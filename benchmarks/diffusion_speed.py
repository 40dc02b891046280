"""Speed and memory of teacher-guided generation with a Stable-Diffusion-sized pipeline.

    python benchmarks/diffusion_speed.py --device cuda --dtypes bfloat16 float32
    python benchmarks/diffusion_speed.py --device cpu --scale tiny --steps 2   # a smoke run

Builds a pipeline with Stable Diffusion v1.5's shapes (UNet 860 M parameters, VAE, CLIP
ViT-L/14 text encoder) from configs with random weights, writes it with
``save_pretrained`` and loads it through ``DiffusionSynthesizer`` (so nothing is
downloaded; the images are noise, only speed and memory mean anything). Then times
DiffDFKD's guided generation (gradients through the UNet and the VAE decoder at every
step, CFG, a random ResNet-18 CIFAR teacher) for ``--images`` images in micro-batches of
``--micro-batch``, once per ``--dtypes`` entry, after one warm-up micro-batch. Prints
seconds per image and the peak GPU memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tiny_diffusion import write_clip_tokenizer_files  # noqa: E402

from dfkd_lightning.nets import build_classifier  # noqa: E402
from dfkd_lightning.synthesis.synthesizers import (  # noqa: E402
    DiffusionSynthesizer,
    SampleSpec,
)

#: ``--scale sd``: Stable Diffusion v1.5's shapes; ``tiny``: a smoke-test size.
SCALES = {
    "sd": dict(
        unet=dict(
            sample_size=64,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            cross_attention_dim=768,
            attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        ),
        vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=512),
        text=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, layers=12),
    ),
    "tiny": dict(
        unet=dict(
            sample_size=8,
            block_out_channels=(32, 64),
            layers_per_block=1,
            cross_attention_dim=32,
            attention_head_dim=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        ),
        vae=dict(block_out_channels=(32, 64), layers_per_block=1, sample_size=16),
        text=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, layers=2),
    ),
}


def save_random_pipeline(directory: Path, scale: str) -> Path:
    """A ``StableDiffusionPipeline`` of random weights with the shapes of ``scale``."""
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    shapes = SCALES[scale]
    vae_blocks = len(shapes["vae"]["block_out_channels"])
    text = shapes["text"]
    vocab, merges = write_clip_tokenizer_files(directory / "_tokenizer_source")
    pipeline = StableDiffusionPipeline(
        unet=UNet2DConditionModel(in_channels=4, out_channels=4, **shapes["unet"]),
        vae=AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * vae_blocks,
            up_block_types=("UpDecoderBlock2D",) * vae_blocks,
            **shapes["vae"],
        ),
        text_encoder=CLIPTextModel(
            CLIPTextConfig(
                hidden_size=text["hidden_size"],
                intermediate_size=text["intermediate_size"],
                num_attention_heads=text["num_attention_heads"],
                num_hidden_layers=text["layers"],
                max_position_embeddings=77,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        ),
        tokenizer=CLIPTokenizer(str(vocab), str(merges), model_max_length=77),
        scheduler=DDPMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory)
    return directory


def time_generation(directory: Path, dtype: str, args: argparse.Namespace) -> dict[str, float]:
    device = torch.device(args.device)
    teacher = build_classifier("resnet18", 10, 3).to(device).eval().requires_grad_(False)
    synthesizer = DiffusionSynthesizer(
        str(directory),
        num_inference_steps=args.steps,
        micro_batch_size=args.micro_batch,
        gradient_checkpointing=args.gradient_checkpointing,
        dtype=dtype,
    )
    synthesizer.bind(SampleSpec(shape=(3, 32, 32), num_classes=10, batch_size=args.images))
    synthesizer.attach(lambda batch: F.cross_entropy(teacher(batch.samples), batch.targets))
    synthesizer.to(device)
    synthesizer.generate(torch.arange(args.micro_batch) % 10)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    synthesizer.generate(torch.arange(args.images) % 10)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"seconds_per_image": seconds / args.images, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--scale", choices=list(SCALES), default="sd")
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        directory = save_random_pipeline(Path(folder) / "pipeline", args.scale)
        print(f"{args.scale} pipeline, {args.steps} steps, micro-batches of {args.micro_batch}")
        for dtype in args.dtypes:
            figures = time_generation(directory, dtype, args)
            print(
                f"{dtype:9s} {figures['seconds_per_image']:8.3f} s/image   "
                f"peak {figures['peak_gib']:.2f} GiB",
                flush=True,
            )


if __name__ == "__main__":
    main()
