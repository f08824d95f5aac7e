"""FGNAS search: gates, searchable layers, resource regularizers, backbones, training."""
