"""The work layer: how images (and frames) become predictions, whatever runs them."""
