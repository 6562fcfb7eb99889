"""Faults injected into a real ``mmsim train`` run: a SIGKILL or a full disk at a chosen point of a checkpoint write.

Run as a script, it is ``mmsim train`` with one fault armed (the tests start it in a subprocess, so the kill is
a real one)::

    python tests/fuzz/faults.py FAULT STEP -- <mmsim train arguments>

``FAULT`` is one of :data:`POINTS` (where in writing ``checkpoint_<STEP>`` it strikes) joined to an action:
``kill`` (SIGKILL the process) or ``enospc`` (the write raises ``OSError(ENOSPC)``, as a full disk does).
"""

from __future__ import annotations

import errno
import os
import signal
import sys

POINTS = ("model", "optimizer", "ema", "pipeline", "marker")
"""Order of the files written into a checkpoint folder: accelerate's model.safetensors, its optimizer.bin
(then scheduler, sampler, RNG states), ema.safetensors, the pipeline/ folder, trainer_state.json."""


def _strike(action: str, path) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def arm(fault: str, step: int) -> None:
    """Patch the writers a checkpoint uses so that ``fault`` strikes while ``checkpoint_<step>`` is written."""
    import accelerate.utils.other as acc_other
    import torch
    from diffusers import ModelMixin

    import mmsim.training.train as train_mod

    action, _, point = fault.partition("_")
    assert action in ("kill", "enospc") and point in POINTS, fault
    folder = f"checkpoint_{step}"

    def hits(path, name: str) -> bool:
        return folder in str(path) and name in os.path.basename(str(path))

    if point == "model":
        real = acc_other.safe_save_file

        def safe_save_file(obj, f, *a, **k):
            if hits(f, "model"):
                with open(f, "wb") as h:  # a partial file, as a kill or a full disk mid-write leaves it
                    h.write(b"\x00" * 64)
                _strike(action, f)
            return real(obj, f, *a, **k)

        acc_other.safe_save_file = safe_save_file
    elif point == "optimizer":
        real_save = torch.save

        def save(obj, f, *a, **k):
            if hits(f, "optimizer"):
                _strike(action, f)
            return real_save(obj, f, *a, **k)

        torch.save = save
    elif point == "ema":
        real_ema = train_mod.save_file

        def save_file(tensors, filename, *a, **k):
            if hits(filename, "ema"):
                _strike(action, filename)
            return real_ema(tensors, filename, *a, **k)

        train_mod.save_file = save_file
    elif point == "pipeline":
        real_pretrained = ModelMixin.save_pretrained

        def save_pretrained(self, save_directory, *a, **k):
            out = real_pretrained(self, save_directory, *a, **k)
            if folder in str(save_directory):  # after the first component: the pipeline folder is half written
                _strike(action, save_directory)
            return out

        ModelMixin.save_pretrained = save_pretrained
    else:
        real_replace = os.replace

        def replace(src, dst, *a, **k):
            if hits(dst, train_mod.TRAINER_STATE):
                _strike(action, dst)
            return real_replace(src, dst, *a, **k)

        train_mod.os.replace = replace


def main(argv: list[str]) -> int:
    import torch

    torch.set_num_threads(2)  # as the test process: same reduction order, bit-exact weights
    fault, step, sep, *rest = argv
    assert sep == "--"
    from mmsim.training.train import main as train_main

    if fault != "none":
        arm(fault, int(step))
    return train_main(rest)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    raise SystemExit(main(sys.argv[1:]))
