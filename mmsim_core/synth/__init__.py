"""The synthetic multisensory world: a procedural egocentric kitchen whose recordings are
written in the real ActionSense layout, plus the oracle that re-renders them under edited actions.

* :func:`generate_dataset` - ``mmsim synth``: one recording per subject (HDF5 + world mp4 + oracle sidecar);
* :func:`load_oracle` - scene and per-frame world state of a recording; ``render_clip`` re-renders a clip;
* :func:`render` - the oracle itself: ``render(scene, initial_state, raw_actions, frame_times)``.
"""

from mmsim_core.synth.oracle import OracleCache, OracleRecording, load_oracle
from mmsim_core.synth.recording import generate_dataset, generate_recording, oracle_path
from mmsim_core.synth.script import ACTIVITIES, SynthConfigError
from mmsim_core.synth.world import STATE_FIELDS, Scene, render, simulate

__all__ = ["generate_dataset", "generate_recording", "load_oracle", "OracleCache", "OracleRecording", "oracle_path", "render",
           "simulate", "Scene", "STATE_FIELDS", "ACTIVITIES", "SynthConfigError"]
