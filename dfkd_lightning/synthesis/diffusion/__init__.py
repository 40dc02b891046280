"""Diffusion synthesis: frozen diffusers denoisers steered by the teacher (DiffDFKD, DDA).

Nothing here imports diffusers or transformers at module import: they load with a model.
"""
