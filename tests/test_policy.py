"""The goal-conditioned policy: model, differentiable simulator rollout, `mmsim policy train` / `evaluate`."""

import json

import numpy as np
import pytest
import torch

from mmsim_cli import main
from mmsim_core import MultisensoryVideoPipeline, schema
from mmsim_core.policies.common import actions_to_vector
from mmsim_core.policies.goal_policy import GoalConditionedPolicy
from mmsim_core.policies.simulator_loss import simulate, simulator_loss

TINY = dict(frame_widths=(8, 16, 16, 16), frame_feature_dim=16, history_dim=16, unet_widths=(16, 16, 16), step_dim=16)


def _actions(b: int, t: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.rand(b, t, *schema.MODALITIES[m].shape, generator=g) for m in schema.MODALITY_NAMES}


def _frames(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_policy_shapes_and_save_load(tmp_path, synth):
    from mmsim_core.data import ClipDataset

    torch.manual_seed(0)
    policy = GoalConditionedPolicy(**TINY)
    start, goal = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    history = actions_to_vector(_actions(2, 4))  # (2, 4, 2292)
    out = policy(start, goal, history)
    assert out.shape == (2, 8, schema.ACTION_DIM)
    # The residual head starts at zero: the untrained policy keeps doing the last history action.
    assert torch.equal(out, history[:, -1:].expand(-1, 8, -1))
    with pytest.raises(ValueError, match="history must have shape"):
        policy(start, goal, history[:, :3])

    # Give the head weights so the round trip checks real outputs.
    torch.nn.init.normal_(policy.unet.out.weight, std=0.02)
    stats = ClipDataset(synth, "train").stats
    policy.save_pretrained(tmp_path / "pol", normalization_stats=stats)
    assert (tmp_path / "pol" / "normalization.json").is_file()
    loaded = GoalConditionedPolicy.from_pretrained(tmp_path / "pol")
    assert tuple(loaded.config.unet_widths) == (16, 16, 16)
    np.testing.assert_array_equal(loaded.normalization_stats.minimum["hand_pose"], stats.minimum["hand_pose"])
    policy.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(start, goal, history), policy(start, goal, history))

    # act(): uint8 frames + normalised history -> every modality over h + F steps, history copied in.
    context, goal_u8 = _frames((2, 4, 64, 64, 3)), _frames((2, 64, 64, 3), 1)
    hist = {k: v[:, :4].numpy() for k, v in _actions(2, 12).items()}
    acts = loaded.act(context, goal_u8, hist)
    for m in schema.MODALITY_NAMES:
        assert acts[m].shape == (2, 12, *schema.MODALITIES[m].shape) and acts[m].dtype == np.float32
        np.testing.assert_array_equal(acts[m][:, :4], hist[m])
    assert not np.allclose(acts["hand_force"][:, 4:], acts["hand_force"][:, 3:4])


@pytest.fixture(scope="module")
def tiny_pipe():
    """An mmsim-tiny pipeline whose zero-initialised output layers got small random weights: untrained, it
    ignores its actions exactly (zero gradients), which would test nothing about the gradient path."""
    torch.manual_seed(0)
    pipe = MultisensoryVideoPipeline.from_preset("mmsim-tiny")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.action_warp is not None  # the anchor moves with body_pose (ego-motion)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in (pipe.denoiser, pipe.action_warp):
            for p in module.parameters():
                if p.dim() > 0 and not p.any():
                    p.normal_(0.0, 0.02, generator=g)
    return pipe


def test_differentiable_rollout_matches_pipeline_and_has_gradients(tiny_pipe):
    pipe = tiny_pipe
    context = _frames((2, 4, 64, 64, 3))
    actions = _actions(2, 12)
    latents = torch.randn(2, 8, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    ref = pipe(context=context, actions={k: v.numpy() for k, v in actions.items()}, latents=latents,
               output_type="pt").frames  # (B, F, 3, H, W) in [0, 1]

    leaves = {k: v.clone().requires_grad_(True) for k, v in actions.items()}
    frames = simulate(pipe, context, leaves, latents)  # (B, F, 3, H, W) in [-1, 1]
    assert frames.shape == (2, 8, 3, 64, 64) and frames.requires_grad
    torch.testing.assert_close((frames + 1) / 2, ref, atol=1e-5, rtol=1e-5)

    future = torch.zeros_like(frames)
    loss = simulator_loss(pipe, context, leaves, future, latents)
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(frames, future))
    loss.backward()
    for name, leaf in leaves.items():
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all(), name
    # body_pose drives the ego-motion warp of the anchor frame: a strong, direct path.
    assert leaves["body_pose"].grad.abs().sum() > 0
    # The simulator is frozen: no parameter collects a gradient.
    assert all(p.grad is None and not p.requires_grad for p in pipe.denoiser.parameters())


