"""Everything MLflow: runs, params, pictures, the model registry and aliases."""
