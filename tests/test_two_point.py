"""The exact denoiser of a data set of two points: E[x_0 | x_t] in closed form."""
import torch

from grader import probes
from grader import reference as ref

PART = "two_point"


def _abar(ns):
    return ns["Diffusion"]().alphas_cumprod


def test_matches_the_closed_form(ns):
    """E[x_0 | x_t] = a tanh(a sqrt(abar_t) x_t / (1 - abar_t)) for a batch of steps."""
    x_t = torch.randn(6, 1, 1, 1, generator=torch.Generator().manual_seed(0)) * 2
    t = torch.tensor([999, 700, 400, 200, 50, 5])
    got = ns["two_point_posterior_mean"](x_t, t, _abar(ns))
    assert got.shape == x_t.shape, "the posterior mean should have the shape of x_t."
    want = ref.two_point_mean(x_t, t)
    if not ref.allclose(got.double(), want, atol=1e-5):
        if ref.allclose(got.double() * 0.5, want, atol=1e-5):
            raise AssertionError("your E[x_0 | x_t] is 1/a times the right one: the mean of points -a and +a is a tanh(...).")
        raise AssertionError("E[x_0 | x_t] does not match a tanh(a sqrt(abar_t) x_t / (1 - abar_t)), the posterior mean "
                             "of two equally likely points -a and +a.")


def test_uses_the_data_points(ns):
    """The argument `a` sets the two data points -a and +a."""
    x_t, t = torch.linspace(-2, 2, 5).view(5, 1, 1, 1), torch.full((5,), 300)
    got = ns["two_point_posterior_mean"](x_t, t, _abar(ns), a=1.0)
    assert ref.allclose(got.double(), ref.two_point_mean(x_t, t, a=1.0), atol=1e-5), \
        "two_point_posterior_mean(x_t, t, alphas_cumprod, a) should use a for both the points and the likelihood."


def test_finite_at_small_t(ns):
    """Finite at t = 0 and for large x_t, where densities written out overflow."""
    x_t, t = torch.tensor([-4.0, -0.3, 0.0, 0.3, 4.0]).view(5, 1, 1, 1), torch.zeros(5, dtype=torch.long)
    got = ns["two_point_posterior_mean"](x_t, t, _abar(ns))
    assert torch.isfinite(got).all(), "the posterior mean is nan or inf at t = 0: compute it with tanh, not with densities."
    assert ref.allclose(got.double(), ref.two_point_mean(x_t, t), atol=1e-5), \
        "at t = 0 the posterior mean should be -a or +a by the sign of x_t (0 at x_t = 0)."


def test_works_for_images(ns):
    """Works for image-shaped x_t (B, 1, 28, 28) with one t per image."""
    x_t = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10, 500, 900])
    got = ns["two_point_posterior_mean"](x_t, t, _abar(ns))
    assert got.shape == x_t.shape and ref.allclose(got.double(), ref.two_point_mean(x_t, t), atol=1e-5), \
        "the posterior mean should broadcast abar_t over every pixel of image i, for a different t per image."


def test_every_shape_of_x_t(ns):
    """Works for x_t of any shape (B, ...) that the docstring allows, with one t per row."""
    t = torch.tensor([3, 300, 900])
    for shape in ((3,), (3, 5), (3, 1, 1, 1), (3, 2, 4, 4), (3, 1, 2, 3, 2)):
        x_t = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape)))
        got = ns["two_point_posterior_mean"](x_t, t, _abar(ns))
        assert isinstance(got, torch.Tensor) and got.shape == x_t.shape, \
            (f"for x_t of shape {tuple(shape)} the posterior mean has shape {tuple(getattr(got, 'shape', ()))}: it "
             "should have the shape of x_t for any x_t of shape (B, ...), with abar_t shaped to broadcast over row i.")
        assert ref.allclose(got.double(), ref.two_point_mean(x_t, t), atol=1e-5), \
            (f"for x_t of shape {tuple(shape)} the posterior mean does not match "
             "a tanh(a sqrt(abar_t) x_t / (1 - abar_t)).")


def test_keeps_its_arguments(ns):
    """two_point_posterior_mean leaves x_t, t and alphas_cumprod unchanged."""
    x_t = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    probes.assert_keeps_its_arguments(ns, "two_point_posterior_mean(x_t, t, alphas_cumprod)",
                                      ns["two_point_posterior_mean"], x_t=x_t, t=torch.tensor([0, 10, 500, 999]),
                                      alphas_cumprod=_abar(ns))


def test_exact_denoiser_samples_the_two_points(ns):
    """Algorithm 2 with the exact denoiser ends at -a or +a, about half of the time each."""
    d = ns["Diffusion"]()
    out = d.sample(ns["TwoPointDenoiser"](d.alphas_cumprod), (400, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    near = ((out.abs() - 0.5).abs() < 0.05).double().mean().item()
    positive = (out > 0).double().mean().item()
    # Calibrated with the reference over seeds 0-19: near = 1.000 on every seed, positive 0.47-0.54 (sd 0.025).
    assert near > 0.95 and 0.35 < positive < 0.65, \
        "sampling with your exact denoiser should land on the two data points, about half of the time each."
