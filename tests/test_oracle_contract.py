"""The oracle contract as a user outside the repository calls it: a clip's meta and de-normalised actions
are enough to re-render that clip's frames."""

import subprocess
import sys
import textwrap

import numpy as np

from mmsim_core.data import ClipDataset

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from mmsim_core.data import ClipDataset
    from mmsim_core.synth import load_oracle
    from mmsim_core.schema import denormalize

    data, index, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ds = ClipDataset(data, split="test")
    item = ds[index]
    meta = item["meta"]
    raw = {m: denormalize(m, item["actions"][m], ds.stats) for m in item["actions"]}
    frames = load_oracle(meta["source"]).render_clip(meta["video_frame_indices"], raw)
    np.save(out, frames)
""")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def test_oracle_re_renders_a_clip_from_outside_the_repository(synth, tmp_path):
    ds = ClipDataset(synth, split="test")
    indices = sorted({0, len(ds) // 2, len(ds) - 1})
    (tmp_path / "contract.py").write_text(SCRIPT)
    for index in indices:
        out = tmp_path / f"frames_{index}.npy"
        run = subprocess.run([sys.executable, "contract.py", str(synth), str(index), str(out)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        frames = np.load(out)
        item = ds[index]
        clip = np.concatenate([item["context"], item["future"]])  # (h+F, H, W, 3) as preprocessing made them
        assert frames.shape == clip.shape and frames.dtype == np.uint8
        assert _psnr(frames, clip) > 30, f"clip {index}: the oracle does not re-render the clip"