def _train(synth, out, *extra):
    return main(["policy", "train", "--data", str(synth), "--out", str(out), "--size", "tiny", "--batch-size", "2",
                 "--lr", "1e-3", *extra])


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_policy_train_with_and_without_simulator_loss_and_evaluate(synth, untrained_checkpoint, tmp_path, capsys):
    # Baseline: L = L_a.
    assert _train(synth, tmp_path / "la", "--max-steps", "3") == 0
    log = _log(tmp_path / "la")
    assert [r["step"] for r in log] == [1, 2, 3] and all(r["l_sim"] is None for r in log)
    final = tmp_path / "la" / "final"
    summary = json.loads((final / "policy_training.json").read_text())
    assert summary["sim_loss_weight"] == 0.0 and summary["simulator"] is None and summary["steps"] == 3
    assert (final / "normalization.json").is_file()

    # Resume continues from the checkpoint and replays the same batches: 3 + 2 steps.
    assert _train(synth, tmp_path / "la", "--max-steps", "5", "--resume") == 0
    assert [r["step"] for r in _log(tmp_path / "la")] == [1, 2, 3, 4, 5]

    # With the simulator loss: L = L_a + λ L_sim through the frozen (untrained, tiny) simulator.
    assert _train(synth, tmp_path / "sim", "--max-steps", "2", "--simulator", untrained_checkpoint,
                  "--sim-loss-weight", "0.5") == 0
    log = _log(tmp_path / "sim")
    assert all(r["l_sim"] is not None and np.isfinite(r["l_sim"]) for r in log)
    assert all(r["loss"] == pytest.approx(r["l_a"] + 0.5 * r["l_sim"], rel=1e-5) for r in log)
    assert json.loads((tmp_path / "sim" / "final" / "policy_training.json").read_text())["sim_loss_weight"] == 0.5

    # Fine-tuning: --init-from starts from the L_a policy's weights (a zero-lr step would keep them).
    assert _train(synth, tmp_path / "ft", "--max-steps", "1", "--init-from", str(final), "--lr", "1e-12",
                  "--simulator", untrained_checkpoint, "--sim-loss-weight", "0.5") == 0
    start, tuned = (GoalConditionedPolicy.from_pretrained(f).state_dict() for f in (final, tmp_path / "ft" / "final"))
    assert all(torch.allclose(start[k], tuned[k], atol=1e-6) for k in start)
    assert json.loads((tmp_path / "ft" / "final" / "policy_training.json").read_text())["init_from"] == str(final)
    capsys.readouterr()

    # Evaluate: every metric, JSON and a Markdown table beside it.
    report_path = tmp_path / "report.json"
    assert main(["policy", "evaluate", str(tmp_path / "sim"), str(synth), "--simulator", untrained_checkpoint,
                 "--clips", "3", "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    m = report["metrics"]
    for key in ("action_mse", "xT_mse_sim", "xT_mse_sim_expert", "xT_mse_oracle", "xT_mse_oracle_expert",
                "goal_success", "label_agreement"):
        assert m[key] is not None and np.isfinite(m[key]), key
    assert 0.0 <= m["goal_success"] <= 1.0 and 0.0 <= m["label_agreement"] <= 1.0
    # Per-modality errors, weighted by size, make up the overall one (clips here have every modality).
    sizes = {n: schema.MODALITIES[n].size for n in schema.MODALITY_NAMES}
    overall = sum(m[f"action_mse_{n}"] * sizes[n] for n in sizes) / sum(sizes.values())
    assert overall == pytest.approx(m["action_mse"], rel=1e-4)
    assert m["eventful_clips"] == sum(r["eventful"] for r in report["per_clip"])
    assert (m["goal_success_eventful"] is None) == (m["eventful_clips"] == 0)
    # The expert's actions re-run by the world reproduce the recorded goal frame up to video compression.
    assert m["xT_mse_oracle_expert"] < 0.01
    assert report["clips"] == 3 and report["notes"] == []
    assert "| goal success, all clips |" in report_path.with_suffix(".md").read_text()


def _error_line(capsys, prog):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{prog}: error:"), err
    assert "Traceback" not in err[0]
    return err[0]


def test_policy_errors_name_the_flag(synth, tmp_path, capsys):
    assert _train(synth, tmp_path / "r", "--sim-loss-weight", "1") == 2
    assert "--sim-loss-weight > 0 needs --simulator" in _error_line(capsys, "mmsim policy train")
    assert main(["policy", "train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    assert "--data" in _error_line(capsys, "mmsim policy train")
    assert _train(synth, tmp_path / "r", "--max-steps", "0") == 2
    assert "--max-steps must be >= 1" in _error_line(capsys, "mmsim policy train")
    assert _train(synth, tmp_path / "r", "--size", "huge") == 2
    assert "--size" in _error_line(capsys, "mmsim policy train")
    assert main(["policy", "train", "--out", str(tmp_path / "r")]) == 2
    assert "--data" in _error_line(capsys, "mmsim policy train")
    assert _train(synth, tmp_path / "r", "--init-from", str(tmp_path)) == 2
    assert "--init-from" in _error_line(capsys, "mmsim policy train")
    assert _train(synth, tmp_path / "r", "--resume") == 2
    assert "--resume" in _error_line(capsys, "mmsim policy train")
    assert main(["policy", "evaluate", str(tmp_path / "nope"), str(synth)]) == 2
    assert "RUN_OR_POLICY" in _error_line(capsys, "mmsim policy evaluate")
    assert main(["policy", "fly"]) == 2
    assert "'train' or 'evaluate'" in _error_line(capsys, "mmsim policy")
