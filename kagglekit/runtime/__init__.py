"""kagglekit's in-kernel runtime, importable as ``kagglekit_runtime`` inside a bundled kernel.

Standard library only. A project uses it with a fallback so it also runs locally::

    try:
        from kagglekit_runtime import should_stop, input_path
    except ImportError:  # running locally, without kagglekit's bundle
        def should_stop(margin_s=None): return False
"""

from .paths import input_dir, input_path, kaggle_root, project_dir, temp_dir, working_dir
from .progress import report_progress
from .session import elapsed, mode, running_test, session_id, session_limit_s, should_stop, time_left

__all__ = [
    "elapsed",
    "input_dir",
    "input_path",
    "kaggle_root",
    "mode",
    "project_dir",
    "report_progress",
    "running_test",
    "session_id",
    "session_limit_s",
    "should_stop",
    "temp_dir",
    "time_left",
    "working_dir",
]
