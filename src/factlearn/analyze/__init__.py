"""The paper's three analyses: probes (comparison/negation ratios), layer-wise ablation of the
learned weight change, and training curves. Each is a function with a JSON result and a PNG plot.

Submodules import torch/matplotlib lazily inside functions, so importing this package is cheap.
"""
