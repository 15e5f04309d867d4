"""The FFN method itself: model, canvas, policies. Pure torch/numpy: no I/O, MLflow or Hydra."""
