"""The suite's Markdown report: ``markdown(result)`` of the ``paper_tables.json`` dict the suite writes."""

from __future__ import annotations

from typing import Sequence

from tabulate import tabulate

from mmsim.training.experiments.paper_tables.margins import ACTIONS_UNUSED_DB, DROP_ROW
from mmsim.training.experiments.paper_tables.variants import MODALITY_LABELS

METRICS = ("mse", "psnr", "ssim", "lpips", "fvd")
PAPER_METRICS = ("mse", "psnr", "lpips", "fvd")
LABELS = {"mse": "MSE ↓", "psnr": "PSNR ↑", "ssim": "SSIM ↑", "lpips": "LPIPS ↓", "fvd": "FVD ↓"}


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown (pipe) table of preformatted cells: the first column left, the others right-aligned."""
    return tabulate(rows, headers=list(header), tablefmt="pipe", disable_numparse=True,
                    colalign=("left",) + ("right",) * (len(header) - 1))


def _fmt(m: str, x) -> str:
    if x is None:
        return "n/a"
    return f"{x:.2f}" if m == "psnr" else f"{x:.1f}" if m == "fvd" else f"{x:.3f}" if m == "lpips" else f"{x:.4f}"


def _paper_fmt(m: str, x) -> str:
    if x is None:
        return "–"
    return f"{x:.1f}" if m in ("psnr", "fvd") else f"{x:.3f}"


def _met(x: dict) -> str:
    return "**met**" if x["met"] else "**not met**"


def _possible(x: dict) -> str:
    return "possible" if x["possible"] else "not possible with these models"


def _targets_md(t: dict, ceiling: dict) -> list[str]:
    """The margins and drops against their targets, one line each."""
    margin, drop = t["margin_db_required"], t["max_drop_db_allowed"]
    lines = ["## Targets", ""]
    if "vs_best_text" in t:
        x = t["vs_best_text"]
        lines.append(f"- Ours multisensory vs best text row ({x['best']}): {x['margin_db']:+.2f} dB PSNR "
                     f"(target ≥ {margin} dB): {_met(x)}")
    if "vs_best_single_modality" in t:
        x = t["vs_best_single_modality"]
        lines.append(f"- Ours multisensory vs best single modality ({x['best']}): {x['margin_db']:+.2f} dB PSNR "
                     f"(target ≥ {margin} dB): {_met(x)}")
    if "rows" in ceiling:
        body, ours = ceiling["rows"]["Body-pose only"]["all"], ceiling["rows"]["Ours multisensory"]["all"]
        lines.append(
            f"- How much of that margin the world holds (the oracle's margin ceiling): hand pose, EMG and force decide "
            f"{100 * ceiling['mask_fraction']['all']:.1f}% of the future pixels, which hold "
            f"{100 * body['share_of_mse_in_mask']:.0f}% of Body-pose only's squared error; filled with the truth "
            f"they would lift it by {body['ceiling_gain']:+.2f} dB. Ours' error there: "
            f"{ours['model_mse'] * ours['share_of_mse_in_mask']:.5f} vs Body-pose only's "
            f"{body['model_mse'] * body['share_of_mse_in_mask']:.5f} (MSE pooled over all pixels)")
    if "test_time_drop" in t:
        x = t["test_time_drop"]
        per = ", ".join(f"{k}: {v:+.2f}" for k, v in x["per_modality_db"].items())
        lines.append(f"- Largest test-time drop ({x['worst']}): {x['drop_db']:.2f} dB (target ≤ {drop} dB): "
                     f"{_met(x)} ({per})")
    if "joint" in t:
        x = t["joint"]
        lines.append(
            f"- Both of the last two targets at once need Ours' {DROP_ROW[x['modality']]} row to lose at most "
            f"{x['ratio_required']:.2f}x what {x['modality']} loses (MSE above Ours'). The trained models: "
            f"{x['unknown_mse_above_ours']:.5f} / {x['alone_mse_above_ours']:.5f} = {x['ratio']:.2f}x ({_possible(x)})")
    if "joint_text" in t:
        x = t["joint_text"]
        lines.append(
            f"- The text margin and the drop target at once need Ours' {x['drop_row']} row to lose at most "
            f"{x['ratio_required']:.2f}x what {x['text_row']} loses, i.e. to beat it by {margin - drop:.1f} dB. "
            f"The trained models: {x['unknown_mse_above_ours']:.5f} / {x['text_mse_above_ours']:.5f} = "
            f"{x['ratio']:.2f}x ({_possible(x)})")
    if "actions_used" in t:
        x = t["actions_used"]
        used = x["ours_minus_all_actions_dropped_db"]
        line = f"- Actions used at all: Ours multisensory minus itself with every action dropped = {used:+.2f} dB"
        if x.get("ours_minus_copy_last_db") is not None:
            line += f"; minus copying the last context frame = {x['ours_minus_copy_last_db']:+.2f} dB"
        if used < ACTIONS_UNUSED_DB:
            line += (". **The models do not use their conditioning yet at this budget**: the rows differ by noise, "
                     "so the margins above are not a ranking. Raise `--budget-steps` (same work folder: runs "
                     "continue).")
        lines.append(line)
    if len(lines) == 2:
        lines.append("- (not enough finished rows yet)")
    return lines + [""]


def _modality_information_md(mi: dict) -> list[str]:
    if "held" not in mi:
        return [f"Is each modality in the video? {mi.get('status', 'pending')}", ""]
    n = mi["num_clips"]
    total = mi["every_modality_held"]["mse"]
    feas = mi.get("feasibility", {}).get("modalities", {})

    def share(x: dict) -> str:
        return f"{100 * x['mse'] / total:.0f}%" if total > 0 else "n/a"

    rows = [[MODALITY_LABELS.get(m, m), f"{x['mse']:.5f}", f"{x['psnr_pooled']:.2f}", share(x), f"{x['visible_clips']}/{n}",
             f"{mi['alone'][m]['mse']:.5f}" if m in mi.get("alone", {}) else "–",
             f"{feas[m]['ratio']:.2f}" if m in feas else "–"] for m, x in mi["held"].items()]
    rows += [[name, f"{x['mse']:.5f}", f"{x['psnr_pooled']:.2f}", share(x), f"{x['visible_clips']}/{n}", "", ""]
             for name, x in (("every modality", mi["every_modality_held"]), ("(copy last frame)", mi["copy_last_frame"]))]
    lines = ["## Is each modality's information in the video? (the oracle, no model)", "",
             f"The world's oracle re-renders the future of the same {n} test clips with one modality's future "
             "held at its last history value, and compares it with the future under the recorded actions "
             "(`python -m mmsim.training.experiments.modality_information`). The error is what not knowing that "
             "modality costs; a model's margin from a modality is bounded by it. \"Only it known\" guesses every "
             "other modality instead (held, or for poses extrapolated at their last velocity where that costs "
             "less): what a single-modality model could at best see.", "",
             table(["Modality", "not known: MSE", "PSNR of mean MSE", "share of all-held MSE", "clips visibly changed",
                    "only it known: MSE", "ratio"], rows)]
    if "body_parts" in mi:
        bp = mi["body_parts"]
        lines += ["", f"Body pose's own parts held: only the arms (where the hands are) {bp['arms']['mse']:.5f}; only the "
                  f"camera and trunk (where the head camera looks) {bp['camera and trunk']['mse']:.5f}."]
    if feas:
        f = mi["feasibility"]

        def verdict(feasible, consequence: str) -> str:
            bad = [MODALITY_LABELS.get(m, m) for m, x in feas.items() if not feasible(x)]
            return "Every modality passes." if not bad else f"{', '.join(bad)} fails: {consequence}"

        lines += ["", f"Ratio: not known / only it known. Ours ≥ {f['margin_db']} dB above every single-modality row "
                  f"while no dropped modality costs more than {f['drop_db']} dB needs every ratio ≤ "
                  f"{f['ratio_required']:.2f}, if a model's MSE is its own rendering error plus the oracle's loss. "
                  + verdict(lambda x: x["feasible"], "on this data the two targets exclude each other for any "
                            "model that errs additively.")]
        if all("vs_text" in x for x in feas.values()):
            per = ", ".join(f"{MODALITY_LABELS.get(m, m)} {x['vs_text']['ratio']:.2f}" for m, x in feas.items())
            lines += ["", f"The text margin and the drop target pair the same way, with a text row's loss taken as that "
                      f"of knowing no action (every modality held): not known / nothing known = {per} (each ≤ "
                      f"{f['ratio_required']:.2f} needed). "
                      + verdict(lambda x: x["vs_text"]["feasible"], "without it, the other modalities cannot lift "
                                f"Ours {f['margin_db'] - f['drop_db']:.1f} dB above a text row.")]
    return lines + [""]


def _paper_table_md(title: str, entries: dict) -> tuple[list[str], dict]:
    """One paper table (ours beside the paper's numbers) and the reasons of its unavailable metrics."""
    unavailable, rows = {}, []
    for name, e in entries.items():
        paper = [_paper_fmt(m, (e.get("paper") or {}).get(m)) for m in PAPER_METRICS]
        if e.get("status") != "done":
            rows.append([name] + ["–"] * len(METRICS) + paper)
            continue
        unavailable.update(e.get("unavailable", {}))
        rows.append([name] + [_fmt(m, e["metrics"].get(m)) for m in METRICS] + paper)
    header = ["Method"] + [LABELS[m] for m in METRICS] + [f"paper {LABELS[m]}" for m in PAPER_METRICS]
    lines = [f"## {title}", "", table(header, rows)]
    pending = {n: e["status"] for n, e in entries.items() if e.get("status") != "done"}
    if pending:
        lines += [""] + [f"- {n}: {s}" for n, s in pending.items()]
    return lines + [""], unavailable


def markdown(result: dict) -> str:
    meta = result["meta"]
    mach = meta["machine"]
    b = meta["budget"]
    lines = ["# Paper tables on the synthetic benchmark", "",
             f"Command: `{meta['command']}`  ",
             f"Budget (every variant): {b['steps']} steps, batch {b['batch_size']}, lr {b['lr']}, preset "
             f"`{b['preset']}` (config `{b['config']}`)  ",
             f"Machine: {mach['cpu']}, {mach['cores']} cores, torch {mach['torch']}"
             + (f", GPU {mach['gpu']}" if mach.get("gpu") else "") + "  ",
             f"Data: `{meta['data']}`; held-out subject test split; date {meta['date']}", "",
             "Ours vs the paper: the paper's numbers are from ActionSense with a 252 M-parameter I2VGen backbone "
             "trained 15 days on 8 H100; ours are from the synthetic world with the CPU preset. Compare rankings and "
             "margins, not absolute values.", ""]  # fmt: skip
    lines += _targets_md(result["targets"], result.get("margin_ceiling") or {})
    lines += _modality_information_md(result.get("modality_information") or {})
    steps = meta["suite"].get("eval_steps")
    lines += [f"Evaluation: {meta['suite'].get('eval_clips') or 'all'} test clips per row, "
              f"{steps if steps else 'the preset default'} sampler step(s), one fixed noise draw per clip.", ""]
    refs = result.get("references") or {}
    if refs:
        rows = [[name] + [_fmt(m, r["metrics"].get(m)) for m in METRICS] for name, r in refs.items()]
        lines += ["## Reference rows", "", table(["Reference"] + [LABELS[m] for m in METRICS], rows), ""]

    unavailable: dict[str, str] = {}
    for t, title in meta["titles"].items():
        md, missing = _paper_table_md(title, result[t])
        lines += md
        unavailable.update(missing)
    if unavailable:
        lines += ["## Unavailable metrics", ""] + [f"- **{k.upper()}**: {v}" for k, v in unavailable.items()] + [""]

    cf = result.get("control_fidelity") or {}
    lines += ["## Control fidelity (beyond the paper)", ""]
    if "edits" in cf:
        from mmsim.training.control import markdown as control_md

        lines.append(control_md(cf, title="Ours multisensory on edited trajectories, scored against the oracle"))
    else:
        lines += [f"- {cf.get('status', 'pending')}", ""]
    fig = meta.get("drift_figure", {})
    if "html" in fig:
        lines += ["## Temporal drift", "", f"Per-frame curves of {fig['rows_of']}: `{fig['html']}`"
                  + (f", `{fig['png']}`" if str(fig.get("png", "")).endswith(".png") else f" (PNG {fig.get('png')})"), ""]
    secs = {k: v for k, v in meta.get("train_seconds", {}).items() if v}
    if secs:
        lines += ["## Training time per variant (wall seconds, all sessions)", "",
                  ", ".join(f"{k}: {v:.0f}" for k, v in secs.items()), ""]
    return "\n".join(lines)


__all__ = ["LABELS", "METRICS", "PAPER_METRICS", "markdown", "table"]
