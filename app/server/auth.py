"""API key: from ``SOLARSCAN_API_KEY``, else the key file in the data directory, else a new one saved there."""

from __future__ import annotations

import hmac
import os
import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.server.config import MIN_API_KEY_CHARS
from app.server.errors import ApiError
from app.server.storage import DataDir

ENV_VAR = "SOLARSCAN_API_KEY"
bearer = HTTPBearer(auto_error=False, description="The server's API key: `Authorization: Bearer KEY`.")


def resolve_api_key(data: DataDir) -> tuple[str, bool]:
    """The API key, and whether it was generated just now (then it is stored with mode 0600).

    Raises ValueError, naming where the key came from, for one shorter than MIN_API_KEY_CHARS.
    """
    if os.environ.get(ENV_VAR):
        key = os.environ[ENV_VAR]
        if len(key) < MIN_API_KEY_CHARS:
            raise ValueError(
                f"{ENV_VAR} is {len(key)} characters; use at least {MIN_API_KEY_CHARS}, "
                f"or unset it to use the key file {data.api_key}"
            )
        return key, False
    if data.api_key.is_file():
        key = data.api_key.read_text().strip()
        if len(key) < MIN_API_KEY_CHARS:
            raise ValueError(
                f"{data.api_key} holds a key of {len(key)} characters; delete it to have a new one generated"
            )
        return key, False
    key = secrets.token_urlsafe(32)
    data.create()
    fd = os.open(data.api_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key, True


def require_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """FastAPI dependency: 401 unless the request carries the server's key as a bearer token."""
    expected: str = request.app.state.config.api_key
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(
            401,
            "unauthorized",
            "send the server's API key as 'Authorization: Bearer KEY'"
            if credentials is None
            else "the API key is wrong",
        )
