"""The variant registry, the derived datasets, the margins and a tiny resumable `mmsim experiments paper-tables` run."""

import json

import numpy as np
import pytest
import torch

import mmsim.training.control
import mmsim.training.evaluate
import mmsim.training.experiments.margin_ceiling
import mmsim.training.train
from mmsim_core import schema
from mmsim_core.errors import MMSimError
from mmsim.training.config import resolve_config
from mmsim.training.experiments.paper_tables import variants as ex
from mmsim.training.experiments.paper_tables.cli import main
from mmsim.training.experiments.paper_tables.margins import margins
from mmsim.training.experiments.paper_tables.suite import (
    RESULTS_FORMAT,
    PaperTables,
    RowSkipped,
    SuiteConfig,
    logged_train_seconds,
)
from mmsim.training.experiments.targets import FEASIBLE_RATIO

PAPER_ROWS = {
    "table1": ["UniSim verb", "UniSim phrase", "UniSim sentence", "Body-pose only", "Hand-pose only",
               "Muscle-EMG only", "Hand-force only", "Ours multisensory", "Ours w/ phrase", "Ours w/ sentence"],
    "table2": ["Mutex", "Imagebind", "Languagebind", "Signal Agnostic", "Ours"],
    "table3a": ["No hand pose", "No hand force", "No body pose", "No muscle EMG", "All sensory used"],
    "table3b": ["Max", "Mean", "Concatenation", "Without y°", "Projection y°", "Ours full"],
    "table8": ["No hand pose", "No hand force", "No body pose", "No muscle EMG", "All sensory used"],
    "table9": ["Hand pose", "Hand force", "Body pose", "Muscle EMG", "All sensory used"],
    "table10": ["Hand Pose and Hand Force", "Body Pose and Muscle EMG", "Hand Force and Muscle EMG",
                "Hand Pose and Body Pose", "All sensory used"],
    "table11": ["Unisim h(x) = 1", "Unisim h(x) =4", "Ours h(x) =1", "Ours h(x,a)=1", "Ours h(x) =4",
                "Ours h(x,an) =4"],
    "table12": ["subject2", "subject4", "subject5"],
}  # fmt: skip


def test_every_paper_row_is_registered():
    assert ex.TABLE_KEYS == tuple(PAPER_ROWS)
    for table, names in PAPER_ROWS.items():
        got = [r.name for r in ex.TABLES[table]]
        assert [n for n in got if n in names] == names, table  # all present, in the paper's order
        for r in ex.TABLES[table]:
            assert (r.paper is None) == (r.name not in names), (table, r.name)  # extras carry no paper numbers
    assert "Without anchoring" in [r.name for r in ex.TABLES["table3b"]]  # our extra ablation
    # Test-time protocols reuse the one trained "Ours" model; Table 8 trains its own models.
    assert {r.variant for t in ("table3a", "table9", "table10") for r in ex.TABLES[t]} == {"ours"}
    assert all(r.keep is None and not r.drop for r in ex.TABLES["table8"])
    assert len({r.variant for r in ex.TABLES["table8"]}) == 5
    assert ex.TABLES["table3a"][0].drop == ("hand_pose",) and ex.TABLES["table9"][1].keep == ("hand_force",)
    assert len(ex.variants_for()) == len(ex.VARIANTS) == 30
    assert [v.key for v in ex.variants_for(("table3a", "table9"))] == ["ours"]


def test_context_motion_builds_for_every_variant_and_drops_out_with_one_context_frame():
    from mmsim.training.train import build_simulator

    torch.manual_seed(0)
    base = resolve_config("tiny", overrides=["model.action_warp.context_motion=true"])
    for key in ("ours", "mutex", "unisim-phrase", "ours-h1", "ours-h1-history", "unisim-phrase-h1"):
        v = ex.VARIANTS[key]
        cfg = ex.train_config(v, base, "data", "out")
        one_frame = v.data == ex.CONTEXT1  # a single frame shows no motion to measure
        assert cfg.model["action_warp"]["context_motion"] is (not one_frame), key
        warp = build_simulator(cfg).action_warp
        head = warp.ego_motion if warp is not None else None
        if one_frame and not v.modalities:  # text only and one frame: nothing for the head to read
            assert head is None, key
        else:
            assert head is not None and head.from_context is (not one_frame), key
    assert base.model["action_warp"]["context_motion"] is True  # the base config is left alone


