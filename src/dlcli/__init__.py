"""dlcli: train deep-learning models from YAML configs."""
