"""The solution's ungraded extensions: the objective comparison (section 9) and classifier-free guidance (section 10)."""
import pytest
import torch
import torch.nn as nn

from grader import reference as ref
from grader.cells import REFERENCE, load
from tools import train as training


@pytest.fixture(scope="module")
def ns():
    return load(REFERENCE, extra=("objective", "guidance"))


class Recorder(nn.Module):
    "Predicts zero noise and keeps what it was called with."

    def __init__(self, num_classes=None):
        super().__init__()
        self.config, self.calls = {"num_classes": num_classes}, []

    def forward(self, x_t, t, y=None):
        self.calls.append((x_t.clone(), t.clone(), None if y is None else y.clone()))
        return torch.zeros_like(x_t)


def test_bound_weights_follow_eq_12(ns):
    """The bound's weights are beta_t / (2 alpha_t (1 - abar_t)), scaled to average 1: heaviest at small t."""
    betas, alphas, abar, _ = ref.schedule()
    expected = betas / (2 * alphas * (1 - abar))
    w = ns["bound_weights"](ns["Diffusion"]()).double()
    assert w.shape == (1000,)
    torch.testing.assert_close(w, expected / expected.mean(), rtol=1e-3, atol=0)   # float32: 1 - abar_0 = 1e-4
    assert w[0] / w[-1] > 40 and w[0] > w[10] > w[100] > w[348] and 300 < w.argmin() < 400


def test_weighted_loss_weights_each_images_error(ns):
    """weighted_loss is the mean over images of the weight of their t times their squared error."""
    diffusion, model = ns["Diffusion"](), Recorder()
    torch.manual_seed(0)
    loss = ns["weighted_loss"](diffusion, model, torch.zeros(64, 1, 4, 4))        # x0 = 0: x_t is scaled noise
    (x_t, t, _), = model.calls
    noise = x_t / (1 - diffusion.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    expected = (ns["bound_weights"](diffusion)[t] * noise.pow(2).mean(dim=(1, 2, 3))).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)


def test_compare_objectives_trains_both_and_samples(ns):
    """compare_objectives returns samples and the losses of one run per objective."""
    images = torch.rand(64, 1, 28, 28) * 2 - 1
    results = ns["compare_objectives"](ns["Diffusion"](), images, steps=2, n_samples=2, progress=False)
    assert list(results) == ["L_simple (eq. 14)", "weighted bound (eq. 12)"]
    for r in results.values():
        assert r["samples"].shape == (2, 1, 28, 28) and torch.isfinite(r["samples"]).all()
        assert len(r["losses"]) == 2


def test_unet_labels_are_optional(ns):
    """UNet() is unchanged by the label option; a conditional UNet reads y, and y=None means the 'no label' class."""
    assert sum(p.numel() for p in ns["UNet"]().parameters()) == 388_625
    torch.manual_seed(0)
    model = ns["UNet"](num_classes=10).eval()
    x, t = torch.randn(4, 1, 28, 28), torch.tensor([0, 10, 500, 999])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), model(x, t, torch.full((4,), 10)))
        nn.init.normal_(model.label_emb.weight)
        assert not torch.allclose(model(x, t, torch.zeros(4, dtype=torch.long)), model(x, t, torch.ones(4, dtype=torch.long)))


def test_conditional_loss_drops_labels(ns):
    """conditional_loss passes each image's label to the model, replaced by 'no label' with probability p_uncond."""
    labels = torch.arange(2000) % 10
    batch = ns["with_labels"](torch.zeros(2000, 1, 4, 4), labels)
    assert batch.shape == (2000, 2, 4, 4)
    model = Recorder(num_classes=10)
    torch.manual_seed(0)
    ns["conditional_loss"](ns["Diffusion"](), model, batch, p_uncond=0.25)
    (x_t, _, y), = model.calls
    assert x_t.shape == (2000, 1, 4, 4), "the label channel must not reach the network"
    dropped = y == 10
    assert 0.2 < dropped.float().mean() < 0.3
    assert torch.equal(y[~dropped], labels[~dropped])
    ns["conditional_loss"](ns["Diffusion"](), model, batch, p_uncond=0.0)
    assert torch.equal(model.calls[-1][2], labels)