def test_every_variant_builds_with_the_same_budget():
    from mmsim.training.train import build_simulator

    torch.manual_seed(0)
    base = resolve_config("tiny", modality_drop=0.2)
    kinds = set()
    for v in ex.VARIANTS.values():
        cfg = ex.train_config(v, base, "data", "out")
        assert (cfg.max_steps, cfg.batch_size, cfg.lr, cfg.preset, cfg.seed) == (
            base.max_steps, base.batch_size, base.lr, base.preset, base.seed)
        assert cfg.modality_drop == (0.2 if len(v.modalities) >= 2 else 0.0)
        sim = build_simulator(cfg)
        enc = sim.action_encoder
        assert tuple(enc.config.modalities) == v.modalities
        assert (sim.text_kind is not None) == (v.text_kind is not None)
        h = 1 if v.data == ex.CONTEXT1 else 4
        assert sim.denoiser.config.context_frames == h
        kinds.add((type(enc).__name__, getattr(enc.config, "fusion", None), getattr(enc.config, "interaction", None),
                   getattr(enc.config, "anchoring", None), sim.denoiser.config.use_action_history))
    names = {k[0] for k in kinds}
    assert names == {"MultisensoryActionEncoder", "MutexActionEncoder", "ImageBindActionEncoder",
                     "LanguageBindActionEncoder", "SignalAgnosticActionEncoder"}
    assert {k[1] for k in kinds} >= {"softmax", "mean", "max", "concat"}
    assert {k[2] for k in kinds} >= {"hyperplane", "projection", "none"}
    assert {k[3] for k in kinds} >= {"channel_attention", "none"} and {k[4] for k in kinds} == {True, False}
    with pytest.raises(ValueError, match="unknown table"):
        ex.parse_tables("table1,table7")
    assert ex.parse_tables("table3a, table1") == ("table1", "table3a")


def test_derived_data_context1_and_holdout(synth, tmp_path):
    from mmsim_core.data import ClipDataset

    suite = PaperTables(SuiteConfig(work=str(tmp_path / "w"), out=str(tmp_path / "o"), data=str(synth)))
    c1 = suite.data_for(ex.CONTEXT1)
    full, cut = ClipDataset(synth, "test"), ClipDataset(c1, "test")
    assert len(full) == len(cut) and cut.context_frames == 1
    a, b = full[3], cut[3]
    assert np.array_equal(a["future"], b["future"]) and np.array_equal(a["context"][-1:], b["context"])
    assert np.array_equal(a["actions"]["hand_pose"][3:], b["actions"]["hand_pose"])
    assert b["meta"]["video_frame_indices"] == a["meta"]["video_frame_indices"][3:]

    assert suite.data_for("holdout:S02") == synth  # already the held-out subject of the main data
    other = suite.data_for("holdout:S00")
    assert json.loads((other / "manifest.json").read_text())["splits"]["test"]["subjects"] == ["S00"]
    with pytest.raises(RowSkipped, match="S04 is not in the data"):
        suite.data_for("holdout:S04")


def _run(synth, work, out, *extra, only="table1,table3a"):
    argv = ["--only", only, "--variants", "ours", "--config", "tiny", "--batch-size", "2",
            "--data", str(synth), "--work", str(work), "--out", str(out), "--eval-clips", "2", "--eval-steps", "1",
            "--control-clips", "1", *extra]  # fmt: skip
    return main(argv)


