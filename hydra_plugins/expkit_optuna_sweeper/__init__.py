"""expkit's Hydra sweeper on Optuna 4 (`hydra/sweeper=optuna`)."""
