"""The one lock every model load in this process takes.

Kept apart from the MLServer adapter because MLServer re-imports (reloads) a model's
implementation module for each model, which would give each model its own lock.
transformers resolves its lazily exported names without a lock: two threads importing from
it at once see `ImportError: cannot import name 'AutoModelForObjectDetection'`
(transformers 5.17, reproduced with two threads), so loads taken off the event loop run one
at a time, as they did on it.
"""

from __future__ import annotations

import threading

LOADING = threading.Lock()
