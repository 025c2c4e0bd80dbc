"""Flax NNX networks: the LAN A and the black boxes F of the experiments."""

from lanjax.models.lan import (ConvLatentAttentionNetwork,
                               LatentAttentionNetwork)
from lanjax.models.classifiers import ConvClassifier
from lanjax.models.dan import DeepAveragingNetwork
from lanjax.models.cifar import CifarConvNet, cifar_lan
from lanjax.models.fcam import FCAM, MosaicCNN, sparsemax
from lanjax.models.autoencoder import ConvAutoencoder

__all__ = ['LatentAttentionNetwork', 'ConvLatentAttentionNetwork',
           'ConvClassifier', 'DeepAveragingNetwork', 'CifarConvNet',
           'cifar_lan', 'FCAM', 'MosaicCNN', 'sparsemax', 'ConvAutoencoder']
