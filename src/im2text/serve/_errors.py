"""One error shape for every failure: `{"error": {"message", "type", "code"}}` (OpenAI's)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class ApiError(Exception):
    """An error the client caused or may retry; becomes a JSON response with `status`."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.headers = headers or {}
        self.param = param


def error_body(type: str, message: str, param: str | None = None) -> dict[str, Any]:
    # "code" repeats "type": OpenAI clients read `code`, people read `type`.
    return {"error": {"message": message, "type": type, "param": param, "code": type}}


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(err.type, err.message, err.param), status_code=err.status, headers=err.headers
    )
