"""Text descriptions of clips (paper §3.1 and §7.4).

ActionSense has only activity labels, so the paper derives three levels of description:

* **verb** — ``"peel"``
* **phrase** — verb + object, ``"peel potato"``
* **sentence** — adds speed from the frame step used to resample the clip (every frame -> "slow",
  every third frame -> "fast", every other frame -> no speed words) and grip from the tactile gloves:
  "holding it tightly" when the clip has frames whose hand force is significantly above the
  activity's average, "holding it gently" for the lowest-force clips of the activity, and which hand
  holds (the one with more force, or both when they are close):
  ``"person peel potato in a fast manner, while holding it tightly with left hand"``.
"""

from __future__ import annotations

import re

import numpy as np

from mmsim_core import schema

_DISHES = "3 each large/small plates, bowls, mugs, glasses, sets of utensils"

# Known ActionSense activities -> (verb, phrase).
ACTIVITY_TEXT: dict[str, tuple[str, str]] = {
    "Get/replace items from refrigerator/cabinets/drawers": ("get", "get items"),
    "Peel a cucumber": ("peel", "peel cucumber"),
    "Clear cutting board": ("clear", "clear cutting board"),
    "Slice a cucumber": ("slice", "slice cucumber"),
    "Peel a potato": ("peel", "peel potato"),
    "Slice a potato": ("slice", "slice potato"),
    "Slice bread": ("slice", "slice bread"),
    "Spread almond butter on a bread slice": ("spread", "spread almond butter"),
    "Spread jelly on a bread slice": ("spread", "spread jelly"),
    "Open/close a jar of almond butter": ("open", "open jar"),
    "Pour water from a pitcher into a glass": ("pour", "pour water"),
    "Clean a plate with a sponge": ("clean", "clean plate"),
    "Clean a plate with a towel": ("wipe", "wipe plate"),
    "Clean a pan with a sponge": ("clean", "clean pan"),
    "Clean a pan with a towel": ("wipe", "wipe pan"),
    "Get items from cabinets: " + _DISHES: ("get", "get dishes"),
    "Set table: " + _DISHES: ("set", "set table"),
    "Stack on table: 3 each large/small plates, bowls": ("stack", "stack dishes"),
    "Load dishwasher: " + _DISHES: ("load", "load dishwasher"),
    "Unload dishwasher: " + _DISHES: ("unload", "unload dishwasher"),
}
# Same activities, matched on their prefix before ':' (labels are sometimes abbreviated).
_PREFIX_TEXT = {k.split(":")[0].strip().lower(): v for k, v in ACTIVITY_TEXT.items()}

SPEED_WORDS = {1: "slow", 3: "fast"}
_ARTICLES = {"a", "an", "the", "some"}
_STOP = {"with", "from", "into", "onto", "on", "in", "to", "of", "for", "at", "using", "and"}

TIGHT_FACTOR = 1.5
"""A clip is "held tightly" when some frame's force exceeds this multiple of the activity's average
frame force (and is among the strongest ``1 - TIGHT_QUANTILE`` of the activity's clip peaks, so that
"tightly" stays informative when grip is bursty)."""
TIGHT_QUANTILE = 0.75
GENTLE_QUANTILE = 0.25
"""A clip is "held gently" when its mean force is in this lowest quantile of its activity's clips."""
BOTH_HANDS_RATIO = 0.8
"""Both hands hold when the weaker hand has at least this fraction of the stronger hand's force."""


def verb_phrase(label: str) -> tuple[str, str]:
    """``(verb, phrase)`` for an activity label: the table for known ActionSense activities, else a
    generic rule (first word of the label as verb, following content words up to a preposition)."""
    if label in ACTIVITY_TEXT:
        return ACTIVITY_TEXT[label]
    key = label.split(":")[0].strip().lower()
    if key in _PREFIX_TEXT:
        return _PREFIX_TEXT[key]
    words = [w.split("/")[0] for w in re.findall(r"[A-Za-z/]+", key)]
    words = [w for w in words if w]
    if not words:
        return "act", "act"
    verb = words[0]
    obj = []
    for w in words[1:]:
        if w in _STOP:
            break
        if w not in _ARTICLES:
            obj.append(w)
    return verb, " ".join([verb] + obj[:3])


def force_summary(grip_raw: np.ndarray, modality: str | None = None) -> np.ndarray:
    """Per-frame grip magnitude of each hand: the mean of the grip modality's normalised values (tactile
    readings clipped and scaled to [0, 1]). ``(T, 2, *per-hand shape)`` raw -> ``(T, 2)`` in [0, 1].
    ``modality`` defaults to the one playing the ``"grip"`` role in the schema."""
    modality = modality or schema.modality_with_role("grip")
    if modality is None:
        raise ValueError("no registered modality plays the 'grip' role")
    x = schema.normalize(modality, grip_raw, None)
    return x.reshape(x.shape[0], x.shape[1], -1).mean(axis=-1)


def describe(label: str, frame_step: int, force: np.ndarray | None = None,
             activity_force: tuple[float, float, float] | None = None) -> dict[str, str]:
    """Verb / phrase / sentence for one clip.

    ``force``: ``(T, 2)`` per-frame grip of the clip (:func:`force_summary`), None when the clip has
    no hand force. ``activity_force``: the reference of the clip's activity, ``(average frame grip,
    gentle threshold on the clip mean, tight threshold on the clip peak)`` from
    :func:`activity_force_reference`.
    """
    verb, phrase = verb_phrase(label)
    sentence = f"person {phrase}"
    speed = SPEED_WORDS.get(int(frame_step))
    if speed:
        sentence += f" in a {speed} manner"
    if force is not None and len(force) and float(np.max(force)) > 1e-6:
        total = force.sum(axis=1)  # (T,)
        per_hand = force.mean(axis=0)  # (2,)
        grip = ""
        if activity_force is not None:
            avg, gentle_thr, tight_thr = activity_force
            if avg > 0 and total.max() > tight_thr:
                grip = " tightly"
            elif total.mean() <= gentle_thr:
                grip = " gently"
        strong, weak = per_hand.max(), per_hand.min()
        if weak >= BOTH_HANDS_RATIO * strong:
            hand = " with both hands"
        else:
            hand = " with left hand" if per_hand[0] > per_hand[1] else " with right hand"
        sentence += f", while holding it{grip}{hand}"
    return {"verb": verb, "phrase": phrase, "sentence": sentence}


def activity_force_reference(clip_forces: list[np.ndarray]) -> tuple[float, float, float]:
    """From the per-frame grips ``[(T, 2), ...]`` of an activity's clips (both hands summed): the average
    frame grip, the gentle threshold (``GENTLE_QUANTILE`` of clip means) and the tight threshold
    (``TIGHT_FACTOR`` x average, at least the ``TIGHT_QUANTILE`` of clip peaks)."""
    if not clip_forces:
        return 0.0, -1.0, np.inf
    totals = [f.sum(axis=1) for f in clip_forces]
    avg = float(np.concatenate(totals).mean())
    means = np.array([t.mean() for t in totals])
    peaks = np.array([t.max() for t in totals])
    gentle = float(np.quantile(means, GENTLE_QUANTILE))
    tight = max(TIGHT_FACTOR * avg, float(np.quantile(peaks, TIGHT_QUANTILE)))
    return avg, gentle, tight