class LabelNoise(nn.Module):
    "A conditional 'network' whose noise prediction is 0.1 times the label (1.0 for 'no label'), whatever x_t."

    config = {"num_classes": 10}

    def forward(self, x_t, t, y):
        return (0.1 * y.float()).where(y < 10, torch.ones_like(y, dtype=torch.float)).view(-1, 1, 1, 1).expand_as(x_t)


def test_guided_extrapolates_from_the_unconditional_prediction(ns):
    """Guided gives (1 + w) eps(x, t, y) - w eps(x, t, no label), as the noise of its x0 estimate clipped to [-1, 1]."""
    diffusion = ns["Diffusion"]()
    abar = diffusion.alphas_cumprod
    t, y, w = torch.tensor([50, 300, 800]), torch.tensor([2, 7, 5]), 2.0
    guided_eps = ((1 + w) * 0.1 * y - w * 1.0).float().view(-1, 1, 1, 1)            # -1.4, 0.1, -0.5
    a = abar[t].view(-1, 1, 1, 1)
    x0 = torch.linspace(-0.9, 0.9, 3 * 16).view(3, 1, 4, 4)                            # inside [-1, 1]: no clipping
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * guided_eps
    torch.testing.assert_close(ns["Guided"](LabelNoise(), diffusion, y, w)(x_t, t), guided_eps.expand_as(x_t),
                               rtol=1e-4, atol=1e-4)
    x_t = a.sqrt() * 3 * x0 + (1 - a).sqrt() * guided_eps                              # x0 estimates up to 2.7
    eps = ns["Guided"](LabelNoise(), diffusion, y, w)(x_t, t)
    torch.testing.assert_close((x_t - (1 - a).sqrt() * eps) / a.sqrt(), (3 * x0).clamp(-1, 1), rtol=1e-4, atol=1e-4)


def test_guided_with_w_0_is_the_clipped_conditional_model(ns):
    """With a conditional UNet and w = 0, Guided gives the conditional prediction (where no clipping applies)."""
    torch.manual_seed(0)
    model = ns["UNet"](num_classes=10).eval()
    nn.init.normal_(model.label_emb.weight)
    diffusion = ns["Diffusion"]()
    x, t, y = torch.randn(3, 1, 28, 28), torch.tensor([900, 950, 999]), torch.tensor([1, 7, 3])
    with torch.no_grad():
        cond = model(x, t, y)
        a = diffusion.alphas_cumprod[t].view(-1, 1, 1, 1)
        assert ((x - (1 - a).sqrt() * cond) / a.sqrt()).abs().max() > 1, "the clipping should matter here"
        x0 = ((x - (1 - a).sqrt() * cond) / a.sqrt()).clamp(-1, 1)
        expected = (x - a.sqrt() * x0) / (1 - a).sqrt()
        torch.testing.assert_close(ns["Guided"](model, diffusion, y, 0.0)(x, t), expected, rtol=1e-4, atol=1e-4)


def test_conditional_training_round_trip(ns, tmp_path):
    """A conditional model trained by the runner is saved and rebuilt with its labels."""
    images = ns["with_labels"](torch.rand(64, 1, 28, 28) * 2 - 1, torch.arange(64) % 10)
    model = ns["UNet"](base_channels=8, time_emb_dim=16, num_classes=10)
    ema, log = training.run(ns, model, images, use_bf16=False, epochs=1, output=tmp_path / "cond.pt",
                            loss_fn=ns["conditional_loss"])
    assert log["steps"] >= 1
    rebuilt, _ = ns["load_checkpoint"](str(tmp_path / "cond.pt"))
    assert rebuilt.config["num_classes"] == 10
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([3, 300]), torch.tensor([4, 9])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, t, y), ema(x, t, y))
