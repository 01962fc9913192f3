"""hf_superpositional: Superpositional Gradient Descent for the Hugging Face Trainer."""

__version__ = "0.1.0"
__all__ = ["__version__"]
