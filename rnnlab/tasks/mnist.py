"""Sequential MNIST: pixel-by-pixel (784 steps), row-by-row (28 steps of 28) and 98 steps of 8
pixels, optionally with a fixed pixel permutation (``../shared/notes/tasks.md`` section 5).

Each 28x28 image is read in row-major (scan-line) order; with ``permuted`` the 784 pixel
indices are first reordered by ``numpy.random.RandomState(permutation_seed).permutation(784)``
(default seed 0, recorded in the run's config), the same permutation for every training,
validation and test image; the (permuted) 784-vector is then cut into ``T`` consecutive steps
of ``784 // T`` pixels: ``x[t, b, :] = pixels[b, t * n_in:(t + 1) * n_in]``. T = 784 is
[PathSGD]'s sMNIST (and, permuted, the psMNIST of [NRU]/[GSGD]); T = 28 and T = 98 are
[GSGD]'s sMNIST-28 and sMNIST-98.

Pixels are divided by 255 and, with ``normalize`` (the default, [GSGD]), standardised with the
MNIST training-set mean 0.1307 and std 0.3081 (fixed constants, the real training set's
statistics, also used for other copies); ``normalize=false`` keeps the /255 scale ([NRU]).

Splits: the 60,000 training images are shuffled with ``RandomState(split_seed)``; the last
sixth (10,000) is the validation split and the rest (50,000) is what ``batch`` samples from, as
[NRU] does. The test split is the 10,000 t10k images in file order. ``eval_batches(n, ...)``
reads the first ``min(n, split size)`` sequences of a split (so ``--test-size 10000`` scores the
whole test set), in chunks of at most ``batch_size``; the seed does not change a real split.

The label is read at the last step (``outputs = "last"``, softmax over 10 classes,
cross-entropy); the metric is the classification error rate (``error``); guessing one class
scores 0.9. No source defines a "solved" error, so :attr:`threshold` is None.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend, validate
from ..datasets.files import data_folder, find_file, verify_file
from ..datasets.idx import read_idx
from ..errors import ConfigError
from ..losses import error_rate, softmax_cross_entropy
from ..options import Option
from .base import SPLITS, Task

MEAN, STD = 0.1307, 0.3081  # MNIST training pixels on the /255 scale
PIXELS = 784
LENGTHS = (784, 28, 98)
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _check_T(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value not in LENGTHS:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, LENGTHS))} (steps per "
                          f"image); got {value!r}")
    return int(value)


def _parse_int(text):
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"expected an integer; got {text!r}") from None


def _check_folder(name, value):
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{name} must be a folder name; got {value!r}")
    return value or None


FOLDER_OPTION = Option.custom("folder", None, "data folder holding mnist/ and ptb/ "
                              "(RNNLAB_DATA when not given)", _check_folder, str)
VERIFY_OPTION = Option.flag("verify", True, "check the data files' SHA-256 (RNNLAB_DATA_NO_VERIFY=1 "
                            "also skips it)")


def load_mnist_split(folder: str, which: str, verify: bool | None = None):
    """``(images (N, 784) uint8, labels (N,) int64)`` of ``which`` ("train" or "test"), from
    the gzipped or uncompressed IDX files in ``folder`` (see :mod:`rnnlab.datasets.files`)."""
    arrays = []
    for base, ndim in zip(FILES[which], (3, 1)):
        path, key = find_file(folder, "mnist", (base + ".gz", base))
        verify_file(path, key, verify)
        arrays.append((read_idx(path, ndim=ndim), path))
    (images, image_path), (labels, label_path) = arrays
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise ConfigError(f"MNIST images {image_path} must be uint8 of shape (N, 28, 28); "
                          f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.shape[0] != images.shape[0]:
        raise ConfigError(f"MNIST labels {label_path} must be {images.shape[0]} uint8 labels "
                          f"(one per image in {image_path}); got {labels.dtype} {labels.shape}")
    if labels.size and labels.max() > 9:
        raise ConfigError(f"MNIST labels {label_path} must be in 0..9; found {labels.max()}")
    if images.shape[0] == 0:
        raise ConfigError(f"MNIST images {image_path} hold no image")
    return images.reshape(-1, PIXELS), labels.astype(np.int64)


class SequentialMNIST(Task):
    """Sequential (optionally permuted) MNIST; see the module docstring.

    ``batch(rng, B)`` returns ``x : (T, B, 784 // T)`` in the task's dtype, ``targets : (B,)``
    int64 labels and ``mask = None``.
    """

    name = "smnist"
    loss = "cross_entropy"
    n_out = 10
    outputs = "last"
    metric_name = "error"
    threshold = None
    better = "lower"
    options = (
        FOLDER_OPTION,
        Option.custom("T", 784, "steps per image: 784 (pixels), 28 (rows) or 98 (8 pixels)",
                      _check_T, _parse_int, kind="integer"),
        Option.flag("permuted", False, "apply the fixed pixel permutation (psMNIST)"),
        Option.integer("permutation_seed", 0, "seed of the pixel permutation "
                       "(RandomState(seed).permutation(784))", minimum=0),
        Option.flag("normalize", True, "standardise pixels with mean 0.1307, std 0.3081 "
                    "(false: pixels / 255)"),
        Option.integer("split_seed", 0, "seed of the shuffle whose last 1/6 of the training "
                       "images is the validation split", minimum=0),
        VERIFY_OPTION,
    )

    def __init__(self, folder=None, T: int = 784, permuted: bool = False,
                 permutation_seed: int = 0, normalize: bool = True, split_seed: int = 0,
                 verify: bool = True, dtype=None):
        self.T = _check_T("T", T)
        self.n_in = PIXELS // self.T
        self.permuted, self.permutation_seed = bool(permuted), int(permutation_seed)
        self.normalize, self.split_seed = bool(normalize), int(split_seed)
        self.dtype = backend.resolve_dtype(dtype)
        self.folder = data_folder(folder)
        verify = None if verify else False  # True: unless RNNLAB_DATA_NO_VERIFY says skip
        self.train_images, self.train_labels = load_mnist_split(self.folder, "train", verify)
        self.test_images, self.test_labels = load_mnist_split(self.folder, "test", verify)
        n = len(self.train_labels)
        n_val = n // 6
        if n - n_val < 1 or n_val < 1:
            raise ConfigError(f"MNIST training file in {self.folder} has {n} images; the "
                              "train/validation split needs at least 2")
        order = np.random.RandomState(self.split_seed).permutation(n)
        self.train_index, self.validation_index = order[:n - n_val], order[n - n_val:]
        self.permutation = (np.random.RandomState(self.permutation_seed).permutation(PIXELS)
                            if self.permuted else None)

    def __repr__(self):
        return (f"SequentialMNIST(T={self.T}, permuted={self.permuted}, "
                f"permutation_seed={self.permutation_seed})")

    # ------------------------------------------------------------------ data
    def split_size(self, split: str) -> int:
        return len(self._rows(split)[0])

    def _rows(self, split):
        if split == "train":
            return self.train_index, self.train_images, self.train_labels
        if split == "validation":
            return self.validation_index, self.train_images, self.train_labels
        if split == "test":
            return np.arange(len(self.test_labels)), self.test_images, self.test_labels
        raise ConfigError(f"split must be one of train, {', '.join(SPLITS)}; got {split!r}")

    def sequences(self, images) -> np.ndarray:
        """``(T, B, n_in)`` host inputs for uint8 ``images`` of shape (B, 784)."""
        pixels = images if self.permutation is None else images[:, self.permutation]
        x = pixels.astype(self.dtype) / self.dtype.type(255)
        if self.normalize:
            x = (x - self.dtype.type(MEAN)) / self.dtype.type(STD)
        return np.ascontiguousarray(x.reshape(len(images), self.T, self.n_in).transpose(1, 0, 2))

    def _batch_of(self, split, positions):
        index, images, labels = self._rows(split)
        rows = index[positions]
        return (backend.to_device(self.sequences(images[rows])),
                backend.to_device(labels[rows]), None)

    def batch(self, rng, batch_size: int):
        """``batch_size`` distinct training images drawn with ``rng``."""
        B = validate.positive_int("batch_size", batch_size)
        n = len(self.train_index)
        if B > n:
            raise ConfigError(f"batch_size {B} exceeds the {n} training images")
        return self._batch_of("train", rng.choice(n, size=B, replace=False))

    def eval_batches(self, n: int = 1000, seed: int = 0, batch_size: int = 1000,
                     split: str = "validation"):
        """The first ``min(n, split size)`` sequences of ``split``, in chunks of at most
        ``batch_size`` (only one chunk's inputs exist at a time); ``seed`` is unused."""
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
        n = validate.positive_int("n", n)
        batch_size = validate.positive_int("batch_size", batch_size)
        count = min(n, self.split_size(split))
        for start in range(0, count, batch_size):
            yield self._batch_of(split, np.arange(start, min(start + batch_size, count)))

    # ------------------------------------------------------------------ scores
    def metric(self, outputs, targets, mask=None) -> dict:
        return {"loss": softmax_cross_entropy(outputs, targets, mask)[0],
                "error": error_rate(outputs, targets, mask)}

    def baseline(self) -> dict:
        return {"error": 0.9, "loss": math.log(10.0)}
