"""Point the official kaggle CLI / KaggleApi at a kagglekit emulator on any port.

Put this folder on ``PYTHONPATH`` and set ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` and
``KAGGLE_EMULATOR_URL=http://127.0.0.1:PORT`` (kaggle-wire.md §3.4): the LOCAL endpoint,
normally ``http://localhost`` (port 80), becomes the emulator's URL.
"""

import os

if os.environ.get("KAGGLE_EMULATOR_URL"):
    try:
        import kagglesdk.kaggle_env as _ke

        _ke._env_to_endpoint[_ke.KaggleEnv.LOCAL] = os.environ["KAGGLE_EMULATOR_URL"].rstrip("/")
    except ImportError:  # kagglesdk is not installed in this interpreter: nothing to patch
        pass
