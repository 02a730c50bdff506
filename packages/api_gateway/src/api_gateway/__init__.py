"""The api_gateway service."""

SERVICE_NAME = "api_gateway"
