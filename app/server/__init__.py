"""HTTP service: score uploaded rasters in the background and browse the panels found on a map.

``create_app`` builds the FastAPI application; ``solarscan serve`` runs it with uvicorn.
"""

from app.server.api import create_app
from app.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
