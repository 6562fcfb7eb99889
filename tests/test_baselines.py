"""Table 2 feature-extraction baselines: same interface as our encoder, their own losses, a training step
with the action warp, and the pipeline."""

import numpy as np
import pytest
import torch

from mmsim_core import schema
from mmsim_core.models.action_encoder import ActionEncoderConfig, MultisensoryActionEncoder
from mmsim_core.models.baselines import (
    FEATURE_EXTRACTORS,
    ImageBindActionEncoder,
    LanguageBindActionEncoder,
    MutexActionEncoder,
    MutexConfig,
    SignalAgnosticActionEncoder,
    build_action_encoder,
    info_nce,
)
from mmsim_core.presets import get_preset
from mmsim_core.training_step import MultisensorySimulator

B, T, D = 4, 12, 32
BASELINES = ("mutex", "imagebind", "languagebind", "signal_agnostic")


def _cfg(**kw) -> ActionEncoderConfig:
    return ActionEncoderConfig(feature_dim=D, expert_hidden=16, projection_dims=(32, 32), expert_dropout=0.0, **kw)


def _actions(b=B, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.rand((b, T, *schema.MODALITIES[m].shape), generator=g) for m in schema.MODALITY_NAMES}


def _encoder(name: str):
    return build_action_encoder(name, _cfg(text_dim=8 if name == "languagebind" else None))


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_outputs_and_losses(name):
    torch.manual_seed(0)
    enc = _encoder(name).train()
    ctx = torch.randn(B, 4, D)
    target = torch.randn(B, T, D)
    text = torch.randn(B, 8)
    text[1] = text[0]  # two clips with the same description
    out = enc(_actions(), ctx, text_features=text if name == "languagebind" else None, target_features=target)
    assert out.interaction.shape == (B, T, D) and torch.isfinite(out.interaction).all()
    assert out.norm_loss is None  # L_norm belongs to our latent interaction only
    assert out.ssl_loss.ndim == 0 and torch.isfinite(out.ssl_loss) and float(out.ssl_loss.detach()) > 0
    out.ssl_loss.backward()
    grads = [p.grad for p in enc.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


@pytest.mark.parametrize("name", BASELINES)
def test_missing_modalities_have_no_influence_and_none_gives_null(name):
    torch.manual_seed(0)
    enc = _encoder(name).eval()
    ctx = torch.randn(B, 4, D)
    acts = _actions()
    mask = {"emg": torch.tensor([True, False, True, False])}
    with torch.no_grad():
        base = enc(acts, ctx, action_mask=mask).interaction
        edited = dict(acts, emg=acts["emg"] + 5.0 * torch.tensor([0, 1, 0, 1.0])[:, None, None, None])
        again = enc(edited, ctx, action_mask=mask).interaction
        # Samples 1 and 3 have EMG masked: editing it changes nothing there; samples 0 and 2 see it.
        assert torch.allclose(base[[1, 3]], again[[1, 3]], atol=1e-6)
        dropped = enc({k: v for k, v in acts.items() if k != "emg"}, ctx).interaction
        assert torch.allclose(dropped[[1, 3]], base[[1, 3]], atol=1e-5)
        null = enc({}, ctx).interaction
        assert torch.allclose(null, enc.null_embedding[None].expand(B, T, D))


def test_mutex_masks_in_training_only_and_keeps_one_modality():
    torch.manual_seed(0)
    enc = MutexActionEncoder(feature_dim=D, expert_hidden=16, projection_dims=(32,), mask_prob=0.9)
    present = torch.ones(64, 4, dtype=torch.bool)
    present[:, 3] = False
    masked = enc.train()._training_mask(present)
    assert masked.any() and not masked[:, 3].any()
    assert (present & ~masked).any(1).all()  # never every modality of a sample masked
    assert not enc.eval()._training_mask(present).any()


def test_info_nce_prefers_matching_pairs_and_multi_positive():
    q = torch.nn.functional.normalize(torch.randn(6, 16), dim=-1)
    scale = torch.tensor(10.0)
    assert info_nce(q, q, scale) < info_nce(q, q.roll(1, 0), scale)
    same = torch.eye(6, dtype=torch.bool)
    assert torch.allclose(info_nce(q, q, scale, positives=same), info_nce(q, q, scale))
    assert float(info_nce(q[:1], q[:1], scale)) == 0.0


def test_signal_agnostic_has_no_per_modality_experts_and_reads_every_channel():
    enc = SignalAgnosticActionEncoder(feature_dim=D, expert_hidden=16, projection_dims=(32,)).eval()
    assert not hasattr(enc, "experts")
    assert enc.coords.shape == (schema.ACTION_DIM, 3)
    ctx = torch.randn(2, 4, D)
    acts = _actions(2)
    with torch.no_grad():
        base = enc(acts, ctx).interaction
        hf = acts["hand_force"].clone()
        hf[:, :, 1, 31, 31] += 3.0  # one taxel of one glove
        assert not torch.allclose(enc(dict(acts, hand_force=hf), ctx).interaction, base)


def test_languagebind_ignores_text_at_inference():
    enc = LanguageBindActionEncoder(feature_dim=D, expert_hidden=16, projection_dims=(32,), text_dim=8).eval()
    ctx, acts = torch.randn(2, 4, D), _actions(2)
    with torch.no_grad():
        a = enc(acts, ctx, text_features=torch.randn(2, 8)).interaction
        b = enc(acts, ctx, text_features=torch.randn(2, 8)).interaction
    assert torch.allclose(a, b)


def test_builder_validates():
    assert set(BASELINES) | {"multisensory"} == set(FEATURE_EXTRACTORS)
    assert isinstance(build_action_encoder("multisensory", _cfg()), MultisensoryActionEncoder)
    assert isinstance(build_action_encoder("imagebind", _cfg()), ImageBindActionEncoder)
    with pytest.raises(ValueError, match="feature_extractor must be one of"):
        build_action_encoder("clip", _cfg())
    with pytest.raises(ValueError, match=r"\['fusion'\] configure our encoder only"):
        build_action_encoder("mutex", _cfg(fusion="mean"))
    with pytest.raises(ValueError, match="text_dim must be set"):
        build_action_encoder("languagebind", _cfg())
    with pytest.raises(ValueError, match="feature_extractor must be one of"):
        get_preset("mmsim-tiny", feature_extractor="sum")
    # each extractor has its typed config: its own fields, and only those
    cfg = get_preset("mmsim-tiny", feature_extractor="mutex", action_encoder={"mask_prob": 0.5})
    assert isinstance(cfg.action_encoder, MutexConfig) and cfg.action_encoder.mask_prob == 0.5
    assert isinstance(build_action_encoder("mutex", cfg.action_encoder), MutexActionEncoder)
    with pytest.raises(ValueError, match="action_encoder has no field 'mask_prob' for feature_extractor='imagebind'"):
        get_preset("mmsim-tiny", feature_extractor="imagebind", action_encoder={"mask_prob": 0.5})


def _batch(b=2, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "context": rng.integers(0, 255, (b, 4, 64, 64, 3), dtype=np.uint8),
        "future": rng.integers(0, 255, (b, 8, 64, 64, 3), dtype=np.uint8),
        "actions": {k: v[:b].numpy() for k, v in _actions(b, seed).items()},
        "text": {"verb": ["cut"] * b, "phrase": ["cut potato"] * b, "sentence": ["person cut potato"] * b},
    }


@pytest.mark.parametrize("name", BASELINES)
def test_training_step_with_the_action_warp_and_pipeline(name):
    torch.manual_seed(0)
    text = name == "languagebind"
    overrides = dict(feature_extractor=name, condition_drop_prob=0.0,
                     action_warp={"hand_map_channels": 2, "context_motion": True})
    if text:
        overrides.update(text_encoder="bow", text_kind="sentence", action_encoder={"text_dim": 16})
    sim = MultisensorySimulator.from_config(get_preset("mmsim-tiny", **overrides)).train()
    opt = torch.optim.Adam([p for p in sim.parameters() if p.requires_grad], lr=1e-3)
    losses = sim(_batch(), generator=torch.Generator().manual_seed(0))
    assert float(losses.ssl) > 0 and float(losses.norm) == 0.0 and torch.isfinite(losses.total)
    # The action warp (body pose -> warp) is offered to every feature extractor alike.
    assert sim.action_warp.ego_motion is not None and float(losses.motion) > 0
    assert sim.action_warp.ego_motion.from_context  # ... reading the context's motion as well
    # ... and so is the hand placement map.
    assert sim.action_warp.hand_map is not None and sim.denoiser.config.spatial_channels == 4
    losses.total.backward()
    opt.step()

    pipe = sim.eval().to_pipeline()
    pipe.set_progress_bar_config(disable=True)
    batch = _batch(1, seed=1)
    kw = dict(context=batch["context"], actions=batch["actions"], num_inference_steps=1,
              text=["person cut potato"] if text else None)
    a = pipe(**kw, generator=torch.Generator().manual_seed(0)).frames
    b = pipe(**kw, generator=torch.Generator().manual_seed(0)).frames
    assert a.shape == (1, 8, 64, 64, 3) and np.array_equal(a, b)
