"""The Gradio Blocks of the studio.

One screen holds the loop (frames at the cursor, curve editor, Generate, scores); signal views, clips,
sweep, annotation, export and the model card sit in tabs below. Frames travel to the browser once per clip
and render (``static/viewer.js`` scrubs and plays them locally). Every API event has an explicit
``api_name`` and labelled inputs and outputs; errors reach the page as one readable line and leave the
components as they were."""

from __future__ import annotations

import functools
import json
import logging
import queue
import shutil
import threading
from pathlib import Path

import gradio as gr
import numpy as np

from mmsim.app import io as sio
from mmsim.app import plots
from mmsim.app import propose as prop_lib
from mmsim.app.edits import RANGE_OPS, channel_groups, controls, default_controls, parse_recipe
from mmsim.app.engine import (Engine, card_markdown, check_model_error, control_markdown, control_scores,
                              steps_control)
from mmsim.app.session import Gallery, Session, clips_to_records, out_of_range, recipe_json
from mmsim_core import schema
from mmsim_core.errors import MMSimError
from mmsim_core.evaluation.video import upscale

logger = logging.getLogger("mmsim.app")
STATIC = Path(__file__).parent / "static"
RENDER = "render"  # concurrency group of everything that runs the model


def _static(name: str) -> str:
    return (STATIC / name).read_text()


def log_user_error(handler: str, message: str) -> None:
    """A user's mistake (a bad upload, an edit outside the clip) is one log line, not a traceback: the log
    stays readable on a public Space, and real bugs (logged with their traceback below) stand out."""
    logger.info("%s refused: %s", handler, " ".join(message.split())[:300])


