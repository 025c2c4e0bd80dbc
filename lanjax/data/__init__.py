"""Datasets: TFDS access with clear errors, and the paper's input domains."""

from lanjax.data.tfds_data import DatasetNotFoundError, load_arrays
from lanjax.data import translated_mnist

__all__ = ['DatasetNotFoundError', 'load_arrays', 'translated_mnist']
