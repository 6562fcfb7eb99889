"""The margins and drops the finished rows show, read against the targets.

    from mmsim.training.experiments.paper_tables.margins import margins
    m = margins(tables, references)   # {"vs_best_text": ..., "test_time_drop": ..., "joint": ..., ...}

``tables`` is ``{table: {row name: entry}}`` as the suite writes it (an entry is ``{"status": "done",
"metrics": {...}}`` once evaluated); ``references`` are the reference rows ("Copy last context frame",
"Ours, all actions dropped"). Only what the finished rows allow is computed; the rest is left out.
"""

from __future__ import annotations

from mmsim.training.experiments.targets import FEASIBLE_RATIO, TARGET_MARGIN_DB, TARGET_MAX_DROP_DB

TEXT_ROWS = ("UniSim verb", "UniSim phrase", "UniSim sentence")
SINGLE_ROWS = ("Body-pose only", "Hand-pose only", "Muscle-EMG only", "Hand-force only")
DROP_ROW = {"Body-pose only": "No body pose", "Hand-pose only": "No hand pose", "Muscle-EMG only": "No muscle EMG",
            "Hand-force only": "No hand force"}
"""Table 1's single-modality row -> Table 3a's row of Ours without that modality."""
ACTIONS_UNUSED_DB = 0.3
"""Ours within this much of itself with every action dropped: the conditioning is not used yet."""


def _metric(tables: dict, table: str, name: str, key: str = "psnr") -> float | None:
    e = tables.get(table, {}).get(name, {})
    return e.get("metrics", {}).get(key) if e.get("status") == "done" else None


def _joint(tables: dict, unknown_row: str, other_row: str, other_key: str) -> dict | None:
    """Two targets at once, read off the trained models (see :mod:`~mmsim.training.experiments.targets`):
    what not hearing a modality costs Ours (``unknown_row`` of Table 3a) over what ``other_row`` of Table 1
    costs, both as MSE above Ours' own."""
    e0, unknown, other = (_metric(tables, t, n, "mse") for t, n in (("table3a", "All sensory used"),
                                                                  ("table3a", unknown_row), ("table1", other_row)))
    if None in (e0, unknown, other) or other <= e0:
        return None
    ratio = max(unknown - e0, 0.0) / (other - e0)
    return {"unknown_mse_above_ours": unknown - e0, other_key: other - e0, "ratio": ratio,
            "ratio_required": FEASIBLE_RATIO, "possible": ratio <= FEASIBLE_RATIO}


def margins(tables: dict, references: dict) -> dict:
    """Ours' margins over the best text and single-modality rows, its largest test-time drop, whether the
    actions are used at all, and whether a margin and the drop can hold together (``joint``, ``joint_text``)."""
    out = {"margin_db_required": TARGET_MARGIN_DB, "max_drop_db_allowed": TARGET_MAX_DROP_DB}
    ours = _metric(tables, "table1", "Ours multisensory")
    for key, names in (("vs_best_text", TEXT_ROWS), ("vs_best_single_modality", SINGLE_ROWS)):
        psnr = {n: _metric(tables, "table1", n) for n in names}
        if ours is not None and None not in psnr.values():
            best = max(psnr, key=psnr.get)
            out[key] = {"best": best, "margin_db": ours - psnr[best], "met": ours - psnr[best] >= TARGET_MARGIN_DB}
    dropped, copy = references.get("Ours, all actions dropped"), references.get("Copy last context frame")
    if ours is not None and dropped is not None:
        # How much the actions help at all: when ~0, every margin above is noise, not a ranking.
        out["actions_used"] = {"ours_minus_all_actions_dropped_db": ours - dropped["metrics"]["psnr"],
                               "ours_minus_copy_last_db": ours - copy["metrics"]["psnr"] if copy else None}
    all_used = _metric(tables, "table3a", "All sensory used")
    drops = {n: _metric(tables, "table3a", n) for n in DROP_ROW.values()}
    if all_used is not None and None not in drops.values():
        worst = min(drops, key=drops.get)
        out["test_time_drop"] = {"worst": worst, "drop_db": all_used - drops[worst],
                                 "per_modality_db": {n: all_used - p for n, p in drops.items()},
                                 "met": all_used - drops[worst] <= TARGET_MAX_DROP_DB}
    # Against the best single modality: that margin and the drop; against the best text row: the text margin
    # and the drop (Ours without the modality must still beat the text row by margin - drop).
    if "vs_best_single_modality" in out and "test_time_drop" in out:
        best = out["vs_best_single_modality"]["best"]
        if (x := _joint(tables, DROP_ROW[best], best, "alone_mse_above_ours")) is not None:
            out["joint"] = {"modality": best, **x}
    if "vs_best_text" in out and "test_time_drop" in out:
        text, worst = out["vs_best_text"]["best"], out["test_time_drop"]["worst"]
        if (x := _joint(tables, worst, text, "text_mse_above_ours")) is not None:
            out["joint_text"] = {"text_row": text, "drop_row": worst, **x}
    return out


__all__ = ["ACTIONS_UNUSED_DB", "DROP_ROW", "margins"]
