"""The oracle of a synthetic recording: its scene and per-frame world state, re-rendered under any
(edited) raw action trajectories.

>>> oracle = load_oracle(meta["source"])                      # the recording's HDF5 path
>>> frames = oracle.render_clip(meta["video_frame_indices"], edited_raw_actions)   # (T, 64, 64, 3)

``edited_raw_actions`` are raw clip values (``schema.denormalize`` of what a ``ClipDataset`` returns):
``hand_pose`` (T,2,24,3) carpus-relative cm, ``body_pose`` (T,28,3) minus-CoM cm, ``emg`` (T,2,8)
envelope, ``hand_force`` (T,2,32,32) ADC, one step per frame index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mmsim_core import schema
from mmsim_core.errors import ActionInputError, MMSimError, RecordingError
from mmsim_core.synth import world
from mmsim_core.synth.recording import ORACLE_FORMAT, oracle_path
from mmsim_core.video import center_crop_resize


@dataclass
class OracleRecording:
    """Scene + world state at every world-video frame of one synthetic recording."""

    path: Path
    """The recording's HDF5."""
    scene: world.Scene
    frame_times: np.ndarray
    """``(N,)`` seconds since ``scene.t_start`` (the HDF5 frame timestamps minus the start)."""
    states: np.ndarray
    """``(N, len(world.STATE_FIELDS))`` state *at* each frame (after that frame's actions acted)."""
    true_force: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    """(grip force (N, 2), fingertip share (N, 2), gloves (2, 2, 32, 32)): the true tactile signal at the
    frames, for recordings whose HDF5 has no tactile gloves."""

    @property
    def num_frames(self) -> int:
        return len(self.frame_times)

    def state_at(self, frame_index: int) -> np.ndarray:
        i = int(frame_index)
        if not 0 <= i < self.num_frames:
            raise IndexError(f"frame index {i} out of range for {self.num_frames} frames ({self.path})")
        return self.states[i].copy()

    def describe_state(self, frame_index: int) -> dict:
        """The state at a frame in words: segment/activity and each object's fields."""
        s = self.state_at(frame_index)
        seg = self.scene.segments[int(s[0])]
        objs = []
        for i, obj in enumerate(self.scene.objects(int(s[0]))):
            st = world.object_state(s, i)
            own = {f: float(st[world.OWN0 + k]) for k, f in enumerate(obj.FIELDS)}
            objs.append({"kind": obj.kind, **{f: float(v) for f, v in zip(world.COMMON_FIELDS, st)}, **own})
        return {"segment": int(s[0]), "activity": seg.activity, "objects": objs}

    def _indices(self, frame_indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
        if len(idx) == 0:
            raise ActionInputError("frame_indices is empty")
        if (idx < 0).any() or (idx >= self.num_frames).any():
            raise ActionInputError(f"frame indices must lie in [0, {self.num_frames}), got {idx.min()}..{idx.max()}")
        if (np.diff(idx) <= 0).any():
            raise ActionInputError("frame indices must increase")
        return idx

    def render_clip(self, frame_indices: Sequence[int], raw_actions: Mapping[str, np.ndarray],
                    size: int | None = schema.FRAME_SIZE) -> np.ndarray:
        """Frames the world shows at ``frame_indices`` under ``raw_actions`` (one step per index), starting
        from the recorded state at ``frame_indices[0]`` and stepping with the frame-time differences.
        Rendered at native resolution, then centre-cropped and resized to ``size`` (None: native).

        Modalities left out of ``raw_actions`` keep their recorded values (read from the HDF5 the way
        preprocessing aligns them), so ``render_clip(idx, {"emg": edited})`` edits EMG alone."""
        idx = self._indices(frame_indices)
        acts = self.complete_actions(idx, raw_actions)
        frames = world.render(self.scene, self.states[idx[0]], acts, self.frame_times[idx])
        return frames if size is None else center_crop_resize(frames, size)

    def complete_actions(self, frame_indices: Sequence[int], raw_actions: Mapping[str, np.ndarray]
                         ) -> dict[str, np.ndarray]:
        """``raw_actions`` with every modality they leave out filled in from the recording (the true grip
        force where the gloves were not recorded), checked against the world's valid ranges."""
        idx = self._indices(frame_indices)
        acts = {n: np.asarray(raw_actions[n]) for n in schema.MODALITY_NAMES if n in raw_actions}
        missing = [n for n in schema.MODALITY_NAMES if n not in acts]
        if missing:
            recorded = self.recorded_actions(idx, missing)
            if "hand_force" in missing and "hand_force" not in recorded and self.true_force is not None:
                recorded["hand_force"] = self.true_hand_force(idx)  # gloves not recorded: the world's own
            absent = [n for n in missing if n not in recorded]
            if absent:
                raise ActionInputError(f"{self.path}: the recording has no {absent} to fill in; pass them in "
                                       f"raw_actions")
            acts.update(recorded)
        return world.check_actions(acts, steps=len(idx), where=f"render_clip ({len(idx)} frame indices)")

    def recorded_actions(self, frame_indices: Sequence[int], modalities: Sequence[str] | None = None
                         ) -> dict[str, np.ndarray]:
        """Raw clip actions at these frames as preprocessing computes them from the HDF5 streams
        (nearest sample, EMG window envelope), via the ActionSense reader. Modalities the recording
        lacks (e.g. no tactile gloves) are absent from the result."""
        from mmsim_core.data.actionsense import ActionSenseRecording, align_modalities

        idx = self._indices(frame_indices)
        with ActionSenseRecording(self.path) as rec:
            ft = rec.frame_times()[idx]
            have = rec.available_modalities()
            wanted = [m for m in (modalities or schema.MODALITY_NAMES) if m in have]
            values, _ = align_modalities(rec, ft, wanted)
        return values

    def true_hand_force(self, frame_indices: Sequence[int]) -> np.ndarray:
        """The tactile maps the world felt at these frames (noise-free), ``(T, 2, 32, 32)`` ADC."""
        from mmsim_core.synth.recording import tactile_maps

        if self.true_force is None:
            raise RecordingError(self.path, "the oracle sidecar holds no true grip force")
        idx = self._indices(frame_indices)
        force, tips, gloves = self.true_force
        return np.stack([tactile_maps(force[idx, h], tips[idx, h], gloves[h, 0], gloves[h, 1]) for h in range(2)], 1)

    def recorded_frames(self, frame_indices: Sequence[int], size: int | None = schema.FRAME_SIZE) -> np.ndarray:
        """The world video's frames at these indices (decoded from the mp4)."""
        from mmsim_core.video import iter_video_frames

        idx = self._indices(frame_indices)
        video = next((p for p in self.path.parent.iterdir()
                      if "eye-tracking-video-world" in p.name and p.suffix == ".mp4"), None)
        if video is None:
            raise RecordingError(self.path, "no world video beside the recording")
        wanted, out = set(int(i) for i in idx), {}
        for i, fr in enumerate(iter_video_frames(video)):
            if i in wanted:
                out[i] = fr if size is None else center_crop_resize(fr, size)
            if i >= idx[-1]:
                break
        if len(out) != len(idx):
            raise RecordingError(video, f"video has fewer frames than index {int(idx[-1])}")
        return np.stack([out[int(i)] for i in idx])


def load_oracle(hdf5_path: str | Path) -> OracleRecording:
    """Open the oracle sidecar (``<hdf5 stem>.oracle.npz``) of a synthetic recording."""
    path = Path(hdf5_path)
    side = oracle_path(path)
    if not side.is_file():
        raise RecordingError(path, f"no oracle sidecar {side.name} beside the recording (only recordings made "
                                   f"by `mmsim synth` have one)")
    with np.load(side, allow_pickle=False) as z:
        fmt = str(z["format"])
        if fmt != ORACLE_FORMAT:
            raise RecordingError(side, f"oracle format {fmt!r} is not {ORACLE_FORMAT!r}")
        scene = world.Scene.from_json(str(z["scene_json"]), counter_texture=z["counter_texture"],
                                      wall_texture=z["wall_texture"])
        true_force = (z["grip_force"], z["grip_tips"], z["gloves"]) if "grip_force" in z.files else None
        return OracleRecording(path=path, scene=scene, frame_times=z["frame_times"].astype(np.float64),
                               states=z["states"].astype(np.float64), true_force=true_force)


class OracleCache:
    """The oracle of each recording a command touches, loaded once: ``oracles(meta["source"])``. A recording
    without one raises an :class:`MMSimError` that starts with ``purpose`` (e.g. ``"mmsim plan"``), so the user
    reads which command needs synthetic recordings."""

    def __init__(self, purpose: str):
        self.purpose = purpose
        self._loaded: dict[str, OracleRecording] = {}

    def __call__(self, source: str | Path) -> OracleRecording:
        key = str(source)
        if key not in self._loaded:
            try:
                self._loaded[key] = load_oracle(source)
            except MMSimError as e:
                raise MMSimError(f"{self.purpose} needs synthetic recordings with an oracle: {e}") from None
        return self._loaded[key]
