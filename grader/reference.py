"""Independent float64 reference formulas for the checks (not the notebook's code). The stand-in models that the
checks hand to submitted code are in standins.py, with the schedule both use."""
import torch

from .standins import T, col, schedule  # noqa: F401  (T and the schedule are the checks' too)


def allclose(got, want, **tolerance):
    """torch.allclose for two tensors of one shape: an empty or broadcasting tensor is close to nothing."""
    return (isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor) and got.shape == want.shape
            and torch.allclose(got, want, **tolerance))


def differ(a, b, **tolerance):
    """Two tensors of one shape that are not close (so that a broadcasting or empty tensor cannot pass as different)."""
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape \
        and not torch.allclose(a, b, **tolerance)


def q_sample(x0, t, noise):
    abar = col(schedule()[2], t)
    return abar.sqrt() * x0.double() + (1 - abar).sqrt() * noise.double()


def posterior(x0, x_t, t):
    betas, alphas, abar, abar_prev = (col(v, t) for v in schedule())
    mean = abar_prev.sqrt() * betas / (1 - abar) * x0.double() + alphas.sqrt() * (1 - abar_prev) / (1 - abar) * x_t.double()
    return mean, betas * (1 - abar_prev) / (1 - abar)


def p_sample(eps, x_t, t, noise):
    betas, alphas, abar, _ = (col(v, t) for v in schedule())
    mean = (x_t.double() - betas / (1 - abar).sqrt() * eps.double()) / alphas.sqrt()
    return mean + betas.sqrt() * (t > 0).view(-1, 1, 1, 1) * noise.double()


def two_point_mean(x_t, t, a=0.5):
    """E[x_0 | x_t] for data -a or +a with probability 1/2 each, in float64: a tanh(a sqrt(abar) x_t / (1 - abar))."""
    abar = schedule()[2][t].view(-1, *[1] * (x_t.dim() - 1))
    return a * torch.tanh(a * abar.sqrt() * x_t.double() / (1 - abar))


def ddim_step(eps, x_t, t, t_prev):
    """One DDIM step (eta = 0) in float64 with x0 clipped to [-1, 1]; t_prev = -1 is the clean image."""
    abar = schedule()[2]
    a, a_prev = col(abar, t), torch.where(t_prev >= 0, abar[t_prev.clamp(min=0)], 1.0).view(-1, 1, 1, 1)
    x0 = ((x_t.double() - (1 - a).sqrt() * eps.double()) / a.sqrt()).clamp(-1, 1)
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps.double()
