-- The auth app's database beside MLflow's own (docs/team.md): users and permissions.
CREATE DATABASE mlflow_auth OWNER mlflow;
