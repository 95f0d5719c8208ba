"""The HTTP API: FastAPI app, routes, schemas, auth and errors."""
