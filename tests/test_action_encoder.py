"""Multisensory action encoder: components, masking semantics, losses (tiny dims, CPU, fast)."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest
import torch

from mmsim_core.errors import ActionInputError
from mmsim_core.models import ActionEncoderConfig, ActionEncoderOutput, MultisensoryActionEncoder
from mmsim_core.models.anchoring import ChannelAnchoring
from mmsim_core.models.experts import ModalityDecoder, ModalityExpert, ProjectionHead
from mmsim_core.models.fusion import FUSIONS, Fusion, max_fusion, mean_fusion, softmax_fusion
from mmsim_core.models.interaction import LatentInteraction, context_vectors
from mmsim_core.models.losses import hyperplane, norm_loss, projection, reconstruction_loss
from mmsim_core.schema import MODALITIES, MODALITY_NAMES

D, HID, B, H, T = 32, 16, 3, 4, 12


def tiny(**kw) -> MultisensoryActionEncoder:
    torch.manual_seed(0)
    cfg = dict(feature_dim=D, expert_hidden=HID, projection_dims=(24, 24), anchor_group_size=8)
    cfg.update(kw)
    return MultisensoryActionEncoder(**cfg)


def make_actions(b=B, t=T, seed=1, names=MODALITY_NAMES):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.rand(b, t, *MODALITIES[m].shape, generator=g) for m in names}


def make_context(b=B, h=H, seed=2):
    return torch.randn(b, h, D, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"fusion": "sum"}, "fusion must be one of ['softmax', 'mean', 'max', 'concat'], got 'sum'"),
        ({"anchoring": "xattn"}, "anchoring must be one of"),
        ({"interaction": "orthogonal"}, "interaction must be one of"),
        ({"modalities": ("hand_pose", "gaze")}, "modality must be one of"),
        ({"modalities": ("emg", "emg")}, "must not repeat"),
        ({"modalities": ()}, "must not be empty unless text_dim"),
        ({"feature_dim": 30, "anchor_group_size": 8}, "divisible"),
        ({"expert_dropout": 1.0}, "expert_dropout"),
    ],
)
def test_config_validates_early(kw, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        ActionEncoderConfig(**kw)


def test_config_object_is_the_init_signature():
    cfg = ActionEncoderConfig(feature_dim=D, expert_hidden=HID, projection_dims=(24,), text_dim=8, anchor_group_size=8)
    enc = MultisensoryActionEncoder.from_config_object(cfg)
    assert enc.cfg == cfg
    assert list(inspect.signature(MultisensoryActionEncoder.__init__).parameters)[1:] == [
        f.name for f in dataclasses.fields(ActionEncoderConfig)
    ]
    # what save_pretrained writes (JSON lists) builds the same typed config back
    assert MultisensoryActionEncoder.from_config(enc.config).cfg == cfg
    with pytest.raises(ValueError, match="MultisensoryActionEncoder: .*'ego_motion_from'"):
        MultisensoryActionEncoder(ego_motion_from=("body_pose",))  # the action warp's field, not the encoder's


# ----------------------------------------------------------------------------------------------
# Components
# ----------------------------------------------------------------------------------------------
def test_component_shapes():
    expert, decoder, proj = ModalityExpert(144, HID), ModalityDecoder(144, HID), ProjectionHead(HID, D, (24, 24))
    x = torch.rand(10, 144)
    h = expert(x)
    assert h.shape == (10, HID) and decoder(h).shape == (10, 144) and proj(h).shape == (10, D)
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in expert.modules()) == 2
    assert sum(isinstance(m, torch.nn.Linear) for m in expert.modules()) == 4

    anchoring = ChannelAnchoring(D, group_size=8)
    z, anchor = torch.randn(B, T, 4, D), torch.randn(B, D)
    assert anchoring(z, anchor).shape == (B, T, 4, D)
    attn = anchoring.attention(z, anchor)
    assert attn.shape == (B, T, 4, D // 8, 8, 8)
    torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)))

    present = torch.ones(B, 4, dtype=torch.bool)
    for method in FUSIONS:
        y, w = Fusion(method, 4, D)(z, present)
        assert y.shape == (B, T, D)
        assert (w is not None) == (method == "softmax")

    c = context_vectors(torch.randn(B, H, D), T)
    assert c.shape == (B, T, D)
    for method in ("hyperplane", "projection", "none"):
        assert LatentInteraction(method)(torch.randn(B, T, D), c).shape == (B, T, D)


def test_anchoring_depends_on_anchor_and_is_per_token():
    torch.manual_seed(0)
    anchoring = ChannelAnchoring(D, group_size=8)
    z = torch.randn(2, 3, D)
    a1, a2 = torch.randn(2, D), torch.randn(2, D)
    assert not torch.allclose(anchoring(z, a1), anchoring(z, a2))
    # tokens do not interact: a token's output only depends on itself and its sample's anchor
    z2 = z.clone()
    z2[:, 1] = 7.0
    torch.testing.assert_close(anchoring(z, a1)[:, [0, 2]], anchoring(z2, a1)[:, [0, 2]])
    # starts close to identity (layer scale 0.1), so training begins from the projected features
    assert (anchoring(z, a1) - z).abs().max() < 1.0


def test_context_vectors_history_then_mean():
    ctx = torch.randn(B, H, D)
    c = context_vectors(ctx, T)
    torch.testing.assert_close(c[:, :H], ctx)
    torch.testing.assert_close(c[:, H:], ctx.mean(1, keepdim=True).expand(B, T - H, D))
    with pytest.raises(ValueError):
        context_vectors(ctx, H - 1)


# ----------------------------------------------------------------------------------------------
# Pure losses / interaction operators
# ----------------------------------------------------------------------------------------------
def test_projection_is_orthogonal_to_context():
    y, c = torch.randn(50, D), torch.randn(50, D)
    p = projection(y, c)
    assert (p * c).sum(-1).abs().max() < 1e-4
    # what was removed is parallel to c
    r = y - p
    cos = torch.nn.functional.cosine_similarity(r, c, dim=-1).abs()
    torch.testing.assert_close(cos, torch.ones_like(cos))
    # a zero context leaves y alone
    torch.testing.assert_close(projection(y, torch.zeros_like(c)), y)


def test_hyperplane_identity_on_positive_side_projection_on_negative():
    c = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([[2.0, 3.0], [-2.0, 3.0], [1.0, -1.0]])
    out = hyperplane(y, c)
    torch.testing.assert_close(out[0], y[0])  # y·c = 2 ≥ 0: kept
    torch.testing.assert_close(out[1], torch.tensor([0.0, 3.0]))  # y·c < 0: projected
    torch.testing.assert_close(out[2], torch.tensor([1.0, 0.0]))
    # y exactly on the hyperplane counts as the positive side
    torch.testing.assert_close(hyperplane(torch.tensor([[0.0, 5.0]]), torch.tensor([[1.0, 0.0]])), torch.tensor([[0.0, 5.0]]))


def test_norm_loss_hand_made_case_and_stop_gradient():
    target = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [3.0, 4.0]]], requires_grad=True)  # step norms 5, 0
    inter = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [0.0, 2.0]]], requires_grad=True)  # norms (t≥1) 1, 2
    loss = norm_loss(inter, target)
    torch.testing.assert_close(loss, torch.tensor(((1 - 5) ** 2 + (2 - 0) ** 2) / 2))
    loss.backward()
    assert target.grad is None  # targets are detached
    assert inter.grad[0, 0].abs().sum() == 0 and inter.grad[0, 1:].abs().sum() > 0
    # sample mask: a second, excluded sample does not change the value
    t2 = torch.cat([target.detach(), torch.zeros(1, 3, 2)])
    i2 = torch.cat([inter.detach(), torch.ones(1, 3, 2)])
    torch.testing.assert_close(norm_loss(i2, t2, sample_mask=torch.tensor([True, False])), torch.tensor(10.0))


def test_reconstruction_loss_values():
    pred, target = torch.zeros(2, 4), torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(reconstruction_loss(pred, target), torch.tensor((1.0 + 1.0) / 2))
    torch.testing.assert_close(reconstruction_loss(pred, target, mask=torch.tensor([True, False])), torch.tensor(1.0))


# ----------------------------------------------------------------------------------------------
# Fusion semantics
# ----------------------------------------------------------------------------------------------
def test_softmax_fusion_matches_paper_formula():
    z = torch.randn(B, T, 3, D)
    y, w = softmax_fusion(z, torch.ones(B, 3, dtype=torch.bool))
    expected_w = z.exp() / z.exp().sum(2, keepdim=True)
    torch.testing.assert_close(w, expected_w)
    torch.testing.assert_close(y, (expected_w * z).sum(2))


@pytest.mark.parametrize("fn", [lambda z, p: softmax_fusion(z, p)[0], mean_fusion, max_fusion])
def test_symmetric_fusions_are_permutation_invariant_and_masked(fn):
    z = torch.randn(B, T, 4, D)
    present = torch.tensor([[True, True, True, True], [True, False, True, False], [False, False, False, True]])
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(fn(z, present), fn(z[:, :, perm], present[:, perm]))
    # absent slots may hold anything, even inf/nan-free garbage, without changing the result
    z2 = z.clone()
    z2[~present[:, None, :, None].expand_as(z)] = 1e4
    torch.testing.assert_close(fn(z, present), fn(z2, present))
    # a single present modality fuses to itself
    torch.testing.assert_close(fn(z, present)[2], z[2, :, 3])


def test_encoder_is_invariant_to_modality_order():
    enc_a = tiny().eval()
    enc_b = tiny(modalities=tuple(reversed(MODALITY_NAMES))).eval()
    enc_b.load_state_dict(enc_a.state_dict())
    acts, ctx = make_actions(), make_context()
    reordered = {k: acts[k] for k in reversed(list(acts))}
    out_a, out_b = enc_a(acts, ctx), enc_b(reordered, ctx)
    torch.testing.assert_close(out_a.interaction, out_b.interaction, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_a.fused, out_b.fused, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("train", [False, True])
def test_dropped_modality_has_no_influence(fusion, train):
    enc = tiny(fusion=fusion, expert_dropout=0.0)
    enc.train(train)  # in training mode batch-norm must only see present rows
    acts, ctx = make_actions(), make_context()
    mask = {"emg": torch.tensor([True, False, False]), "hand_force": torch.tensor([False, False, False])}

    without = {k: v for k, v in acts.items() if k != "hand_force"}
    changed = dict(acts)
    changed["emg"] = acts["emg"].clone()
    changed["emg"][1:] = torch.rand_like(changed["emg"][1:]) * 50  # data of the absent rows
    changed["hand_force"] = torch.rand_like(acts["hand_force"]) * 50

    ref = enc(acts, ctx, action_mask=mask)
    for other_acts, other_mask in ((changed, mask), (without, {"emg": mask["emg"]})):
        out = enc(other_acts, ctx, action_mask=other_mask)
        torch.testing.assert_close(out.interaction, ref.interaction)
        torch.testing.assert_close(out.ssl_loss, ref.ssl_loss)
    # and the modality does matter when present
    assert not torch.allclose(enc(acts, ctx).interaction, ref.interaction)
    assert (ref.modality_features["hand_force"] == 0).all()
    if fusion == "softmax":
        assert (ref.fusion_weights[:, :, MODALITY_NAMES.index("hand_force")] == 0).all()
        assert (ref.fusion_weights[1:, :, MODALITY_NAMES.index("emg")] == 0).all()


def test_concat_fusion_works_with_missing_modalities():
    enc = tiny(fusion="concat").eval()
    acts, ctx = make_actions(names=("hand_pose", "emg")), make_context()
    out = enc(acts, ctx)
    assert out.interaction.shape == (B, T, D) and torch.isfinite(out.interaction).all()
    assert out.fusion_weights is None
    # concat is order-dependent by design: its linear layer sees the slots in config order
    assert enc.fuse.concat.proj.in_features == 4 * D


def test_all_dropped_gives_null_embedding():
    enc = tiny().train()
    acts, ctx = make_actions(), make_context()
    null = enc.null_embedding[:T]
    out = enc({}, ctx)  # no action at all (classifier-free guidance / "actions dropped" baseline)
    for b in range(B):
        torch.testing.assert_close(out.interaction[b], null)
        torch.testing.assert_close(out.fused[b], null)
    assert out.ssl_loss.item() == 0.0
    # per sample: only sample 1 has every modality masked out
    mask = {m: torch.tensor([True, False, True]) for m in MODALITY_NAMES}
    out = enc.eval()(acts, ctx, action_mask=mask)
    torch.testing.assert_close(out.interaction[1], null)
    assert not torch.allclose(out.interaction[0], null)
    # fewer steps than num_steps use the first steps of the null embedding
    short = enc({}, ctx, num_steps=6)
    torch.testing.assert_close(short.interaction[0], enc.null_embedding[:6])
    # the null embedding is trained
    out.interaction.sum().backward()
    assert enc.null_embedding.grad is not None and enc.null_embedding.grad.abs().sum() > 0


@pytest.mark.parametrize("interaction", ["hyperplane", "projection", "none"])
def test_interaction_modes_in_encoder(interaction):
    enc = tiny(interaction=interaction).eval()
    ctx = make_context()
    out = enc(make_actions(), ctx)
    c = context_vectors(ctx, T)
    dots = (out.interaction * c).sum(-1)
    if interaction == "projection":
        assert dots.abs().max() < 1e-3
    elif interaction == "hyperplane":
        assert dots.min() > -1e-3
        keep = (out.fused * c).sum(-1) >= 0
        torch.testing.assert_close(out.interaction[keep], out.fused[keep])
    else:
        torch.testing.assert_close(out.interaction, out.fused)


# ----------------------------------------------------------------------------------------------
# Encoder end to end
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("anchoring", ["channel_attention", "none"])
def test_encoder_output_shapes_and_gradients(anchoring):
    enc = tiny(anchoring=anchoring).train()
    acts = make_actions()
    ctx = make_context().requires_grad_(True)
    target = torch.randn(B, T, D)
    out = enc(acts, ctx, target_features=target)
    assert isinstance(out, ActionEncoderOutput)
    assert out.interaction.shape == out.fused.shape == (B, T, D)
    assert set(out.modality_features) == set(MODALITY_NAMES)
    assert all(v.shape == (B, T, D) for v in out.modality_features.values())
    assert out.fusion_weights.shape == (B, T, 4, D)
    assert out.ssl_loss.dim() == 0 and out.norm_loss.dim() == 0
    (out.interaction.square().mean() + out.ssl_loss + 0.1 * out.norm_loss).backward()
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0  # context features get gradients
    for name in MODALITY_NAMES:
        assert enc.experts[name].net[0].weight.grad.abs().sum() > 0
        assert enc.decoders[name].net[0].weight.grad.abs().sum() > 0
    if anchoring == "channel_attention":
        assert enc.channel_anchoring.gate.grad.abs().sum() > 0
    else:
        assert enc.channel_anchoring is None
    assert enc(acts, ctx).norm_loss is None


def test_ssl_loss_decreases_when_overfitting_one_batch():
    names = ("hand_pose", "emg")
    enc = tiny(modalities=names, expert_dropout=0.0).train()
    acts, ctx = make_actions(b=4, names=names), make_context(b=4)
    params = [p for n, p in enc.named_parameters() if n.startswith(("experts", "decoders"))]
    opt = torch.optim.Adam(params, lr=5e-3)
    first = None
    for _ in range(40):
        loss = enc(acts, ctx).ssl_loss
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


def test_eval_mode_is_deterministic():
    enc = tiny().eval()
    acts, ctx = make_actions(), make_context()
    a, b = enc(acts, ctx), enc(acts, ctx)
    torch.testing.assert_close(a.interaction, b.interaction, rtol=0, atol=0)
    # batch composition does not change a sample's output in eval mode
    one = enc({k: v[:1] for k, v in acts.items()}, ctx[:1])
    torch.testing.assert_close(one.interaction[0], a.interaction[0], rtol=1e-5, atol=1e-6)


def test_text_expert_path():
    enc = tiny(text_dim=8).eval()
    acts, ctx = make_actions(), make_context()
    text = torch.randn(B, 8)
    with_text = enc(acts, ctx, text_features=text)
    assert not torch.allclose(with_text.interaction, enc(acts, ctx).interaction)
    assert with_text.fusion_weights.shape == (B, T, 5, D)
    assert set(with_text.modality_features) == set(MODALITY_NAMES) | {"text"}
    # text only (UniSim-style conditioning): works, and the text matters
    only = enc({}, ctx, text_features=text)
    assert not torch.allclose(only.interaction[0], enc.null_embedding[:T])
    assert not torch.allclose(only.interaction, enc({}, ctx, text_features=torch.randn(B, 8)).interaction)
    # masked-out text has no influence; a batch of one text works in training mode (layer-norm)
    m = {"text": torch.tensor([True, False, True])}
    other = text.clone()
    other[1] = 100.0
    torch.testing.assert_close(enc(acts, ctx, m, text).interaction, enc(acts, ctx, m, other).interaction)
    enc.train()(acts, ctx, {"text": torch.tensor([False, True, False])}, text)
    # text-only encoder (no sensory experts)
    text_only = tiny(modalities=(), text_dim=8).eval()
    assert text_only({}, ctx, text_features=text).interaction.shape == (B, T, D)


def test_ignores_unconfigured_modalities_and_rejects_bad_inputs():
    enc = tiny(modalities=("hand_pose", "emg")).eval()
    acts, ctx = make_actions(), make_context()
    torch.testing.assert_close(
        enc(acts, ctx).interaction, enc({k: acts[k] for k in ("hand_pose", "emg")}, ctx).interaction
    )
    with pytest.raises(ActionInputError, match="unknown modality 'gaze'"):
        enc({"gaze": torch.zeros(B, T, 2)}, ctx)
    with pytest.raises(ActionInputError, match=r"actions\['emg'\] must have shape"):
        enc({"emg": torch.zeros(B, T, 8)}, ctx)
    with pytest.raises(ActionInputError, match="steps"):
        enc({"emg": acts["emg"], "hand_pose": acts["hand_pose"][:, :5]}, ctx)
    with pytest.raises(ActionInputError, match="context_features"):
        enc(acts, torch.zeros(B, H, D + 1))
    with pytest.raises(ActionInputError, match="text_dim=None"):
        enc(acts, ctx, text_features=torch.zeros(B, 8))
    with pytest.raises(ActionInputError, match="action_mask"):
        enc(acts, ctx, action_mask={"emg": torch.ones(B + 1, dtype=torch.bool)})
