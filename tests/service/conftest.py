from tests.support.notify import notify_socket

__all__ = ["notify_socket"]
