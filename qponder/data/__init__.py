"""qponder.data: IQA datasets as distributed, MOS on [1, 5], safe image loading, synthetic data.

``load_dataset("koniq:/data/koniq10k", split="test")`` reads a benchmark from its original
release files; ``load_image(path)`` returns an RGB image or raises :class:`BadImageError`;
``qponder.data.synthetic.make_synthetic_dataset`` writes the offline demo dataset.
See docs/datasets.md for the table of MOS ranges and directions.
"""

from qponder.data.catalog import ScoreScale, dataset_info, dataset_names
from qponder.data.datasets import load_dataset, parse_spec
from qponder.data.images import DEFAULT_MAX_PIXELS, check_image, load_image
from qponder.data.samples import SPLITS, LoadedDataset, Sample
from qponder.errors import BadImageError, DatasetError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SPLITS",
    "BadImageError",
    "DatasetError",
    "LoadedDataset",
    "Sample",
    "ScoreScale",
    "check_image",
    "dataset_info",
    "dataset_names",
    "load_dataset",
    "load_image",
    "parse_spec",
]
