"""Models for the experiments, by name; every model returns logits (N, n_classes).

>>> from expost.experiments.models import build_model, list_models
>>> sorted({"cnn", "densenet121", "densenet_small", "mlp", "vit", "vit_tiny"} & set(list_models()))
['cnn', 'densenet121', 'densenet_small', 'mlp', 'vit', 'vit_tiny']
>>> build_model("mlp", n_classes=10, input_shape=(1, 8, 8), hidden=(32,))
MLP(
  (body): Sequential(
    (0): Flatten(start_dim=1, end_dim=-1)
    (1): Linear(in_features=64, out_features=32, bias=True)
    (2): ReLU()
  )
  (head): Linear(in_features=32, out_features=10, bias=True)
)

"densenet121" and "vit" are torchvision's (an optional dependency, imported
only when such a model is built); "densenet_small" and "vit_tiny" are native.
"""

from . import densenet, simple, vit  # noqa: F401  (register)
from ._api import build_model, list_models, model_options, register_model

__all__ = ["build_model", "list_models", "model_options", "register_model"]
