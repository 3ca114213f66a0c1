"""Class names stored in the dataset file and used to label the rows of samples.png."""

import torch

from mvae_cli.data.format import ModalitySpec, class_names, read_dataset
from mvae_cli.data.prepare import prepare_dataset
from mvae_cli.figures.samples import sample_rows
from mvae_cli.model.model import MultimodalVAE


def test_shapes_stores_its_class_names(tmp_path):
    path = prepare_dataset("shapes", tmp_path / "s.h5", sizes={"train": 20, "valid": 5, "test": 5})
    with read_dataset(path) as dataset:
        names = class_names(dataset.attrs, dataset.specs)
    assert names["shape"] == ["square", "circle", "triangle"] and names["size"] == ["small", "large"]
    assert set(names) == {"shape", "colour", "size", "xpos", "ypos"}


def test_sample_rows_are_labelled_with_class_names_and_wrong_counts_are_ignored():
    specs = [ModalitySpec("image", "image", "bernoulli", (1, 4, 4)), ModalitySpec("label", "categorical", "categorical", (), 3)]
    torch.manual_seed(0)
    model = MultimodalVAE(specs, latent_dim=2, hidden=8)
    _, labels = sample_rows(model, n=2, class_names={"label": ["cat", "dog", "bird"]})
    assert labels == ["prior p(z)", "label = cat", "label = dog", "label = bird"]
    _, labels = sample_rows(model, n=2)
    assert labels[1:] == ["label = 0", "label = 1", "label = 2"]
    assert class_names({"class_names": '{"label": ["a", "b"]}'}, specs) == {}  # 2 names for 3 classes
