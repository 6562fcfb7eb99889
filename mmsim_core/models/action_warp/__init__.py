"""The action warp (ours): ego-motion of the camera and placement of the hands, from the actions.

``model.py`` is the pipeline component; ``ego_motion.py``, ``hand_map.py`` and ``hand_projection.py`` are its parts.
"""

from mmsim_core.models.action_warp.model import ActionWarp, ActionWarpConfig, ActionWarpOutput  # noqa: F401
