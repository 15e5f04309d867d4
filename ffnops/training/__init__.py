"""Training: the Lightning module and data module that train an FFN with a moving FOV."""
