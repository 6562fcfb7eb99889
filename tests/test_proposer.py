"""The action proposer: model shapes, the pipeline's samples and contract, save/load, training from the CLI."""

import json

import numpy as np
import pytest
import torch

from mmsim_cli import main
from mmsim_core import schema
from mmsim_core.data import ClipDataset
from mmsim_core.errors import ActionInputError, MMSimError
from mmsim_core.policies.proposer import ActionProposalPipeline, ActionProposer, valid_range
from mmsim_core.policies.scorers import FrameEmbeddingScorer, VLMGoalScorer
from mmsim_core.synth.world import VALID_RANGE
from mmsim.training.proposer import WIDTHS

K = 4


@pytest.fixture(scope="module")
def clips(synth):
    ds = ClipDataset(synth, "test")
    items = [ds[0], ds[len(ds) - 1]]
    return {
        "stats": ds.stats,
        "context": np.stack([it["context"] for it in items]),  # (2, 4, 64, 64, 3)
        "history": {n: np.stack([it["actions"][n][:4] for it in items]) for n in schema.MODALITY_NAMES},
        "text": [it["text"]["phrase"] for it in items],
        "goal": np.stack([it["future"][-1] for it in items]),  # (2, 64, 64, 3)
    }


@pytest.fixture(scope="module")
def pipe(clips):
    torch.manual_seed(0)
    p = ActionProposalPipeline.untrained(clips["stats"], **WIDTHS["tiny"])
    p.set_progress_bar_config(disable=True)
    return p


def _propose(pipe, clips, seed=0, **kw):
    args = dict(context=clips["context"], history=clips["history"], text=clips["text"], goal=clips["goal"],
                num_samples=K, generator=torch.Generator().manual_seed(seed))
    args.update(kw)
    return pipe(**args).actions


def test_denoiser_shapes_and_both_context_settings():
    for n_ctx in (1, 4):
        model = ActionProposer(context_frames=n_ctx, **WIDTHS["tiny"])
        B = 3
        obs = model.encode_observation(torch.randn(B, 4, 3, 64, 64), torch.rand(B, 4, schema.ACTION_DIM),
                                       ["cut cucumber", "", "open jar"], torch.randn(B, 3, 64, 64))
        assert obs.shape == (B, model.config.cond_dim)
        out = model(torch.randn(B, 8, schema.ACTION_DIM), torch.tensor([0, 50, 99]), obs)
        assert out.shape == (B, 8, schema.ACTION_DIM) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="context_frames"):
        ActionProposer(context_frames=5)


def test_samples_are_valid_simulator_and_oracle_inputs(pipe, clips):
    acts = _propose(pipe, clips)
    assert set(acts) == set(schema.MODALITY_NAMES)
    for n, v in acts.items():
        assert v.shape == (2, K, 12, *schema.MODALITIES[n].shape) and v.dtype == np.float32
        assert np.isfinite(v).all()
        lo, hi = valid_range(n)
        assert v[:, :, 4:].min() >= lo and v[:, :, 4:].max() <= hi
        # the history is copied exactly into every sample's first four steps
        np.testing.assert_array_equal(v[:, :, :4], np.broadcast_to(clips["history"][n][:, None], v[:, :, :4].shape))
        # the K samples of a clip differ (independent noise)
        assert not np.allclose(v[:, 0, 4:], v[:, 1, 4:])
        # raw values are inside what the world renders (the oracle clips nothing)
        raw = schema.denormalize(n, v, clips["stats"])
        assert raw.min() >= VALID_RANGE[n][0] - 1e-3 and raw.max() <= VALID_RANGE[n][1] + 1e-3
    # same generator, same samples
    again = _propose(pipe, clips)
    assert all(np.array_equal(acts[n], again[n]) for n in acts)


def test_text_and_goal_are_optional_and_change_the_samples(pipe, clips):
    full = _propose(pipe, clips)
    for kw in ({"text": None}, {"goal": None}, {"text": None, "goal": None}):
        out = _propose(pipe, clips, **kw)
        assert out["hand_force"].shape == full["hand_force"].shape
        assert not np.array_equal(out["hand_pose"], full["hand_pose"])  # a null embedding is another condition
    one = _propose(pipe, clips, num_samples=1, num_inference_steps=3)
    assert one["emg"].shape == (2, 1, 12, 2, 8)


def test_eta_draws_fresh_noise_reproducibly(pipe, clips):
    """eta > 0: DDIM adds fresh noise at every step from the same generator: other samples than eta = 0 from the
    same initial noise, still valid and still the same for the same seed."""
    det, sto = _propose(pipe, clips), _propose(pipe, clips, eta=1.0)
    assert not np.array_equal(det["hand_pose"], sto["hand_pose"])
    again = _propose(pipe, clips, eta=1.0)
    assert all(np.array_equal(sto[n], again[n]) for n in sto)
    for n, v in sto.items():
        lo, hi = valid_range(n)
        assert np.isfinite(v).all() and v[:, :, 4:].min() >= lo and v[:, :, 4:].max() <= hi


