"""Datasets: TFDS access with clear errors, and the paper's input domains.

`lanjax.data.newsgroups` (20 Newsgroups) is not imported here: importing it
imports tensorflow_datasets and registers the TFDS dataset ``twenty_newsgroups``.
"""

from lanjax.data.tfds_data import DatasetNotFoundError, load_arrays
from lanjax.data import cifar10
from lanjax.data import translated_mnist

__all__ = ['DatasetNotFoundError', 'load_arrays', 'cifar10', 'translated_mnist']
