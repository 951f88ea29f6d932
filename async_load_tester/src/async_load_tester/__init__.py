"""Cost-aware load tester for Open Inference Protocol (V2) and Seldon endpoints.

from async_load_tester import LoadConfig, run_load
result = run_load(LoadConfig(target="http://127.0.0.1:8080", model="cascade",
                             payload="synthetic:image", rate=50, duration=30))
print(result.to_json())
"""

from async_load_tester.config import LoadConfig
from async_load_tester.errors import ConfigError, LoadTesterError, PayloadError, TargetError
from async_load_tester.results import RunResult, StepResult
from async_load_tester.runner import intended_sends, run_load, run_load_async

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "LoadConfig",
    "LoadTesterError",
    "PayloadError",
    "RunResult",
    "StepResult",
    "TargetError",
    "__version__",
    "intended_sends",
    "run_load",
    "run_load_async",
]
