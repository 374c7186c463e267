"""Sample statistics of the submitted trained model, regenerated from its weights with a fixed seed.

The submission's UNet class is rebuilt from its checkpoint (data/ddpm_mnist.pt next to the notebook, or
--checkpoint) and sampled with the grader's own sampler, so this grades the training, not the sampler. First the
model must predict the noise added to real test digits (L_simple): the samples of a model that cannot (one that
steers the sampler onto digits stored in its weights) are not graded.
On a CPU: 256 digits with 20-step DDIM (as good a judge as 100 steps, five times faster: bench/results.md's sweep).
On a GPU: 2,000 digits with the full 1000-step sampler of Algorithm 2.
"""
import functools
from pathlib import Path

import pytest
import torch

import quality
import reference as ref
from grader import REFERENCE, SubmissionError, Unloadable, namespace

PART = "sample_quality"   # its own part, with the notebook's U-Net cell (the model is rebuilt with it)
CPU_SECONDS = 600         # sampling is the longest check: 256 digits x 20 steps take about 20 s of one core
CPU = {"n": 256, "steps": 20}
GPU = {"n": 2000, "steps": 1000}
# The calibration behind these numbers (the reference model, real digits, under-trained and untrained models over
# several seeds) is tests/calibration.md, written by tools/calibrate.py; the GPU setting has no calibration run yet.
THRESHOLDS = {"confidence": 0.80, "max_class_fraction": 0.30, "fid": {"cpu": 100.0, "gpu": 100.0}, "denoising_loss": 0.1}


def checkpoint_of(notebook, checkpoint=None):
    return Path(checkpoint) if checkpoint else Path(notebook).resolve().parent / "data" / "ddpm_mnist.pt"


def load_model(ns, path, device):
    """The submission's UNet (ns: a namespace, here or in a worker) with the weights of its checkpoint at `path`."""
    if isinstance(ns, Unloadable):
        raise SubmissionError(ns.reason)
    if not path.exists():
        raise SubmissionError(f"No trained model was submitted: {path.name} should be in data/ next to your notebook.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = ns["UNet"](**checkpoint["config"])
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as err:
        raise SubmissionError(f"Your saved model could not be loaded into your UNet ({type(err).__name__}: {err}).")
    return model.to(device).eval()


@torch.no_grad()
def ancestral_sample(model, n, generator, device):
    betas, alphas, abar, _ = (v.to(device) for v in ref.schedule())
    x = torch.randn(n, 1, 28, 28, generator=generator).to(device)
    for step in range(ref.T - 1, -1, -1):
        t = torch.full((n,), step, device=device, dtype=torch.long)
        eps = model(x, t).float()
        x = ((x - betas[step] / (1 - abar[step]).sqrt() * eps) / alphas[step].sqrt()).float()
        if step > 0:
            x = x + betas[step].sqrt().float() * torch.randn(x.shape, generator=generator).to(device)
    return x


def sample(model, device, n, steps, seed=0):
    generator = torch.Generator().manual_seed(seed)
    use_bf16 = device.type == "cuda" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    samples = []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        for chunk in range(0, n, 500):
            m = min(500, n - chunk)
            if steps == ref.T:
                samples.append(ancestral_sample(model, m, generator, device).cpu())
            else:
                samples.append(quality.ddim_sample(ref.schedule()[2], model, (m, 1, 28, 28), steps, generator, device).cpu())
    return torch.cat(samples)



@functools.lru_cache(maxsize=None)
def statistics(notebook, checkpoint, on_gpu):
    device = torch.device("cuda" if on_gpu else "cpu")
    try:
        model = load_model(namespace(notebook, "unet"), checkpoint_of(notebook, checkpoint), device)
    except SubmissionError:   # perhaps the U-Net uses a helper of an earlier cell: try with the notebook's own
        model = load_model(namespace(notebook, "unet", own_earlier=True), checkpoint_of(notebook, checkpoint), device)
    setting = GPU if on_gpu else CPU
    samples = sample(model, device, **setting)
    return {**quality.statistics(quality.load_classifier(), samples, quality.load_test_gaussian()),
            "denoising_loss": denoising_loss(model, device)}


def denoising_loss(model, device, n=256):
    """L_simple of the model on the first n MNIST test digits, each with its own t and noise (seeded), computed here
    from its predictions: a trained denoiser predicts them well, a model that only reproduces stored digits cannot."""
    x0 = quality.load_mnist(train=False)[0][:n]
    g = torch.Generator().manual_seed(0)
    t, noise = torch.randint(0, ref.T, (n,), generator=g), torch.randn(x0.shape, generator=g)
    use_bf16 = device.type == "cuda" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        prediction = model(ref.q_sample(x0, t, noise).float().to(device), t.to(device))
    if not isinstance(prediction, torch.Tensor) or prediction.shape != noise.shape:
        return float("inf")
    return (prediction.float().cpu() - noise).pow(2).mean().item()


_failed = {}  # a model that could not be loaded or sampled in time is tried once, not once per check


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def stats(request):   # per check, so that the sampling runs under the check's CPU limit; statistics() is cached
    key = (str(Path(request.config.getoption("--notebook") or REFERENCE).resolve()),
           request.config.getoption("--checkpoint"), request.param == "gpu")
    if key not in _failed:
        try:
            return request.param, statistics(*key)
        except SubmissionError as err:
            _failed[key] = err
        except pytest.fail.Exception:
            _failed[key] = SubmissionError("Sampling your model did not finish in time: is there an endless loop?")
            raise
    return request.param, _failed[key]


def _measured(stats):
    """The statistics of a model that denoises real digits; for any other model, every check fails: the samples of a
    model that does not predict noise (one that reproduces stored digits, say) say nothing about its training."""
    kind, s = stats
    if isinstance(s, SubmissionError):
        raise AssertionError(str(s))
    assert s["denoising_loss"] <= THRESHOLDS["denoising_loss"], \
        "your model does not predict the noise added to real digits well (L_simple too large), so its samples are " \
        "not graded: train longer, or check the loss."
    return kind, s


def test_samples_are_confident_digits(stats):
    """Your trained model's samples look like digits to a digit classifier."""
    _, s = _measured(stats)
    assert s["confidence"] >= THRESHOLDS["confidence"], \
        "a digit classifier is not confident about your model's samples: they do not look enough like digits yet."


def test_samples_cover_all_digits(stats):
    """Your samples cover all ten digits (no digit above 30 %)."""
    _, s = _measured(stats)
    assert s["max_class_fraction"] <= THRESHOLDS["max_class_fraction"], \
        "your model's samples are dominated by a few digits (mode collapse?)."


def test_model_predicts_the_noise_of_real_digits(stats):
    """Your trained model predicts the noise added to real test digits (L_simple, eq. 14)."""
    _measured(stats)


def test_samples_match_the_data(stats):
    """Your samples' Frechet distance to real test digits is small enough."""
    kind, s = _measured(stats)
    assert s["fid"] <= THRESHOLDS["fid"][kind], \
        "the Frechet distance between your samples and real digits is too large: train longer, or check the loss."
