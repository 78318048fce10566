"""jaxcnn: the backpropagation formulas of convolutional networks as JAX custom VJPs.

Every layer is a pure function whose backward pass is a ``jax.custom_vjp`` rule that *is* the
formula of the article "Backpropagation In Convolutional Neural Networks" (Eq 10-14 for the
weights, Eq 20-22 for the deltas, winner routing and 1/(N*N) spreading for pooling), generalised
to stride, padding, dilation and groups. `jaxcnn.reference` holds an autodiff twin of every
function; `jaxcnn.gradcheck` compares the two on any backend.

Core modules (convolution, activations, pooling, dense, losses, reference) are imported here; `models`,
`train`, `datasets` and `gradcheck` are imported on use (``import jaxcnn.train``).
"""

from jaxcnn import curvature, reference
from jaxcnn.activations import leaky_relu, relu, scaled_tanh, sigmoid, tanh
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
from jaxcnn.losses import softmax_cross_entropy, squared_error
from jaxcnn.pooling import avg_pool, l2_pool, max_pool

__version__ = "0.1.0"

__all__ = [
    "avg_pool",
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
    "l2_pool",
    "leaky_relu",
    "max_pool",
    "reference",
    "relu",
    "rot180",
    "scaled_tanh",
    "sigmoid",
    "softmax_cross_entropy",
    "squared_error",
    "tanh",
]
