"""Gradient norms of L_a and L_sim w.r.t. a policy's weights, averaged over a few training batches."""
import sys, json
import numpy as np, torch
from mmsim_core.data import ClipDataset, collate_clips
from mmsim_core.policies.goal_policy import GoalConditionedPolicy
from mmsim_core.policies.common import vector_to_actions, frames_to_unit
from mmsim_core.policies.simulator_loss import simulator_loss
from mmsim.training.policy import batch_vectors, masked_mse, batch_indices, load_simulator
from mmsim.training.evaluate import clip_noise

policy_dir, data, sim, nb = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
policy = GoalConditionedPolicy.from_pretrained(policy_dir); policy.train()
pipe = load_simulator(sim, "cpu")
ds = ClipDataset(data, split="train"); h, f = ds.context_frames, ds.future_frames
ga, gs, la, ls = [], [], [], []
for step in range(nb):
    batch = collate_clips([ds[i] for i in batch_indices(len(ds), 8, 123, step)])
    vec, mask, mods = batch_vectors(batch, h + f)
    history, expert = vec[:, :h], vec[:, h:]
    frames, future = frames_to_unit(batch["context"]), frames_to_unit(batch["future"])
    pred = policy(frames[:, -1], future[:, -1], history)
    l_a = masked_mse(pred, expert, mask)
    actions = vector_to_actions(torch.cat([history, pred], 1))
    latents = clip_noise(pipe, [m["index"] for m in batch["meta"]], 0)
    text = batch["text"][pipe.text_kind] if pipe.text_kind else None
    l_s = simulator_loss(pipe, batch["context"], actions, future, latents, mods, text)
    for loss, out in ((l_a, ga), (l_s, gs)):
        g = torch.autograd.grad(loss, [p for p in policy.parameters()], retain_graph=True, allow_unused=True)
        out.append(float(torch.sqrt(sum((x ** 2).sum() for x in g if x is not None))))
    la.append(l_a.item()); ls.append(l_s.item())
print(json.dumps({"grad_norm_l_a": float(np.mean(ga)), "grad_norm_l_sim": float(np.mean(gs)),
                  "ratio_sim_over_a": float(np.mean(gs) / np.mean(ga)), "l_a": float(np.mean(la)), "l_sim": float(np.mean(ls))}))
