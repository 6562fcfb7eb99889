"""Does the simulator's gradient point towards the true actions? Start from the expert's actions plus noise,
descend L_sim on the actions themselves (no policy), and track each modality's distance to the expert's.

    python probe_action_descent.py procObs examples/demo_checkpoint --clips 8 --iters 60 --noise 0.1 > descent_adam.json
    python probe_action_descent.py ... --optimizer sgd --lr 0.5 > descent_sgd.json
"""
import argparse, json
import numpy as np, torch
from mmsim_core import schema
from mmsim_core.data import ClipDataset, collate_clips
from mmsim_core.policies.common import frames_to_unit, modality_slices, vector_to_actions
from mmsim_core.policies.simulator_loss import simulator_loss
from mmsim.training.policy import batch_vectors, load_simulator
from mmsim.training.evaluate import clip_noise, pick_indices

p = argparse.ArgumentParser()
p.add_argument("data"); p.add_argument("simulator")
p.add_argument("--clips", type=int, default=8); p.add_argument("--iters", type=int, default=60)
p.add_argument("--noise", type=float, default=0.1); p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--split", default="train")
p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
p.add_argument("--offset", action="store_true", help="one noise draw per clip held over the future steps (a policy's "
               "error is smooth in time), instead of independent noise per step")
a = p.parse_args()

pipe = load_simulator(a.simulator, "cpu")
ds = ClipDataset(a.data, split=a.split); h, f = ds.context_frames, ds.future_frames
batch = collate_clips([ds[i] for i in pick_indices(len(ds), a.clips)])
vec, mask, mods = batch_vectors(batch, h + f)                      # (B, h+F, A)
history, expert = vec[:, :h], vec[:, h:]
future = frames_to_unit(batch["future"])                            # (B, F, 3, H, W)
latents = clip_noise(pipe, [m["index"] for m in batch["meta"]], 0)
text = batch["text"][pipe.text_kind] if pipe.text_kind else None
g = torch.Generator().manual_seed(0)
shape = (expert.shape[0], 1, expert.shape[2]) if a.offset else expert.shape
x = (expert + a.noise * torch.randn(shape, generator=g)).requires_grad_(True)
opt = (torch.optim.Adam if a.optimizer == "adam" else torch.optim.SGD)([x], lr=a.lr)
sl = modality_slices()

def dist(x):
    return {n: float(((x[..., s] - expert[..., s]) ** 2).mean()) for n, s in sl.items()}

def l_sim(x):
    return simulator_loss(pipe, batch["context"], vector_to_actions(torch.cat([history, x], 1)), future, latents, mods, text)

with torch.no_grad():
    floor = l_sim(expert).item()
# Does the gradient at the noisy start point towards the expert? cos(-grad, expert - x) per modality.
grad, = torch.autograd.grad(l_sim(x), x)
toward = {n: float(torch.nn.functional.cosine_similarity((-grad[..., s]).flatten(), (expert - x.detach())[..., s].flatten(), dim=0))
          for n, s in sl.items()}
rows = []
for it in range(a.iters + 1):
    loss = l_sim(x)
    rows.append({"iter": it, "l_sim": loss.item(), **dist(x.detach())})
    if it == a.iters:
        break
    opt.zero_grad(); loss.backward(); opt.step()
print(json.dumps({"args": vars(a), "l_sim_expert": floor, "cos_grad_to_expert": toward, "start": rows[0], "end": rows[-1], "trace": rows[::10]}, indent=1))
