"""spikescale: spiking neural networks that learn across timescales.

DH-SNN dendritic neurons, learnable synaptic delays and sparse time-to-first-spike networks on one
fast PyTorch core. Layers: :mod:`spikescale.functional` (maths), :mod:`spikescale.nn` (modules),
:mod:`spikescale.data`, :mod:`spikescale.train`, :mod:`spikescale.experiments`.
"""

__version__ = "0.1.0"
