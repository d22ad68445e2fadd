"""Finetuning: full or LoRA, active forgetting, checkpoints/resume, multi-process via accelerate.

    from factlearn.train import load_train_config, train
    out = train(load_train_config("cpu_small", ["save=runs/a", "epochs=3"]))
"""

from factlearn.train.config import ForgetSection, LoraSection, TrainConfig, load_train_config
from factlearn.train.trainer import train

__all__ = ["TrainConfig", "LoraSection", "ForgetSection", "load_train_config", "train"]
