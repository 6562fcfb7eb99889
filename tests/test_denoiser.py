"""VideoDenoiser, presets and the training-step API (tiny sizes, CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures.models import randomize_zero_init
from mmsim_core.models.denoiser import DenoiserConfig, VideoDenoiser, count_parameters
from mmsim_core.presets import SchedulerConfig, SimulatorConfig, get_preset, list_presets
from mmsim_core.schema import MODALITIES
from mmsim_core.training_step import MultisensorySimulator, TrainingLosses

torch.set_num_threads(2)

TINY = dict(
    context_frames=4, num_frames=8, sample_size=32, patch_size=4, block_channels=(16, 32),
    attention_levels=(True, True), attention_head_dim=8, cross_attention_dim=16, cond_tokens=2, norm_groups=8,
)  # fmt: skip


def make_denoiser(**overrides) -> VideoDenoiser:
    torch.manual_seed(0)
    m = VideoDenoiser(**{**TINY, **overrides}).eval()
    randomize_zero_init(m)
    return m


def inputs(b=2, seed=0, size=32, d=16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 8, 3, size, size, generator=g)
    ctx = torch.rand(b, 4, 3, size, size, generator=g) * 2 - 1
    y = torch.randn(b, 12, d, generator=g)
    t = torch.randint(0, 1000, (b,), generator=g)
    return x, t, ctx, y


def test_denoiser_shapes_and_scalar_timestep():
    m = make_denoiser()
    x, t, ctx, y = inputs()
    with torch.no_grad():
        out = m(x, t, ctx, y).sample
        out_scalar = m(x, 500, ctx, y).sample
    assert out.shape == x.shape and out_scalar.shape == x.shape
    assert torch.isfinite(out).all()
    assert not torch.allclose(out, out_scalar)


def test_untrained_denoiser_predicts_zero():
    # conv_out is zero-initialised: an untrained model predicts exactly 0 (a stable start).
    m = VideoDenoiser(**TINY)
    x, t, ctx, y = inputs()
    with torch.no_grad():
        assert m(x, t, ctx, y).sample.abs().max() == 0


@pytest.mark.parametrize("patch_size", [1, 2])
def test_denoiser_patch_sizes(patch_size):
    m = make_denoiser(patch_size=patch_size, block_channels=(8, 16), norm_groups=8, attention_levels=(False, True))
    x, t, ctx, y = inputs(b=1)
    with torch.no_grad():
        assert m(x, t, ctx, y).sample.shape == x.shape


@pytest.mark.parametrize("history", [True, False])
def test_per_frame_conditioning(history):
    """Changing y° of future step k changes mostly frame k (temporal, not one repeated vector)."""
    m = make_denoiser(use_action_history=history)
    x, t, ctx, y = inputs(b=1)
    with torch.no_grad():
        base = m(x, t, ctx, y).sample
        for k in (0, 3, 7):
            y2 = y.clone()
            y2[:, 4 + k] += 3.0  # future step k is step h+k of y°
            diff = (m(x, t, ctx, y2).sample - base).abs().mean(dim=(0, 2, 3, 4))  # (F,)
            assert int(diff.argmax()) == k
            others = torch.cat([diff[:k], diff[k + 1 :]])
            assert diff[k] > 3 * others.max(), diff


def test_action_history_option():
    """With use_action_history the h history steps' y° reach every frame; without, they only act
    through nothing (the future frames attend to their own steps)."""
    x, t, ctx, y = inputs(b=1)
    y2 = y.clone()
    y2[:, 1] += 3.0  # a history step
    for history in (True, False):
        m = make_denoiser(use_action_history=history)
        with torch.no_grad():
            d = (m(x, t, ctx, y2).sample - m(x, t, ctx, y).sample).abs().max()
        assert (d > 1e-4) if history else (d == 0)


def test_context_frames_condition_every_frame():
    m = make_denoiser()
    x, t, ctx, y = inputs(b=1)
    ctx2 = ctx.clone()
    ctx2[:, 0] = -ctx2[:, 0]
    with torch.no_grad():
        diff = (m(x, t, ctx2, y).sample - m(x, t, ctx, y).sample).abs().mean(dim=(0, 2, 3, 4))
    assert (diff > 1e-4).all()


def test_denoiser_input_errors():
    m = make_denoiser()
    x, t, ctx, y = inputs(b=1)
    with pytest.raises(ValueError, match="num_frames=8"):
        m(x[:, :5], t, ctx, y)
    with pytest.raises(ValueError, match="context_frames=4"):
        m(x, t, ctx[:, :2], y)
    with pytest.raises(ValueError, match=r"encoder_hidden_states must be \(B, 12, 16\)"):
        m(x, t, ctx, y[:, :5])


def test_denoiser_config_validation():
    with pytest.raises(ValueError, match="patch_size"):
        DenoiserConfig(sample_size=64, patch_size=3)
    with pytest.raises(ValueError, match="attention_levels must have one entry per level"):
        DenoiserConfig(block_channels=(32, 64), attention_levels=(True,))
    with pytest.raises(ValueError, match="divisible"):
        DenoiserConfig(sample_size=64, patch_size=4, block_channels=(32,) * 6, attention_levels=(False,) * 6)


def test_denoiser_save_load_roundtrip(tmp_path):
    m = make_denoiser()
    m.save_pretrained(tmp_path)
    m2 = VideoDenoiser.from_pretrained(tmp_path).eval()
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    x, t, ctx, y = inputs(b=1)
    with torch.no_grad():
        assert torch.equal(m(x, t, ctx, y).sample, m2(x, t, ctx, y).sample)


# ----------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------
def test_preset_registry_and_validation():
    assert list_presets() == ["mmsim-cpu", "mmsim-paper", "mmsim-tiny"]
    with pytest.raises(ValueError, match=r"preset must be one of \['mmsim-cpu', 'mmsim-paper', 'mmsim-tiny'\], got 'big'"):
        get_preset("big")
    cfg = get_preset("mmsim-cpu", scheduler={"num_inference_steps": 4}, denoiser={"patch_size": 2})
    assert cfg.scheduler.num_inference_steps == 4 and cfg.denoiser.patch_size == 2
    assert cfg.scheduler.sampler == "unipc" and cfg.scheduler.prediction_type == "v_prediction"
    with pytest.raises(ValueError, match="has no field 'nope'"):
        get_preset("mmsim-cpu", nope=1)
    with pytest.raises(ValueError, match="sampler must be one of"):
        get_preset("mmsim-cpu", scheduler={"sampler": "heun2"})
    with pytest.raises(ValueError, match="needs a text_encoder"):
        get_preset("mmsim-tiny", text_kind="verb")


def test_simulator_config_keeps_parts_consistent():
    cfg = get_preset("mmsim-tiny", context_frames=1, future_frames=4)
    assert cfg.denoiser.context_frames == 1 and cfg.denoiser.num_frames == 4
    assert cfg.action_encoder.num_steps == 5
    assert cfg.denoiser.cross_attention_dim == cfg.action_encoder.feature_dim
    assert cfg.loss_weights.diffusion == 10 and cfg.loss_weights.ssl == 1 and cfg.loss_weights.norm == 0.1
    again = SimulatorConfig.from_dict(cfg.to_dict())
    assert again == cfg


def test_paper_preset_sizes():
    """mmsim-paper: d = 1024, pixel space, a ~252 M video backbone (paper Table 5: 252,380,168)."""
    cfg = get_preset("mmsim-paper")
    assert cfg.action_encoder.feature_dim == 1024 and cfg.action_encoder.projection_dims == (512, 768)
    assert cfg.denoiser.patch_size == 1 and cfg.context_encoder == "openclip"
    with torch.device("meta"):
        n = count_parameters(VideoDenoiser.from_config_object(cfg.denoiser))
    assert abs(n / 252_380_168 - 1) < 0.03, n


@pytest.mark.parametrize("sampler", ["dpmsolver++", "ddim", "unipc", "euler", "ddpm", "dpmsolver++_sde"])
def test_scheduler_config_builds(sampler):
    sc = SchedulerConfig(sampler=sampler, num_inference_steps=4)
    s = sc.build_sampler()
    s.set_timesteps(4)
    assert len(s.timesteps) == 4
    assert s.config.prediction_type == "v_prediction"
    assert sc.build_train_scheduler().config.num_train_timesteps == 1000


# ----------------------------------------------------------------------------------------------
# Training step
# ----------------------------------------------------------------------------------------------
def make_batch(b=2, seed=0, text=False, size=64):
    rng = np.random.default_rng(seed)
    batch = {
        "context": rng.integers(0, 256, (b, 4, size, size, 3), dtype=np.uint8),
        "future": rng.integers(0, 256, (b, 8, size, size, 3), dtype=np.uint8),
        "actions": {k: rng.random((b, 12, *s.shape), dtype=np.float32) for k, s in MODALITIES.items()},
        "action_mask": {k: np.ones(b, dtype=bool) for k in MODALITIES},
    }
    if text:
        batch["text"] = {"verb": ["peel"] * b, "phrase": ["peel a potato"] * b, "sentence": ["I peel a potato."] * b}
    return batch


def test_training_step_losses():
    sim = MultisensorySimulator.from_config(get_preset("mmsim-tiny"))
    losses = sim(make_batch(), generator=torch.Generator().manual_seed(0))
    assert isinstance(losses, TrainingLosses)
    parts = losses.as_floats()
    assert all(np.isfinite(v) for v in parts.values())
    assert parts["ssl"] > 0 and parts["norm"] > 0 and parts["diffusion"] > 0 and parts["motion"] > 0
    expected = 10 * parts["diffusion"] + parts["ssl"] + 0.1 * parts["norm"] + 10 * parts["motion"]
    assert parts["total"] == pytest.approx(expected, rel=1e-5)
    losses.total.backward()
    assert sim.denoiser.conv_out.weight.grad is not None
    assert any(p.grad is not None for p in sim.context_encoder.parameters())
    # the action warp's ego-motion head learns from its photometric loss (its last layer starts at zero)
    assert sim.action_warp.ego_motion.net[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("steps, prob", [(1, 1.0), (2, 1.0), (1, 0.0)])
def test_training_step_sampler_timesteps(steps, prob):
    """sampler_timestep_prob=1 noises every sample at a timestep the default sampler visits."""
    cfg = get_preset("mmsim-tiny", scheduler={"num_inference_steps": steps, "sampler_timestep_prob": prob})
    sim = MultisensorySimulator.from_config(cfg)
    probe = sim.sampler.__class__.from_config(sim.sampler.config)
    probe.set_timesteps(steps)
    grid = set(probe.timesteps.tolist())
    seen = []
    add_noise = sim.noise_scheduler.add_noise
    sim.noise_scheduler.add_noise = lambda x0, noise, t: seen.extend(t.tolist()) or add_noise(x0, noise, t)
    for seed in range(3):
        sim(make_batch(b=4), generator=torch.Generator().manual_seed(seed))
    assert len(seen) == 12
    if prob == 1.0:
        assert set(seen) <= grid
        if steps == 1:
            assert grid == {cfg.scheduler.num_train_timesteps - 1}  # trailing spacing: t = T-1, pure noise
    else:
        assert not set(seen) <= grid


def test_sampler_timestep_prob_is_validated():
    with pytest.raises(ValueError, match="sampler_timestep_prob must be in"):
        get_preset("mmsim-tiny", scheduler={"sampler_timestep_prob": 1.5})


def test_training_step_condition_drop_trains_null_embedding():
    cfg = get_preset("mmsim-tiny", condition_drop_prob=0.9)
    sim = MultisensorySimulator.from_config(cfg)
    randomize_zero_init(sim.denoiser)
    losses = sim(make_batch(b=4), generator=torch.Generator().manual_seed(1))
    losses.total.backward()
    assert sim.action_encoder.null_embedding.grad is not None
    assert sim.action_encoder.null_embedding.grad.abs().sum() > 0


def test_training_step_with_text_and_partial_mask():
    cfg = get_preset("mmsim-tiny", text_encoder="bow", text_kind="phrase", action_encoder={"text_dim": 16})
    sim = MultisensorySimulator.from_config(cfg)
    batch = make_batch(text=True)
    batch["action_mask"]["emg"] = np.array([True, False])
    del batch["actions"]["hand_force"], batch["action_mask"]["hand_force"]
    losses = sim(batch, generator=torch.Generator().manual_seed(0))
    losses.total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in sim.text_encoder.parameters())


def test_training_step_is_seeded():
    sim = MultisensorySimulator.from_config(get_preset("mmsim-tiny", condition_drop_prob=0.5))
    sim.eval()  # no dropout noise: only the generator decides noise, timesteps and drops
    a = sim(make_batch(), generator=torch.Generator().manual_seed(3)).as_floats()
    b = sim(make_batch(), generator=torch.Generator().manual_seed(3)).as_floats()
    assert a == b


def test_overfit_one_batch_loss_falls():
    torch.manual_seed(0)
    sim = MultisensorySimulator.from_config(get_preset("mmsim-tiny", condition_drop_prob=0.0, sample_size=32))
    opt = torch.optim.Adam(sim.parameters(), lr=3e-3)
    batch = make_batch(b=2, seed=1, size=32)
    history = []
    for step in range(30):
        # The same noise/timesteps every step: the loss is then a function of the weights alone.
        losses = sim(batch, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        losses.total.backward()
        opt.step()
        history.append(losses.as_floats())
    first, last = history[0], history[-1]
    assert last["total"] < 0.6 * first["total"], (first, last)
    assert last["diffusion"] < first["diffusion"]
    assert last["ssl"] < first["ssl"]


def test_from_pipeline_and_to_pipeline_share_weights():
    from mmsim_core.pipelines import MultisensoryVideoPipeline

    pipe = MultisensoryVideoPipeline.from_preset("mmsim-tiny")
    sim = MultisensorySimulator.from_pipeline(pipe)
    assert sim.config is pipe.simulator_config  # loss weights, text kind and condition dropout come with it
    assert sim.denoiser is pipe.denoiser and sim.action_encoder is pipe.action_encoder
    assert sim.action_warp is pipe.action_warp and sim.action_warp is not None
    assert sim.prediction_type == pipe.scheduler.config.prediction_type
    assert torch.allclose(sim.alphas_cumprod, pipe.scheduler.alphas_cumprod.float())
    pipe2 = sim.to_pipeline()
    assert pipe2.denoiser is pipe.denoiser and pipe2.scheduler is pipe.scheduler
    assert pipe2.action_warp is pipe.action_warp and pipe2.simulator_config is sim.config
    assert pipe2.config.default_num_inference_steps == pipe.config.default_num_inference_steps
    # fine-tuning with another recipe: the config given replaces the pipeline's
    tuned = get_preset("mmsim-tiny", condition_drop_prob=0.0)
    assert MultisensorySimulator.from_pipeline(pipe, config=tuned).config is tuned
    bare = MultisensoryVideoPipeline(pipe.denoiser, pipe.action_encoder, pipe.context_encoder, pipe.scheduler)
    with pytest.raises(ValueError, match="carries no simulator config"):
        MultisensorySimulator.from_pipeline(bare)


@pytest.mark.slow
def test_paper_preset_builds_and_runs_one_step():
    """mmsim-paper builds offline (random OpenCLIP weights, loud warning) and runs one step (~1 min)."""
    from mmsim_core.pipelines import MultisensoryVideoPipeline

    with pytest.warns(UserWarning, match="RANDOM"):
        pipe = MultisensoryVideoPipeline.from_preset("mmsim-paper")
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, 256, (1, 4, 64, 64, 3), dtype=np.uint8)
    acts = {k: rng.random((1, 12, *s.shape), dtype=np.float32) for k, s in MODALITIES.items()}
    out = pipe(context=ctx, actions=acts, num_inference_steps=1)
    assert out.frames.shape == (1, 8, 64, 64, 3) and out.frames.dtype == np.uint8


def test_warped_residual_without_a_warp_is_the_residual_from_the_last_frame():
    base = dict(block_channels=(32, 64), attention_levels=(False, True), attention_head_dim=16, norm_groups=8,
                cross_attention_dim=16)
    res = VideoDenoiser.from_config_object(DenoiserConfig(**base, target="warped_residual", residual_scale=3.0))
    frm = VideoDenoiser.from_config_object(DenoiserConfig(**base, target="frames"))
    g = torch.Generator().manual_seed(0)
    context = torch.rand(2, 4, 3, 64, 64, generator=g) * 2 - 1
    future = torch.rand(2, 8, 3, 64, 64, generator=g) * 2 - 1
    torch.testing.assert_close(res.anchor(context), context[:, -1:].expand_as(future))
    x0 = res.frames_to_sample(future, context)
    torch.testing.assert_close(x0, (future - context[:, -1:]) * 3.0)
    torch.testing.assert_close(res.sample_to_frames(x0, context), future)
    zero = res.sample_to_frames(torch.zeros_like(future), context)
    torch.testing.assert_close(zero, context[:, -1:].expand_as(future))  # "nothing moves"
    assert frm.anchor(context) is None and frm.frames_to_sample(future, context) is future
    with pytest.raises(ValueError, match="target must be one of"):
        DenoiserConfig(**base, target="flow")
