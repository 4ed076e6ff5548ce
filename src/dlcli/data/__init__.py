"""The data: a config's `data:` section -> a `Dataset` of float32 splits, and the files a trained run reads.

    sources.py    one registered loader per source key (path, train, dataset, openml, torchvision, images)
    tables/       table files, one reader per format        images/   image folders and torchvision sets
    stream.py     tables too large for memory               inputs.py files for evaluate --data and predict
    dataset.py    Dataset, Fitted                            scaler.py, labels.py, splits.py
"""

from .dataset import Dataset, Fitted, in_memory
from .inputs import Inputs, load_inputs, load_rows
from .scaler import ChannelStats, Scaler
from .sources import SOURCES, load_dataset

__all__ = ["SOURCES", "ChannelStats", "Dataset", "Fitted", "Inputs", "Scaler", "in_memory", "load_dataset",
           "load_inputs", "load_rows"]
