"""Property-based fuzzing of every upload format the studio accepts, through app/io.py's loaders.

Formats: clip HDF5 (a one-clip export and a multi-clip shard), NPZ, CSV (trajectories); PNG / JPEG images and an
MP4 video (context frames); a raw ActionSense recording (HDF5 + its world video). Each valid file is damaged at
the byte level (truncated, bytes flipped, a stretch overwritten, replaced by random bytes, emptied) or built with
hostile contents (unknown names, wrong shapes and dtypes, NaN / inf, values x1000, arrays claiming a billion
steps, strings where numbers belong). Every case gives a usable result that satisfies the loader's contract,
or an ``UploadError`` on one line naming the file and never the server folder it was stored in - never
another exception, and never a hang (each call is timed). Fixed seeds (``derandomize=True``).
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsim.app import io as sio
from mmsim_core import schema
from mmsim_core.errors import MMSimError

FAST = settings(max_examples=12, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
FULL = settings(FAST, max_examples=200)
T = schema.CLIP_FRAMES
SECONDS_PER_CALL = 30.0  # generous for a loaded 2-core machine; a hang would take far longer

byte_damage = st.tuples(st.sampled_from(["truncate", "flip", "overwrite", "random", "empty", "append"]),
                        st.floats(0.0, 1.0), st.integers(1, 64), st.integers(0, 2**31 - 1))


def damage_bytes(raw: bytes, kind: str, where: float, n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pos = int(len(raw) * where)
    if kind == "truncate":
        return raw[:pos]
    if kind == "flip":
        b = bytearray(raw)
        for i in rng.integers(0, len(b), size=n):
            b[i] ^= int(rng.integers(1, 256))
        return bytes(b)
    if kind == "overwrite":
        junk = rng.integers(0, 256, size=n * 64, dtype=np.uint8).tobytes()
        return raw[:pos] + junk + raw[pos + len(junk):]
    if kind == "random":
        return rng.integers(0, 256, size=n * 97, dtype=np.uint8).tobytes()
    if kind == "append":
        return raw + rng.integers(0, 256, size=n * 31, dtype=np.uint8).tobytes()
    return b""


def valid_actions(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {m: rng.uniform(0, 1, (T, *spec.shape)).astype(np.float32) for m, spec in schema.MODALITIES.items()}


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """One valid file per upload format."""
    import cv2

    from fixtures.recordings import write_recording
    from mmsim.app.clip import Clip
    from mmsim.app.edits import EditHistory
    from mmsim_core.video import write_video

    base = tmp_path_factory.mktemp("upload_templates")
    acts = valid_actions()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (T, 64, 64, 3), dtype=np.uint8)
    clip = Clip(context=frames[:4], future=frames[4:], edits=EditHistory(acts), text={}, meta={}, label="t")
    out = {"h5": sio.export_clip(clip, base / "clip.h5")}
    out["shard"] = sio.write_shard(base / "shard.h5", [(frames, acts, {}, {"i": i}) for i in range(3)], list(acts))
    np.savez(base / "traj.npz", **{m: a for m, a in acts.items()}, frames=frames)
    out["npz"] = base / "traj.npz"
    out["csv"] = sio.write_csv(base / "traj.csv", acts)
    cv2.imwrite(str(base / "img.png"), frames[0])
    cv2.imwrite(str(base / "img.jpg"), frames[1])
    out["png"], out["jpg"] = base / "img.png", base / "img.jpg"
    out["mp4"] = write_video(base / "ctx.mp4", frames, fps=4.0)
    h5 = write_recording(base / "raw", subject="S01", seconds=3.0, seed=0)
    out["raw_h5"] = h5
    out["raw_mp4"] = next(p for p in h5.parent.glob("*.mp4") if "eye-tracking-video-world" in p.name)
    return out


def check_error(e: Exception, *files: Path) -> None:
    """An UploadError (an MMSimError) on one line, naming one of the files and no server folder."""
    assert isinstance(e, sio.UploadError), f"{type(e).__name__} escaped: {e}"
    assert isinstance(e, MMSimError)
    msg = str(e)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    for f in files:
        assert str(Path(f).parent) not in msg, f"server folder shown: {msg}"


def run(fn, *files):
    """``fn()``'s result, or None after checking the error it raised; bounded in time."""
    t0 = time.perf_counter()
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - the contract is checked here
        check_error(e, *files)
        names = [Path(f).name for f in files]
        generic = ("context images", "trajectory file", "upload ")  # messages about what to upload, not a file
        assert any(n in str(e) for n in names) or str(e).startswith(generic) or "give " in str(e), str(e)
        return None
    finally:
        assert time.perf_counter() - t0 < SECONDS_PER_CALL, f"{fn} took {time.perf_counter() - t0:.0f} s"


