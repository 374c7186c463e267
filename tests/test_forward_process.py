"""The noise schedule and q(x_t | x_0), eq. 4."""
import pytest
import torch

from grader import probes
from grader import reference as ref

PART = "forward_process"


def test_schedule_values(ns):
    """The linear schedule: betas from 1e-4 to 0.02, alphas and alphas_cumprod (eq. 2 and 4)."""
    d = ns["Diffusion"]()
    betas, alphas, abar, _ = ref.schedule()
    for name, want in (("betas", betas), ("alphas", alphas), ("alphas_cumprod", abar)):
        got = getattr(d, name, None)
        assert isinstance(got, torch.Tensor), f"Diffusion should have a tensor attribute `{name}`."
        assert got.shape == (ref.T,), f"`{name}` should have shape (T,) = ({ref.T},)."
        assert ref.allclose(got.double(), want, rtol=1e-5, atol=1e-7), \
            f"`{name}` does not match the linear schedule from 1e-4 to 0.02 (t = 0..T-1)."


def test_schedule_arguments(ns):
    """Diffusion(num_timesteps, beta_start, beta_end) uses its arguments."""
    d = ns["Diffusion"](num_timesteps=50, beta_start=1e-3, beta_end=0.05)
    betas, _, abar, _ = ref.schedule(50, 1e-3, 0.05)
    assert d.betas.shape == (50,) and ref.allclose(d.betas.double(), betas, atol=1e-7), \
        "Diffusion(num_timesteps, beta_start, beta_end) should use its arguments, not fixed numbers."
    assert ref.allclose(d.alphas_cumprod.double(), abar, rtol=1e-5), \
        "alphas_cumprod should be the cumulative product of alphas for any schedule."


def test_schedule_is_float32_buffers(ns):
    """betas, alphas and alphas_cumprod are float32 buffers that move with .to(device)."""
    d = ns["Diffusion"]()
    buffers = dict(d.named_buffers())
    for name in ("betas", "alphas", "alphas_cumprod"):
        assert name in buffers, f"`{name}` should be registered with register_buffer, so .to(device) moves it."
        assert buffers[name].dtype == torch.float32, f"`{name}` should be stored as float32."


def test_forward_mixed_t_golden(ns):
    """forward(x0, t, noise) follows eq. 4 for a batch with a different t per image."""
    d = ns["Diffusion"]()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 1, 28, 28, generator=g) * 2 - 1
    noise = torch.randn(6, 1, 28, 28, generator=g)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    x_t = d(x0, t, noise)
    assert x_t.shape == x0.shape, "forward should return x_t with the shape of x0."
    if not ref.allclose(x_t.double(), ref.q_sample(x0, t, noise), atol=1e-5):
        signal = d(x0, t, torch.zeros_like(x0)).double() / x0.double()      # (B, 1, 28, 28): the factor of x0
        spread = d(torch.zeros_like(x0), t, noise).double() / noise.double()  # the factor of the noise
        raise AssertionError("forward(x0, t, noise) does not match eq. 4 for a batch with a different t per image: "
                             + _diagnose("x0", "sqrt(abar_t)", signal, t, lambda a: a.sqrt())
                             + _diagnose("the noise", "sqrt(1 - abar_t)", spread, t, lambda a: (1 - a).sqrt()))


def _diagnose(term, right, factor, t, of_abar):
    """Which known slip a per-image factor matches, in words (empty if it is right)."""
    betas, alphas, abar, _ = ref.schedule()
    got = factor.flatten(1).median(dim=1).values                    # one factor per image
    if ref.allclose(got, of_abar(abar[t]), rtol=1e-4, atol=1e-6):
        return ""
    slips = {"alphas where alphas_cumprod belongs": of_abar(alphas[t]),
             "no square root": of_abar(abar[t]) ** 2,
             "the step t + 1 instead of t": of_abar(abar[(t + 1).clamp(max=ref.T - 1)]),
             "the step t - 1 instead of t": of_abar(torch.cat([torch.ones(1, dtype=torch.float64), abar])[t]),
             "the first image's t for the whole batch": of_abar(abar[t[:1]]).expand(len(t))}
    for slip, value in slips.items():
        if ref.allclose(got, value, rtol=1e-4, atol=1e-6):
            return f"the factor of {term} looks like {slip} (it should be {right}). "
    if not torch.isfinite(got).all() or (factor.std(dim=(1, 2, 3)) > 1e-4).any():
        return f"x_t is not {right} times {term} plus the other term: is {term} used as given? "
    return f"the factor of {term} should be {right}, each image with its own t. "


def test_forward_any_image_shape(ns):
    """forward works for images (B, C, H, W) of any channels and size, not only (B, 1, 28, 28)."""
    d = ns["Diffusion"]()
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.rand(2, 3, 5, 7, generator=g) * 2 - 1, torch.randn(2, 3, 5, 7, generator=g)
    t = torch.tensor([10, 900])
    x_t = d(x0, t, noise)
    assert isinstance(x_t, torch.Tensor) and x_t.shape == x0.shape, \
        (f"for x0 of shape (2, 3, 5, 7) forward returned shape {tuple(getattr(x_t, 'shape', ()))}: x_t should have "
         "the shape of x0.")
    assert ref.allclose(x_t.double(), ref.q_sample(x0, t, noise), atol=1e-5), \
        "forward(x0, t, noise) does not match eq. 4 for images of shape (2, 3, 5, 7)."


def test_forward_draws_standard_noise(ns):
    """Without `noise`, forward draws standard normal noise."""
    d = ns["Diffusion"]()
    torch.manual_seed(0)
    x0 = torch.zeros(64, 1, 28, 28)
    t = torch.full((64,), 999)
    x_t = d(x0, t)
    want_std = (1 - ref.schedule()[2][999]).sqrt().item()
    assert abs(x_t.mean().item()) < 0.02 and abs(x_t.std().item() / want_std - 1) < 0.02, \
        "With noise=None, forward should draw the noise from N(0, I) (mean 0, standard deviation 1)."
    assert not torch.equal(d(x0, t), d(x0, t)), "With noise=None, forward should draw new noise on each call."


def test_forward_keeps_input_and_dtype(ns):
    """forward leaves its arguments x0, t and noise unchanged and keeps the dtype of x0."""
    d = ns["Diffusion"]()
    x0 = torch.rand(3, 1, 28, 28) * 2 - 1
    noise = torch.randn_like(x0)
    probes.assert_keeps_its_arguments(ns, "forward(x0, t, noise)", d, x0=x0, t=torch.tensor([5, 50, 500]), noise=noise)
    probes.assert_keeps_its_arguments(ns, "forward(x0, t) without noise", d, x0=x0, t=torch.tensor([5, 50, 500]))
    x_t = d(x0, torch.tensor([5, 50, 500]), noise)
    assert x_t.dtype == torch.float32, "forward should return float32 for float32 input."
    x_t64 = d(x0.double(), torch.tensor([5, 50, 500]), noise.double())
    assert x_t64.dtype == torch.float64, "forward should return float64 for float64 input."


@pytest.mark.gpu
def test_buffers_follow_the_module_to_cuda(ns):
    """The schedule moves to a GPU with the module (GPU only)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    d = ns["Diffusion"]().cuda()
    assert all(b.is_cuda for b in (d.betas, d.alphas, d.alphas_cumprod)), "the schedule should move with .to(device)."
    x0 = torch.zeros(2, 1, 28, 28, device="cuda")
    x_t = d(x0, torch.tensor([1, 2], device="cuda"), torch.ones_like(x0))
    assert x_t.is_cuda and x_t.dtype == torch.float32, "forward should keep the input's device and dtype."
