"""Training configuration: one typed dataclass, named presets as JSON files, command-line overrides.

    mmsim train --config demo-cpu --data data/processed --out runs/demo --set batch_size=8 \
        --set model.action_encoder.fusion=mean

A config is resolved in this order: dataclass defaults < named preset file (``training/configs/NAME.json``
or any JSON path) < explicit flags (``--preset``, ``--data``...) < ``--set key=value`` overrides. A file
with ``"extends": NAME`` is merged, section by section, into that config (``bench-cpu-warp`` is ``bench-cpu``
plus the projected hand warp). Merging and overrides use the one mechanism of :mod:`mmsim_core.configuration`,
and the model part is validated at once (:meth:`TrainConfig.simulator_config`), so a wrong key fails before
any data is read. The resolved config is written to ``OUT/config.json`` with every run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from mmsim_core.configuration import nested_update, parse_assignments
from mmsim_core.presets import TRAINING_RECIPE_KEYS, SimulatorConfig, get_preset
from mmsim_core.schema import MODALITY_NAMES, TEXT_KINDS, check_modality_names

CONFIG_DIR = Path(__file__).parent / "configs"
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


@dataclass
class TrainConfig:
    # what to train
    preset: str = "mmsim-cpu"
    """Model size preset from ``mmsim_core.presets`` (mmsim-tiny | mmsim-cpu | mmsim-paper)."""
    model: dict = field(default_factory=dict)
    """Overrides of the preset's SimulatorConfig, e.g. ``{"action_encoder": {"fusion": "mean"}}``."""
    modalities: tuple[str, ...] = MODALITY_NAMES
    """Action modalities the model sees in training (paper Table 8 ablates these)."""
    text_kind: str | None = None
    """Condition on this text of each clip as well ("verb" | "phrase" | "sentence")."""

    # data
    data: str = "data/processed"
    split: str = "train"
    modality_drop: float = 0.0
    """Drop each modality independently with this probability (robustness to missing sensors)."""
    observational_only: bool = False
    """Train on observational clips only, leaving out the synthetic world's counterfactual recordings
    (edited actions re-enacted from the same scene); the paper's tables use observational data."""
    init_from: str | None = None
    """A trained pipeline folder (``mmsim train``'s ``final``, a bundled checkpoint) whose weights start this run:
    fine-tuning. Parameters the folder lacks, or holds with another shape (a component added by the config),
    keep their fresh initialisation; which ones is logged. Its ``normalization.json`` should be the data's
    (``mmsim preprocess --stats FOLDER/normalization.json``): the run warns when they differ."""
    num_workers: int = 0

    # optimisation (paper §7.4: Adam 1e-4, betas (0.9, 0.99), EMA 0.995 every 10 iterations)
    max_steps: int = 20_000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    ema_decay: float = 0.995
    ema_every: int = 10
    mixed_precision: str = "auto"

    # bookkeeping
    out: str = "runs/mmsim"
    seed: int = 0
    log_every: int = 25
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_with: str | None = None
    """An accelerate tracker ("tensorboard", "wandb", ...); metrics always go to OUT/log.jsonl."""

    def __post_init__(self):
        self.modalities = check_modality_names(self.modalities)
        self.betas = tuple(self.betas)
        if not self.modalities and self.text_kind is None:
            raise ValueError("modalities must not be empty unless text_kind is set (text-only baseline)")
        if self.text_kind is not None and self.text_kind not in TEXT_KINDS:
            raise ValueError(f"text_kind must be one of {list(TEXT_KINDS)}, got {self.text_kind!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {list(MIXED_PRECISION)}, got {self.mixed_precision!r}")
        for name in ("max_steps", "batch_size", "grad_accum", "ema_every", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not isinstance(self.observational_only, bool):
            raise ValueError(f"observational_only must be true or false, got {self.observational_only!r}")
        if not 0.0 <= self.modality_drop < 1.0:
            raise ValueError(f"modality_drop must be in [0, 1), got {self.modality_drop}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.init_from is not None:
            self.init_from = str(self.init_from)
            if not (Path(self.init_from) / "model_index.json").is_file():
                raise ValueError(f"init_from must be a pipeline folder (with model_index.json), got {self.init_from!r}")
        self.simulator_config()  # validates the model part now, not after the data is loaded

    def simulator_config(self) -> SimulatorConfig:
        """The :class:`SimulatorConfig` this run trains: the preset with ``model`` overrides, the run's
        modalities and, with ``text_kind``, a bag-of-words text expert (unless ``model`` names another)."""
        model = dict(self.model)
        if self.text_kind is not None:
            model.setdefault("text_kind", self.text_kind)
            model.setdefault("text_encoder", "bow")
            model["action_encoder"] = {"text_dim": 128, **model.get("action_encoder", {})}
        # The action encoder only builds experts for the modalities this run trains on (Table 8).
        model["action_encoder"] = {"modalities": list(self.modalities), **model.get("action_encoder", {})}
        try:
            return get_preset(self.preset, **model)
        except (TypeError, ValueError) as e:
            raise ValueError(str(e)) from None

    def recipe(self) -> dict:
        """What a checkpoint records of how it was trained (saved in its ``simulator_config.json``)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.to_dict().items() if k in TRAINING_RECIPE_KEYS}

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def named_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def _load_file(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict:
    """A config file's keys. ``"extends": NAME`` starts from that config and merges this file's keys into it,
    section by section (so a variant config names only what it changes)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.exists():
        raise ValueError(f"config must be one of {named_configs()} or a JSON file, got {name_or_path!r}")
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:  # a folder, unreadable, not JSON
        raise ValueError(f"config file {path} cannot be read as JSON ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"config file {path} must hold a JSON object of config keys, got {type(d).__name__}")
    base = d.pop("extends", None)
    if base is None:
        return d
    if base in _seen:
        raise ValueError(f"config {name_or_path!r} extends itself through {' -> '.join((*_seen, base))}")
    return nested_update(_load_file(base, (*_seen, name_or_path)), d)


def resolve_config(config: str | None = None, overrides: list[str] = (), **flags) -> TrainConfig:
    d: dict = asdict(TrainConfig())
    if config:
        for k, v in _load_file(config).items():
            if k not in d:
                raise ValueError(f"config {config!r} has unknown key {k!r}")
            d[k] = v
    for k, v in flags.items():
        if v is not None:
            d[k] = v
    if overrides:
        over = parse_assignments(overrides)
        top = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(over) - top)
        if unknown:
            raise ValueError(f"--set: unknown config key {unknown[0]!r}; keys are {sorted(top)}")
        d = nested_update(d, over)
    return TrainConfig(**d)
