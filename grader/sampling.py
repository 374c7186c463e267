"""How the grader measures a submitted trained model: load it into the submission's UNet, draw samples with the
grader's own samplers (so that the sample-quality part grades the training, not the sampler), and measure them
with quality.py. Not shipped to students: the samplers here are solutions of the notebook's sections 6 and 7.
"""
from pathlib import Path

import torch

from . import quality
from . import reference as ref
from .cells import MODEL, SubmissionError, Unloadable


def checkpoint_of(notebook, checkpoint=None):
    """The trained model submitted with `notebook`: `checkpoint` if given, else data/ddpm_mnist.pt beside it.
    Raises SubmissionError if there is none (before any of the notebook's cells runs: they are not to blame)."""
    path = Path(checkpoint) if checkpoint else Path(notebook).resolve().parent / MODEL
    if not path.exists():
        raise SubmissionError(f"No trained model was submitted: {path.name} should be in data/ next to your notebook.")
    return path


def load_model(ns, path, device):
    """The submission's UNet (ns: a namespace, here or in a worker) with the weights of its checkpoint at `path`."""
    if isinstance(ns, Unloadable):
        raise SubmissionError(ns.reason)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = ns["UNet"](**checkpoint["config"])
        # the weights of a torch.compile'd model are named "_orig_mod." + the model's own names
        model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in checkpoint["state_dict"].items()})
    except Exception as err:
        raise SubmissionError(f"Your saved model could not be loaded into your UNet ({type(err).__name__}: {err}).")
    return model.to(device).eval()


@torch.no_grad()
def ancestral_sample(model, n, generator, device):
    """Algorithm 2 with sigma_t^2 = beta_t: n images (n, 1, 28, 28) from T-1 down to 0."""
    betas, alphas, abar, _ = (v.to(device) for v in ref.schedule())
    x = torch.randn(n, 1, 28, 28, generator=generator).to(device)
    for step in range(ref.T - 1, -1, -1):
        t = torch.full((n,), step, device=device, dtype=torch.long)
        eps = model(x, t).float()
        x = ((x - betas[step] / (1 - abar[step]).sqrt() * eps) / alphas[step].sqrt()).float()
        if step > 0:
            x = x + betas[step].sqrt().float() * torch.randn(x.shape, generator=generator).to(device)
    return x


@torch.no_grad()
def ddim_sample(model, shape, steps, generator=None, device="cpu"):
    """Deterministic DDIM (eta = 0, Song et al. 2021) on `steps` evenly spaced steps from T-1 down to 0."""
    abar = ref.schedule()[2].double().to(device)
    ts = torch.linspace(ref.T - 1, 0, steps).round().long().tolist()
    x = torch.randn(shape, generator=generator).to(device)
    for i, t in enumerate(ts):
        a = abar[t]
        a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        eps = model(x, torch.full((shape[0],), t, device=device, dtype=torch.long)).double()
        x0 = ((x.double() - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        x = (a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps).float()
    return x


def autocast(device):
    """bfloat16 autocast where it is fast (GPUs, CPUs with bfloat16 support), as the notebook samples."""
    enabled = device.type == "cuda" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def sample(model, device, n, steps, seed=0):
    """n samples (n, 1, 28, 28): DDIM with `steps` steps, or Algorithm 2 when steps = T; in chunks of 500."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    with autocast(device):
        for chunk in range(0, n, 500):
            m = min(500, n - chunk)
            if steps == ref.T:
                samples.append(ancestral_sample(model, m, generator, device).cpu())
            else:
                samples.append(ddim_sample(model, (m, 1, 28, 28), steps, generator, device).cpu())
    return torch.cat(samples)


def measure(model, device, kind="cpu"):
    """The statistics that quality.judge() rules on: the samples' (quality.SETTINGS[kind]) and the denoising loss."""
    setting = quality.SETTINGS[kind]
    samples = sample(model, device, **setting)
    x0 = quality.load_mnist(train=False)[0][:quality.SETTINGS["cpu"]["n"]]
    with autocast(device):
        loss = quality.denoising_loss(model, ref.q_sample, x0, device)
    return quality.measure(samples, loss)
