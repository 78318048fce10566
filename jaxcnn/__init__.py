"""jaxcnn: the backpropagation formulas of convolutional networks as JAX custom VJPs."""

from jaxcnn import reference

__all__ = ["reference"]
