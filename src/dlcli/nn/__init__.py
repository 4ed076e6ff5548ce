"""The components a config names: layers and the network, activations, losses, optimizers, schedules,
metrics, augmentations. Each kind is one registry (see registry.py); none of them imports the config."""