def check_trajectories(res) -> None:
    """What read_trajectories promises: known modalities, (T, *shape) finite float32 within the limits."""
    if res is None:
        return
    assert res["actions"]
    for m, a in res["actions"].items():
        assert m in schema.MODALITIES and a.dtype == np.float32 and a.shape == (T, *schema.MODALITIES[m].shape)
        assert np.isfinite(a).all() and np.abs(a).max() <= sio.MAX_NORMALIZED + 1
    if res["frames"] is not None:
        assert res["frames"].dtype == np.uint8 and res["frames"].shape[-1] == 3


# ------------------------------------------------------------------ byte-level damage, every format
def _damaged_copy(templates, key, tmp_path, damage) -> Path:
    src = Path(templates[key])
    p = tmp_path / f"damaged_{key}{src.suffix}"
    p.write_bytes(damage_bytes(src.read_bytes(), *damage))
    return p


def _load(key: str, p: Path, templates, stats):
    if key in ("h5", "shard", "npz", "csv"):
        return lambda: check_trajectories(sio.read_trajectories(p, stats=stats))
    if key in ("png", "jpg"):
        others = [templates["png"]] * 3
        return lambda: sio.load_frames(others + [p])
    if key == "mp4":
        return lambda: sio.load_frames([p])
    if key == "raw_h5":
        return lambda: _raw(p, templates["raw_mp4"], stats)
    return lambda: _raw(templates["raw_h5"], p, stats)


def _raw(h5: Path, mp4: Path, stats):
    rec = sio.RawRecording(h5, mp4)
    try:
        clip = rec.cut(0.5, stats)
        assert clip.context.shape == (4, 64, 64, 3) and clip.actions
    finally:
        rec.close()


KEYS = ("h5", "shard", "npz", "csv", "png", "jpg", "mp4", "raw_h5", "raw_mp4")


@pytest.fixture(scope="module")
def stats():
    from mmsim_core.data import ClipDataset

    return ClipDataset(Path(__file__).resolve().parents[2] / "examples" / "demo_data", split="test").stats


def _byte_case(templates, stats, tmp_path_factory, key, damage):
    p = _damaged_copy(templates, key, tmp_path_factory.mktemp("bytes"), damage)
    run(_load(key, p, templates, stats), p)


@pytest.mark.parametrize("key", KEYS)
@FAST
@given(damage=byte_damage)
def test_damaged_bytes_give_a_result_or_a_named_error(templates, stats, tmp_path_factory, key, damage):
    _byte_case(templates, stats, tmp_path_factory, key, damage)


@pytest.mark.slow
@pytest.mark.parametrize("key", KEYS)
@FULL
@given(damage=byte_damage)
def test_damaged_bytes_full(templates, stats, tmp_path_factory, key, damage):
    _byte_case(templates, stats, tmp_path_factory, key, damage)


# ------------------------------------------------------------------ hostile contents (trajectory files)
NAMES = list(schema.MODALITIES) + ["frames", "units", "text", "Emg", "bogus"]
VALUE_KINDS = ("ok", "nan", "inf", "x1000", "huge", "negative", "zero")
DTYPES = ("float32", "float64", "float16", "int16", "uint8", "bool", "complex64", "U4", "object")


