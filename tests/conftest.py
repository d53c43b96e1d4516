"""Plugins every test directory shares (a session fixture defined here exists once)."""

pytest_plugins = ("tests.support.home_assistant_fixture",)
