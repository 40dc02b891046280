"""dfkd-lightning: data-free knowledge distillation on PyTorch Lightning."""

__version__ = "0.1.0"
