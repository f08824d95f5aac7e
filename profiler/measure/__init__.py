"""Measurement (`fgnas-profile`): the devices a model runs on, the probes a space sweeps, the TFLite models built for
them, the sweep that times them and the raw log it appends to."""
