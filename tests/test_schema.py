import numpy as np
import pytest

from mmsim_core import schema
from mmsim_core.schema import MODALITIES, NormalizationStats, denormalize, normalize


def test_shapes_and_action_dim_match_the_paper():
    assert {n: s.shape for n, s in MODALITIES.items()} == {
        "hand_pose": (2, 24, 3), "body_pose": (28, 3), "emg": (2, 8), "hand_force": (2, 32, 32)}
    assert schema.ACTION_DIM == 2292
    assert len(schema.BODY_POSE_INDICES) == 28 and max(schema.BODY_POSE_INDICES) < 23
    assert schema.HAND_POSE_INDICES.count(0) == 5  # every chain starts at the Carpus


def test_chain_names_resolve_to_xsens_segments():
    spine = [schema.XSENS_BODY_SEGMENTS[i] for i in schema.BODY_CHAINS["spine"]]
    assert spine[0] == "Head" and spine[-1] == "Pelvis"
    assert schema.RIGHT_HAND_OFFSET + schema.NUM_FINGER_SEGMENTS == schema.NUM_SEGMENTS_WITH_FINGERS == 63


def test_unknown_modality_is_named():
    with pytest.raises(ValueError, match="must be one of .*got 'gaze'"):
        schema.check_modality_names(["emg", "gaze"])


def test_minmax_round_trip_and_json(tmp_path):
    rng = np.random.default_rng(0)
    raw = {"hand_pose": rng.normal(size=(50, 2, 24, 3)) * 5, "body_pose": rng.normal(size=(50, 28, 3)) * 40,
           "emg": rng.uniform(0, 60, size=(50, 2, 8)), "hand_force": rng.uniform(500, 620, size=(50, 2, 32, 32))}
    stats = NormalizationStats.fit(raw)
    assert stats.minimum["hand_pose"].shape == (1, 1, 3)
    assert stats.minimum["emg"].shape == (1, 8)
    assert "hand_force" not in stats.minimum  # fixed clip needs no statistics
    stats.save(tmp_path / "n.json")
    loaded = NormalizationStats.load(tmp_path / "n.json")
    for name in ("hand_pose", "body_pose", "emg"):
        x = normalize(name, raw[name], loaded)
        assert x.dtype == np.float32 and x.min() >= -1e-6 and x.max() <= 1 + 1e-6
        np.testing.assert_allclose(denormalize(name, x, loaded), raw[name], rtol=1e-4, atol=1e-3)
    f = normalize("hand_force", raw["hand_force"], None)
    assert f.min() == 0.0 and f.max() == 1.0
    np.testing.assert_allclose(normalize("hand_force", np.array([565.0]), None), [0.5])


def test_missing_stats_is_a_clear_error():
    with pytest.raises(KeyError, match="no normalization statistics for modality 'emg'"):
        normalize("emg", np.zeros((1, 2, 8)), NormalizationStats())


def test_check_action_arrays_names_what_is_wrong():
    T = 5
    good = {n: np.zeros((T, *schema.MODALITIES[n].shape), np.float64) for n in ("emg", "hand_force")}
    out = schema.check_action_arrays(good, "clip.npz")
    assert {k: (v.dtype, v.shape) for k, v in out.items()} == {
        "emg": (np.float32, (T, 2, 8)), "hand_force": (np.float32, (T, 2, 32, 32))}
    flat = {"emg": np.zeros((T, 16))}
    assert schema.check_action_arrays(flat, allow_flat=True)["emg"].shape == (T, 2, 8)
    with pytest.raises(ValueError, match=r"clip.npz: emg must have shape \(T, 2, 8\), got \(5, 16\)"):
        schema.check_action_arrays(flat, "clip.npz")
    with pytest.raises(ValueError, match="unknown modality 'gaze'"):
        schema.check_action_arrays({"gaze": np.zeros((T, 2))})
    with pytest.raises(ValueError, match="hand_force has 4 steps but the clip has 5"):
        schema.check_action_arrays({**good, "hand_force": good["hand_force"][:4]})
    with pytest.raises(ValueError, match="emg has 5 steps but the clip has 6"):
        schema.check_action_arrays(good, steps=6)
    bad = {"emg": np.full((T, 2, 8), np.nan)}
    with pytest.raises(KeyError, match="emg contains NaN or inf"):
        schema.check_action_arrays(bad, error=KeyError)


def test_stream_paths_and_roles_come_from_the_registry():
    from dataclasses import replace

    assert MODALITIES["emg"].source == ("myo-left/emg", "myo-right/emg")
    assert MODALITIES["emg"].sources[0].device_stream("right") == ("myo-right", "emg")
    assert MODALITIES["body_pose"].source == ("xsens-segments/position_cm", "xsens-CoM/position_cm")
    assert MODALITIES["hand_force"].display_name == "hand force" and MODALITIES["emg"].display_name == "EMG"
    assert schema.modality_with_role("grip") == "hand_force"
    assert schema.modality_with_role("grip", among=("emg", "body_pose")) is None
    # geometric normalisation lives in the entry: body pose minus the centre of mass
    segments = np.random.default_rng(0).normal(size=(3, schema.NUM_SEGMENTS_WITH_FINGERS, 3))
    com = segments[:, 0] + 1.0
    body = MODALITIES["body_pose"].from_streams([segments, com])
    assert body.shape == (3, 28, 3) and body.dtype == np.float32
    np.testing.assert_allclose(body[:, 0], segments[:, schema.BODY_POSE_INDICES[0]] - com, rtol=1e-6)
    with pytest.raises(ValueError, match="grip role needs a fixed_clip"):
        replace(MODALITIES["emg"], roles=frozenset({"grip"}))
    with pytest.raises(ValueError, match="several source streams need clip_values"):
        replace(MODALITIES["body_pose"], clip_values=None)
    with pytest.raises(ValueError, match="align must be one of"):
        replace(MODALITIES["emg"], align="mean")
