"""Settings of the api_gateway service (environment variables, see ServiceSettings).

Besides the shared ones: ``SIGNAL_INGESTION_URL``, ``SCORING_ENGINE_URL``,
``MARKETPLACE_PUBLISHER_URL`` (where requests are forwarded), ``ADMIN_TOKEN`` (enables
the ``/admin`` API) and ``UPSTREAM_TIMEOUT`` (seconds).
"""

from typing import ClassVar

from pydantic import Field, SecretStr
from shared_db.services import PORTS
from shared_db.web.settings import ServiceSettings, database_url_field

UPSTREAMS = ("signal_ingestion", "scoring_engine", "marketplace_publisher")
"""The services the gateway forwards to: ``/<service>/<path>``."""


class ApiGatewaySettings(ServiceSettings):
    service: ClassVar[str] = "api_gateway"
    database_url: SecretStr = database_url_field("api_gateway")
    port: int = Field(default=PORTS["api_gateway"], ge=1, le=65535)
    signal_ingestion_url: str = f"http://127.0.0.1:{PORTS['signal_ingestion']}"
    scoring_engine_url: str = f"http://127.0.0.1:{PORTS['scoring_engine']}"
    marketplace_publisher_url: str = f"http://127.0.0.1:{PORTS['marketplace_publisher']}"
    admin_token: SecretStr | None = None
    upstream_timeout: float = 10.0

    def upstream_url(self, service: str) -> str:
        """The base URL of ``service`` (one of ``UPSTREAMS``), without a trailing slash."""
        urls = {
            "signal_ingestion": self.signal_ingestion_url,
            "scoring_engine": self.scoring_engine_url,
            "marketplace_publisher": self.marketplace_publisher_url,
        }
        return urls[service].rstrip("/")

    def admin_token_value(self) -> str | None:
        """The admin token, ``None`` when unset or empty (the admin API is then disabled)."""
        token = self.admin_token.get_secret_value() if self.admin_token else ""
        return token or None
