"""The posterior q(x_{t-1} | x_t, x_0) (eq. 6-7), one step of Algorithm 2, and the sampler."""
import torch

from grader import probes
from grader import reference as ref
from grader import standins

PART = "reverse_process"
T_MIXED = torch.tensor([0, 1, 2, 100, 500, 998, 999])


def _inputs(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 1, 28, 28, generator=g) for _ in range(3)]


def test_posterior_buffers(ns):
    """alphas_cumprod_prev and posterior_variance (eq. 7)."""
    d = ns["Diffusion"]()
    _, _, abar, abar_prev = ref.schedule()
    assert ref.allclose(d.alphas_cumprod_prev.double(), abar_prev, rtol=1e-5), \
        "alphas_cumprod_prev[t] should be alphas_cumprod[t-1], with 1 at t = 0."
    _, var = ref.posterior(torch.zeros(1), torch.zeros(1), torch.arange(ref.T))
    assert ref.allclose(d.posterior_variance.double(), var.flatten(), rtol=2e-3, atol=1e-9), \
        "posterior_variance should be beta_t (1 - abar_{t-1}) / (1 - abar_t) (eq. 7)."


def test_posterior_mean_variance(ns):
    """The posterior mean and variance of q(x_{t-1} | x_t, x_0) (eq. 7)."""
    d = ns["Diffusion"]()
    x0, x_t, _ = _inputs(len(T_MIXED), 1)
    mean, var = d.posterior_mean_variance(x0, x_t, T_MIXED)
    want_mean, want_var = ref.posterior(x0, x_t, T_MIXED)
    assert mean.shape == x0.shape, "the posterior mean should have the shape of x0."
    assert torch.broadcast_shapes(var.shape, x0.shape) == x0.shape and var.numel() in (len(T_MIXED), x0.numel()), \
        "the posterior variance should have shape (B, 1, 1, 1)."
    assert ref.allclose(mean.double(), want_mean, atol=1e-3), "the posterior mean does not match eq. 7."
    assert ref.allclose(var.double().expand_as(x0), want_var.expand_as(x0), rtol=2e-3, atol=1e-9), \
        "the posterior variance does not match eq. 7."


def test_posterior_mean_coefficients_at_large_t(ns):
    """Each coefficient of the posterior mean (eq. 7) to 0.2 %, at large t where neighbouring steps differ most."""
    # At large t, sqrt(abar_t) and sqrt(abar_{t-1}) differ by a factor sqrt(1 - beta_t), 0.5-1 %: too little to show
    # in the mean of random inputs, but clear in each coefficient alone. float32 arithmetic is good to about 1e-4 here.
    d = ns["Diffusion"]()
    t = torch.tensor([500, 700, 900, 999])
    ones, zeros = torch.ones(4, 1, 2, 2), torch.zeros(4, 1, 2, 2)
    for name, x0, x_t, right in (("x0", ones, zeros, "sqrt(abar_{t-1}) beta_t / (1 - abar_t)"),
                                 ("x_t", zeros, ones, "sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)")):
        got = d.posterior_mean_variance(x0, x_t, t)[0].double()
        want = ref.posterior(x0, x_t, t)[0]
        assert ref.allclose(got, want, rtol=2e-3, atol=0), \
            f"the coefficient of {name} in the posterior mean is off at large t: it should be {right} (eq. 7)."


def test_p_sample_step_matches_algorithm_2(ns):
    """p_sample_step follows line 4 of Algorithm 2 (eq. 11)."""
    d = ns["Diffusion"]()
    x_t, eps, noise = _inputs(len(T_MIXED), 2)
    out = d.p_sample_step(ns.standin("ConstantModel", eps), x_t, T_MIXED, noise)
    assert out.shape == x_t.shape, "p_sample_step should return x_{t-1} with the shape of x_t."
    assert ref.allclose(out.double(), ref.p_sample(eps, x_t, T_MIXED, noise), atol=1e-3), \
        "p_sample_step does not match Algorithm 2 (sigma_t^2 = beta_t, no noise at t = 0) for a batch of mixed t."


