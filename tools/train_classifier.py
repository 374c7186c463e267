"""Train the evaluation classifier of grader/quality.py on MNIST and save it to data/mnist_classifier.pt, with the
Gaussian of its features of the MNIST test digits (data/mnist_test_gaussian.pt), which the Frechet distance uses.

Prints the test accuracy, which must reach 99 %. About two minutes on a 2-core CPU.
"""
import os

import torch
import torch.nn.functional as F

from grader.quality import CLASSIFIER, TEST_GAUSSIAN, Classifier, load_mnist, save_test_gaussian

download = not os.environ.get("DDPM_OFFLINE")
torch.manual_seed(0)
(x, y), (x_test, y_test) = load_mnist(True, download), load_mnist(False, download)
model = Classifier()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=4 * (len(x) // 128))
for epoch in range(4):
    model.train()
    order = torch.randperm(len(x))
    for i in range(len(x) // 128):
        batch = order[i * 128:(i + 1) * 128]
        # small random shifts make the classifier robust to the slightly off-centre digits a generator draws
        images = torch.roll(x[batch], shifts=tuple(torch.randint(-2, 3, (2,)).tolist()), dims=(2, 3))
        loss = F.cross_entropy(model(images), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"epoch {epoch + 1}: test accuracy {accuracy:.4f}", flush=True)
assert accuracy >= 0.99, "the evaluation classifier should reach 99 % test accuracy"
torch.save(model.state_dict(), CLASSIFIER)
save_test_gaussian(model)
print(f"saved {CLASSIFIER} and {TEST_GAUSSIAN}")
