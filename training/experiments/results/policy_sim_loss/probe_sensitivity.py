"""How L_sim responds to action errors near the expert's actions, per modality (no training).

    python probe_sensitivity.py procObs examples/demo_checkpoint > sensitivity.json

For 8 train clips, one fixed noise draw each: L_sim under the expert's actions; with Gaussian noise added to one
modality (independent per step); with a body-pose offset held over the future steps; with the last history step
held (a coherent trajectory with a larger action error); and the cosine between -grad L_sim (frames compared at
full size and average-pooled) and the direction back to the expert, at a 0.01 body-pose offset.
"""
import json, sys
import torch, torch.nn.functional as F
from mmsim_core.data import ClipDataset, collate_clips
from mmsim_core.policies.common import frames_to_unit, modality_slices, vector_to_actions
from mmsim_core.policies.simulator_loss import simulate
from mmsim.training.policy import batch_vectors, load_simulator
from mmsim.training.evaluate import clip_noise, pick_indices

data, simulator = sys.argv[1], sys.argv[2]
pipe = load_simulator(simulator, "cpu")
ds = ClipDataset(data, split="train"); h, f = ds.context_frames, ds.future_frames
batch = collate_clips([ds[i] for i in pick_indices(len(ds), 8)])
vec, mask, mods = batch_vectors(batch, h + f)                        # (B, h+F, A)
history, expert = vec[:, :h], vec[:, h:]
future = frames_to_unit(batch["future"])                              # (B, F, 3, H, W)
latents = clip_noise(pipe, [m["index"] for m in batch["meta"]], 0)
slices = modality_slices(); body = slices["body_pose"]
g = torch.Generator().manual_seed(0)

def frames(x):
    return simulate(pipe, batch["context"], vector_to_actions(torch.cat([history, x], 1)), latents, mods)

def l_sim(x):
    with torch.no_grad():
        return F.mse_loss(frames(x), future).item()

def mse(x):
    return float(((x - expert) ** 2).mean())

out = {"l_sim_expert": l_sim(expert), "noise_per_step": {}, "body_pose_offset": {}}
for name, sl in slices.items():
    for eps in (0.01, 0.03, 0.1):
        x = expert.clone(); x[..., sl] += eps * torch.randn(x[..., sl].shape, generator=g)
        out["noise_per_step"][f"{name} {eps}"] = l_sim(x)
for eps in (0.001, 0.003, 0.01, 0.03, 0.1):
    x = expert.clone(); x[..., body] += eps * torch.randn((x.shape[0], 1, body.stop - body.start), generator=g)
    out["body_pose_offset"][str(eps)] = l_sim(x)
hold = history[:, -1:].expand_as(expert).clone()
out["hold_last_step"] = {"l_sim": l_sim(hold), "action_mse": mse(hold)}
x0 = expert.clone(); x0[..., body] += 0.01 * torch.randn((x0.shape[0], 1, body.stop - body.start), generator=g)
x0.requires_grad_(True)
fr = frames(x0)
out["grad_at_body_offset_0.01"] = {}
for pool in (1, 4, 8, 16):
    p = (lambda v: F.avg_pool2d(v.flatten(0, 1), pool)) if pool > 1 else (lambda v: v)
    grad, = torch.autograd.grad(F.mse_loss(p(fr), p(future)), x0, retain_graph=True)
    out["grad_at_body_offset_0.01"][f"pool {pool}"] = {
        "cos_to_expert_body_pose": float(F.cosine_similarity((-grad[..., body]).flatten(),
                                                             (expert - x0.detach())[..., body].flatten(), dim=0)),
        "grad_norm_body_pose": float(grad[..., body].norm()),
        "grad_norm_other_modalities": float(torch.cat([grad[..., s].flatten() for n, s in slices.items() if n != "body_pose"]).norm())}
print(json.dumps(out, indent=1))
