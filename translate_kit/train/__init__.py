"""Training: the trainer loop and checkpoints."""

__all__: list[str] = []
