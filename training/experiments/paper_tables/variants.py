"""Every conditioning variant of the paper as a config, and every table row as (variant, test protocol).

    from mmsim.training.experiments.paper_tables.variants import VARIANTS, TABLES, train_config
    cfg = train_config(VARIANTS["fusion-max"], base_cfg, data_dir, out_dir)   # a TrainConfig
    for row in TABLES["table3a"]: print(row.name, row.variant, row.drop)

A *variant* is one trained model: which action modalities it sees, text conditioning, model overrides
(``SimulatorConfig`` fields, e.g. ``feature_extractor`` or ``action_encoder.fusion``) and which data it
trains on (the main split, the same clips with one context frame, or another held-out subject). A *row*
is a line of a paper table: a variant plus the test-time protocol (modalities dropped or kept), with
the paper's own numbers beside it. Test-time ablations (Tables 3a, 9, 10) reuse the one trained
"Ours" model, as in the paper; Table 8 trains one model per ablated modality.

Everything else — preset, steps, batch size, learning rate, schedule, EMA, seed — comes from ONE base
``TrainConfig`` shared by all variants: no variant gets more budget or tuning than another. The only
per-variant difference besides the method is ``modality_drop`` (random removal of some modalities of
a sample, for robustness to missing sensors): it applies to variants with two or more sensory
modalities and is 0 for single-modality and text-only variants, where dropping the one signal would
only duplicate the condition dropout every variant already has.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmsim_core import schema
from mmsim_core.configuration import nested_update
from mmsim_core.errors import DatasetError
from mmsim.training.config import TrainConfig

MAIN = "main"
CONTEXT1 = "context1"
HOLDOUT = "holdout:"  # + subject id, e.g. "holdout:S02"

ALL = schema.MODALITY_NAMES
HP, BP, EMG, HF = "hand_pose", "body_pose", "emg", "hand_force"
MODALITY_LABELS = {HP: "Hand pose", BP: "Body pose", EMG: "Muscle EMG", HF: "Hand force"}


@dataclass(frozen=True)
class Variant:
    """One trained model."""

    key: str
    """Run folder name (slug)."""
    description: str
    modalities: tuple[str, ...] = ALL
    text_kind: str | None = None
    model: dict = field(default_factory=dict)
    """``SimulatorConfig`` overrides, nested dicts for its parts."""
    data: str = MAIN
    """"main" | "context1" (the main clips cut to their last context frame) | "holdout:SXX"."""

    def __post_init__(self):
        schema.check_modality_names(self.modalities)
        if self.text_kind is not None and self.text_kind not in schema.TEXT_KINDS:
            raise ValueError(f"text_kind must be one of {list(schema.TEXT_KINDS)}, got {self.text_kind!r}")
        if not self.modalities and self.text_kind is None:
            raise ValueError(f"variant {self.key!r}: no modalities and no text")
        if self.data not in (MAIN, CONTEXT1) and not self.data.startswith(HOLDOUT):
            raise ValueError(f"variant {self.key!r}: data must be 'main', 'context1' or 'holdout:SXX', got {self.data!r}")


@dataclass(frozen=True)
class Row:
    """One line of a paper table: a trained variant evaluated under a test-time protocol."""

    table: str
    name: str
    """As printed in the paper."""
    variant: str
    drop: tuple[str, ...] = ()
    keep: tuple[str, ...] | None = None
    paper: dict | None = None
    """The paper's numbers {mse, psnr, lpips, fvd}; None for rows the paper does not print."""
    note: str = ""

    @property
    def protocol(self) -> str:
        """A slug naming the test-time protocol (evaluation cache key)."""
        if self.keep is not None:
            return "keep-" + "+".join(self.keep)
        if self.drop:
            return "drop-" + "+".join(self.drop)
        return "all"


def _v(key, description, **kw) -> Variant:
    return Variant(key=key, description=description, **kw)


