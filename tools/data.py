"""`make data`: make sure MNIST is in DDPM_DATA_ROOT (torchvision's layout), downloading it when allowed."""
import os
import sys

import torchvision

root = os.environ.get("DDPM_DATA_ROOT", "data")
offline = bool(os.environ.get("DDPM_OFFLINE"))
for train in (True, False):
    try:
        ds = torchvision.datasets.MNIST(root, train=train, download=not offline)
    except Exception as err:
        sys.exit(f"MNIST is not in {os.path.abspath(root)} ({err}).\nPut the raw files in "
                 f"{os.path.join(root, 'MNIST', 'raw')}, point make at them with DATA_ROOT=..., "
                 f"or run `make data` online to download them.")
    print(f"MNIST {'train' if train else 'test'}: {len(ds)} images in {os.path.abspath(root)}")
