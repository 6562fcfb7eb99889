"""Counterfactual recordings (same scene, edited actions) through reader, preprocess, ClipDataset,
training config and evaluation: marked in every clip's meta, selectable away with observational_only."""

import json
import shutil

import h5py
import pytest

from fixtures.recordings import write_dataset, write_recording
from mmsim_core.data import ClipDataset
from mmsim_core.data.actionsense import ActionSenseRecording
from mmsim_core.data.preprocess import PreprocessConfig, preprocess
from mmsim_core.errors import RecordingError

EDITS = [{"family": "squeeze", "start_s": 1.0, "end_s": 2.5, "strength": 1.2, "side": None}]


def _counterfactual_of(source, folder, seed=7):
    """A recording of the same subject with other actions, marked as a counterfactual of ``source``."""
    subject = source.name.rsplit("_", 1)[1].removesuffix(".hdf5")
    path = write_recording(folder, subject=subject, seconds=4.0, seed=seed, stamp="2022-06-07_17-18-17")
    with h5py.File(path, "a") as f:
        f.attrs["counterfactual"] = json.dumps({"source": source.name, "edits": EDITS})
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Observational S01/S02 plus one counterfactual of S01 in counterfactual/, preprocessed; and the same
    without the counterfactual (the statistics must not change)."""
    base = tmp_path_factory.mktemp("counterfactual")
    sources = write_dataset(base / "raw", subjects=("S01", "S02"), seconds=4.0)
    shutil.copytree(base / "raw", base / "raw_obs")
    cf = _counterfactual_of(sources[0], base / "raw" / "counterfactual")
    cfg = PreprocessConfig(frame_steps=(1,), stride=6, workers=1, test_subjects=("S02",))
    preprocess(base / "raw", base / "proc", cfg)
    preprocess(base / "raw_obs", base / "proc_obs", cfg)
    return {"base": base, "source": sources[0], "cf": cf}


def test_reader_exposes_the_counterfactual_attribute(mixed, tmp_path):
    with ActionSenseRecording(mixed["cf"]) as rec:
        assert rec.counterfactual == {"source": mixed["source"].name, "edits": EDITS}
    with ActionSenseRecording(mixed["source"]) as rec:
        assert rec.counterfactual is None
    bad = tmp_path / mixed["cf"].name
    shutil.copy(mixed["cf"], bad)
    with h5py.File(bad, "a") as f:
        f.attrs["counterfactual"] = "{not json"
    with ActionSenseRecording(bad) as rec, pytest.raises(RecordingError, match="'counterfactual' is not valid JSON"):
        rec.counterfactual
    with h5py.File(bad, "a") as f:
        f.attrs["counterfactual"] = json.dumps({"edits": []})
    with ActionSenseRecording(bad) as rec, pytest.raises(RecordingError, match="'source'"):
        rec.counterfactual


def test_every_clip_says_whether_it_is_counterfactual(mixed):
    proc = mixed["base"] / "proc"
    ds = ClipDataset(proc, "train")
    metas = [ds.clip_meta(i) for i in range(len(ds))]
    cf = [m for m in metas if m["counterfactual"] is not None]
    assert cf and all(m["counterfactual"]["source"] == mixed["source"].name for m in cf)
    assert all(m["counterfactual"]["edits"] == EDITS for m in cf)
    assert all(m["source"] == str(mixed["cf"].resolve()) for m in cf)
    assert len(cf) < len(metas)  # and observational ones with None
    manifest = json.loads((proc / "manifest.json").read_text())
    assert sorted(r["counterfactual"] for r in manifest["recordings"]["used"]) == [False, False, True]

    obs = ClipDataset(proc, "train", observational_only=True)
    assert len(obs) == len(metas) - len(cf) > 0
    items = [obs[i] for i in range(len(obs))]
    assert all(it["meta"]["counterfactual"] is None for it in items)
    assert [it["meta"]["index"] for it in items] == list(range(len(obs)))
    alone = ClipDataset(mixed["base"] / "proc_obs", "train")
    assert len(alone) == len(obs)
    for a, b in zip(items, (alone[i] for i in range(len(alone)))):  # the same clips, in the same order
        assert a["meta"]["video_frame_indices"] == b["meta"]["video_frame_indices"]
        assert (a["future"] == b["future"]).all()
    # Statistics come from observational recordings only: an observational model normalises the same.
    assert (proc / "normalization.json").read_text() == (mixed["base"] / "proc_obs" / "normalization.json").read_text()
    assert "observational_only=True" in repr(obs)
    assert len(ClipDataset(proc, "test", observational_only=True)) == len(ClipDataset(proc, "test"))


def test_training_and_evaluation_select_observational_clips(mixed, tmp_path):
    from mmsim.training.config import resolve_config
    from mmsim.training.evaluate import EvalConfig, evaluate

    assert resolve_config(overrides=["observational_only=true"]).observational_only is True
    assert resolve_config().observational_only is False
    with pytest.raises(ValueError, match="observational_only must be true or false"):
        resolve_config(overrides=["observational_only=3"])

    proc = str(mixed["base"] / "proc")
    # The train split holds the counterfactual clips: evaluating it with and without the option.
    both = evaluate(EvalConfig(checkpoint=None, data=proc, split="train", baseline="copy-last", lpips_net=None),
                    progress=False)
    obs = evaluate(EvalConfig(checkpoint=None, data=proc, split="train", baseline="copy-last", lpips_net=None,
                              observational_only=True), progress=False)
    assert obs["num_clips"] == len(ClipDataset(proc, "train", observational_only=True)) < both["num_clips"]
    assert obs["settings"]["observational_only"] is True and both["settings"]["observational_only"] is False


def test_evaluate_command_has_the_flag(mixed, tmp_path, capsys):
    from mmsim_cli import main

    out = tmp_path / "copy.json"
    code = main(["evaluate", str(mixed["base"] / "proc"), "--baseline", "copy-last", "--split", "train",
                 "--observational-only", "--no-lpips", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["num_clips"] == len(ClipDataset(mixed["base"] / "proc", "train",
                                                                       observational_only=True))
