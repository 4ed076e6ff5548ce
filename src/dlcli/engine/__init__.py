"""Training and inference: setup.py (config -> data, model, loss), loop.py (`fit`), callbacks.py (per-epoch
work), state.py, batches.py (splits -> device batches), inference.py (the batched inference loop),
device.py, progress.py."""
