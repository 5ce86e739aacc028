"""An offline, interactive HTML explorer of units (neurons, SAE latents): one file, no network."""

from superposition.explorer.page import explore

__all__ = ["explore"]
