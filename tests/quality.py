"""Sample quality: an evaluation classifier trained on MNIST, its confidence and class histogram on generated
digits, and the Frechet distance between its features of generated and of real test digits.

tools/train_classifier.py trains the classifier (data/mnist_classifier.pt) and stores the Gaussian of its features of
the 10,000 MNIST test digits (data/mnist_test_gaussian.pt), so that grading needs neither the data set nor the time to
embed it; tests/test_sample_quality.py grades a submission's trained model with them.
"""
import gzip
import os
import struct
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSIFIER = Path(__file__).resolve().parent.parent / "data" / "mnist_classifier.pt"
TEST_GAUSSIAN = CLASSIFIER.with_name("mnist_test_gaussian.pt")


class Classifier(nn.Module):
    """A small CNN for 28x28 digits in [-1, 1]; `features` is its 128-dimensional penultimate layer."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),            # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),           # (B, 64, 7, 7)
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 128), nn.ReLU())  # (B, 128)
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(128, 10))

    def forward(self, x):
        return self.head(self.features(x))


def load_mnist(train, download=False):
    """MNIST from DDPM_DATA_ROOT as images (N, 1, 28, 28) in [-1, 1] and labels (N,), scaled like the notebook's.

    Reads torchvision's raw files (MNIST/raw/*-ubyte, or their .gz) itself, so that the test set alone will do."""
    raw = Path(os.environ.get("DDPM_DATA_ROOT", "data")) / "MNIST" / "raw"
    prefix = "train" if train else "t10k"
    if download and not (raw / f"{prefix}-images-idx3-ubyte").exists():
        import torchvision
        torchvision.datasets.MNIST(raw.parent.parent, train=train, download=True)
    images, labels = (_idx(raw / f"{prefix}-{name}") for name in ("images-idx3-ubyte", "labels-idx1-ubyte"))
    return images.unsqueeze(1).float() / 127.5 - 1.0, labels.long()


def _idx(path):
    """An IDX file (MNIST's format: a magic number whose last byte is the number of dimensions, the dimensions as
    big-endian 32-bit integers, then unsigned bytes) as a uint8 tensor, from the file or its .gz."""
    if path.exists():
        data = path.read_bytes()
    elif path.with_name(path.name + ".gz").exists():
        data = gzip.decompress(path.with_name(path.name + ".gz").read_bytes())
    else:
        raise FileNotFoundError(f"MNIST is not in {path.parent} ({path.name} is missing): run `make data`.")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(shape)


def load_classifier(path=CLASSIFIER):
    model = Classifier()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


@torch.no_grad()
def embed(classifier, images, batch_size=1000):
    """Features (N, 128) and class probabilities (N, 10) of images (N, 1, 28, 28) in [-1, 1]."""
    feats, probs = [], []
    for x in images.float().clamp(-1, 1).split(batch_size):
        f = classifier.features(x)
        feats.append(f.double())
        probs.append(F.softmax(classifier.head(f), dim=1))
    return torch.cat(feats), torch.cat(probs)


def gaussian(features):
    """The mean (D,) and covariance (D, D) of features (N, D), in float64."""
    features = features.double()
    return features.mean(0), torch.cov(features.T)


def test_gaussian(classifier):
    """The Gaussian of the classifier's features of the 10,000 MNIST test digits (reads the data set)."""
    return gaussian(embed(classifier, load_mnist(train=False)[0])[0])


def save_test_gaussian(classifier, path=TEST_GAUSSIAN):
    mean, covariance = test_gaussian(classifier)
    torch.save({"mean": mean, "covariance": covariance}, path)


def load_test_gaussian(path=TEST_GAUSSIAN):
    stored = torch.load(path, map_location="cpu", weights_only=True)
    return stored["mean"], stored["covariance"]


def frechet_distance(a, b):
    """Frechet distance between Gaussians: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2).

    a, b: features (N, D), each fitted with a Gaussian, or a Gaussian (mean, covariance) itself."""
    (mu_a, s_a), (mu_b, s_b) = (x if isinstance(x, tuple) else gaussian(x) for x in (a, b))
    vals, vecs = torch.linalg.eigh(s_a)
    root_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()   # Tr (S_a S_b)^1/2
    return ((mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * cross).item()


def statistics(classifier, samples, reference):
    """Mean confidence, class histogram (fractions) and Frechet distance of generated samples."""
    feats, probs = embed(classifier, samples)
    confidence, labels = probs.max(dim=1)
    histogram = torch.bincount(labels, minlength=10).double() / len(labels)
    return {"confidence": confidence.mean().item(), "histogram": histogram.tolist(),
            "max_class_fraction": histogram.max().item(), "fid": frechet_distance(feats, reference)}


@torch.no_grad()
def ddim_sample(alphas_cumprod, model, shape, steps=100, generator=None, device="cpu"):
    """Deterministic DDIM sampling (eta = 0, Song et al. 2021) on `steps` evenly spaced steps of 0..T-1.

    The grader's fast sampler on a CPU: the same trained noise predictor, ten times fewer network calls.
    """
    abar = alphas_cumprod.double().to(device)
    ts = torch.linspace(len(abar) - 1, 0, steps).round().long().tolist()
    x = torch.randn(shape, generator=generator).to(device)
    for i, t in enumerate(ts):
        a = abar[t]
        a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        eps = model(x, torch.full((shape[0],), t, device=device, dtype=torch.long)).double()
        x0 = ((x.double() - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        x = (a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps).float()
    return x
