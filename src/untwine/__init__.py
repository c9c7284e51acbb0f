"""untwine: learning and evaluating disentangled representations in PyTorch.

Stages live in sub-packages and data flows one way:
``data`` -> ``models``/``training`` -> representation -> ``metrics`` -> ``studies`` (results store)
-> ``visualisation``/``report``.  ``cli`` is a thin layer on top; nothing below it imports it.
"""

__version__ = "0.1.0"