# ----------------------------------------------------------------------------------------------
# The variants (30 trained models)
# ----------------------------------------------------------------------------------------------
_VARIANTS = [
    _v("ours", "ours: all four modalities, anchoring, softmax fusion, hyperplane y°, action history"),
    # Table 1: text (UniSim-style), each modality alone, ours + text
    *[_v(f"unisim-{k}", f"UniSim-style: conditioned on the clip's {k} only", modalities=(), text_kind=k)
      for k in schema.TEXT_KINDS],
    *[_v(f"only-{m.replace('_', '-')}", f"{MODALITY_LABELS[m]} alone, our encoder", modalities=(m,)) for m in ALL],
    _v("ours-phrase", "ours + the phrase as a fifth (text) expert", text_kind="phrase"),
    _v("ours-sentence", "ours + the sentence as a fifth (text) expert", text_kind="sentence"),
    # Table 2: feature extractors
    _v("mutex", "MUTEX masked modelling + L2 matching to frame features", model={"feature_extractor": "mutex"}),
    _v("imagebind", "ImageBind InfoNCE binding to frame features", model={"feature_extractor": "imagebind"}),
    _v("languagebind", "LanguageBind InfoNCE binding to the sentence's text features (text not used at test)",
       text_kind="sentence", model={"feature_extractor": "languagebind"}),
    _v("signal-agnostic", "one shared neural-field point-set encoder, no experts",
       model={"feature_extractor": "signal_agnostic"}),
    # Table 3b: components
    _v("fusion-max", "max fusion", model={"action_encoder": {"fusion": "max"}}),
    _v("fusion-mean", "mean fusion", model={"action_encoder": {"fusion": "mean"}}),
    _v("fusion-concat", "concatenation fusion", model={"action_encoder": {"fusion": "concat"}}),
    _v("no-interaction", "condition on y (no latent interaction)", model={"action_encoder": {"interaction": "none"}}),
    _v("projection-interaction", "hard projection y°", model={"action_encoder": {"interaction": "projection"}}),
    _v("no-anchoring", "no cross-modal anchoring", model={"action_encoder": {"anchoring": "none"}}),
    # Table 8: training with one modality removed
    *[_v(f"train-no-{m.replace('_', '-')}", f"trained without {MODALITY_LABELS[m].lower()}",
         modalities=tuple(x for x in ALL if x != m)) for m in ALL],
    # Table 11: history horizon. h(x)=1: one context frame; "a": the denoiser also attends to the history
    # steps' action features (our action encoder is per step, so history actions reach the frames only
    # through that attention).
    _v("unisim-phrase-h1", "UniSim phrase with one context frame", modalities=(), text_kind="phrase", data=CONTEXT1,
       model={"context_frames": 1}),
    _v("ours-h1", "ours, one context frame, no action history", data=CONTEXT1,
       model={"context_frames": 1, "denoiser": {"use_action_history": False}}),
    _v("ours-h1-history", "ours, one context frame, with its action step as history", data=CONTEXT1,
       model={"context_frames": 1}),
    _v("ours-no-history", "ours, four context frames, no action history",
       model={"denoiser": {"use_action_history": False}}),
    # Table 12: cross-subject
    _v("ours-holdout-S02", "ours, subject S02 held out", data=HOLDOUT + "S02"),
    _v("ours-holdout-S04", "ours, subject S04 held out", data=HOLDOUT + "S04"),
]
VARIANTS: dict[str, Variant] = {v.key: v for v in _VARIANTS}
assert len(VARIANTS) == len(_VARIANTS), "variant keys must be unique"


# ----------------------------------------------------------------------------------------------
# The paper's numbers (MSE, PSNR, LPIPS, FVD)
# ----------------------------------------------------------------------------------------------
def _p(mse, psnr, lpips, fvd) -> dict:
    return {"mse": mse, "psnr": psnr, "lpips": lpips, "fvd": fvd}


OURS_PAPER = _p(0.110, 16.0, 0.276, 203.5)


def _row(table, name, variant, paper=None, **kw) -> Row:
    return Row(table=table, name=name, variant=variant, paper=paper, **kw)


def _pair_name(a: str, b: str) -> str:
    return f"{MODALITY_LABELS[a].replace('pose', 'Pose').replace('force', 'Force')} and " \
           f"{MODALITY_LABELS[b].replace('pose', 'Pose').replace('force', 'Force')}"


