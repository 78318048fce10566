"""jaxcnn: the backpropagation formulas of convolutional networks as JAX custom VJPs.

Every layer is a pure function whose backward pass is a ``jax.custom_vjp`` rule that *is* the
formula of the article "Backpropagation In Convolutional Neural Networks" (Eq 10-14 for the
weights, Eq 20-22 for the deltas, winner routing and 1/(N*N) spreading for pooling), generalised
to stride, padding, dilation and groups. `jaxcnn.reference` holds an autodiff twin of every
function; `jaxcnn.gradcheck` compares the two on any backend.

Core modules (convolution, activations, pooling, dense, losses, reference) are imported here; `models`,
`train`, `datasets` and `gradcheck` are imported on use (``import jaxcnn.train``).
"""

from jaxcnn import activations as _activations
from jaxcnn import curvature, reference
from jaxcnn import losses as _losses
from jaxcnn import pooling as _pooling
from jaxcnn.activations import *  # noqa: F403
from jaxcnn.convolution import (
    conv,
    conv1d,
    conv2d,
    conv2d_input_grad,
    conv2d_weight_grad,
    conv3d,
    conv_input_grad,
    conv_transpose,
    conv_weight_grad,
    convolve2d,
    correlate2d,
    rot180,
)
from jaxcnn.dense import dense, flatten
from jaxcnn.losses import *  # noqa: F403
from jaxcnn.pooling import *  # noqa: F403

__version__ = "0.1.0"

# Activations, pools and losses come from their modules' __all__ (the op table, `jaxcnn.registry`):
# a new one is added in its module, its twin in `jaxcnn.reference` and its tests, nowhere else.
__all__ = [
    "conv",
    "conv1d",
    "conv2d",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "conv3d",
    "conv_input_grad",
    "conv_transpose",
    "conv_weight_grad",
    "convolve2d",
    "curvature",
    "correlate2d",
    "dense",
    "flatten",
    "reference",
    "rot180",
    *_activations.__all__,
    *_pooling.__all__,
    *_losses.__all__,
]
