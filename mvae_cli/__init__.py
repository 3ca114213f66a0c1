"""mvae: weak-supervision studies with multimodal variational autoencoders."""

__version__ = "0.2.0"