_ROWS = [
    # Table 1. Quantitative comparison
    _row("table1", "UniSim verb", "unisim-verb", _p(0.131, 14.1, 0.332, 337.9)),
    _row("table1", "UniSim phrase", "unisim-phrase", _p(0.118, 14.6, 0.321, 275.9)),
    _row("table1", "UniSim sentence", "unisim-sentence", _p(0.117, 14.6, 0.317, 251.7)),
    _row("table1", "Body-pose only", "only-body-pose", _p(0.127, 14.4, 0.345, 295.9)),
    _row("table1", "Hand-pose only", "only-hand-pose", _p(0.122, 14.5, 0.349, 307.6)),
    _row("table1", "Muscle-EMG only", "only-emg", _p(0.134, 13.8, 0.364, 348.2)),
    _row("table1", "Hand-force only", "only-hand-force", _p(0.120, 14.5, 0.334, 278.9)),
    _row("table1", "Ours multisensory", "ours", OURS_PAPER),
    _row("table1", "Ours w/ phrase", "ours-phrase", _p(0.113, 16.0, 0.274, 200.4)),
    _row("table1", "Ours w/ sentence", "ours-sentence", _p(0.111, 16.0, 0.274, 201.7)),
    # Table 2. Multimodal feature extraction
    _row("table2", "Mutex", "mutex", _p(0.164, 12.4, 0.431, 410.1)),
    _row("table2", "Imagebind", "imagebind", _p(0.134, 13.9, 0.390, 315.6)),
    _row("table2", "Languagebind", "languagebind", _p(0.143, 13.7, 0.387, 332.0)),
    _row("table2", "Signal Agnostic", "signal-agnostic", _p(0.127, 14.3, 0.361, 267.5)),
    _row("table2", "Ours", "ours", OURS_PAPER),
    # Table 3a. Testing with missing modalities (the one "Ours" model)
    _row("table3a", "No hand pose", "ours", _p(0.111, 15.3, 0.304, 205.1), drop=(HP,)),
    _row("table3a", "No hand force", "ours", _p(0.113, 15.5, 0.307, 205.0), drop=(HF,)),
    _row("table3a", "No body pose", "ours", _p(0.115, 15.3, 0.304, 205.6), drop=(BP,)),
    _row("table3a", "No muscle EMG", "ours", _p(0.113, 15.2, 0.291, 204.7), drop=(EMG,)),
    _row("table3a", "All sensory used", "ours", OURS_PAPER),
    # Table 3b. Network components
    _row("table3b", "Max", "fusion-max", _p(0.128, 14.1, 0.294, 284.8)),
    _row("table3b", "Mean", "fusion-mean", _p(0.126, 14.4, 0.293, 285.3)),
    _row("table3b", "Concatenation", "fusion-concat", _p(0.117, 15.0, 0.282, 279.9)),
    _row("table3b", "Without y°", "no-interaction", _p(0.142, 13.7, 0.327, 339.0)),
    _row("table3b", "Projection y°", "projection-interaction", _p(0.116, 14.5, 0.288, 265.5)),
    _row("table3b", "Ours full", "ours", OURS_PAPER),
    _row("table3b", "Without anchoring", "no-anchoring", None, note="ours, not in the paper"),
    # Table 8. Training with ablated modalities
    _row("table8", "No hand pose", "train-no-hand-pose", _p(0.138, 14.1, 0.314, 264.0)),
    _row("table8", "No hand force", "train-no-hand-force", _p(0.129, 14.5, 0.317, 256.3)),
    _row("table8", "No body pose", "train-no-body-pose", _p(0.137, 14.5, 0.322, 273.1)),
    _row("table8", "No muscle EMG", "train-no-emg", _p(0.121, 15.2, 0.311, 217.1)),
    _row("table8", "All sensory used", "ours", OURS_PAPER),
    # Table 9. Testing with a single modality (the one "Ours" model)
    _row("table9", "Hand pose", "ours", _p(0.121, 14.6, 0.309, 210.2), keep=(HP,)),
    _row("table9", "Hand force", "ours", _p(0.117, 14.7, 0.307, 208.0), keep=(HF,)),
    _row("table9", "Body pose", "ours", _p(0.123, 14.6, 0.310, 210.5), keep=(BP,)),
    _row("table9", "Muscle EMG", "ours", _p(0.132, 13.9, 0.312, 214.8), keep=(EMG,)),
    _row("table9", "All sensory used", "ours", OURS_PAPER),
    # Table 10. Testing with pairs (the paper prints four of the six pairs)
    _row("table10", _pair_name(HP, HF), "ours", _p(0.115, 14.9, 0.304, 206.4), keep=(HP, HF)),
    _row("table10", _pair_name(BP, EMG), "ours", _p(0.122, 14.6, 0.309, 210.1), keep=(BP, EMG)),
    _row("table10", _pair_name(HF, EMG), "ours", _p(0.117, 14.7, 0.307, 207.6), keep=(EMG, HF)),
    _row("table10", _pair_name(HP, BP), "ours", _p(0.113, 15.0, 0.297, 206.2), keep=(HP, BP)),
    _row("table10", _pair_name(HP, EMG), "ours", None, keep=(HP, EMG), note="pair not printed in the paper"),
    _row("table10", _pair_name(BP, HF), "ours", None, keep=(BP, HF), note="pair not printed in the paper"),
    _row("table10", "All sensory used", "ours", OURS_PAPER),
    # Table 11. History horizon
    _row("table11", "Unisim h(x) = 1", "unisim-phrase-h1", _p(0.177, 12.7, 0.408, 674.9)),
    _row("table11", "Unisim h(x) =4", "unisim-phrase", _p(0.118, 14.6, 0.321, 275.9)),
    _row("table11", "Ours h(x) =1", "ours-h1", _p(0.142, 12.9, 0.362, 535.1)),
    _row("table11", "Ours h(x,a)=1", "ours-h1-history", _p(0.138, 12.7, 0.356, 529.1)),
    _row("table11", "Ours h(x) =4", "ours-no-history", _p(0.114, 15.4, 0.306, 256.3)),
    _row("table11", "Ours h(x,an) =4", "ours", OURS_PAPER),
    # Table 12. Cross-subject testing ("subject5" is the main hold-out)
    _row("table12", "subject2", "ours-holdout-S02", _p(0.115, 15.8, 0.301, 206.7)),
    _row("table12", "subject4", "ours-holdout-S04", _p(0.112, 16.0, 0.282, 204.6)),
    _row("table12", "subject5", "ours", OURS_PAPER),
]

