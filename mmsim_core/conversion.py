"""Loading pipeline folders saved before the action warp became its own component.

Until then, the ego-motion head and the hand placement map lived inside the action encoder (their settings
in ``action_encoder/config.json``, their weights under ``ego_motion.*`` / ``hand_map.*`` in its safetensors),
and no ``simulator_config.json`` was saved. Such a *legacy* folder is converted like this:

1. the action encoder keeps the paper's fields and weights; ``ego_motion_from``, ``ego_motion_hidden``,
   ``ego_motion_context`` (now ``context_motion``), ``hand_map_channels/grid/hidden``, ``hand_map_placement``
   (now ``hand_placement``) and ``hand_map_camera`` (now ``camera``) become ``action_warp/config.json``, and
   the ``ego_motion.*`` / ``hand_map.*`` weights ``action_warp/diffusion_pytorch_model.safetensors``;
2. ``model_index.json`` gains the ``action_warp`` entry (null when the encoder had neither part);
3. the denoiser drops ``condition_norm`` (only ``"none"``, the default, converts: no shipped checkpoint used
   another value);
4. ``simulator_config.json`` is rebuilt from the component configs, with the text kind and the training
   summary read from a ``training_config.json`` in the folder or the ``config.json`` of the training run
   around it.

The weights are moved, never changed: a converted pipeline computes exactly what the legacy one did.
``MultisensoryVideoPipeline.from_pretrained`` converts on the fly (into a temporary folder, with a log line);
``mmsim convert OLD NEW`` (or :func:`convert_legacy_pipeline`) writes the converted folder once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file

from mmsim_core.errors import MMSimError

logger = logging.getLogger(__name__)

WEIGHTS = "diffusion_pytorch_model.safetensors"
WARP_FIELDS = {  # legacy action-encoder field -> action-warp field
    "ego_motion_from": "ego_motion_from",
    "ego_motion_hidden": "ego_motion_hidden",
    "ego_motion_context": "context_motion",
    "hand_map_channels": "hand_map_channels",
    "hand_map_grid": "hand_map_grid",
    "hand_map_hidden": "hand_map_hidden",
    "hand_map_placement": "hand_placement",
    "hand_map_camera": "camera",
}
LEGACY_ENCODER_FIELDS = set(WARP_FIELDS) | {"context_steps"}
WARP_PREFIXES = ("ego_motion.", "hand_map.")
FEATURE_EXTRACTOR_OF = {
    "MultisensoryActionEncoder": "multisensory",
    "MutexActionEncoder": "mutex",
    "ImageBindActionEncoder": "imagebind",
    "LanguageBindActionEncoder": "languagebind",
    "SignalAgnosticActionEncoder": "signal_agnostic",
}
SAMPLER_OF = {
    "UniPCMultistepScheduler": "unipc",
    "DDIMScheduler": "ddim",
    "EulerDiscreteScheduler": "euler",
    "DDPMScheduler": "ddpm",
}


def _read(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def _write(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def is_legacy(folder: str | Path) -> bool:
    """Whether ``folder`` (a pipeline folder) was saved before the action warp split."""
    folder = Path(folder)
    index = folder / "model_index.json"
    encoder = folder / "action_encoder" / "config.json"
    if not index.is_file() or not encoder.is_file():
        return False
    return "action_warp" not in _read(index) or bool(LEGACY_ENCODER_FIELDS & set(_read(encoder)))


def _training_config(folder: Path) -> dict | None:
    """The run config beside the folder (``training_config.json``) or of the run around it (``config.json``
    of a parent: ``RUN/final`` and ``RUN/checkpoints/checkpoint_N/pipeline``)."""
    candidates = [folder / "training_config.json"] + [p / "config.json" for p in list(folder.parents)[:3]]
    for file in candidates:
        if file.is_file():
            try:
                cfg = _read(file)
            except (OSError, ValueError):
                continue
            if isinstance(cfg, dict) and "preset" in cfg:
                return cfg
    return None


def _simulator_config(folder: Path, index: dict, encoder: dict, warp: dict | None) -> dict:
    """A ``SimulatorConfig`` dict rebuilt from the (converted) component configs."""
    from mmsim_core.presets import SimulatorConfig

    denoiser = _read(folder / "denoiser" / "config.json")
    scheduler = _read(folder / "scheduler" / "scheduler_config.json")
    context = _read(folder / "context_encoder" / "config.json")
    public = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}  # noqa: E731
    run = _training_config(folder) or {}
    sampler = SAMPLER_OF.get(scheduler["_class_name"])
    if scheduler["_class_name"] == "DPMSolverMultistepScheduler":
        sampler = "dpmsolver++_sde" if scheduler.get("algorithm_type") == "sde-dpmsolver++" else "dpmsolver++"
    if sampler is None:
        raise MMSimError(f"{folder}: unknown sampler {scheduler['_class_name']} in scheduler/scheduler_config.json")
    context_kind = "small" if context["_class_name"] == "SmallContextEncoder" else "openclip"
    context_kwargs = {k: v for k, v in public(context).items() if k not in ("feature_dim", "image_size")}
    text_class = (index.get("text_encoder") or [None, None])[1]
    text_encoder = {"BagOfWordsTextEncoder": "bow", "OpenCLIPTextEncoder": "openclip"}.get(text_class)
    text_kwargs = {}
    if text_encoder is not None:
        text_kwargs = {k: v for k, v in public(_read(folder / "text_encoder" / "config.json")).items() if k != "text_dim"}
    run_scheduler = (run.get("model") or {}).get("scheduler") or {}
    cfg = {
        "name": run.get("preset", "converted"),
        "sample_size": denoiser["sample_size"],
        "context_frames": denoiser["context_frames"],
        "future_frames": denoiser["num_frames"],
        "feature_extractor": FEATURE_EXTRACTOR_OF[index["action_encoder"][1]],
        "action_encoder": public(encoder),
        "action_warp": warp,
        "denoiser": public(denoiser),
        "context_encoder": context_kind,
        "context_encoder_kwargs": context_kwargs,
        "text_encoder": text_encoder,
        "text_encoder_kwargs": text_kwargs,
        "text_kind": run.get("text_kind") if text_encoder is not None else None,
        "scheduler": {
            "num_train_timesteps": scheduler["num_train_timesteps"],
            "beta_schedule": scheduler["beta_schedule"],
            "prediction_type": scheduler["prediction_type"],
            "timestep_spacing": scheduler["timestep_spacing"],
            "rescale_betas_zero_snr": scheduler.get("rescale_betas_zero_snr", False),
            "sampler": sampler,
            "num_inference_steps": index.get("default_num_inference_steps", 8),
            "sampler_timestep_prob": run_scheduler.get("sampler_timestep_prob", 0.0),
        },
    }
    if text_encoder is not None and cfg["text_kind"] is None:
        logger.warning("%s: a text encoder but no training run config says which text it was trained on; "
                       "text_kind left unset", folder)
    config = SimulatorConfig.from_dict(cfg)
    rebuilt = config.to_dict()["denoiser"]
    differ = {k: (v, rebuilt.get(k)) for k, v in public(denoiser).items() if rebuilt.get(k) != v}
    if differ:  # a field the saved folder has (older folders lack later fields, which take their defaults)
        raise MMSimError(f"{folder}: the rebuilt simulator config does not reproduce denoiser/config.json: "
                         f"{differ} (saved, rebuilt)")
    return config.to_dict()


def _training_recipe(folder: Path) -> dict | None:
    run = _training_config(folder)
    if run is None:
        return None
    from mmsim_core.presets import TRAINING_RECIPE_KEYS

    return {k: run[k] for k in TRAINING_RECIPE_KEYS if k in run}


def convert_legacy_pipeline(src: str | Path, dst: str | Path) -> Path:
    """Write the converted copy of legacy pipeline folder ``src`` to ``dst`` (see the module doc)."""
    from mmsim_core.presets import SIMULATOR_CONFIG_FILE, SIMULATOR_CONFIG_FORMAT

    src, dst = Path(src), Path(dst)
    if not is_legacy(src):
        raise MMSimError(f"{src}: not a legacy pipeline folder (it already has the action_warp component)")
    if dst.exists():
        raise MMSimError(f"{dst}: already exists; choose a new folder for the converted pipeline")
    shutil.copytree(src, dst)
    index = _read(dst / "model_index.json")
    encoder = _read(dst / "action_encoder" / "config.json")
    denoiser = _read(dst / "denoiser" / "config.json")

    # 1. Split the action encoder's config and weights.
    warp_fields = {new: encoder.pop(old) for old, new in WARP_FIELDS.items() if old in encoder}
    encoder.pop("context_steps", None)
    weights = load_file(str(dst / "action_encoder" / WEIGHTS))
    warp_weights = {k: v for k, v in weights.items() if k.startswith(WARP_PREFIXES)}
    encoder_weights = {k: v for k, v in weights.items() if not k.startswith(WARP_PREFIXES)}

    from mmsim_core.models.action_warp import ActionWarpConfig

    warp = None
    if warp_fields:
        warp_cfg = ActionWarpConfig(**warp_fields, modalities=tuple(encoder["modalities"]),
                                    context_steps=denoiser["context_frames"], sample_size=denoiser["sample_size"])
        if warp_cfg.builds_anything:
            from mmsim_core.configuration import to_dict

            warp = to_dict(warp_cfg)
    if warp is None and warp_weights:
        raise MMSimError(f"{src}: action encoder weights {sorted(warp_weights)[:3]} but no part of the action warp "
                         "is configured")
    _write(dst / "action_encoder" / "config.json", encoder)
    save_file(encoder_weights, str(dst / "action_encoder" / WEIGHTS))
    if warp is not None:
        (dst / "action_warp").mkdir()
        _write(dst / "action_warp" / "config.json", {"_class_name": "ActionWarp", **warp})
        save_file(warp_weights, str(dst / "action_warp" / WEIGHTS))
        index["action_warp"] = ["mmsim_core.models.action_warp.model", "ActionWarp"]
    else:
        index["action_warp"] = [None, None]
    _write(dst / "model_index.json", index)

    # 2. The denoiser's deleted option.
    norm = denoiser.pop("condition_norm", "none")
    if norm != "none":
        raise MMSimError(f"{src}: denoiser condition_norm={norm!r} is no longer supported; only 'none' converts")
    if denoiser.get("target") == "residual":
        raise MMSimError(f"{src}: denoiser target='residual' is no longer supported; only 'frames' and "
                         "'warped_residual' convert")
    _write(dst / "denoiser" / "config.json", denoiser)

    # 3. The simulator config all loaders read.
    record = {"format": SIMULATOR_CONFIG_FORMAT,
              "simulator": _simulator_config(dst, index, encoder, warp)}
    recipe = _training_recipe(src)
    if recipe is not None:
        record["training"] = recipe
    _write(dst / SIMULATOR_CONFIG_FILE, record)
    return dst


@contextlib.contextmanager
def converted_legacy_folder(folder: str | Path):
    """``folder`` itself, or for a legacy folder a converted copy that lives while the context is open."""
    if not is_legacy(folder):
        yield str(folder)
        return
    logger.info("%s was saved before the action warp was its own component; converting it on the fly "
                "(`mmsim convert %s NEW` writes the converted folder once)", folder, folder)
    with tempfile.TemporaryDirectory(prefix="mmsim-convert-") as tmp:
        yield str(convert_legacy_pipeline(folder, Path(tmp) / "pipeline"))


__all__ = ["convert_legacy_pipeline", "converted_legacy_folder", "is_legacy"]
