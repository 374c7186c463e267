"""Stand-in models for the checks, and the schedule they use. The constant and recording models run in the worker,
beside the submitted code that calls them (`ns.standin(name, *args)`), so that a sampler's thousand calls cost no
round trip; what they record comes back to the checks as data. The oracle and the Gaussian denoiser know the answer,
so they stay with the checks and are lent to the worker, which may only call them. reference.py holds the formulas
the checks compare with.
"""
import torch
import torch.nn as nn

T = 1000


def schedule(num_timesteps=T, beta_start=1e-4, beta_end=0.02):
    """betas, alphas, alphas_cumprod and alphas_cumprod_prev in float64, indexed t = 0..T-1."""
    betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return betas, alphas, abar, abar_prev


def col(values, t):
    return values[t].view(-1, 1, 1, 1)


class ConstantModel(nn.Module):
    """Predicts a fixed tensor, whatever x_t and t."""

    def __init__(self, output):
        super().__init__()
        self.output = output

    def forward(self, x_t, t):
        return self.output.to(x_t.dtype).expand_as(x_t).clone()


class MixingModel(nn.Module):
    """Predicts each image's mean for every pixel: what it gives an unknown pixel depends on the known ones."""

    def forward(self, x_t, t):
        return x_t.mean(dim=(1, 2, 3), keepdim=True).expand_as(x_t).clone()


class OracleModel(nn.Module):
    """Predicts the exact noise of x_t for known clean images x0. It knows the answer, so it stays with the checks
    (lent to the worker, which may only call it: its attributes are private)."""

    def __init__(self, x0):
        super().__init__()
        self._x0 = x0.double()
        self._abar = schedule()[2]

    def forward(self, x_t, t):
        abar = col(self._abar, t.cpu())
        return ((x_t.double() - abar.sqrt() * self._x0) / (1 - abar).sqrt()).to(x_t.dtype)


class GaussianDenoiser(nn.Module):
    """The exact E[noise | x_t] when the data is N(0, s^2 I): sqrt(1 - abar) x_t / (abar s^2 + 1 - abar). It stays
    with the checks too: the variance its samples should have is gaussian_final_variance(s)."""

    def __init__(self, s):
        super().__init__()
        self._s2 = s * s
        self._abar = schedule()[2]

    def forward(self, x_t, t):
        abar = col(self._abar, t.cpu())
        return ((1 - abar).sqrt() * x_t.double() / (abar * self._s2 + 1 - abar)).to(x_t.dtype)


def gaussian_final_variance(s):
    """Variance per pixel of Algorithm 2's output (sigma_t^2 = beta_t) with the exact denoiser of N(0, s^2 I) data,
    by the exact linear recursion."""
    betas, alphas, abar, _ = schedule()
    v = torch.tensor(1.0, dtype=torch.float64)
    for t in range(T - 1, -1, -1):
        c = (1 - betas[t] / (abar[t] * s * s + 1 - abar[t])) / alphas[t].sqrt()
        v = c * c * v + (betas[t] if t > 0 else 0.0)
    return v.item()


class RecordingModel(nn.Module):
    """Returns zeros and records each call's t and x_t."""

    def __init__(self):
        super().__init__()
        self.ts, self.xs = [], []

    def forward(self, x_t, t):
        self.ts.append(t.detach().clone())
        self.xs.append(x_t.detach().clone())
        return torch.zeros_like(x_t)