TABLE_TITLES = {
    "table1": "Table 1. Conditioning modalities: text, single modality, multisensory",
    "table2": "Table 2. Multimodal feature extraction",
    "table3a": "Table 3a. Testing with missing modalities",
    "table3b": "Table 3b. Ablation of network components",
    "table8": "Table 8. Training with ablated modalities",
    "table9": "Table 9. Testing with a single modality available",
    "table10": "Table 10. Testing with paired modalities available",
    "table11": "Table 11. Effects of history horizon length",
    "table12": "Table 12. Cross-subject testing",
}
TABLE_KEYS = tuple(TABLE_TITLES)
TABLES: dict[str, list[Row]] = {t: [r for r in _ROWS if r.table == t] for t in TABLE_KEYS}
for _r in _ROWS:
    if _r.variant not in VARIANTS:
        raise AssertionError(f"row {_r.name!r} of {_r.table} names unknown variant {_r.variant!r}")


def parse_tables(only: str | None) -> tuple[str, ...]:
    """``"table1,table3a"`` -> ("table1", "table3a") in paper order; None/"" -> all tables."""
    if not only:
        return TABLE_KEYS
    wanted = [t.strip().lower() for t in only.replace(" ", ",").split(",") if t.strip()]
    unknown = [t for t in wanted if t not in TABLE_TITLES]
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; tables are {list(TABLE_KEYS)}")
    return tuple(t for t in TABLE_KEYS if t in wanted)


def rows(tables=TABLE_KEYS) -> list[Row]:
    return [r for t in tables for r in TABLES[t]]


def variants_for(tables=TABLE_KEYS) -> list[Variant]:
    """The variants the given tables need, each once, in registry order."""
    needed = {r.variant for r in rows(tables)}
    return [v for v in _VARIANTS if v.key in needed]


