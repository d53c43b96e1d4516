"""Home Assistant over its websocket API.

- :mod:`.connection`: one authenticated websocket (commands, subscriptions)
- :mod:`.discovery`: which entities the model gets, under which names, and why others not
- :mod:`.live_cache`: the states, kept current by HA's events
- :mod:`.services`: ``call_service``, HA's error text, waiting for the state asked for
- :mod:`.backend`: the backend the runner uses, reconnecting and re-reading the home
"""

from edgevoice.tools.backends.homeassistant.backend import HomeAssistantBackend
from edgevoice.tools.backends.homeassistant.state_shapes import from_home_assistant

__all__ = ["HomeAssistantBackend", "from_home_assistant"]
