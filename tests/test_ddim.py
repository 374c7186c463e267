"""DDIM (Song et al. 2021, eta = 0): a deterministic sampler on a subsequence of the steps."""
import torch

from grader import sampling
from grader import probes
from grader import reference as ref
from grader import standins

PART = "ddim"


def test_step_matches_reference(ns):
    """One DDIM step: x0 from the predicted noise, clipped, then the same noise at the lower level."""
    d = ns["Diffusion"]()
    g = torch.Generator().manual_seed(0)
    x_t, eps = torch.randn(4, 1, 28, 28, generator=g), torch.randn(4, 1, 28, 28, generator=g)
    t, t_prev = torch.tensor([999, 600, 20, 0]), torch.tensor([979, 300, 0, -1])
    out = ns["ddim_step"](d, ns.standin("ConstantModel", eps), x_t, t, t_prev)
    assert out.shape == x_t.shape, "ddim_step should return a tensor of the shape of x_t."
    assert ref.allclose(out.double(), ref.ddim_step(eps, x_t, t, t_prev), atol=1e-4), \
        "ddim_step does not match x_{t'} = sqrt(abar_t') x0_hat + sqrt(1 - abar_t') eps with x0_hat clipped to [-1, 1]."


def test_last_step_returns_the_estimate(ns):
    """A step to t_prev = -1 returns the clipped estimate of x0."""
    d = ns["Diffusion"]()
    x0 = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    t = torch.tensor([400, 30])
    x_t = ref.q_sample(x0, t, torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))).float()
    out = ns["ddim_step"](d, standins.OracleModel(x0), x_t, t, torch.tensor([-1, -1]))
    assert ref.allclose(out.double(), x0.double(), atol=1e-4), "a step to t_prev = -1 should return x0_hat (abar_{-1} = 1)."


def test_step_keeps_its_arguments(ns):
    """ddim_step leaves x_t, t and t_prev unchanged."""
    g = torch.Generator().manual_seed(5)
    x_t, eps = torch.randn(4, 1, 28, 28, generator=g), torch.randn(4, 1, 28, 28, generator=g)
    probes.assert_keeps_its_arguments(ns, "ddim_step(diffusion, model, x_t, t, t_prev)", ns["ddim_step"],
                                      diffusion=ns["Diffusion"](), model=ns.standin("ConstantModel", eps), x_t=x_t,
                                      t=torch.tensor([999, 600, 20, 0]), t_prev=torch.tensor([979, 300, 0, -1]))


def test_oracle_returns_x0(ns):
    """With an oracle model, ddim_sample ends exactly at x0 for any number of steps."""
    d = ns["Diffusion"]()
    x0 = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(3)) * 2 - 1
    for n in (7, 100):
        out = ns["ddim_sample"](d, standins.OracleModel(x0), x0.shape, num_steps=n, generator=torch.Generator().manual_seed(0))
        assert out.shape == x0.shape and ref.allclose(out.double(), x0.double(), atol=1e-3), \
            f"with an oracle model, ddim_sample with {n} steps should return x0."


def test_visits_the_given_steps(ns):
    """The model is called once per step, at T-1, ..., 0 evenly spaced, in that order."""
    model = ns.standin("RecordingModel")
    ns["ddim_sample"](ns["Diffusion"](), model, (2, 1, 8, 8), num_steps=25, generator=torch.Generator().manual_seed(0))
    want = torch.linspace(ref.T - 1, 0, 25).round().long().tolist()
    got = [t[0].item() for t in model.ts]
    assert got == want, f"ddim_sample should call the model at the {len(want)} given steps from {ref.T - 1} to 0, once each."


def test_matches_the_graders_sampler(ns):
    """Same seed, same images as an independent DDIM sampler (the only noise is x_{T-1})."""
    model, calls = standins.GaussianDenoiser(0.5), []
    counting = lambda x_t, t: calls.append(int(t[0])) or model(x_t, t)  # noqa: E731
    out = ns["ddim_sample"](ns["Diffusion"](), counting, (3, 1, 8, 8), num_steps=50, generator=torch.Generator().manual_seed(4))
    want = sampling.ddim_sample(standins.GaussianDenoiser(0.5), (3, 1, 8, 8), 50, torch.Generator().manual_seed(4))
    steps = torch.linspace(ref.T - 1, 0, 50).round().long().tolist()
    assert calls == steps, (f"ddim_sample(num_steps=50) called the model {len(calls)} times; it should call it once at "
                            "each of the 50 given steps, jumping from each straight to the next.")
    assert ref.allclose(out.double(), want.double(), atol=1e-4), \
        "the images differ from an independent DDIM sampler with the same seed: ddim_sample should start from " \
        "x_{T-1} = randn(x_shape, generator, device), draw nothing else, and end with the jump to t_prev = -1."
