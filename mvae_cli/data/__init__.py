"""Datasets: the HDF5 contract, weak-supervision masks, and the dataset builders."""

from mvae_cli.data.format import (
    FORMAT,
    FORMAT_VERSION,
    DatasetFile,
    ModalitySpec,
    read_dataset,
    write_dataset,
)
from mvae_cli.data.masks import keep_prob_mask, mask_name, supervision_mask

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "DatasetFile",
    "ModalitySpec",
    "keep_prob_mask",
    "mask_name",
    "read_dataset",
    "supervision_mask",
    "write_dataset",
]
