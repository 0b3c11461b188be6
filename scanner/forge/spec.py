"""A zoo spec: the base model, the measurement settings and one entry per model to forge."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scanner.attacks import ATTACKS, Pattern

ATTACK_PARAMS = {"baddiffusion": {"r_mode"}, "villandiffusion": {"r_mode", "ddim_steps"},
                 "trojdiff": {"gamma"}, "clean": set()}


@dataclass(frozen=True, kw_only=True)
class BaseSpec:
    """The clean DDPM every model is fine-tuned from: architecture, schedule, training."""

    sample_size: int = 16
    channels: int = 1
    block_out_channels: tuple[int, ...] = (16, 32)
    attention: bool = True
    layers_per_block: int = 1
    norm_num_groups: int = 8
    num_train_timesteps: int = 200
    beta_start: float = 5e-4
    beta_end: float = 0.1
    steps: int = 3000
    lr: float = 2e-3
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if any(w % self.norm_num_groups for w in self.block_out_channels):
            raise ValueError(f"`norm_num_groups` ({self.norm_num_groups}) must divide every "
                             f"`block_out_channels` entry {self.block_out_channels}")
        if self.sample_size % 2 ** (len(self.block_out_channels) - 1):
            raise ValueError(f"`sample_size` {self.sample_size} must be divisible by "
                             f"2^{len(self.block_out_channels) - 1} (one downsample per extra block)")

    def unet_config(self) -> dict[str, Any]:
        """Keyword arguments for diffusers' `UNet2DModel`; attention sits at the lowest resolution."""
        n = len(self.block_out_channels)
        down = ["DownBlock2D"] * n
        up = ["UpBlock2D"] * n
        if self.attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        return {"sample_size": self.sample_size, "in_channels": self.channels, "out_channels": self.channels,
                "layers_per_block": self.layers_per_block, "block_out_channels": tuple(self.block_out_channels),
                "down_block_types": tuple(down), "up_block_types": tuple(up),
                "norm_num_groups": self.norm_num_groups, "attention_head_dim": 8}

    def scheduler_config(self) -> dict[str, Any]:
        """Shipped scheduler settings: clip_sample stays at diffusers' default (True), as a
        real zoo ships it; the forge measures each attack under its attacker's own sampler."""
        return {"num_train_timesteps": self.num_train_timesteps, "beta_start": self.beta_start,
                "beta_end": self.beta_end, "beta_schedule": "linear"}


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model: an attack (or "clean" for a clean twin) with its trigger, target and recipe."""

    name: str
    attack: str
    steps: int
    lr: float = 5e-4
    poison_rate: float = 0.0
    seed: int = 0
    trigger: Pattern | None = None
    target: Pattern | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"model `name` must be a plain directory name, got {self.name!r}")
        if self.attack not in ATTACK_PARAMS:
            raise ValueError(f"model {self.name!r}: `attack` must be one of {sorted(ATTACK_PARAMS)}, got {self.attack!r}")
        unknown = set(self.params) - ATTACK_PARAMS[self.attack]
        if unknown:
            raise ValueError(f"model {self.name!r}: unknown parameters {sorted(unknown)} for {self.attack}")
        if self.attack == "clean":
            if self.poison_rate or self.trigger or self.target:
                raise ValueError(f"model {self.name!r}: a clean twin takes no trigger, target or poison_rate")
        elif self.trigger is None or self.target is None or not 0 < self.poison_rate <= 1:
            raise ValueError(f"model {self.name!r}: attack {self.attack} needs `trigger`, `target` and "
                             f"`poison_rate` in (0, 1]")
        if self.target is not None and self.target.background is None:
            raise ValueError(f"model {self.name!r}: the target must set `background` (it is a whole image)")

    def build_attack(self, *, channels: int, image_size: int):
        """The attack object with rendered tensors, or None for a clean twin."""
        if self.attack == "clean":
            return None
        trigger, mask = self.trigger.render(channels=channels, image_size=image_size)
        target, _ = self.target.render(channels=channels, image_size=image_size)
        return ATTACKS[self.attack](trigger=trigger, mask=mask, target=target, **self.params)


@dataclass(frozen=True, kw_only=True)
class ZooSpec:
    base: BaseSpec
    models: tuple[ModelSpec, ...]
    samples: int = 64  # images per ASR / clean-hit measurement
    measure_seed: int = 1234

    def __post_init__(self) -> None:
        names = [m.name for m in self.models]
        if not names:
            raise ValueError("a zoo spec needs at least one [[models]] entry")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique, repeated: {dupes}")
        for m in self.models:
            m.build_attack(channels=self.base.channels, image_size=self.base.sample_size)  # fits?

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _model(entry: dict[str, Any]) -> ModelSpec:
    entry = dict(entry)
    for key in ("trigger", "target"):
        if entry.get(key) is not None:
            entry[key] = Pattern(**entry[key])
    return ModelSpec(**entry)


def spec_from_dict(raw: dict[str, Any]) -> ZooSpec:
    base = dict(raw.get("base", {}))
    if "block_out_channels" in base:
        base["block_out_channels"] = tuple(base["block_out_channels"])
    extra = {k: raw[k] for k in ("samples", "measure_seed") if k in raw}
    return ZooSpec(base=BaseSpec(**base), models=tuple(_model(m) for m in raw.get("models", [])), **extra)


def load_spec(path: str | Path) -> ZooSpec:
    """Read a TOML or JSON zoo spec; unknown keys and bad values raise with the offending name."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    try:
        return spec_from_dict(raw)
    except TypeError as exc:  # unknown keyword in a section
        raise ValueError(f"{path}: {exc}") from None
