"""``python -m api_gateway [--host H] [--port P]``."""

from shared_db.web.cli import main

from api_gateway.settings import ApiGatewaySettings

if __name__ == "__main__":
    main(ApiGatewaySettings)
