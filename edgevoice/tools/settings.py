"""Configuration of the smart home the model may control (the ``[home]`` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class HomeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
