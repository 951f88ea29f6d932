"""Typed errors: every message names the option or file at fault, before any load is sent."""

from __future__ import annotations


class LoadTesterError(Exception):
    """Base of every error the tester raises on purpose."""


class ConfigError(LoadTesterError):
    """A setting is unusable; `option` names it as the command line spells it."""

    def __init__(self, option: str, reason: str) -> None:
        self.option = option
        self.reason = reason
        super().__init__(f"{option}: {reason}")


class PayloadError(ConfigError):
    """A payload source cannot be read or encoded."""


class TargetError(LoadTesterError):
    """The target cannot be reached or answers wrongly before the run starts (preflight)."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"target {target}: {reason}")
