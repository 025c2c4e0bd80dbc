"""lanjax: Latent Attention Networks in JAX.

Pure functions (framework-agnostic, jit/vmap/grad-safe):

* `corrupt` - eq. (2), ``x~ = A(x) * eta + (1 - A(x)) * x``;
* `ConstantNoise`, `BootstrapNoise`, `GaussianNoise`, `make_noise` - noise
  distributions H;
* `lan_loss`, `lan_terms` - the objective, eq. (3), for any callable F;
* `softmax_cross_entropy`, `squared_error` - output-space losses L_F;
* `lanjax.metrics` - localisation and fidelity of masks, deletion and
  insertion curves, rank correlation, bootstrap intervals;
* `lanjax.attribution` - the baselines beside the LAN (gradient, gradient x
  input, SmoothGrad, integrated gradients, occlusion, RISE, per-example mask
  optimisation), one interface ``method(f, x, *, key, ...)``;
* `lanjax.evaluation` - one protocol for every method: `compare` scores maps
  on faithfulness, localisation, sanity and cost with confidence intervals;
* `check_finite`, `check_range`, `check_lan_setup` - input checks that fail
  early with a message that says what to fix (`lanjax.validation`).

Networks (`lanjax.models`), training (`lanjax.training`), data
(`lanjax.data`) and the paper's experiments (`lanjax.experiments`) build on
them.
"""

from lanjax.corruption import corrupt
from lanjax.losses import softmax_cross_entropy, squared_error
from lanjax.noise import BootstrapNoise, ConstantNoise, GaussianNoise, make_noise
from lanjax.objective import lan_loss, lan_terms
from lanjax import metrics
from lanjax import attribution
from lanjax import evaluation
from lanjax.validation import check_finite, check_lan_setup, check_range

__version__ = '0.1.0'

__all__ = [
    'corrupt', 'softmax_cross_entropy', 'squared_error', 'BootstrapNoise',
    'ConstantNoise', 'GaussianNoise', 'make_noise', 'lan_loss', 'lan_terms', 'metrics',
    'attribution', 'evaluation',
    'check_finite', 'check_range', 'check_lan_setup',
]