# ----------------------------------------------------------------------------------------------
# Variant -> TrainConfig
# ----------------------------------------------------------------------------------------------
def train_config(variant: Variant, base: TrainConfig, data: str | Path, out: str | Path) -> TrainConfig:
    """The base config with this variant's modalities, text and model overrides (budget untouched)."""
    d = asdict(base)
    d["model"] = nested_update(d["model"], copy.deepcopy(variant.model))
    action_warp = d["model"].get("action_warp") or {}
    if action_warp.get("context_motion") and d["model"].get("context_frames", schema.CONTEXT_FRAMES) < 2:
        # One context frame shows no motion to measure: the h=1 rows of Table 11 lose it with the history,
        # which is part of what they measure.
        d["model"]["action_warp"] = {**action_warp, "context_motion": False}
    d["modalities"] = tuple(variant.modalities)
    d["text_kind"] = variant.text_kind
    d["modality_drop"] = base.modality_drop if len(variant.modalities) >= 2 else 0.0
    d["data"] = str(data)
    d["out"] = str(out)
    return TrainConfig(**d)


# ----------------------------------------------------------------------------------------------
# Derived data: the main clips with fewer context frames (Table 11, h = 1)
# ----------------------------------------------------------------------------------------------
def slice_context(src: str | Path, dst: str | Path, context: int) -> dict:
    """Write ``dst``: the processed clips of ``src`` keeping only their last ``context`` context frames
    (and action steps), so that h=1 and h=4 models predict exactly the same future frames of the same
    clips. Statistics, text and splits are those of ``src``. Returns the new manifest."""
    import h5py

    from mmsim_core.data.dataset import MANIFEST_NAME, load_manifest

    src, dst = Path(src), Path(dst)
    manifest = load_manifest(src)
    h = int(manifest["clip"]["context"])
    if not 1 <= context <= h:
        raise DatasetError(f"context must be in [1, {h}] for {src} (its clips have {h} context frames), got {context}")
    cut = h - context
    dst.mkdir(parents=True, exist_ok=True)
    (dst / manifest["stats"]).write_bytes((src / manifest["stats"]).read_bytes())
    for split in manifest["splits"].values():
        for sh in split["shards"]:
            out_path = dst / sh["file"]
            out_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = out_path.with_suffix(".tmp")
            with h5py.File(src / sh["file"], "r") as fin, h5py.File(tmp, "w") as fout:
                for k, v in fin.attrs.items():
                    fout.attrs[k] = v

                def copy_item(name, obj):
                    if not isinstance(obj, h5py.Dataset):
                        return
                    data = obj[()]
                    if name == "frames" or name.startswith("actions/"):
                        data = data[:, cut:]  # (N, context+F, ...)
                        chunks = (1,) + data.shape[1:]
                        fout.create_dataset(name, data=data, chunks=chunks, compression=obj.compression)
                    elif name == "meta":
                        metas = [json.loads(m) for m in obj.asstr()[()]]
                        for m in metas:
                            if "video_frame_indices" in m:
                                m["video_frame_indices"] = m["video_frame_indices"][cut:]
                        fout.create_dataset(name, data=[json.dumps(m) for m in metas], dtype=h5py.string_dtype("utf-8"))
                    elif obj.dtype.kind == "O":
                        fout.create_dataset(name, data=obj.asstr()[()], dtype=h5py.string_dtype("utf-8"))
                    else:
                        fout.create_dataset(name, data=data)

                fin.visititems(copy_item)
            tmp.rename(out_path)
    new = copy.deepcopy(manifest)
    new["clip"]["context"] = context
    new["config"] = {**new.get("config", {}), "context": context}
    new["derived_from"] = {"path": str(src), "context_frames_kept": context, "of": h}
    (dst / MANIFEST_NAME).write_text(json.dumps(new, indent=1))
    return new


__all__ = [
    "CONTEXT1", "HOLDOUT", "MAIN", "OURS_PAPER", "Row", "TABLES", "TABLE_KEYS", "TABLE_TITLES", "VARIANTS",
    "Variant", "parse_tables", "rows", "slice_context", "train_config", "variants_for",
]
