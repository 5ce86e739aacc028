"""An offline, interactive HTML explorer of units (neurons, SAE latents): one file, no network."""

from superposition.explorer.page import explore, explorer_html

__all__ = ["explore", "explorer_html"]
