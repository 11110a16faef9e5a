"""qponder: multimodal LLMs that reason about image quality first and score it second."""

__version__ = "0.1.0"