def ui_errors(fn):
    """Known problems become gr.Error with their message; anything else is logged and summarised."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (MMSimError, ValueError, KeyError, IndexError) as e:
            msg = str(e).strip("'\"") or type(e).__name__
            log_user_error(fn.__name__, msg)
            raise gr.Error(msg, print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - the page must keep working
            logger.exception("studio handler %s failed", fn.__name__)
            raise gr.Error(f"internal error ({check_model_error(e)}); the studio keeps running",
                           print_exception=False) from None
    return wrapper


def ui_errors_gen(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            yield from fn(*args, **kwargs)
        except gr.Error:
            raise
        except (MMSimError, ValueError, KeyError, IndexError) as e:
            msg = str(e).strip("'\"") or type(e).__name__
            log_user_error(fn.__name__, msg)
            raise gr.Error(msg, print_exception=False) from None
        except Exception as e:  # noqa: BLE001
            logger.exception("studio handler %s failed", fn.__name__)
            raise gr.Error(f"internal error ({check_model_error(e)}); the studio keeps running",
                           print_exception=False) from None
    return wrapper


API_EXAMPLE = '''from gradio_client import Client

c = Client("{url}")
c.predict(clip=3, modality="emg", channels=["L1", "L2"], api_name="/load_clip")
c.predict(modality="emg", channels=["L1", "L2"], cursor=0, start=4, end=11, operation="scale", amount=3.0,
          api_name="/range_edit")
filmstrip, video, report, frames = c.predict(api_name="/generate")  # prompt, seed and steps are optional
print(report)
files = c.predict(api_name="/export_clip")  # edited trajectories + the frames they produced'''

SHORTCUTS = ("**Keys**: space play/pause · ←/→ step · Ctrl+Z undo · Ctrl+Shift+Z redo · G generate. "
             "Drag a point to edit it; drag across the background to select a range; click to move the cursor.")


def build_demo(engine: Engine, gallery: Gallery, title: str = "mmsim studio", proposer=None,
               proposer_status: str | None = None, goal_scorer=None) -> gr.Blocks:
    """The studio. ``proposer``: an :class:`app.propose.Proposer` for "Propose actions" (None: the panel says
    how to get one); ``proposer_status``: the panel's first line (default: the proposer's own); ``goal_scorer``:
    a :class:`~mmsim_core.policies.scorers.LearnedGoalScorer` ranking the proposals (None: the embedding)."""
    # One normalisation for the clips, the model and the world view: the model's.
    gallery.adopt_stats(engine.stats)
    stats = engine.stats if engine.stats is not None else gallery.stats
    # Only the bundled data may name an oracle for the world view (uploads carry their own meta).
    engine.world_roots = (Path(gallery.root).resolve(),) if gallery.root else ()
    thumbs = [(plots.thumbnail(it["context"]), gallery.caption(i)) for i, it in enumerate(gallery.items)]
    card = engine.card
    steps_default, steps_max, steps_note = steps_control(card)
    data_line = ("**Data:** synthetic — clips rendered by the project's simulated world, not camera video"
                 if gallery.synthetic else f"**Data:** {gallery.root or 'none bundled (upload a clip)'}")
    if engine.info.trained:
        model_line = (f"**Model:** `{card['preset']}`, {card['parameters'] / 1e6:.1f} M parameters"
                      + (", trained on the synthetic world" if card["synthetic"] else "") + " (see the Model tab)")
    else:
        model_line = f"⚠️ **{engine.info.note}**"
    all_mods = list(schema.MODALITY_NAMES)

    def choices(modality: str) -> list[str]:
        return list(controls(modality)) + list(channel_groups(modality))

    # ------------------------------------------------------------------ view helpers
    def saved_value(s: Session | None, modality: str, channels) -> dict:
        """What survives a page reload (browser storage): the gallery clip, its edits and annotations."""
        clip = s.clip if s else None
        if clip is None or clip.__dict__.get("gallery_index") is None:
            return {}
        return {"clip": int(clip.gallery_index), "recipe": clip.edits.recipe, "modality": modality,
                "channels": list(channels or []), "annotations": [a.to_dict() for a in clip.annotations]}

    def status_text(s: Session | None) -> str:
        if s is None or s.clip is None:
            return "Load a clip from the Clips tab (gallery, upload or raw recording)."
        clip = s.clip
        parts = [f"**{clip.label}**", f"{len(clip.edits.recipe)} edit(s)"]
        if s.prediction is not None and not s.prediction_is_current():
            parts.append("prediction is from before the last edit: press **Generate** (G)")
        warn = out_of_range(clip)
        return " · ".join(parts) + "".join(f"\n\n⚠️ {w}" for w in warn)

    def editor_view(s: Session | None, modality: str, channels, cursor) -> list:
        """[editor, status, recipe]: what every edit refreshes (fast: no plots, no frames)."""
        if s is None or s.clip is None:
            empty = {"modality": modality, "steps": 0, "series": [], "present": False}
            return [empty, status_text(s), "[]"]
        c = int(cursor or 0)
        chans = [ch for ch in (channels or []) if ch in choices(modality)] or default_controls(modality)
        return [plots.editor_payload(s.clip, modality, chans, c, s.selection, stats=stats), status_text(s),
                json.dumps(s.clip.edits.recipe)[:4000]]

    def signal_view(s: Session | None, cursor) -> list:
        if s is None or s.clip is None:
            return [None] * 4
        clip = s.clip
        c = int(min(max(int(cursor or 0), 0), clip.num_steps - 1))
        return [plots.emg_figure(clip, c, stats), plots.tactile_figure(clip, c, stats),
                plots.skeleton_figure(clip, c, stats), plots.curve_figure(clip, "body_pose", None, c)]

    def viewer_value(s: Session | None, cursor=0, reset: bool = False, final: bool = False) -> dict:
        if s is None or s.clip is None:
            return plots.viewer_payload(None)
        v = s.__dict__["viewer_version"] = s.__dict__.get("viewer_version", 0) + 1
        pred = s.prediction
        before = s.before if (s.before is not None and s.clip.edits.is_edited()) else None
        out = plots.viewer_payload(s.clip, pred, before, s.world, int(cursor or 0), v)
        out["reset"] = bool(reset)
        out["final"] = bool(final)  # the render's last view (comparisons, world, scores) is in
        return out

    def proposals_view(s: Session | None) -> list:
        """[use sample, report, ranked grid] of the session clip's proposals (cleared for a clip without any)."""
        pset = s.proposals if (s is not None and s.clip is not None) else None
        if pset is None or pset.clip is not s.clip:
            return [gr.update(choices=[], value=None), "", gr.update(value=None, visible=False)]
        grid = prop_lib.ranked_grid(pset)
        return [gr.update(choices=pset.choices(), value=pset.picked), prop_lib.report(pset),
                gr.update(value=grid, visible=grid is not None)]

    with gr.Blocks(title=title) as demo:
        state = gr.State(None)
        saved = gr.BrowserState({}, storage_key="mmsim-studio-v1")
        gr.Markdown(f"## {title}\n{model_line} · {data_line}", elem_id="header")

        # ============================================================== the loop: one screen
        with gr.Row(equal_height=False, elem_id="loop"):
            with gr.Column(scale=5, min_width=360):
                viewer = gr.HTML(value=plots.viewer_payload(None), label="frames at the cursor",
                                 html_template='<div class="mm-viewer-root" data-testid="viewer"></div>',
                                 css_template=_static("viewer.css"), js_on_load=_static("viewer.js"),
                                 elem_id="viewer", min_height=230)
                with gr.Row():
                    gen_btn = gr.Button("Generate (G)", variant="primary", elem_id="generate", scale=2, min_width=120)
                    seed = gr.Number(value=0, precision=0, label="seed", scale=1, min_width=70)
                    steps = gr.Slider(1, steps_max, value=steps_default, step=1, label="sampler steps",
                                      info=steps_note, scale=3, min_width=160, elem_id="steps")
                use_mods = gr.CheckboxGroup(all_mods, value=list(engine.modalities) or all_mods,
                                            label="actions given to the model (untick to drop one)",
                                            elem_id="use-mods")
                with gr.Row(visible=engine.has_text):
                    prompt = gr.Textbox(value="", label="text prompt (optional)", scale=3)
                    use_text = gr.Checkbox(value=False, label="use text", scale=1)
                render_md = gr.Markdown(label="render report", elem_id="render-status")
            with gr.Column(scale=6, min_width=420):
                with gr.Row():
                    ed_mod = gr.Dropdown(all_mods, value="emg", label="edit", scale=1, min_width=110,
                                         elem_id="edit-modality")
                    ed_chans = gr.Dropdown(choices("emg"), value=default_controls("emg"), multiselect=True,
                                           label="curves (controls first, then raw channels)", scale=4, max_choices=16,
                                           allow_custom_value=True, elem_id="edit-channels")
                editor = gr.HTML(value=None, label="curve editor",
                                 html_template='<div class="mm-curve-root" data-testid="curve-editor"></div>',
                                 css_template=_static("curve_editor.css"), js_on_load=_static("curve_editor.js"),
                                 elem_id="curve-editor", min_height=220)
                with gr.Row(elem_id="range-row"):
                    r_start = gr.Number(value=0, precision=0, label="from step", minimum=0, min_width=60)
                    r_end = gr.Number(value=schema.CLIP_FRAMES - 1, precision=0, label="to step", minimum=0,
                                      min_width=60)
                    r_op = gr.Dropdown(list(RANGE_OPS), value="scale", label="operation", min_width=90)
                    r_amount = gr.Number(value=1.5, label="amount (× + σ steps)", min_width=80)
                with gr.Row(elem_id="edit-buttons"):
                    r_apply = gr.Button("Apply to range", elem_id="apply-range", size="sm")
                    undo_btn = gr.Button("Undo", elem_id="undo", size="sm")
                    redo_btn = gr.Button("Redo", elem_id="redo", size="sm")
                    reset_btn = gr.Button("Reset", elem_id="reset", size="sm")
                status = gr.Markdown(label="status", elem_id="status")
                gr.Markdown(SHORTCUTS, elem_id="shortcuts")
        cursor = gr.Number(value=0, precision=0, label="cursor", visible=False)

        # ============================================================== around the loop: tabs
        with gr.Tabs() as tabs:
            with gr.Tab("Clips"):
                with gr.Tab("Gallery"):
                    gallery_c = gr.Gallery(value=thumbs, columns=6, height=300, allow_preview=False,
                                           label="bundled clips (first and last context frame)", elem_id="gallery")
                    with gr.Row():
                        clip_no = gr.Number(value=0, precision=0, label="clip #", minimum=0)
                        load_btn = gr.Button("Load clip", elem_id="load-clip")
                with gr.Tab("Upload"):
                    up_frames = gr.File(file_count="multiple", label="context: 4 images or 1 video",
                                        file_types=list(sio.IMAGE_EXTS + sio.VIDEO_EXTS))
                    up_traj = gr.File(label="trajectories: clip .h5 / .npz / .csv",
                                      file_types=[".h5", ".hdf5", ".npz", ".csv"], elem_id="upload-trajectories")
                    up_btn = gr.Button("Load upload", elem_id="load-upload")
                with gr.Tab("Raw recording"):
                    raw_h5 = gr.File(label="ActionSense recording .hdf5", file_types=[".hdf5", ".h5"])
                    raw_vid = gr.File(label="its world video (eye-tracking-video-world .mp4)", file_types=[".mp4"])
                    raw_open = gr.Button("Open recording")
                    raw_info = gr.Markdown(label="recording summary")
                    with gr.Row():
                        raw_start = gr.Number(value=0.0, label="clip start (s from recording start)")
                        raw_step = gr.Number(value=1, precision=0, label="frame step", minimum=1)
                    raw_cut = gr.Button("Cut clip here")
                    raw_export = gr.Button("Export all cut clips as a dataset")
                    raw_files = gr.File(label="cut clips dataset (.zip)")
            with gr.Tab("Propose actions", id="propose"):
                prop_status = gr.Markdown(proposer_status or (proposer.status() if proposer is not None
                                                              else prop_lib.NO_PROPOSER), elem_id="propose-status")
                gr.Markdown("The action proposer suggests futures of this clip's actions from its context frames "
                            "and the actions of its context steps, towards a text goal and/or a goal frame. The "
                            "chosen sample fills the curves (one edit: **Undo** takes it back); edit it further or "
                            "press **Generate**.")
                with gr.Row():
                    prop_text = gr.Textbox(value="", label="goal text (optional)", placeholder="lift the cup",
                                           elem_id="propose-text", scale=3)
                    prop_k = gr.Number(value=prop_lib.DEFAULT_SAMPLES, precision=0, minimum=1,
                                       maximum=prop_lib.MAX_SAMPLES, label="samples (K)", elem_id="propose-samples",
                                       scale=1, min_width=90)
                    prop_rank = gr.Checkbox(value=True, label="rank with the simulator (renders each sample; "
                                            "needs a goal frame)", elem_id="propose-rank", scale=2)
                with gr.Row():
                    prop_goal = gr.Image(value=None, type="filepath", sources=["upload", "clipboard"],
                                         label="goal frame (optional)", elem_id="propose-goal", height=180, scale=1)
                    with gr.Column(scale=2):
                        prop_goal_rec = gr.Button("Goal frame: this clip's recorded last frame", size="sm",
                                                  elem_id="propose-goal-recorded")
                        prop_btn = gr.Button("Propose actions", variant="primary", elem_id="propose-btn")
                        prop_pick = gr.Radio([], value=None, label="use sample", elem_id="propose-pick")
                prop_report = gr.Markdown(label="proposals", elem_id="propose-report")
                prop_grid = gr.Image(label="ranked samples: last context frame, then each sample's simulated future",
                                     interactive=False, visible=False, elem_id="propose-grid")
                gr.Markdown("**Paired export**: every sample rendered by the simulator (the seed, sampler steps, "
                            "actions given to the model and text prompt of the loop) as an (actions, video) "
                            "dataset: per sample the actions in the clip export's .h5 and .csv and an MP4, with a "
                            "`manifest.json`.")
                with gr.Row():
                    prop_export = gr.Button("Export all samples (.zip)", elem_id="export-proposals")
                prop_files = gr.File(label="proposals dataset (.zip)", elem_id="proposal-files")
                prop_export_md = gr.Markdown(label="export report", elem_id="propose-export-report")
            with gr.Tab("Signals"):
                with gr.Row():
                    emg_plot = gr.Plot(label="EMG")
                    tactile_plot = gr.Plot(label="tactile")
                with gr.Row():
                    skel_plot = gr.Plot(label="skeletons")
                    joints_plot = gr.Plot(label="body pose curves")
            with gr.Tab("What did my edit do?"):
                effect_md = gr.Markdown(label="edit effect", value="Edit a curve and press Generate: the viewer then shows the prediction "
                                        "before and after the edit and their difference, and for synthetic "
                                        "clips the world's own future under the edited actions.")
                metrics_plot = gr.Plot(label="per-frame metrics")
            with gr.Tab("Sweep"):
                with gr.Row():
                    sw_op = gr.Radio(["scale", "offset"], value="scale", label="vary")
                    sw_values = gr.Textbox(value="0, 0.5, 1, 2, 3", label="values (up to 8)")
                sw_btn = gr.Button("Run sweep (the edited curves and range above)")
                sw_img = gr.Image(label="rows: values (Δ = mean change of the future vs. the unchanged row); "
                                        "columns: last context frame then the future", interactive=False)
                sw_md = gr.Markdown(label="sweep report")
            with gr.Tab("Annotate"):
                with gr.Row():
                    an_unit = gr.Radio([("clip steps", "step"), ("recording seconds", "s")], value="step", label="span in")
                    an_start = gr.Number(value=0, label="start")
                    an_end = gr.Number(value=schema.CLIP_FRAMES - 1, label="end")
                with gr.Row():
                    an_activity = gr.Textbox(label="activity label", placeholder="Peel a potato")
                    an_verb = gr.Textbox(label="verb")
                    an_phrase = gr.Textbox(label="phrase")
                    an_sentence = gr.Textbox(label="sentence")
                with gr.Row():
                    an_btn = gr.Button("Add annotation")
                    an_use = gr.Button("Use latest as text prompt")
                    an_clear = gr.Button("Clear annotations")
                an_table = gr.Dataframe(headers=["on", "unit", "start", "end", "activity", "verb", "phrase", "sentence"],
                                        interactive=False, wrap=True, label="annotations")
            with gr.Tab("Edit tools"):
                with gr.Row():
                    cp_mod = gr.Dropdown(all_mods, value="hand_force", label="copy modality")
                    cp_from = gr.Number(value=1, precision=0, label="from gallery clip #")
                    cp_btn = gr.Button("Copy")
                recipe_box = gr.Code(label="edits so far (an edit recipe)", language="json", interactive=False)
                with gr.Row(visible=False):
                    api_edit = gr.Textbox(label="edit step JSON")
                    api_edit_btn = gr.Button("apply edit")
                    api_gen_btn = gr.Button("generate (API)")
                    restore_btn = gr.Button("restore")
            with gr.Tab("Export", id="export"):
                gr.Markdown("An exported clip pairs the **edited actions with the frames they produced** (the "
                            "prediction; the world's frames too for synthetic clips); without edits, the recorded "
                            "future. Actions are normalised values (min-max with the included "
                            "`normalization.json`; hand force 0..1 = 530..600 ADC per taxel); `meta.future_source` "
                            "says where the frames come from.")
                with gr.Row():
                    ex_btn = gr.Button("Export this clip (.h5 + .csv + .mp4)", elem_id="export-clip")
                    rr_btn = gr.Button("Rerun recording (.rrd)", elem_id="export-rerun")
                ex_files = gr.File(label="exports", file_count="multiple")
                with gr.Row():
                    video = gr.Video(label="ground truth | prediction | difference (MP4)", elem_id="video")
                    preview = gr.Image(label="filmstrip", interactive=False, elem_id="preview")
                gr.Markdown("**Batch export**: apply an edit recipe to many gallery clips and write an augmentation "
                            "dataset (`ClipDataset(folder, split='train')` reads it) with an MP4 per clip.")
                with gr.Row():
                    bx_clips = gr.Textbox(value="test", label="clips ('all', 'test', 'train', '0-9,12')")
                    bx_render = gr.Checkbox(value=True, label="render futures with the model")
                bx_recipe = gr.Code(label="edit recipe (JSON list)", language="json", value="[]", interactive=True)
                with gr.Row():
                    bx_fill = gr.Button("Use this clip's edits")
                    bx_btn = gr.Button("Batch export")
                bx_files = gr.File(label="augmentation dataset (.zip)")
                bx_md = gr.Markdown(label="batch report")
            with gr.Tab("Model & API"):
                gr.Markdown(card_markdown(card, engine.info))
                gr.Markdown("**Use via API** (`pip install gradio_client`):")
                api_code = gr.Code(API_EXAMPLE.format(url="http://127.0.0.1:7860/"), language="python",
                                   interactive=False, elem_id="api-example")

        EDITOR = [editor, status, recipe_box]
        EDIT_IN = [state, ed_mod, ed_chans, cursor]
        SIGNALS = [emg_plot, tactile_plot, skel_plot, joints_plot]
        PROPOSALS = [prop_pick, prop_report, prop_grid]
        LOADED = [state, cursor, viewer, render_md, prompt] + EDITOR + PROPOSALS
        QUIET = dict(show_progress="hidden")
        CHAINED = dict(show_progress="hidden", api_visibility="private")  # follow-ups of a public event

        def loaded(s: Session, modality, channels) -> list:
            clip = s.clip
            return [s, 0, viewer_value(s, 0, reset=True), "", clip.text_condition("sentence")] + \
                editor_view(s, modality, channels, 0) + proposals_view(s)

        def refresh_signals(s, cursor, tab="Signals"):
            # Four plotly figures per edit cost CPU and bandwidth: drawn only while their tab is shown.
            return signal_view(s, cursor) if tab == "Signals" else [gr.skip()] * len(SIGNALS)

        def save_state(s, modality, channels):
            return saved_value(s, modality, channels)

        # -------------------------------------------------------------- load
        @ui_errors
        def load_clip(s, clip, modality, channels):
            s = s or Session()
            s.set_clip(gallery.clip(int(clip if clip is not None else 0)))
            return loaded(s, modality, channels)

        @ui_errors
        def pick_clip(s, modality, channels, evt: gr.SelectData):
            return [gr.update(value=evt.index)] + load_clip(s, evt.index, modality, channels)

        @ui_errors
        def load_upload(s, frames, trajectories, modality, channels):
            s = s or Session()
            s.set_clip(sio.clip_from_upload(frames, trajectories, stats=stats))
            return loaded(s, modality, channels)

        @ui_errors
        def restore(s, stored):
            """A reload: the last gallery clip with its edits and annotations (else clip #0)."""
            from mmsim.app.clip import Annotation

            stored = stored if isinstance(stored, dict) else {}
            modality = stored.get("modality") if stored.get("modality") in all_mods else "emg"
            chans = [c for c in stored.get("channels") or [] if c in choices(modality)] or default_controls(modality)
            s = s or Session()
            if not gallery.items:
                return [gr.skip()] * (len(LOADED) + 2)
            idx = stored.get("clip", 0)
            idx = int(idx) if isinstance(idx, int) and 0 <= idx < len(gallery.items) else 0
            s.set_clip(gallery.clip(idx))
            try:
                for step in parse_recipe(stored.get("recipe") or []):
                    s.edit(step)
                s.clip.annotations.extend(Annotation.from_dict(a) for a in stored.get("annotations") or [])
            except (MMSimError, TypeError, ValueError):
                s.set_clip(gallery.clip(idx))  # stored edits that no longer apply: the clean clip
            return [gr.update(value=modality), gr.update(choices=choices(modality), value=chans)] + \
                loaded(s, modality, chans)

        # -------------------------------------------------------------- render
        def text_of(text, text_on):
            return text.strip() if (text_on and text and text.strip()) else None

        def render_core(s, mods, text, text_on, seed_v, steps_v):
            if s is None or s.clip is None:
                raise gr.Error("load a clip first")
            res = engine.render(s.clip, mods or [], text_of(text, text_on), int(seed_v or 0), int(steps_v or 0) or None)
            s.finish_render(res)
            s.__dict__["render_args"] = (list(mods or []), text_of(text, text_on), int(seed_v or 0),
                                         int(steps_v or 0) or None)
            return s

        def report(s) -> str:
            head = s.metrics_text()
            if s.references:
                refs = s.references
                head = s.metrics_text().split(" PSNR ")[0] + "\n\n**Against the recorded future** (PSNR dB / SSIM): " + \
                    " · ".join(f"{'**' if k == 'prediction' else ''}{k} {v['psnr']:.2f} / {v['ssim']:.3f}"
                               f"{'**' if k == 'prediction' else ''}" for k, v in refs.items())
                if s.clip.edits.is_edited():
                    head += " (the recording does not contain your edits)"
            if s.control is not None:
                head += "\n\n" + control_markdown(s.control)
            return head

        def compare(s) -> str:
            """Before/after renders, the world's answer and the reference scores; text for the effect tab."""
            clip = s.clip
            mods, txt, seed_v, steps_v = s.__dict__.get("render_args", (list(engine.modalities), None, 0, None))
            # The original actions never change for a clip: their render (per settings) and their world
            # are kept on the clip, so a drag -> Generate cycle pays for one model call, not two.
            cache = clip.__dict__.setdefault("_original_cache", {})
            if clip.edits.is_edited():
                from mmsim.app.clip import Clip
                from mmsim.app.edits import EditHistory

                key = (tuple(mods or ()), txt, seed_v, steps_v)
                if key not in cache:
                    plain = Clip(context=clip.context, future=clip.future, edits=EditHistory(clip.original_actions),
                                 meta=clip.meta, label=clip.label)
                    cache[key] = engine.render(plain, mods, txt, seed_v, steps_v)["frames"]
                s.before = cache[key]
            s.world = engine.world_frames(clip)
            if s.world is not None and s.before is not None:
                if "world" not in cache:
                    cache["world"] = engine.world_frames(clip, clip.original_actions)
                s.world_before = cache["world"]
            s.control = control_scores(s.prediction, s.world, s.before, s.world_before) \
                if s.world is not None else None
            s.references = engine.references(clip, s.prediction, mods, txt, seed_v, steps_v, s.complete_metrics())
            lines = []
            if s.before is not None:
                d = np.abs(s.prediction.astype(np.float32) - s.before.astype(np.float32)).mean(axis=(1, 2, 3))
                lines.append(f"**The edit changed the prediction** by {d.mean():.2f} grey levels on average "
                             f"(most at step {clip.h + int(np.argmax(d))}: {d.max():.2f}); the viewer shows before, "
                             f"after and their difference.")
            else:
                lines.append("No edits yet: the prediction follows the recorded actions.")
            if s.world is None:
                lines.append("No world view: this clip carries no oracle of its world (only synthetic clips "
                             "made with their oracle do).")
            else:
                if clip.edits.is_edited():
                    lines.append("The recorded future no longer applies after an edit: the viewer's last tile is "
                                 "the world's own future for the edited actions (its oracle re-rendered).")
                else:
                    lines.append("The viewer's last tile is the world's own future for these actions (its oracle "
                                 "re-rendered).")
                lines.append(control_markdown(s.control))
            return "\n\n".join(lines)

        @ui_errors
        def render_ui(s, mods, text, text_on, seed_v, steps_v, c):
            s = render_core(s, mods, text, text_on, seed_v, steps_v)
            return [viewer_value(s, c), s.metrics_text(), status_text(s)]

        @ui_errors
        def after_render(s, c):
            if s is None or s.prediction is None:
                return [gr.skip()] * 6
            text = compare(s)
            return [viewer_value(s, c, final=True), report(s), text, plots.metrics_figure(s.metrics, s.clip.h)]

        open_tab = gr.State("")  # the tab shown below the loop (its views are drawn only then)

        @ui_errors
        def media(s, shown=True):
            """The MP4 and filmstrip of the Export tab: written only while that tab is shown (or opened) and
            after the render's views, so they neither delay the frames nor hold the model's queue (the MP4
            costs about half a second of CPU per render)."""
            if s is None or s.prediction is None or shown not in (True, "Export"):
                return [gr.skip()] * 2
            video_ = s.video_path if (s.video_path and s.prediction_is_current()) else s.write_video()
            return [video_, s.filmstrip()]

        @ui_errors
        def generate(s, modalities=None, prompt="", use_prompt=False, seed=0, steps=None, cursor=0):
            s = render_core(s, modalities if modalities is not None else list(engine.modalities), prompt or "",
                            use_prompt, seed, steps)
            compare(s)
            path = s.write_video()
            return [s, s.filmstrip(), path, report(s), viewer_value(s, cursor, final=True)]

        AFTER = [viewer, render_md, effect_md, metrics_plot]

        def after(ev):
            """A render's follow-ups: comparisons and scores (the model's queue), then the media (not)."""
            return (ev.then(after_render, [state, cursor], AFTER, concurrency_limit=1, concurrency_id=RENDER,
                            **CHAINED)
                    .then(media, [state, open_tab], [video, preview], **CHAINED))

        def pick_tab(evt: gr.SelectData):
            return str(evt.value)

        (tabs.select(pick_tab, None, [open_tab], api_visibility="private", **QUIET)
         .then(media, [state, open_tab], [video, preview], **CHAINED)
         .then(refresh_signals, [state, cursor, open_tab], SIGNALS, **CHAINED))

        # -------------------------------------------------------------- wiring: load
        def then_render(ev):
            return after(ev.then(save_state, [state, ed_mod, ed_chans], [saved], **CHAINED)
                         .then(refresh_signals, [state, cursor, open_tab], SIGNALS, **CHAINED)
                         .then(render_ui, [state, use_mods, prompt, use_text, seed, steps, cursor],
                               [viewer, render_md, status], concurrency_limit=1, concurrency_id=RENDER, **CHAINED))

        then_render(load_btn.click(load_clip, [state, clip_no, ed_mod, ed_chans], LOADED, api_name="load_clip"))
        then_render(gallery_c.select(pick_clip, [state, ed_mod, ed_chans], [clip_no] + LOADED, api_name="pick_clip",
                                     **QUIET))
        then_render(up_btn.click(load_upload, [state, up_frames, up_traj, ed_mod, ed_chans], LOADED,
                                 api_name="load_upload"))
        then_render(demo.load(restore, [state, saved], [ed_mod, ed_chans] + LOADED, api_visibility="private",
                              **QUIET))
        restore_btn.click(restore, [state, saved], [ed_mod, ed_chans] + LOADED, api_name="restore",
                          api_visibility="undocumented")

        @ui_errors
        def open_raw(s, recording, video_file):
            s = s or Session()
            if recording is None:
                raise gr.Error("upload the recording's .hdf5 file (and its world video)")
            summary = s.open_raw(recording, video_file)
            return s, summary, gr.update(maximum=max(0.0, s.raw.duration_s - 1.0))

        @ui_errors
        def cut_raw(s, start, frame_step, modality, channels):
            s = s or Session()
            if stats is None:
                raise gr.Error("no normalisation statistics (checkpoint or dataset) to normalise a raw recording")
            s.cut(float(start or 0), stats, int(frame_step or 1))
            gr.Info(f"cut clip {len(s.cuts)} at {float(start or 0):.2f} s")
            return loaded(s, modality, channels)

        @ui_errors
        def export_cuts(s):
            if s is None or not s.cuts:
                raise gr.Error("cut at least one clip from a raw recording first")
            out = s.dir() / "cut_clips"
            shutil.rmtree(out, ignore_errors=True)
            sio.write_dataset(out, clips_to_records(s.cuts), stats, split="train")
            return shutil.make_archive(str(out), "zip", out)

        raw_open.click(open_raw, [state, raw_h5, raw_vid], [state, raw_info, raw_start], api_name="open_recording")
        then_render(raw_cut.click(cut_raw, [state, raw_start, raw_step, ed_mod, ed_chans], LOADED, api_name="cut_clip"))
        raw_export.click(export_cuts, [state], [raw_files], api_name="export_cuts")

        # -------------------------------------------------------------- cursor (the browser scrubs; the server
        # learns where it stopped, for the signal plots)
        @ui_errors
        def set_cursor(s, modality, channels, cursor):
            return editor_view(s, modality, channels, cursor)

        @ui_errors
        def scrub(s, tab, evt: gr.EventData):
            d = getattr(evt, "_data", None) or {}
            c = int(d.get("step", 0))
            return [c] + refresh_signals(s, c, tab)

        cursor.change(set_cursor, EDIT_IN, EDITOR, api_name="set_cursor", **QUIET)
        viewer.release(scrub, [state, open_tab], [cursor] + SIGNALS, api_visibility="private", **QUIET)

        # -------------------------------------------------------------- edit
        def edited(ev):
            return (ev.then(save_state, [state, ed_mod, ed_chans], [saved], **CHAINED)
                    .then(refresh_signals, [state, cursor, open_tab], SIGNALS, **CHAINED))

        @ui_errors
        def change_modality(s, modality, cursor):
            chans = default_controls(modality)
            return [gr.update(choices=choices(modality), value=chans)] + editor_view(s, modality, chans, cursor)

        ed_mod.change(change_modality, [state, ed_mod, cursor], [ed_chans] + EDITOR, api_name="edit_modality", **QUIET)
        ed_chans.change(set_cursor, EDIT_IN, EDITOR, api_name="edit_channels", **QUIET)

        def require(s):
            if s is None or s.clip is None:
                raise gr.Error("load a clip first")

        @ui_errors
        def drag_point(s, modality, channels, cursor, evt: gr.EventData):
            d = getattr(evt, "_data", None) or {}
            require(s)
            mod, chan = d.get("modality", modality), d["channel"]
            a, b = plots.display_transform(mod, chan, stats)
            s.edit({"op": "set_point", "modality": mod, "channels": [chan], "step": int(d["step"]),
                    "value": (float(d["value"]) - b) / a})
            return editor_view(s, modality, channels, cursor)

        @ui_errors
        def brush_range(s, modality, channels, cursor, evt: gr.EventData):
            d = getattr(evt, "_data", None) or {}
            a, b = int(d.get("start", 0)), int(d.get("end", 0))
            if s is not None:
                s.selection = (a, b)
            return [a, b] + editor_view(s, modality, channels, cursor)

        edited(editor.edit(drag_point, EDIT_IN, EDITOR, api_name="drag_point", **QUIET))
        editor.apply(brush_range, EDIT_IN, [r_start, r_end] + EDITOR, api_name="brush_range", **QUIET)

        @ui_errors
        def apply_edit(s, step_json, modality, channels, cursor):
            require(s)
            steps_ = parse_recipe(step_json if step_json.strip().startswith("[") else f"[{step_json}]")
            for st in steps_:
                s.edit(st)
            return editor_view(s, modality, channels, cursor)

        edited(api_edit_btn.click(apply_edit, [state, api_edit, ed_mod, ed_chans, cursor], EDITOR, api_name="apply_edit"))

        @ui_errors
        def range_edit(s, modality, channels, cursor, start, end, operation, amount):
            require(s)
            s.selection = (int(start), int(end))
            s.range_edit(modality, channels, int(start), int(end), operation, amount)
            return editor_view(s, modality, channels, cursor)

        edited(r_apply.click(range_edit, EDIT_IN + [r_start, r_end, r_op, r_amount], EDITOR, api_name="range_edit",
                             **QUIET))

        @ui_errors
        def history(s, modality, channels, cursor, what):
            require(s)
            e = s.clip.edits
            if what == "undo" and not e.undo():
                gr.Warning("nothing to undo")
            elif what == "redo" and not e.redo():
                gr.Warning("nothing to redo")
            elif what == "reset":
                e.reset()
            return editor_view(s, modality, channels, cursor)

        def undo(s, modality, channels, cursor):
            return history(s, modality, channels, cursor, "undo")

        def redo(s, modality, channels, cursor):
            return history(s, modality, channels, cursor, "redo")

        def reset(s, modality, channels, cursor):
            return history(s, modality, channels, cursor, "reset")

        edited(undo_btn.click(undo, EDIT_IN, EDITOR, api_name="undo", **QUIET))
        edited(redo_btn.click(redo, EDIT_IN, EDITOR, api_name="redo", **QUIET))
        edited(reset_btn.click(reset, EDIT_IN, EDITOR, api_name="reset", **QUIET))

        @ui_errors
        def copy_mod(s, modality, channels, cursor, what, source_clip):
            require(s)
            s.copy_modality(what, gallery.clip(int(source_clip)))
            return editor_view(s, modality, channels, cursor)

        edited(cp_btn.click(copy_mod, EDIT_IN + [cp_mod, cp_from], EDITOR, api_name="copy_modality"))

        # -------------------------------------------------------------- propose actions
        def refuse(message: str, n: int, at: int | None = None) -> list:
            """A state the user can fix (no proposer, no clip, no proposals): a warning, and the message in the
            output ``at`` (what an API client sees); nothing else changes."""
            log_user_error("propose", message)
            gr.Warning(message)
            out = [gr.skip()] * n
            if at is not None:
                out[at] = f"⚠️ {message}"
            return out

        def proposal_problem(s, need_set: bool = False) -> str | None:
            if proposer is None:
                return prop_lib.NO_PROPOSER
            if s is None or s.clip is None:
                return "load a clip first (gallery, upload or raw recording), then propose its actions"
            if need_set and (s.proposals is None or s.proposals.clip is not s.clip):
                return "no proposals for this clip yet: press Propose actions first"
            return None

        @ui_errors
        def propose_ui(s, text, goal, k, rank_on, mods, prompt_v, use_text_v, seed_v, steps_v, modality, channels,
                       cursor_v, progress=gr.Progress()):
            problem = proposal_problem(s)
            if problem:
                return refuse(problem, len(PROPOSALS) + len(EDITOR), at=1)
            pset = prop_lib.propose(s, proposer, text, goal, k, int(seed_v or 0))
            if rank_on and pset.num_samples > 1:
                if pset.goal is None:
                    pset.note = "Not ranked: ranking needs a goal frame (the samples keep their proposal order)."
                else:
                    progress(0, desc="rendering the samples")
                    prop_lib.rank(s, engine, mods or [], text_of(prompt_v, use_text_v), int(seed_v or 0),
                                  int(steps_v or 0) or None, scorer=goal_scorer,
                                  on_sample=lambda i, n: progress(i / n, desc=f"rendered {i}/{n} samples"))
                    if pset.order[0] != pset.picked:
                        prop_lib.pick(s, pset.order[0])
            return proposals_view(s) + editor_view(s, modality, channels, cursor_v)

        @ui_errors
        def pick_ui(s, k, modality, channels, cursor_v):
            problem = proposal_problem(s, need_set=True)
            if problem:
                return refuse(problem, len(PROPOSALS) + len(EDITOR), at=1)
            if k is None:
                return [gr.skip()] * (len(PROPOSALS) + len(EDITOR))
            prop_lib.pick(s, k)
            return proposals_view(s) + editor_view(s, modality, channels, cursor_v)

        @ui_errors
        def goal_recorded(s):
            if s is None or s.clip is None:
                return refuse("load a clip first: its recorded last frame becomes the goal frame", 1)[0]
            if s.clip.future is None:
                return refuse("this clip has no recorded future: upload a goal frame instead", 1)[0]
            return s.clip.future[-1]

        @ui_errors
        def export_proposals_ui(s, mods, prompt_v, use_text_v, seed_v, steps_v, progress=gr.Progress()):
            problem = proposal_problem(s, need_set=True)
            if problem:
                return refuse(problem, 2, at=1)
            progress(0, desc="rendering the samples")
            zpath, manifest = prop_lib.export_proposals(
                s, engine, proposer, mods or [], text_of(prompt_v, use_text_v), int(seed_v or 0),
                int(steps_v or 0) or None, on_sample=lambda i, n: progress(i / n, desc=f"rendered {i}/{n} samples"))
            return zpath, (f"Wrote {manifest['num_samples']} (actions, video) pairs rendered with seed "
                           f"{manifest['render_seed']} and {manifest['steps']} sampler step(s); `manifest.json` "
                           f"lists them.")

        PROPOSE_IN = [state, prop_text, prop_goal, prop_k, prop_rank, use_mods, prompt, use_text, seed, steps,
                      ed_mod, ed_chans, cursor]
        edited(prop_btn.click(propose_ui, PROPOSE_IN, PROPOSALS + EDITOR, api_name="propose", concurrency_limit=1,
                              concurrency_id=RENDER))
        edited(prop_pick.input(pick_ui, [state, prop_pick, ed_mod, ed_chans, cursor], PROPOSALS + EDITOR,
                               api_name="pick_proposal", **QUIET))
        prop_goal_rec.click(goal_recorded, [state], [prop_goal], api_name="goal_from_clip")
        prop_export.click(export_proposals_ui, [state, use_mods, prompt, use_text, seed, steps],
                          [prop_files, prop_export_md], api_name="export_proposals", concurrency_limit=1,
                          concurrency_id=RENDER)

        # -------------------------------------------------------------- render wiring
        after(gen_btn.click(render_ui, [state, use_mods, prompt, use_text, seed, steps, cursor],
                            [viewer, render_md, status], api_visibility="private", concurrency_limit=1,
                            concurrency_id=RENDER, **QUIET))
        api_gen_btn.click(generate, [state, use_mods, prompt, use_text, seed, steps, cursor],
                          [state, preview, video, render_md, viewer], api_name="generate",
                          concurrency_limit=1, concurrency_id=RENDER)

        @ui_errors
        def sweep(s, modality, channels, start, end, operation, values, modalities, prompt, use_prompt, seed, steps):
            require(s)
            try:
                vals = [float(v) for v in str(values).replace(";", ",").split(",") if v.strip()]
            except ValueError:
                raise gr.Error(f"sweep values must be numbers separated by commas, got {values!r}") from None
            base = {"op": operation, "modality": modality, "channels": list(channels or default_controls(modality)),
                    "start": int(start), "end": int(end)}
            res = engine.sweep(s.clip, base, vals, modalities or [], text_of(prompt, use_prompt), int(seed or 0),
                               int(steps or 0) or None)
            frames = res["frames"].astype(np.float32)  # (N, F, S, S, 3)
            same = 1.0 if operation == "scale" else 0.0
            ref = vals.index(same) if same in vals else 0
            change = np.abs(frames - frames[ref]).mean(axis=(1, 2, 3, 4))
            labels = [f"{v:g}  Δ{d:.1f}" for v, d in zip(vals, change)]
            grid = plots.sweep_grid(res["frames"], labels, s.clip.context[-1])
            return grid, (f"{operation} of {modality} {base['channels'][:4]}{'…' if len(base['channels']) > 4 else ''} "
                          f"over steps {base['start']}-{base['end']}: {len(vals)} futures in {res['seconds']:.2f} s; "
                          f"Δ = mean change of the future (grey levels) against the row {vals[ref]:g}")

        sw_btn.click(sweep, [state, ed_mod, ed_chans, r_start, r_end, sw_op, sw_values, use_mods, prompt, use_text,
                             seed, steps], [sw_img, sw_md], api_name="sweep", concurrency_limit=1,
                     concurrency_id=RENDER)

        # -------------------------------------------------------------- annotate
        @ui_errors
        def annotate(s, unit, start, end, activity, verb, phrase, sentence):
            s = s or Session()
            ann = s.annotate(start or 0, end or 0, activity or "", verb or "", phrase or "", sentence or "", unit)
            return s, s.annotation_rows(), ann.sentence

        @ui_errors
        def use_annotation(s):
            require(s)
            txt = s.clip.text_condition("sentence")
            if not engine.has_text:
                gr.Warning("this model has no text encoder: the prompt is kept in exports but not used to render")
            return txt

        @ui_errors
        def clear_annotations(s):
            if s is not None:
                if s.clip is not None:
                    s.clip.annotations.clear()
                s.raw_annotations.clear()
            return s, []

        an_btn.click(annotate, [state, an_unit, an_start, an_end, an_activity, an_verb, an_phrase, an_sentence],
                     [state, an_table, an_sentence], api_name="annotate"
                     ).then(save_state, [state, ed_mod, ed_chans], [saved], **CHAINED)
        an_use.click(use_annotation, [state], [prompt], api_name="use_annotation")
        an_clear.click(clear_annotations, [state], [state, an_table], api_name="clear_annotations"
                       ).then(save_state, [state, ed_mod, ed_chans], [saved], **CHAINED)

        # -------------------------------------------------------------- export
        def current_prediction(s, modalities, seed, steps):
            """The prediction for the current edits (rendered now if the last one predates them)."""
            if not s.prediction_is_current():
                render_core(s, modalities if modalities is not None else list(engine.modalities), "", False,
                            seed, steps)
            if s.world is None:
                s.world = engine.world_frames(s.clip)
            return s.prediction

        @ui_errors
        def export_clip(s, modalities=None, seed=0, steps=None):
            require(s)
            d = s.dir()
            clip = s.clip
            name = sio.safe_name(clip.label)
            edited_ = clip.edits.is_edited()
            pred = current_prediction(s, modalities, seed, steps) if (edited_ or clip.future is None) else s.prediction
            files = [str(sio.export_clip(clip, d / f"{name}_edited.h5", pred,
                                         prefer="prediction" if edited_ else "recorded",
                                         generator=engine.info.source if engine.info.trained else None)),
                     str(sio.write_csv(d / f"{name}_edited.csv", clip.actions))]
            if edited_ and s.world is not None:
                files.append(str(sio.export_clip(clip, d / f"{name}_world.h5", s.world, prefer="prediction",
                                                 source_label="world oracle for the edited actions")))
            if stats is not None:
                stats.save(d / "normalization.json")
                files.append(str(d / "normalization.json"))
            if s.prediction is not None:
                files.append(s.video_path if (s.video_path and s.prediction_is_current()) else s.write_video())
            return files

        @ui_errors
        def export_rerun(s, modalities=None, seed=0, steps=None):
            require(s)
            from mmsim.app.rerun_export import write_recording

            pred = current_prediction(s, modalities, seed, steps)
            path = s.dir() / f"{sio.safe_name(s.clip.label)}.rrd"
            return str(write_recording(path, s.clip, pred, stats, world=s.world))

        ex_btn.click(export_clip, [state, use_mods, seed, steps], [ex_files], api_name="export_clip",
                     concurrency_limit=1, concurrency_id=RENDER)
        rr_btn.click(export_rerun, [state, use_mods, seed, steps], [ex_files], api_name="export_rerun",
                     concurrency_limit=1, concurrency_id=RENDER)
        bx_fill.click(lambda s: recipe_json(s.clip if s else None), [state], [bx_recipe], api_name="recipe")

        @ui_errors
        def batch_export(s, clips, recipe, render, modalities, seed, steps, progress=gr.Progress()):
            s = s or Session()
            recipe_ = parse_recipe(recipe or "[]")
            idx = gallery.select(clips)
            if not idx:
                raise gr.Error(f"clip selection {clips!r} matches no clips")
            if len(idx) > 256:
                raise gr.Error(f"batch export is limited to 256 clips per run, got {len(idx)}")
            items = [gallery.items[i] for i in idx]
            progress(0, desc="augmenting")
            recs = engine.augment(items, recipe_, modalities or None, render=bool(render), seed=int(seed or 0),
                                  steps=int(steps or 0) or None,
                                  on_batch=lambda k, n: progress(k / n, desc=f"{k}/{n} clips"))
            out = s.dir() / "augmented"
            shutil.rmtree(out, ignore_errors=True)
            manifest = sio.write_dataset(out, recs, stats, split="train",
                                         extra={"edit_recipe": recipe_, "generator": engine.info.source,
                                                "units": sio.UNITS_NOTE})
            sio.write_clip_videos(out / "videos", recs, [gallery.caption(i) for i in idx])
            zpath = shutil.make_archive(str(out), "zip", out)
            n = manifest["splits"]["train"]["num_clips"]
            return s, zpath, (f"Wrote {n} clips as a dataset with an MP4 per clip "
                              f"({'futures rendered by the model for the edited actions' if render else 'recorded futures'}"
                              f"); download the .zip above and read it with `ClipDataset(folder, split='train')`.")

        bx_btn.click(batch_export, [state, bx_clips, bx_recipe, bx_render, use_mods, seed, steps],
                     [state, bx_files, bx_md], api_name="batch_export", concurrency_limit=1, concurrency_id=RENDER)

        # The API example names this server's own address.
        def api_url(request: gr.Request):
            base = str(getattr(request, "url", "") or "").split("gradio_api")[0] if request else ""
            host = request.headers.get("host") if request is not None else None
            url = f"http://{host}/" if host else (base or "http://127.0.0.1:7860/")
            return API_EXAMPLE.format(url=url)

        demo.load(api_url, None, [api_code], api_visibility="private", **QUIET)

    demo.studio_css = _static("studio.css")  # Gradio 6 takes page CSS at launch (app.cli.launch passes it)
    return demo
