"""Plotly views of a clip (edited over original), frame panels at the cursor, and sweep grids."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mmsim.app.clip import Clip
from mmsim.app.edits import channel_groups, control_measure, controls, curves, default_channels
from mmsim_core import schema
from mmsim_core.evaluation.video import difference_image, upscale

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
# 16 distinguishable colours (left arm cool hues, right arm warm hues, for the 16 EMG channels).
PALETTE16 = ("#1f77b4", "#17becf", "#2ca02c", "#98df8a", "#9467bd", "#c5b0d5", "#393b79", "#6b6ecf",
             "#d62728", "#ff9896", "#ff7f0e", "#ffbb78", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f")
UNITS = {"emg": "EMG envelope (raw units, 0..128)", "hand_force": "pressure (sum of taxels, 0 = 530 ADC, 1 = 600 ADC each)",
         "hand_pose": "hand pose (normalised units)", "body_pose": "body pose (normalised units)"}
CONTEXT_SHADE = "rgba(150,150,150,0.15)"
LAYOUT = dict(margin=dict(l=40, r=10, t=30, b=30), height=260, template="plotly_white",
              legend=dict(orientation="h", y=-0.25, font=dict(size=9)))


def _raw(clip: Clip, name: str, stats, original: bool = False) -> np.ndarray | None:
    acts = clip.original_actions if original else clip.actions
    if name not in acts:
        return None
    try:
        return schema.denormalize(name, acts[name], stats)
    except KeyError:  # no statistics: show normalised values
        return acts[name]


def _decorate(fig: go.Figure, clip: Clip, cursor: int, title: str, rows: int = 1) -> go.Figure:
    for r in range(1, rows + 1):
        fig.add_vrect(x0=-0.5, x1=clip.h - 0.5, fillcolor=CONTEXT_SHADE, line_width=0, row=r, col=1)
        fig.add_vline(x=cursor, line_color="#d62728", line_width=2, row=r, col=1)
    fig.update_layout(title=dict(text=title, font=dict(size=12)), **LAYOUT)
    fig.update_xaxes(title_text="step", dtick=1)
    return fig


def curve_figure(clip: Clip, modality: str, channels: Sequence[str] | None, cursor: int) -> go.Figure:
    """Selected channel curves (normalised), edited solid over original dashed."""
    fig = make_subplots(rows=1, cols=1)
    if modality not in clip.actions:
        fig.add_annotation(text=f"no {modality} in this clip", showarrow=False)
        return _decorate(fig, clip, cursor, modality)
    chans = channels or default_channels(modality)
    cur = curves(clip.actions, modality, chans)
    orig = curves(clip.original_actions, modality, chans) if modality in clip.original_actions else {}
    x = np.arange(clip.num_steps)
    for i, c in enumerate(chans):
        col = PALETTE[i % len(PALETTE)]
        if c in orig:
            fig.add_trace(go.Scatter(x=x, y=orig[c], mode="lines", line=dict(color=col, dash="dot", width=1),
                                     name=f"{c} (original)", showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=cur[c], mode="lines+markers", line=dict(color=col), name=c))
    return _decorate(fig, clip, cursor, f"{modality} (normalised; dotted = original)")


def emg_figure(clip: Clip, cursor: int, stats=None) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=("left arm", "right arm"),
                        vertical_spacing=0.12)
    raw, orig = _raw(clip, "emg", stats), _raw(clip, "emg", stats, original=True)
    if raw is None:
        fig.add_annotation(text="no EMG in this clip", showarrow=False)
        return _decorate(fig, clip, cursor, "EMG", rows=2)
    x = np.arange(clip.num_steps)
    for s in range(2):
        for c in range(raw.shape[2]):
            col = PALETTE16[(s * 8 + c) % 16]
            if orig is not None:
                fig.add_trace(go.Scatter(x=x, y=orig[:, s, c], mode="lines", line=dict(color=col, dash="dot", width=1),
                                         showlegend=False, hoverinfo="skip"), row=s + 1, col=1)
            fig.add_trace(go.Scatter(x=x, y=raw[:, s, c], mode="lines", line=dict(color=col, width=1.5),
                                     name=f"{'LR'[s]}{c + 1}"), row=s + 1, col=1)
        fig.add_trace(go.Scatter(x=x, y=raw[:, s].mean(axis=1), mode="lines", name=f"{'LR'[s]} envelope",
                                 line=dict(color="#000", width=3)), row=s + 1, col=1)
    fig = _decorate(fig, clip, cursor, "EMG envelope, raw units 0..128 (black: mean per arm; dotted = original)", rows=2)
    fig.update_layout(height=330)
    return fig


def tactile_figure(clip: Clip, cursor: int, stats=None) -> go.Figure:
    """Both tactile maps at the cursor and the total force of each hand over the clip."""
    fig = make_subplots(rows=1, cols=3, column_widths=[0.28, 0.28, 0.44],
                        subplot_titles=("left hand", "right hand", "pressure sum per hand and region"))
    if "hand_force" not in clip.actions:
        fig.add_annotation(text="no tactile force in this clip", showarrow=False)
        fig.update_layout(**LAYOUT)
        return fig
    raw = clip.actions["hand_force"]  # one scale everywhere: per taxel 0 (530 ADC) .. 1 (600 ADC)
    for s in range(2):
        fig.add_trace(go.Heatmap(z=raw[cursor, s], zmin=0, zmax=1, colorscale="Inferno", showscale=(s == 1),
                                 colorbar=dict(len=0.8, x=0.56, thickness=8)), row=1, col=s + 1)
        fig.update_yaxes(autorange="reversed", showticklabels=False, row=1, col=s + 1)
        fig.update_xaxes(showticklabels=False, row=1, col=s + 1)
    x = np.arange(clip.num_steps)
    orig = clip.original_actions.get("hand_force")
    for s, side in enumerate(schema.SIDES):
        for r, (region, dash) in enumerate((("total", "solid"), ("fingers", "dash"), ("palm", "dashdot"))):
            name = f"{side} {region}"
            col = PALETTE[s]
            if orig is not None and region == "total":
                fig.add_trace(go.Scatter(x=x, y=control_measure(clip.original_actions, "hand_force", name), mode="lines",
                                         showlegend=False, line=dict(color=col, dash="dot", width=1), hoverinfo="skip"),
                              row=1, col=3)
            fig.add_trace(go.Scatter(x=x, y=control_measure(clip.actions, "hand_force", name), name=name,
                                     mode="lines+markers" if region == "total" else "lines",
                                     line=dict(color=col, dash=dash, width=2 if region == "total" else 1)), row=1, col=3)
    fig.add_vrect(x0=-0.5, x1=clip.h - 0.5, fillcolor=CONTEXT_SHADE, line_width=0, row=1, col=3)
    fig.add_vline(x=cursor, line_color="#d62728", line_width=2, row=1, col=3)
    fig.update_layout(title=dict(text=f"tactile maps at step {cursor} (0 = 530 ADC, 1 = 600 ADC)", font=dict(size=12)), **LAYOUT)
    return fig


def _chain_lines(points: np.ndarray, chains: Sequence[Sequence[int]]):
    """Line segments (with None breaks) through the given point rows, for one Scatter3d."""
    xs, ys, zs = [], [], []
    for chain in chains:
        for i in chain:
            xs.append(points[i, 0])
            ys.append(points[i, 1])
            zs.append(points[i, 2])
        xs.append(None)
        ys.append(None)
        zs.append(None)
    return xs, ys, zs


def _body_chains():
    out, k = [], 0
    for seg in schema.BODY_CHAINS.values():
        out.append(list(range(k, k + len(seg))))
        k += len(seg)
    return out


def _hand_chains():
    out, k = [], 0
    for chain in schema.HAND_CHAINS.values():
        out.append(list(range(k, k + len(chain))))
        k += len(chain)
    return out


def skeleton_figure(clip: Clip, cursor: int, stats=None) -> go.Figure:
    """Body and both hands at the cursor (raw cm), edited solid, original faint."""
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "scene"}, {"type": "scene"}]],
                        subplot_titles=("body pose (cm, minus CoM)", "hand pose (cm, from each carpus)"))
    for name, col, chains in (("body_pose", 1, _body_chains()), ("hand_pose", 2, _hand_chains())):
        raw, orig = _raw(clip, name, stats), _raw(clip, name, stats, original=True)
        if raw is None:
            continue
        sets = [(raw[cursor], 1.0, "edited")] + ([(orig[cursor], 0.25, "original")] if orig is not None else [])
        for pts, alpha, tag in sets:
            if name == "hand_pose":
                for s, side in enumerate(schema.SIDES):
                    p = pts[s] + np.array([0.0 if s == 0 else 25.0, 0, 0])  # side by side
                    xs, ys, zs = _chain_lines(p, chains)
                    fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines+markers", opacity=alpha,
                                               marker=dict(size=2, color=PALETTE[s]), line=dict(color=PALETTE[s], width=4),
                                               name=f"{side} hand ({tag})", showlegend=False), row=1, col=col)
            else:
                xs, ys, zs = _chain_lines(pts, chains)
                fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines+markers", opacity=alpha,
                                           marker=dict(size=2, color=PALETTE[2]), line=dict(color=PALETTE[2], width=5),
                                           name=f"body ({tag})", showlegend=False), row=1, col=col)
    fig.update_layout(margin=dict(l=0, r=0, t=30, b=0), height=300,
                      title=dict(text=f"skeletons at step {cursor}", font=dict(size=12)))
    fig.update_scenes(aspectmode="data", xaxis_title="", yaxis_title="", zaxis_title="")
    return fig


def metrics_figure(metrics: dict | None, h: int) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("PSNR (dB)", "SSIM"))
    if metrics:
        x = np.arange(h, h + len(metrics["psnr"]))
        fig.add_trace(go.Scatter(x=x, y=metrics["psnr"], mode="lines+markers", name="PSNR"), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=metrics["ssim"], mode="lines+markers", name="SSIM"), row=1, col=2)
    else:
        fig.add_annotation(text="no ground truth for this clip", showarrow=False, x=0.5, y=0.5, xref="paper",
                           yref="paper")
    fig.update_layout(**{**LAYOUT, "height": 220, "showlegend": False})
    fig.update_xaxes(title_text="step")
    return fig


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------
def frame_panel(clip: Clip, prediction: np.ndarray | None, cursor: int, scale: int = 4) -> np.ndarray:
    """[ground truth | prediction | |difference|] at the cursor (context steps show the context)."""
    S = clip.context.shape[1]
    blank = np.full((S, S, 3), 40, np.uint8)
    truth = clip.truth_frames()
    if cursor < clip.h:
        gt = clip.context[cursor]
        pr = clip.context[cursor]
    else:
        gt = truth[cursor] if truth is not None else blank
        pr = prediction[cursor - clip.h] if prediction is not None else blank
    diff = difference_image(pr, gt) if (truth is not None and (prediction is not None or cursor < clip.h)) else blank
    gap = np.full((S, 2, 3), 255, np.uint8)
    return upscale(np.concatenate([gt, gap, pr, gap, diff], axis=1), scale)


def thumbnail(frames: np.ndarray, scale: int = 2) -> np.ndarray:
    """First and last context frames side by side."""
    return upscale(np.concatenate([frames[0], frames[-1]], axis=1), scale)


def sweep_grid(frames: np.ndarray, values: Sequence[float], context_last: np.ndarray, scale: int = 2) -> np.ndarray:
    """Rows = sweep values, columns = last context frame + F futures: (H', W', 3) uint8 with value labels."""
    import cv2

    n, F, S = frames.shape[0], frames.shape[1], frames.shape[2]
    label_w, gap = 96, 2
    tile = S * scale
    canvas = np.full((n * (tile + gap) + gap, label_w + (F + 1) * (tile + gap), 3), 24, np.uint8)
    for r in range(n):
        y = gap + r * (tile + gap)
        cv2.putText(canvas, values[r] if isinstance(values[r], str) else f"{values[r]:g}", (6, y + tile // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (235, 235, 235), 1, cv2.LINE_AA)
        row = [context_last] + list(frames[r])
        for c, img in enumerate(row):
            x = label_w + c * (tile + gap)
            canvas[y:y + tile, x:x + tile] = upscale(img, scale)
    return canvas


def display_transform(modality: str, channel: str, stats) -> tuple[float, float]:
    """``(a, b)`` with display value = a * curve value + b: EMG and raw-channel pose curves in their units
    when the statistics are known, everything else as the curve itself."""
    if modality != "emg" or stats is None or channel in controls(modality) and not channel.endswith("envelope"):
        return 1.0, 0.0
    spec = schema.MODALITIES[modality]
    try:
        lo = schema.denormalize(modality, np.zeros(spec.shape, np.float32), stats).ravel()
        hi = schema.denormalize(modality, np.ones(spec.shape, np.float32), stats).ravel()
    except KeyError:
        return 1.0, 0.0
    groups = {**channel_groups(modality)}
    idx = list(groups[channel]) if channel in groups else list(controls(modality)[channel].features)
    return float(np.mean(hi[idx] - lo[idx])), float(np.mean(lo[idx]))


def _colour(modality: str, channel: str, i: int) -> str:
    if channel.endswith("envelope"):
        return "#111111" if channel.startswith("L") else "#8c2d04"
    if modality == "emg" and channel[:1] in "LR" and channel[1:].isdigit():
        return PALETTE16[(0 if channel[0] == "L" else 8) + int(channel[1:]) - 1]
    return PALETTE16[(2 * i) % 16] if modality != "emg" else PALETTE[i % len(PALETTE)]


def editor_payload(clip: Clip, modality: str, channels: Sequence[str] | None, cursor: int,
                   selection: tuple[int, int] | None = None, stats=None) -> dict:
    """The curve editor's value (``app/static/curve_editor.js`` draws it, sends drags back in display units;
    ``a``/``b`` map curve values to display values)."""
    chans = list(channels or default_channels(modality))
    has = modality in clip.actions
    cur = curves(clip.actions, modality, chans) if has else {}
    orig = curves(clip.original_actions, modality, chans) if modality in clip.original_actions else {}
    series = []
    for i, c in enumerate(chans):
        if c not in cur:
            continue
        a, b = display_transform(modality, c, stats)
        series.append({"name": c, "values": [float(a * v + b) for v in cur[c]],
                       "original": [float(a * v + b) for v in orig[c]] if c in orig else None,
                       "color": _colour(modality, c, i), "a": a, "b": b})
    vals = [v for s_ in series for v in s_["values"] + (s_["original"] or [])]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    pad = max(1e-3, 0.15 * (hi - lo), 0.05 * abs(hi))  # auto-scaled: light contact is not a flat line
    return {"modality": modality, "steps": int(clip.num_steps), "context": int(clip.h), "cursor": int(cursor),
            "series": series, "ymin": lo - pad, "ymax": hi + pad, "unit": UNITS.get(modality, ""),
            "selection": list(selection) if selection else None, "present": has,
            "version": int(len(clip.edits.recipe))}


def sprite(frames: np.ndarray) -> str:
    """Frames (N, S, S, 3) uint8 side by side as one PNG data URL (the viewer crops the one at the cursor)."""
    import base64

    import cv2

    strip = np.concatenate(list(frames), axis=1)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def viewer_payload(clip: Clip | None, prediction: np.ndarray | None = None, before: np.ndarray | None = None,
                   world: np.ndarray | None = None, cursor: int = 0, version: int = 0, fps: float | None = None) -> dict:
    """The frame viewer's value (``app/static/viewer.js``): every step of each row as one sprite, sent once per
    clip and render, so scrubbing and playback run in the browser. Rows: ground truth, prediction, their
    difference; after an edit also the prediction before the edit and the edit's effect (|after - before|);
    for synthetic clips with an oracle, the world's own future under the edited actions."""
    if clip is None:
        return {"tiles": [], "steps": 0, "context": 0, "cursor": 0, "version": version, "fps": 4}
    S = clip.context.shape[1]
    T, h = clip.num_steps, clip.h
    blank = np.full((T - h, S, S, 3), 40, np.uint8)
    truth = clip.truth_frames()

    def full(fut):
        return np.concatenate([clip.context, fut])

    tiles = [{"key": "truth", "label": "ground truth" if truth is not None else "context (no ground truth)",
              "src": sprite(truth if truth is not None else full(blank))}]
    pred = full(prediction) if prediction is not None else None
    tiles.append({"key": "prediction", "label": "prediction" if pred is not None else "prediction (press Generate)",
                  "src": sprite(pred if pred is not None else full(blank))})
    if truth is not None and pred is not None:
        tiles.append({"key": "difference", "label": "|prediction − truth|",
                      "src": sprite(np.stack([difference_image(p, g) for p, g in zip(pred, truth)]))})
    if before is not None and pred is not None:
        b = full(before)
        tiles.append({"key": "before", "label": "before the edit", "src": sprite(b)})
        tiles.append({"key": "effect", "label": "edit effect |after − before|", "short": "edit effect",
                      "src": sprite(np.stack([difference_image(p, q) for p, q in zip(pred, b)]))})
    if world is not None:
        tiles.append({"key": "world", "short": "the world",
                      "label": "the world's own future for " + ("the edited actions" if before is not None
                                                                   else "these actions") + " (its oracle re-rendered)",
                      "src": sprite(full(world))})
    step = int(clip.meta.get("frame_step", 1) or 1)
    return {"tiles": tiles, "steps": int(T), "context": int(h), "cursor": int(min(max(cursor, 0), T - 1)),
            "version": int(version), "size": int(S), "fps": float(fps or 30.0 / step)}


__all__ = ["curve_figure", "emg_figure", "tactile_figure", "skeleton_figure", "metrics_figure", "frame_panel",
           "thumbnail", "sweep_grid", "editor_payload", "viewer_payload", "sprite", "channel_groups"]
