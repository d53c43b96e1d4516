"""EdgeVoice: a push-to-talk Gemini Live voice assistant daemon for small Linux boards."""

__version__ = "0.1.0"

# The rooms whose tables make up the configuration file register them when imported
# (edgevoice.config declares its own and imports no room).
from edgevoice.security import settings as _auth_settings  # noqa: F401
from edgevoice.tools import device_settings as _device_settings  # noqa: F401
from edgevoice.tools import settings as _home_settings  # noqa: F401
