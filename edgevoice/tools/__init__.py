"""NON_BLOCKING smart-home functions for the Live session.

The daemon uses :class:`ToolBox` (declarations, start, cancel, describe_state) and receives
:class:`ToolOutcome` values; everything else in this package is the machinery behind them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgevoice.tools.runner import ToolOutcome
    from edgevoice.tools.toolbox import ToolBox


def __getattr__(name: str) -> Any:
    # Lazy: edgevoice.config imports edgevoice.tools.settings, and loading the configuration
    # must not pull in google-genai, websockets or aiomqtt.
    if name == "ToolBox":
        from edgevoice.tools.toolbox import ToolBox

        return ToolBox
    if name == "ToolOutcome":
        from edgevoice.tools.runner import ToolOutcome

        return ToolOutcome
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ToolBox", "ToolOutcome"]
