"""Flax NNX networks: the LAN A and the black boxes F of the paper's experiments."""

from lanjax.models.lan import LatentAttentionNetwork
from lanjax.models.classifiers import ConvClassifier
from lanjax.models.dan import DeepAveragingNetwork
from lanjax.models.autoencoder import ConvAutoencoder

__all__ = ['LatentAttentionNetwork', 'ConvClassifier', 'DeepAveragingNetwork',
           'ConvAutoencoder']