def test_paper_tables_end_to_end_and_resume(synth, tmp_path, monkeypatch):
    train_module, evaluate_module = mmsim.training.train, mmsim.training.evaluate
    work, out = tmp_path / "work", tmp_path / "results"
    assert _run(synth, work, out, "--budget-steps", "2") == 0
    result = json.loads((out / "paper_tables.json").read_text())
    assert result["format"] == RESULTS_FORMAT
    assert set(result) >= {"table1", "table3a", "control_fidelity", "targets", "meta"} and "table2" not in result
    mi = result["modality_information"]  # the oracle's measure of each modality's share of the video
    assert set(mi["held"]) == set(schema.MODALITY_NAMES) and mi["num_clips"] == 2
    assert "Is each modality's information in the video?" in (out / "paper_tables.md").read_text()
    ours = result["table1"]["Ours multisensory"]
    assert ours["status"] == "done" and ours["trained_steps"] == 2 and ours["num_clips"] == 2
    assert ours["test_subjects"] == ["S02"]
    assert set(ours["metrics"]) == {"mse", "psnr", "ssim", "lpips", "fvd"} and ours["metrics"]["psnr"] > 5
    if ours["metrics"]["lpips"] is None:
        assert "lpips" in ours["unavailable"]
    assert ours["paper"] == {"mse": 0.110, "psnr": 16.0, "lpips": 0.276, "fvd": 203.5}
    assert result["table1"]["UniSim verb"]["status"].startswith("pending")
    assert result["table3a"]["No hand force"]["test_protocol"]["drop"] == ["hand_force"]
    assert result["table3a"]["No hand force"]["status"] == "done"
    assert "test_time_drop" in result["targets"] and "vs_best_text" not in result["targets"]
    refs = result["references"]
    assert set(refs) == {"Copy last context frame", "Ours, all actions dropped"}
    assert refs["Copy last context frame"]["num_clips"] == 2 and refs["Copy last context frame"]["metrics"]["psnr"] > 5
    assert set(result["control_fidelity"]["edits"]) == set(mmsim.training.control.EDITS)
    meta = result["meta"]
    assert meta["command"].startswith("mmsim experiments paper-tables --only table1,table3a")
    assert meta["budget"]["steps"] == 2 and meta["machine"]["cores"] and meta["machine"]["torch"] == torch.__version__
    md = (out / "paper_tables.md").read_text()
    first_cells = {line.split("|")[1].strip() for line in md.splitlines() if line.startswith("|")}
    assert {"Ours multisensory", "No muscle EMG", "Copy last context frame"} <= first_cells
    assert "Control fidelity" in md
    used = result["targets"]["actions_used"]
    assert used["ours_minus_copy_last_db"] == pytest.approx(
        ours["metrics"]["psnr"] - refs["Copy last context frame"]["metrics"]["psnr"])
    assert "Actions used at all" in md and "## Targets" in md and "issue" not in md.lower()
    assert (out / "paper_tables_drift.html").is_file()

    # Resume: a finished variant is neither retrained nor re-evaluated.
    def fail(*a, **k):
        raise AssertionError("should have been reused")

    with monkeypatch.context() as m:
        m.setattr(train_module, "train", fail)
        m.setattr(evaluate_module, "evaluate", fail)
        m.setattr(mmsim.training.control, "control_fidelity", fail)
        assert _run(synth, work, out, "--budget-steps", "2") == 0
    assert json.loads((out / "paper_tables.json").read_text())["table1"]["Ours multisensory"]["metrics"] == ours["metrics"]

    # A larger budget continues the run from its last checkpoint (train(..., resume=True)), as after an
    # interruption, and re-evaluates.
    calls = []
    real_train = train_module.train
    monkeypatch.setattr(train_module, "train", lambda cfg, resume=False: calls.append(resume) or real_train(cfg, resume))
    assert _run(synth, work, out, "--budget-steps", "3", "--no-control", only="table1") == 0
    assert calls == [True]
    steps = [json.loads(line)["step"] for line in (work / "runs" / "ours" / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 3]  # logged every min(5, budget) steps: 2 in the first session, then 3 after resuming
    assert json.loads((out / "paper_tables.json").read_text())["table1"]["Ours multisensory"]["trained_steps"] == 3

    # Another session (or machine sharing WORK) trains another variant; finished ones are reported from cache.
    real_evaluate = evaluate_module.evaluate
    with monkeypatch.context() as m:
        m.setattr(evaluate_module, "evaluate", lambda cfg, progress=True: fail() if "ours" in cfg.checkpoint
                  else real_evaluate(cfg, progress))
        assert _run(synth, work, out, "--budget-steps", "3", "--no-control", "--variants", "unisim-verb",
                    only="table1") == 0
    table1 = json.loads((out / "paper_tables.json").read_text())["table1"]
    assert table1["UniSim verb"]["status"] == "done" and table1["Ours multisensory"]["trained_steps"] == 3
    assert table1["Hand-force only"]["status"].startswith("pending")

    # A run folder is never reused with another training config.
    assert _run(synth, work, out, "--budget-steps", "3", "--lr", "0.5", only="table1") == 1


def test_training_time_counts_every_session_including_a_killed_one(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert logged_train_seconds(run) is None
    (run / "config.json").write_text(json.dumps({"checkpoint_every": 100}))
    lines = [
        # first session, before window_s was logged: 50 steps at 2/s, then 50 at 1/s; killed after step 150
        {"step": 50, "steps_per_s": 2.0}, {"step": 100, "steps_per_s": 1.0}, {"step": 150, "window_s": 30.0},
        # second session resumes from the step-100 checkpoint and finishes
        {"step": 125, "window_s": 20.0}, {"step": 150, "window_s": 20.0},
    ]
    (run / "log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + '\n{"step": 17')  # last line cut by a kill
    assert logged_train_seconds(run) == pytest.approx(25.0 + 50.0 + 30.0 + 20.0 + 20.0)
    # a resumed first window without window_s starts at the checkpoint it resumed from
    (run / "log.jsonl").write_text("\n".join(json.dumps(x) for x in [{"step": 150, "steps_per_s": 1.0},
                                                                   {"step": 125, "steps_per_s": 0.5}]))
    assert logged_train_seconds(run) == pytest.approx(150.0 + 50.0)


def test_suite_config_validates():
    with pytest.raises(MMSimError, match="unknown variant"):
        SuiteConfig(variants=("ours", "nope"))
    with pytest.raises(MMSimError, match="budget-steps must be >= 1"):
        SuiteConfig(budget_steps=0)
    cfg = SuiteConfig(budget_steps=7, config="demo-cpu").base_train_config()
    assert cfg.max_steps == 7 and cfg.checkpoint_every == 7 and cfg.preset == "mmsim-cpu"


@pytest.mark.slow
def test_paper_tables_table1_all_variants(synth, tmp_path):
    argv = ["--only", "table1", "--budget-steps", "2", "--config", "tiny", "--batch-size", "2",
            "--data", str(synth), "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o"), "--eval-clips", "2",
            "--control-clips", "1"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((tmp_path / "o" / "paper_tables.json").read_text())
    assert all(e["status"] == "done" for e in result["table1"].values())
    assert {"vs_best_text", "vs_best_single_modality"} <= set(result["targets"])


def test_margins_say_whether_the_margin_and_the_drop_can_hold_at_once():
    def done(psnr, mse):
        return {"status": "done", "metrics": {"psnr": psnr, "mse": mse}}

    e0 = 0.003
    t1 = {n: done(25.0, 0.006) for n in ("UniSim verb", "UniSim phrase", "UniSim sentence", "Hand-pose only",
                                         "Muscle-EMG only", "Hand-force only")}
    t1["Ours multisensory"] = done(28.0, e0)
    t1["Body-pose only"] = done(27.0, e0 + 0.0004)
    t3 = {n: done(27.9, e0 + 0.0001) for n in ("No hand pose", "No hand force", "No muscle EMG")}
    t3["All sensory used"] = done(28.0, e0)
    t3["No body pose"] = done(26.0, e0 + 0.0024)  # losing body pose costs six times what knowing only it does
    joint = margins({"table1": t1, "table3a": t3}, {})["joint"]
    assert joint["modality"] == "Body-pose only" and joint["ratio"] == pytest.approx(6.0)
    assert not joint["possible"] and joint["ratio_required"] == FEASIBLE_RATIO
    # The text margin and the drop: Ours without body pose (e0 + 0.0024) must stay 0.7 dB above the text rows
    # (e0 + 0.003), which it does not: 0.0024 / 0.003 = 0.8 > 0.49.
    text = margins({"table1": t1, "table3a": t3}, {})["joint_text"]
    assert text["text_row"] == "UniSim verb" and text["drop_row"] == "No body pose"
    assert text["ratio"] == pytest.approx(0.8) and not text["possible"]
    t3["No body pose"] = done(27.8, e0 + 0.0001)
    m = margins({"table1": t1, "table3a": t3}, {})
    assert m["joint"]["possible"] and m["joint_text"]["possible"]
    assert m["joint_text"]["drop_row"] == "No body pose"


def test_paper_tables_report_the_margin_ceiling(synth, tmp_path, monkeypatch):
    work, out = tmp_path / "work", tmp_path / "results"
    argv = ["--only", "table1", "--variants", "ours,only-body-pose", "--config", "tiny",
            "--batch-size", "2", "--data", str(synth), "--work", str(work), "--out", str(out), "--eval-clips", "2",
            "--eval-steps", "1", "--no-control", "--budget-steps", "2"]  # fmt: skip
    assert main(argv) == 0
    mc = json.loads((out / "paper_tables.json").read_text())["margin_ceiling"]
    assert mc["num_clips"] == 2 and set(mc["rows"]) == {"Body-pose only", "Ours multisensory"}
    body = mc["rows"]["Body-pose only"]
    assert body["num_inference_steps"] == 1 and body["all"]["ceiling_gain"] >= 0
    assert body["modalities_used"] == ["body_pose"]
    assert "How much of that margin the world holds" in (out / "paper_tables.md").read_text()

    def fail(*a, **k):
        raise AssertionError("should have been reused")

    monkeypatch.setattr(mmsim.training.experiments.margin_ceiling, "margin_ceiling", fail)
    assert main(argv) == 0  # cached with the runs it measured
    assert json.loads((out / "paper_tables.json").read_text())["margin_ceiling"] == mc


def test_mmsim_experiments_dispatches_to_the_suite(capsys):
    from mmsim_cli import main as mmsim

    assert mmsim(["experiments", "paper-tables", "--list", "--config", "tiny", "--only", "table3a"]) == 0
    out = capsys.readouterr().out
    assert "1 variants to train" in out and "No body pose" in out and "[drop-body_pose]" in out
    assert mmsim(["experiments", "no-such-experiment"]) == 2
    assert "unknown experiment 'no-such-experiment'" in capsys.readouterr().err