def test_p_sample_step_noise_scale(ns):
    """p_sample_step adds sigma_t z with sigma_t^2 = beta_t."""
    d = ns["Diffusion"]()
    t = torch.full((1,), 500)
    zero = torch.zeros(1, 1, 28, 28)
    out = d.p_sample_step(ns.standin("ConstantModel", zero), zero, t, torch.ones_like(zero))
    assert ref.allclose(out.double(), ref.schedule()[0][500].sqrt().expand_as(zero), rtol=1e-4), \
        "the noise of a reverse step should be scaled by sigma_t = sqrt(beta_t), the standard deviation."


def test_no_noise_at_last_step(ns):
    """No noise is added at t = 0."""
    d = ns["Diffusion"]()
    x_t, eps, noise = _inputs(2, 3)
    t = torch.zeros(2, dtype=torch.long)
    a = d.p_sample_step(ns.standin("ConstantModel", eps), x_t, t, noise)
    b = d.p_sample_step(ns.standin("ConstantModel", eps), x_t, t, torch.zeros_like(noise))
    assert ref.allclose(a, b), "the last step (t = 0) should add no noise."


def test_steps_keep_their_arguments(ns):
    """posterior_mean_variance and p_sample_step leave their tensor arguments unchanged."""
    d = ns["Diffusion"]()
    x0, x_t, noise = _inputs(len(T_MIXED), 5)
    probes.assert_keeps_its_arguments(ns, "posterior_mean_variance(x0, x_t, t)", d.posterior_mean_variance,
                                      x0=x0, x_t=x_t, t=T_MIXED)
    probes.assert_keeps_its_arguments(ns, "p_sample_step(model, x_t, t, noise)", d.p_sample_step,
                                      model=ns.standin("ConstantModel", x0), x_t=x_t, t=T_MIXED, noise=noise)


def test_sampler_with_oracle_returns_x0(ns):
    """sample() with an oracle model ends at the oracle's image."""
    d = ns["Diffusion"]()
    x0 = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(4)) * 2 - 1
    for seed in (0, 1, 2):
        out = d.sample(standins.OracleModel(x0), x0.shape, generator=torch.Generator().manual_seed(seed))
        assert out.shape == x0.shape, "sample should return a tensor of shape x_shape."
        assert ref.allclose(out, x0.to(out.dtype), atol=1e-3), \
            "with a model that predicts the exact noise of a fixed x0, sampling should end at x0 for any seed."


def test_sampler_visits_each_step_once(ns):
    """sample() calls the model once for each t = T-1, ..., 0, in that order."""
    d = ns["Diffusion"]()
    model = ns.standin("RecordingModel")
    d.sample(model, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert len(model.ts) == ref.T, "the sampler should call the model once per step, T times."
    for t in model.ts:
        assert t.shape == (2,) and not t.is_floating_point(), "the model should get t as an integer tensor of shape (B,)."
    assert [int(t[0]) for t in model.ts] == list(range(ref.T - 1, -1, -1)), "the sampler should visit t = T-1, ..., 0 in order."
    assert ref.allclose(model.xs[0], torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)), atol=1e-6), \
        "the sampler should start from x_{T-1} = randn(x_shape, generator) before any other draw."


def test_sampler_seeded(ns):
    """sample() draws all its noise from the generator it is given."""
    d = ns["Diffusion"]()
    model = ns.standin("ConstantModel", torch.zeros(1))
    a = d.sample(model, (2, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    b = d.sample(model, (2, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    c = d.sample(model, (2, 1, 8, 8), generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b), "the same generator seed should give the same samples."
    assert ref.differ(a, c), "different seeds should give different samples."


def test_sampler_spread_for_gaussian_data(ns):
    """For Gaussian data with the exact denoiser, samples have the data's spread."""
    # Data N(0, 0.5^2 I) and its exact denoiser: the samples' variance follows a known recursion.
    # Catches alpha used for alpha-bar, variance used as standard deviation, and similar slips.
    # Calibration: the reference sampler over seeds 0-39 gives ratios 0.977-1.037 (mean 1.008, sd 0.014), so the
    # tolerance of 0.1 is seven standard deviations; the mutants in tests/meta/mutants.py land far outside it.
    d = ns["Diffusion"]()
    out = d.sample(standins.GaussianDenoiser(0.5), (32, 1, 16, 16), generator=torch.Generator().manual_seed(7))
    ratio = out.double().var().item() / standins.gaussian_final_variance(0.5)
    assert abs(ratio - 1) < 0.1, "the spread of the samples is wrong for Gaussian data with an exact denoiser."