def test_save_and_load_round_trip(pipe, clips, tmp_path):
    pipe.save_pretrained(tmp_path / "prop")
    assert (tmp_path / "prop" / "normalization.json").is_file()
    loaded = ActionProposalPipeline.from_pretrained(tmp_path / "prop")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.proposer.config.context_frames == pipe.proposer.config.context_frames
    assert loaded.normalization_stats.to_dict() == clips["stats"].to_dict()
    a, b = _propose(pipe, clips), _propose(loaded, clips)
    assert all(np.array_equal(a[n], b[n]) for n in a)
    with pytest.raises(MMSimError, match="not an action proposer folder"):
        ActionProposalPipeline.from_pretrained(tmp_path / "missing")


def test_bad_inputs_name_the_argument(pipe, clips):
    bad = [
        ({"context": clips["context"][:, :3]}, "context must have shape"),
        ({"context": clips["context"].astype(np.float32)}, "context must be uint8"),
        ({"history": {n: v for n, v in clips["history"].items() if n != "emg"}}, "missing \\['emg'\\]"),
        ({"history": {**clips["history"], "emg": clips["history"]["emg"][:, :2]}},
         "history\\['emg'\\] must have shape"),
        ({"history": {**clips["history"], "emg": np.full_like(clips["history"]["emg"], np.nan)}}, "NaN"),
        ({"history": {**clips["history"], "smell": clips["history"]["emg"]}}, "unknown modality 'smell'"),
        ({"text": "cut"}, "text must be a list of strings"),
        ({"text": ["cut"]}, "text has 1 strings"),
        ({"goal": clips["goal"][:1]}, "goal has 1 frames"),
        ({"goal": clips["goal"][:, :32]}, "goal must have shape"),
        ({"num_samples": 0}, "num_samples"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"eta": 1.5}, "eta must be a number in \\[0, 1\\]"),
    ]
    for kw, message in bad:
        with pytest.raises(ActionInputError, match=message):
            _propose(pipe, clips, **kw)


def test_frame_embedding_scorer_ranks_the_goal_frame_first(untrained_checkpoint, clips):
    from mmsim_core import MultisensoryVideoPipeline

    sim = MultisensoryVideoPipeline.from_pretrained(untrained_checkpoint)
    goal = clips["goal"][0]
    candidates = np.stack([clips["context"][1, 0], goal, 255 - goal])
    for metric in ("cosine", "l2"):
        s = FrameEmbeddingScorer(sim, metric=metric).score(candidates, goal)
        assert s.shape == (3,) and np.isfinite(s).all() and int(np.argmax(s)) == 1
    per_frame = FrameEmbeddingScorer(sim).score(candidates, np.stack([goal] * 3))
    assert per_frame[1] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ActionInputError, match="frames_end must be uint8"):
        FrameEmbeddingScorer(sim).score(candidates.astype(np.float32), goal)


def test_vlm_scorer_without_weights_says_what_to_use(tmp_path):
    with pytest.raises(MMSimError, match="cannot be downloaded here.*embedding"):
        VLMGoalScorer(None)
    with pytest.raises(MMSimError, match="does not exist"):
        VLMGoalScorer(tmp_path / "no_vlm")


def test_train_command_writes_log_final_pipeline_and_resumes(synth, clips, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["proposer", "train", "--data", str(synth), "--out", str(out), "--width", "tiny", "--batch-size", "4",
            "--log-every", "2", "--checkpoint-every", "3"]
    assert main(args + ["--max-steps", "4"]) == 0, capsys.readouterr().err
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4] and all(np.isfinite(r["loss"]) for r in log)
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 4
    prop = ActionProposalPipeline.from_pretrained(out / "final")
    prop.set_progress_bar_config(disable=True)
    acts = _propose(prop, clips, text=None)
    assert np.isfinite(acts["hand_pose"]).all()
    # a second run into the same folder needs --resume; with it, training continues from step 4
    assert main(args + ["--max-steps", "6"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--max-steps", "6", "--resume"]) == 0
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [2, 4, 6]


def test_train_command_errors_are_one_line(synth, tmp_path, capsys):
    base = ["proposer", "train", "--data", str(synth), "--out", str(tmp_path / "r")]
    for extra, message, code in ((["--bogus"], "unrecognized arguments: --bogus", 2),
                                 (["--lr", "-1"], "--lr must be", 2),
                                 (["--width", "huge"], "--width must be one of", 2),
                                 (["--drop-text", "2"], "--drop-text must be in [0, 1]", 2)):
        assert main(base + extra) == code
        err = capsys.readouterr().err
        assert "Traceback" not in err and message in err and len(err.strip().splitlines()) == 1, err
    assert main(["proposer", "train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
