"""The Gradio Blocks of the studio. Every event has an explicit ``api_name`` so ``gradio_client`` can drive
it; errors reach the page as ``gr.Error`` / warnings with one readable line, never a stack trace."""

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
from mmsim.app.edits import RANGE_OPS, channel_groups, default_channels, parse_recipe
from mmsim.app.engine import Engine, check_model_error
from mmsim.app.session import Gallery, Session, clips_to_records, recipe_json
from mmsim_core import schema
from mmsim_core.errors import MMSimError
from mmsim_core.evaluation.video import upscale

logger = logging.getLogger("mmsim.app")
STATIC = Path(__file__).parent / "static"
RENDER = "render"  # concurrency group of everything that runs the model


def _static(name: str) -> str:
    return (STATIC / name).read_text()


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
            raise gr.Error(str(e).strip("'\"") or type(e).__name__, print_exception=False) from None
        except Exception as e:  # noqa: BLE001
            logger.exception("studio handler %s failed", fn.__name__)
            raise gr.Error(f"internal error ({check_model_error(e)}); the studio keeps running",
                           print_exception=False) from None
    return wrapper


def build_demo(engine: Engine, gallery: Gallery, title: str = "mmsim studio") -> gr.Blocks:
    stats = engine.stats if engine.stats is not None else gallery.stats
    thumbs = [(plots.thumbnail(it["context"]), gallery.caption(i)) for i, it in enumerate(gallery.items)]
    model_line = (f"**Model:** {engine.info.source}" if engine.info.trained
                  else f"⚠️ **{engine.info.note}**")

    # ------------------------------------------------------------------ view helpers
    def view(s: Session | None, modality: str, channels, cursor):
        """Outputs shared by most events: editor, plots, frame panel, status."""
        if s is None or s.clip is None:
            empty = {"modality": modality, "steps": 0, "series": [], "present": False}
            return [None, "Load a clip from the gallery, an upload or a raw recording.", gr.skip(), gr.skip(),
                    gr.skip(), gr.skip(), gr.skip(), None, empty]
        clip = s.clip
        cursor = int(min(max(int(cursor or 0), 0), clip.num_steps - 1))
        chans = [c for c in (channels or []) if c in channel_groups(modality)] or default_channels(modality)
        status = (f"**{clip.label}** · {clip.num_steps} steps ({clip.h} context) · modalities "
                  f"{[m for m in schema.MODALITY_NAMES if m in clip.actions]} · "
                  f"{len(clip.edits.recipe)} edit(s){' · ground truth available' if clip.future is not None else ''}")
        return [plots.frame_panel(clip, s.prediction, cursor), status,
                plots.curve_figure(clip, modality, chans, cursor), plots.emg_figure(clip, cursor, stats),
                plots.tactile_figure(clip, cursor, stats), plots.skeleton_figure(clip, cursor, stats),
                plots.curve_figure(clip, "hand_pose" if modality != "hand_pose" else "body_pose", None, cursor),
                json.dumps(clip.edits.recipe)[:4000],
                plots.editor_payload(clip, modality, chans, cursor, s.selection)]

    def loaded(s: Session, modality, channels):
        """After a new clip: the view at cursor 0, the cursor's range and the clip's text."""
        clip = s.clip
        text = clip.text_condition("sentence") if clip else ""
        return [s, gr.update(maximum=clip.num_steps - 1, value=0)] + view(s, modality, channels, 0) + [text]

    with gr.Blocks(title=title) as demo:
        state = gr.State(None)
        gr.Markdown(f"# {title}\nLoad a clip, edit its action curves, drop sensors, and re-render the future "
                    f"with the multisensory simulator. {model_line}")

        with gr.Row():
            # ---------------------------------------------------------- left: load
            with gr.Column(scale=1, min_width=320):
                with gr.Tab("Gallery"):
                    gallery_c = gr.Gallery(value=thumbs, columns=3, height=330, allow_preview=False,
                                           label="bundled clips (first and last context frame)", elem_id="gallery")
                    with gr.Row():
                        clip_no = gr.Number(value=0, precision=0, label="clip #", minimum=0)
                        load_btn = gr.Button("Load clip", elem_id="load-clip")
                with gr.Tab("Upload"):
                    up_frames = gr.File(file_count="multiple", label="context: 4 images or 1 video",
                                        file_types=list(sio.IMAGE_EXTS + sio.VIDEO_EXTS))
                    up_traj = gr.File(label="trajectories: clip .h5 / .npz / .csv", file_types=[".h5", ".hdf5", ".npz", ".csv"])
                    up_btn = gr.Button("Load upload")
                with gr.Tab("Raw recording"):
                    raw_h5 = gr.File(label="ActionSense recording .hdf5", file_types=[".hdf5", ".h5"])
                    raw_vid = gr.File(label="its world video (eye-tracking-video-world .mp4)", file_types=[".mp4"])
                    raw_open = gr.Button("Open recording")
                    raw_info = gr.Markdown()
                    with gr.Row():
                        raw_start = gr.Number(value=0.0, label="clip start (s from recording start)")
                        raw_step = gr.Number(value=1, precision=0, label="frame step", minimum=1)
                    raw_cut = gr.Button("Cut clip here")
                    raw_export = gr.Button("Export all cut clips as a dataset")
                    raw_files = gr.File(label="cut clips dataset (.zip)")
                status = gr.Markdown(elem_id="status")

            # ---------------------------------------------------------- middle: scrub + render
            with gr.Column(scale=2, min_width=480):
                frame_img = gr.Image(label="ground truth | prediction | |difference| at the cursor", height=220,
                                     interactive=False, elem_id="frame-panel")
                with gr.Row():
                    cursor = gr.Slider(0, schema.CLIP_FRAMES - 1, value=0, step=1, label="time cursor (step)",
                                       elem_id="cursor", scale=4)
                    play_btn = gr.Button("▶ Play", scale=1)
                    timer = gr.Timer(0.6, active=False)
                with gr.Row():
                    use_mods = gr.CheckboxGroup(list(schema.MODALITY_NAMES), value=list(schema.MODALITY_NAMES),
                                                label="Drop: modalities used by the model")
                with gr.Row():
                    prompt = gr.Textbox(label="text prompt (optional)", scale=3,
                                        interactive=engine.has_text,
                                        info=None if engine.has_text else "this model has no text encoder")
                    use_text = gr.Checkbox(value=False, label="use text", interactive=engine.has_text, scale=1)
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, label="seed")
                    steps = gr.Slider(1, 50, value=engine.default_steps, step=1, label="sampler steps")
                    gen_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                preview = gr.Image(label="sampling preview / filmstrip", interactive=False, elem_id="preview")
                video = gr.Video(label="ground truth | prediction | difference", elem_id="video", autoplay=True)
                render_md = gr.Markdown(elem_id="render-status")
                metrics_plot = gr.Plot(label="per-frame metrics")

        # -------------------------------------------------------------- edit
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    ed_mod = gr.Dropdown(list(schema.MODALITY_NAMES), value="emg", label="edit modality", scale=1)
                    ed_chans = gr.Dropdown(list(channel_groups("emg")), value=default_channels("emg"), multiselect=True,
                                           label="channels", scale=3, allow_custom_value=True)
                editor = gr.HTML(value=None, html_template='<div class="mm-curve-root" data-testid="curve-editor"></div>',
                                 css_template=_static("curve_editor.css"), js_on_load=_static("curve_editor.js"),
                                 elem_id="curve-editor", min_height=240)
                gr.Markdown("Drag a point to edit it; drag across the background to select a time range; "
                            "click to move the cursor. Dotted = original.")
            with gr.Column(scale=2):
                with gr.Row():
                    r_start = gr.Number(value=0, precision=0, label="range start", minimum=0)
                    r_end = gr.Number(value=schema.CLIP_FRAMES - 1, precision=0, label="range end", minimum=0)
                with gr.Row():
                    r_op = gr.Radio(list(RANGE_OPS), value="scale", label="operation")
                    r_amount = gr.Number(value=1.5, label="amount (factor / offset / sigma / shift steps)")
                r_apply = gr.Button("Apply to range", elem_id="apply-range")
                with gr.Row():
                    undo_btn = gr.Button("Undo")
                    redo_btn = gr.Button("Redo")
                    reset_btn = gr.Button("Reset")
                with gr.Row():
                    cp_mod = gr.Dropdown(list(schema.MODALITY_NAMES), value="hand_force", label="copy modality")
                    cp_from = gr.Number(value=1, precision=0, label="from gallery clip #")
                    cp_btn = gr.Button("Copy")
                recipe_box = gr.Code(label="edits so far (an edit recipe)", language="json", interactive=False)
                with gr.Row(visible=False):
                    api_edit = gr.Textbox(label="edit step JSON")
                    api_edit_btn = gr.Button("apply edit")

        with gr.Tabs():
            with gr.Tab("See"):
                curve_plot = gr.Plot(label="edited curves")
                with gr.Row():
                    emg_plot = gr.Plot(label="EMG")
                    tactile_plot = gr.Plot(label="tactile")
                with gr.Row():
                    skel_plot = gr.Plot(label="skeletons")
                    joints_plot = gr.Plot(label="joint curves")
            with gr.Tab("Sweep"):
                with gr.Row():
                    sw_op = gr.Radio(["scale", "offset"], value="scale", label="vary")
                    sw_values = gr.Textbox(value="0, 0.5, 1, 2, 3", label="values (up to 8)")
                sw_btn = gr.Button("Run sweep (edit modality, channels and range above)")
                sw_img = gr.Image(label="rows: values; columns: last context frame then the future", interactive=False)
                sw_md = gr.Markdown()
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
                                        interactive=False, wrap=True)
            with gr.Tab("Export"):
                ex_btn = gr.Button("Export this clip (edited trajectories .h5 + generated .mp4 + .csv)")
                ex_files = gr.File(label="exports", file_count="multiple")
                gr.Markdown("**Batch export**: apply an edit recipe to many gallery clips and write an augmentation "
                            "dataset (`ClipDataset(folder, split='train')` reads it).")
                with gr.Row():
                    bx_clips = gr.Textbox(value="test", label="clips ('all', 'test', 'train', '0-9,12')")
                    bx_render = gr.Checkbox(value=True, label="render futures with the model")
                bx_recipe = gr.Code(label="edit recipe (JSON list)", language="json", value="[]", interactive=True)
                with gr.Row():
                    bx_fill = gr.Button("Use this clip's edits")
                    bx_btn = gr.Button("Batch export")
                bx_files = gr.File(label="augmentation dataset (.zip)")
                bx_md = gr.Markdown()

        VIEW = [frame_img, status, curve_plot, emg_plot, tactile_plot, skel_plot, joints_plot, recipe_box, editor]
        VIEW_IN = [state, ed_mod, ed_chans, cursor]
        LOADED = [state, cursor] + VIEW + [prompt]

        # -------------------------------------------------------------- load
        @ui_errors
        def load_clip(s, index, modality, channels):
            s = s or Session()
            s.set_clip(gallery.clip(int(index if index is not None else 0)))
            return loaded(s, modality, channels)

        @ui_errors
        def pick_clip(s, modality, channels, evt: gr.SelectData):
            return [gr.update(value=evt.index)] + load_clip(s, evt.index, modality, channels)

        @ui_errors
        def load_upload(s, frames, traj, modality, channels):
            s = s or Session()
            s.set_clip(sio.clip_from_upload(frames, traj, stats=stats))
            return loaded(s, modality, channels)

        load_btn.click(load_clip, [state, clip_no, ed_mod, ed_chans], LOADED, api_name="load_clip")
        gallery_c.select(pick_clip, [state, ed_mod, ed_chans], [clip_no] + LOADED, api_name="pick_clip")
        up_btn.click(load_upload, [state, up_frames, up_traj, ed_mod, ed_chans], LOADED, api_name="load_upload")

        @ui_errors
        def open_raw(s, h5, vid):
            s = s or Session()
            if h5 is None:
                raise gr.Error("upload the recording's .hdf5 file (and its world video)")
            summary = s.open_raw(h5, vid)
            return s, summary, gr.update(maximum=max(0.0, s.raw.duration_s - 1.0))

        @ui_errors
        def cut_raw(s, start, step, modality, channels):
            s = s or Session()
            if stats is None:
                raise gr.Error("no normalisation statistics (checkpoint or dataset) to normalise a raw recording")
            s.cut(float(start or 0), stats, int(step or 1))
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
        raw_cut.click(cut_raw, [state, raw_start, raw_step, ed_mod, ed_chans], LOADED, api_name="cut_clip")
        raw_export.click(export_cuts, [state], [raw_files], api_name="export_cuts")

        # -------------------------------------------------------------- scrub
        @ui_errors
        def set_cursor(s, modality, channels, c):
            return view(s, modality, channels, c)

        cursor.change(set_cursor, VIEW_IN, VIEW, api_name="set_cursor", show_progress="hidden")

        def toggle_play(playing):
            return (gr.Timer(active=not playing), not playing, "⏸ Pause" if not playing else "▶ Play")

        playing = gr.State(False)
        play_btn.click(toggle_play, [playing], [timer, playing, play_btn], api_name="toggle_play")

        @ui_errors
        def tick(s, c):
            if s is None or s.clip is None:
                return gr.skip()
            return (int(c or 0) + 1) % s.clip.num_steps

        timer.tick(tick, [state, cursor], [cursor], api_name="play_tick", show_progress="hidden")

        # -------------------------------------------------------------- edit
        @ui_errors
        def change_modality(s, modality, c):
            chans = default_channels(modality)
            return [gr.update(choices=list(channel_groups(modality)), value=chans)] + view(s, modality, chans, c)

        ed_mod.change(change_modality, [state, ed_mod, cursor], [ed_chans] + VIEW, api_name="edit_modality")
        ed_chans.change(set_cursor, VIEW_IN, VIEW, api_name="edit_channels", show_progress="hidden")

        @ui_errors
        def drag_point(s, modality, channels, c, evt: gr.EventData):
            d = getattr(evt, "_data", None) or {}
            if s is None or s.clip is None:
                raise gr.Error("load a clip first")
            s.edit({"op": "set_point", "modality": d.get("modality", modality), "channels": [d["channel"]],
                    "step": int(d["step"]), "value": float(d["value"])})
            return view(s, modality, channels, c)

        @ui_errors
        def brush_range(s, modality, channels, c, evt: gr.EventData):
            d = getattr(evt, "_data", None) or {}
            a, b = int(d.get("start", 0)), int(d.get("end", 0))
            if s is not None:
                s.selection = (a, b)
            return [a, b] + view(s, modality, channels, c)

        def click_step(evt: gr.EventData):
            d = getattr(evt, "_data", None) or {}
            return int(d.get("step", 0))

        editor.edit(drag_point, VIEW_IN, VIEW, api_name="drag_point", show_progress="hidden")
        editor.apply(brush_range, VIEW_IN, [r_start, r_end] + VIEW, api_name="brush_range", show_progress="hidden")
        editor.click(click_step, None, [cursor], api_name="editor_cursor", show_progress="hidden")

        @ui_errors
        def apply_edit(s, step_json, modality, channels, c):
            if s is None or s.clip is None:
                raise gr.Error("load a clip first")
            steps_ = parse_recipe(step_json if step_json.strip().startswith("[") else f"[{step_json}]")
            for st in steps_:
                s.edit(st)
            return view(s, modality, channels, c)

        api_edit_btn.click(apply_edit, [state, api_edit, ed_mod, ed_chans, cursor], VIEW, api_name="apply_edit")

        @ui_errors
        def range_edit(s, modality, channels, c, start, end, op, amount):
            if s is None or s.clip is None:
                raise gr.Error("load a clip first")
            s.selection = (int(start), int(end))
            s.range_edit(modality, channels, int(start), int(end), op, amount)
            return view(s, modality, channels, c)

        r_apply.click(range_edit, VIEW_IN + [r_start, r_end, r_op, r_amount], VIEW, api_name="range_edit")

        @ui_errors
        def history(s, modality, channels, c, what):
            if s is None or s.clip is None:
                raise gr.Error("load a clip first")
            e = s.clip.edits
            if what == "undo" and not e.undo():
                gr.Warning("nothing to undo")
            elif what == "redo" and not e.redo():
                gr.Warning("nothing to redo")
            elif what == "reset":
                e.reset()
            return view(s, modality, channels, c)

        undo_btn.click(lambda *a: history(*a, "undo"), VIEW_IN, VIEW, api_name="undo")
        redo_btn.click(lambda *a: history(*a, "redo"), VIEW_IN, VIEW, api_name="redo")
        reset_btn.click(lambda *a: history(*a, "reset"), VIEW_IN, VIEW, api_name="reset")

        @ui_errors
        def copy_mod(s, modality, channels, c, what, src):
            if s is None or s.clip is None:
                raise gr.Error("load a clip first")
            s.copy_modality(what, gallery.clip(int(src)))
            return view(s, modality, channels, c)

        cp_btn.click(copy_mod, VIEW_IN + [cp_mod, cp_from], VIEW, api_name="copy_modality")

        # -------------------------------------------------------------- render
        @ui_errors_gen
        def generate(s, mods, text, text_on, seed_v, steps_v, c, progress=gr.Progress()):
            if s is None or s.clip is None:
                raise gr.Error("load a clip first")
            clip = s.clip
            txt = text.strip() if (text_on and text and text.strip()) else None
            previews: queue.Queue = queue.Queue()
            box: dict = {}

            def on_step(i, n, x0):
                previews.put((i, n, x0))

            def work():
                try:
                    box["result"] = engine.render(clip, mods or [], txt, int(seed_v or 0), int(steps_v or 0) or None,
                                                  on_step=on_step)
                except Exception as e:  # noqa: BLE001 - re-raised in the handler thread
                    box["error"] = e
                previews.put(None)

            th = threading.Thread(target=work, daemon=True)
            th.start()
            progress(0, desc="sampling")
            while True:
                item = previews.get()
                if item is None:
                    break
                i, n, x0 = item
                progress(i / n, desc=f"sampling step {i}/{n}")
                yield [gr.skip(), upscale(np.concatenate(list(x0), axis=1), 2), gr.skip(), gr.skip(),
                       gr.skip(), gr.skip()]
            th.join()
            if "error" in box:
                raise box["error"]
            s.finish_render(box["result"])
            path = s.write_video()
            yield [s, s.filmstrip(), path, s.metrics_text(), plots.metrics_figure(s.metrics, clip.h),
                   plots.frame_panel(clip, s.prediction, int(c or 0))]

        gen_btn.click(generate, [state, use_mods, prompt, use_text, seed, steps, cursor],
                      [state, preview, video, render_md, metrics_plot, frame_img], api_name="generate",
                      concurrency_limit=1, concurrency_id=RENDER)

        @ui_errors
        def sweep(s, modality, channels, start, end, op, values, mods, text, text_on, seed_v, steps_v):
            if s is None or s.clip is None:
                raise gr.Error("load a clip first")
            try:
                vals = [float(v) for v in str(values).replace(";", ",").split(",") if v.strip()]
            except ValueError:
                raise gr.Error(f"sweep values must be numbers separated by commas, got {values!r}") from None
            base = {"op": op, "modality": modality, "channels": list(channels or default_channels(modality)),
                    "start": int(start), "end": int(end)}
            txt = text.strip() if (text_on and text and text.strip()) else None
            res = engine.sweep(s.clip, base, vals, mods or [], txt, int(seed_v or 0), int(steps_v or 0) or None)
            grid = plots.sweep_grid(res["frames"], vals, s.clip.context[-1])
            return grid, (f"{op} of {modality} {base['channels'][:4]}{'…' if len(base['channels']) > 4 else ''} over "
                          f"steps {base['start']}-{base['end']}: {len(vals)} futures in {res['seconds']:.2f} s")

        sw_btn.click(sweep, [state, ed_mod, ed_chans, r_start, r_end, sw_op, sw_values, use_mods, prompt, use_text,
                             seed, steps], [sw_img, sw_md], api_name="sweep", concurrency_limit=1,
                     concurrency_id=RENDER)

        # -------------------------------------------------------------- annotate
        @ui_errors
        def annotate(s, unit, a, b, activity, verb, phrase, sentence):
            s = s or Session()
            ann = s.annotate(a or 0, b or 0, activity or "", verb or "", phrase or "", sentence or "", unit)
            return s, s.annotation_rows(), ann.sentence

        @ui_errors
        def use_annotation(s):
            if s is None or s.clip is None:
                raise gr.Error("load a clip first")
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
                     [state, an_table, an_sentence], api_name="annotate")
        an_use.click(use_annotation, [state], [prompt], api_name="use_annotation")
        an_clear.click(clear_annotations, [state], [state, an_table], api_name="clear_annotations")

        # -------------------------------------------------------------- export
        @ui_errors
        def export_clip(s):
            if s is None or s.clip is None:
                raise gr.Error("load a clip first")
            d = s.dir()
            name = sio.safe_name(s.clip.label)
            files = [str(sio.export_clip(s.clip, d / f"{name}_edited.h5", s.prediction)),
                     str(sio.write_csv(d / f"{name}_edited.csv", s.clip.actions))]
            if s.prediction is not None:
                files.append(s.video_path or s.write_video())
            else:
                gr.Warning("no generated video yet: press Generate to include the MP4")
            return files

        ex_btn.click(export_clip, [state], [ex_files], api_name="export_clip")
        bx_fill.click(lambda s: recipe_json(s.clip if s else None), [state], [bx_recipe], api_name="recipe")

        @ui_errors
        def batch_export(s, spec, recipe_text, render, mods, seed_v, steps_v, progress=gr.Progress()):
            s = s or Session()
            recipe = parse_recipe(recipe_text or "[]")
            idx = gallery.select(spec)
            if not idx:
                raise gr.Error(f"clip selection {spec!r} matches no clips")
            if len(idx) > 256:
                raise gr.Error(f"batch export is limited to 256 clips per run, got {len(idx)}")
            items = [gallery.items[i] for i in idx]
            progress(0, desc="augmenting")
            recs = engine.augment(items, recipe, mods or None, render=bool(render), seed=int(seed_v or 0),
                                  steps=int(steps_v or 0) or None, on_batch=lambda k, n: progress(k / n, desc=f"{k}/{n} clips"))
            out = s.dir() / "augmented"
            shutil.rmtree(out, ignore_errors=True)
            manifest = sio.write_dataset(out, recs, stats, split="train",
                                         extra={"edit_recipe": recipe, "generator": engine.info.source})
            zpath = shutil.make_archive(str(out), "zip", out)
            return s, zpath, (f"Wrote {manifest['splits']['train']['num_clips']} clips to `{out}` "
                              f"({'futures rendered by ' + engine.info.source if render else 'recorded futures'}).")

        bx_btn.click(batch_export, [state, bx_clips, bx_recipe, bx_render, use_mods, seed, steps],
                     [state, bx_files, bx_md], api_name="batch_export", concurrency_limit=1, concurrency_id=RENDER)

    return demo
