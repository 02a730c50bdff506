"""The one free-port helper: a TCP port on a loopback address that nothing listens on."""

import socket

from db_devtools.errors import ProvisioningError

HOST = "127.0.0.1"


def port_free(port: int, host: str = HOST) -> bool:
    """Whether ``port`` can be bound now. Like Postgres and uvicorn themselves, a port
    with connections in TIME_WAIT counts as free (SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, host: str = HOST) -> int:
    """``preferred`` when it is free, else a port the kernel picks."""
    if preferred and port_free(preferred, host):
        return preferred
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, 0))
        except OSError as exc:
            raise ProvisioningError(
                f"no free TCP port on {host}: {exc}", kind="no_free_port"
            ) from None
        port: int = sock.getsockname()[1]
        return port