@st.composite
def hostile_arrays(draw):
    """{name: array} with shapes, dtypes and values drawn to break a loader."""
    out = {}
    names = draw(st.lists(st.sampled_from(list(schema.MODALITIES)), min_size=1, max_size=4, unique=True))
    extra = draw(st.sampled_from([None] * 4 + NAMES[len(schema.MODALITIES):]))  # a stray name now and then
    for name in names + ([extra] if extra else []):
        spec = schema.MODALITIES.get(name)
        feat = spec.shape if spec else (64, 64, 3)
        steps = draw(st.sampled_from([T, T, T, 0, 1, T + 1, 2 * T]))
        layout = draw(st.sampled_from(["ok", "ok", "ok", "flat", "scalar", "extra_dim", "wrong_feature"]))
        shape = {"ok": (steps, *feat), "flat": (steps, int(np.prod(feat))), "scalar": (),
                 "extra_dim": (1, steps, *feat), "wrong_feature": (steps, 3)}[layout]
        dtype = draw(st.sampled_from(DTYPES[:2] * 3 + DTYPES))
        kind = draw(st.sampled_from(VALUE_KINDS))
        rng = np.random.default_rng(draw(st.integers(0, 1000)))
        a = rng.uniform(0, 1, shape)
        if a.size:
            a = {"ok": a, "nan": np.where(a > 0.9, np.nan, a), "inf": np.where(a > 0.9, np.inf, a), "x1000": a * 1000,
                 "huge": a * 1e30, "negative": -a, "zero": a * 0}[kind]
        if name in ("units", "text") and draw(st.booleans()):
            out[name] = np.array(draw(st.sampled_from(["raw", "normalized", "RAW", "", "\x00\xff", "é" * 3])))
            continue
        if dtype == "object":
            out[name] = np.empty(shape, dtype=object)
        elif dtype == "U4":
            out[name] = a.astype("U4")
        else:
            with np.errstate(invalid="ignore", over="ignore"):
                out[name] = a.astype(dtype)
    return out


def _write_h5(path: Path, arrays: dict, layout: str, rng) -> None:
    with h5py.File(path, "w") as f:
        if layout == "actions_dataset":
            f.create_dataset("actions", data=np.zeros(3))
        g = f.require_group("actions") if layout != "actions_dataset" else f.create_group("other")
        for name, a in arrays.items():
            target = f if name in ("frames", "text", "meta") else g
            if a.dtype == object:
                target.create_group(name)  # a group where an array belongs
            elif name == "units":
                f.attrs["units"] = str(a.reshape(-1)[0]).replace("\x00", "") if a.size else ""
            elif a.dtype.kind == "U":
                target.create_dataset(name, data=np.char.encode(a, "utf-8"))
            else:
                target.create_dataset(name, data=a)
        if layout == "billion_steps":  # claims 10^9 steps; costs nothing on disk
            g.pop("emg", None)
            g.create_dataset("emg", shape=(10**9, 2, 8), dtype="f4", chunks=(1, 2, 8))
        if layout == "bad_meta":
            f.pop("meta", None)
            f.pop("text", None)
            f.create_dataset("meta", data=np.array([b"{not json", b"[1, 2]"]))
            f.create_dataset("text/sentence", data=np.arange(3))
        if layout == "empty_shard":
            g.pop("body_pose", None)
            g.create_dataset("body_pose", shape=(0, T, 28, 3), dtype="f4")


def _write_npz(path: Path, arrays: dict, layout: str, rng) -> None:
    if layout == "billion_steps":  # a header claiming 10^9 steps, no data behind it
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (10**9, 2, 8)})
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("emg.npy", buf.getvalue() + b"\0" * 64)
        return
    np.savez_compressed(path, **arrays)


def _write_csv(path: Path, arrays: dict, layout: str, rng) -> None:
    cols, vals = ["step"], [np.arange(T, dtype=float)[:, None]]
    for name, a in arrays.items():
        if name in schema.MODALITIES and a.dtype.kind in "biuf" and a.ndim >= 1 and len(a) == T:
            flat = a.reshape(T, -1)
            cols += [f"{name}_{i}" for i in range(flat.shape[1])]
            vals.append(flat.astype(float))
        else:
            cols.append(f"{name}_0")
            vals.append(np.full((T, 1), 0.5))
    text = ",".join(cols) + "\n" + "\n".join(",".join(repr(float(v)) for v in row)
                                             for row in np.concatenate(vals, axis=1))
    if layout == "ragged":
        text += "\n1,2"
    elif layout == "words":
        text = text.replace("0.", "zero.", 3)
    elif layout == "billion_steps":
        text = ",".join(cols) + "\n" + "0\n" * (sio.MAX_TRAJECTORY_STEPS + 5)
    path.write_text(text)


WRITERS = {".h5": _write_h5, ".npz": _write_npz, ".csv": _write_csv}
LAYOUTS = ("plain", "plain", "billion_steps", "bad_meta", "empty_shard", "actions_dataset", "ragged", "words")


