"""kagglekit: train locally, run on Kaggle's GPUs.

Kept import-free on purpose: ``kagglekit --help`` must start fast, so nothing
heavy (kaggle, requests, pandas, torch) is imported at package import time.
"""

__version__ = "0.1.0"
