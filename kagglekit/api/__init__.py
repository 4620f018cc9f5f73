"""The Kaggle API: the ONLY part of kagglekit that imports ``kagglesdk`` (never ``kaggle``).

- ``types``: what the API answers (dataclasses; importing it does not import kagglesdk)
- ``transport``: endpoint, timeouts, the one ``RetryPolicy``, redaction, the signed-URL session
- ``client``: ``KaggleApiClient``, the RPCs and their error mapping
- ``logstream``: following a run's log live
"""