def _hostile_case(stats, tmp_path_factory, ext, arrays, layout, seed):
    p = tmp_path_factory.mktemp("hostile") / f"hostile{ext}"
    WRITERS[ext](p, arrays, layout, np.random.default_rng(seed))
    run(lambda: check_trajectories(sio.read_trajectories(p, stats=stats)), p)


@pytest.mark.parametrize("ext", list(WRITERS))
@FAST
@given(arrays=hostile_arrays(), layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 100))
def test_hostile_trajectory_files_give_a_result_or_a_named_error(stats, tmp_path_factory, ext, arrays, layout, seed):
    _hostile_case(stats, tmp_path_factory, ext, arrays, layout, seed)


@pytest.mark.slow
@pytest.mark.parametrize("ext", list(WRITERS))
@FULL
@given(arrays=hostile_arrays(), layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 100))
def test_hostile_trajectory_files_full(stats, tmp_path_factory, ext, arrays, layout, seed):
    _hostile_case(stats, tmp_path_factory, ext, arrays, layout, seed)


# ------------------------------------------------------------------ names are text, never paths
@FAST
@given(name=st.text(min_size=0, max_size=80))
def test_upload_names_never_become_paths(tmp_path_factory, name):
    """Exports are named after a clip's label (which carries the upload's name): whatever the name, the file
    lands inside the session folder, and a message naming the upload stays on one line."""
    d = tmp_path_factory.mktemp("session")
    safe = sio.safe_name(f"upload {name}")
    assert "/" not in safe and "\\" not in safe and safe not in (".", "..") and "\x00" not in safe
    target = (d / f"{safe}_edited.h5").resolve()
    assert target.parent == d.resolve()
    assert "\n" not in str(sio.UploadError(f"{name}: not a readable image"))


def test_limits_name_the_limit_and_the_files_value(tmp_path, stats):
    """Size, frame count, duration and step limits each say the file's value and the limit."""
    from mmsim_core.video import write_video

    frames = np.zeros((40, 16, 16, 3), np.uint8)
    vid = write_video(tmp_path / "long.mp4", frames, fps=4.0)
    with pytest.raises(sio.UploadError, match=r"long.mp4 has 40 frames; videos are limited to 30 frames"):
        sio.check_video_limits(vid, max_frames=30)
    with pytest.raises(sio.UploadError, match=r"long.mp4 lasts 10 s; videos are limited to 5 s"):
        sio.check_video_limits(vid, max_seconds=5)
    big = tmp_path / "big.npz"
    with open(big, "wb") as f:
        f.truncate(int((sio.MAX_UPLOAD_MB + 1) * 2**20))
    with pytest.raises(sio.UploadError, match=r"big.npz is 201.0 MB; uploads are limited to 200 MB"):
        sio.read_trajectories(big)
    long = tmp_path / "long.npz"
    np.savez(long, emg=np.zeros((sio.MAX_TRAJECTORY_STEPS + 1, 2, 8), np.float32))
    with pytest.raises(sio.UploadError, match=rf"emg has {sio.MAX_TRAJECTORY_STEPS + 1} steps; uploads are limited"):
        sio.read_trajectories(long)
    loud = tmp_path / "loud.npz"
    np.savez(loud, emg=np.full((T, 2, 8), 1000.0, np.float32))  # EMG x1000 given as normalised values
    with pytest.raises(sio.UploadError, match=r"loud.npz: EMG reaches 999 times the training range"):
        sio.read_trajectories(loud)
    raw = tmp_path / "raw.npz"  # x1000 in raw units: normalised with the statistics, then refused the same way
    emg_max = np.asarray(stats.maximum["emg"], np.float32)
    np.savez(raw, emg=np.broadcast_to(emg_max * 1000, (T, 2, 8)).astype(np.float32), units=np.array("raw"))
    with pytest.raises(sio.UploadError, match=r"raw.npz: EMG reaches .* times the training range"):
        sio.read_trajectories(raw, stats=stats)
    import cv2

    wide = tmp_path / "wide.png"
    cv2.imwrite(str(wide), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(sio.UploadError, match=r"wide.png is 8x8 pixels; images are limited to 0 megapixels"):
        sio.check_image_limits(wide, max_pixels=10)
