"""EdgeVoice: a push-to-talk Gemini Live voice assistant daemon for small Linux boards."""

__version__ = "0.1.0"
