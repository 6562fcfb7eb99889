"""The result targets the experiments measure against, and when two of them can hold at once.

Two targets on the held-out subject:

* **margin**: Ours multisensory scores at least :data:`TARGET_MARGIN_DB` above every single-modality row
  (and above every text row);
* **drop**: dropping any one modality at test costs Ours at most :data:`TARGET_MAX_DROP_DB`.

Model a predictor's MSE as ``e0 + L``: its own rendering error ``e0`` (that of Ours, which hears every
modality) plus the information loss ``L`` of the futures it must guess. The drop target asks
``L(m unknown) <= (10^(drop/10) - 1) * e0`` and the margin target ``L(only m known) >= (10^(margin/10) - 1) * e0``,
so both can hold for some ``e0`` only if ``L(m unknown) / L(only m known) <= FEASIBLE_RATIO`` (0.49) for every
modality m. The margin over a text row pairs with the drop target the same way: a text row hears no
trajectory, so its ``L`` is that of knowing none, and both need ``L(m unknown) / L(nothing known) <=
FEASIBLE_RATIO`` (Ours without m must still beat the text row by margin - drop = 0.7 dB).
"""

from __future__ import annotations

TARGET_MARGIN_DB = 1.5
TARGET_MAX_DROP_DB = 0.8
FEASIBLE_RATIO = (10 ** (TARGET_MAX_DROP_DB / 10) - 1) / (10 ** (TARGET_MARGIN_DB / 10) - 1)
"""The largest ``L(m unknown) / L(only m known)`` with which the margin and the drop targets can both hold."""

__all__ = ["FEASIBLE_RATIO", "TARGET_MARGIN_DB", "TARGET_MAX_DROP_DB"]
