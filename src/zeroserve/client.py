"""A small HTTP client for the native API, used by the CLI (and usable from scripts)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ApiError", "Client"]

_CHUNK = 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Client:
    def __init__(self, url: str, *, timeout_s: float = 300.0, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        key = api_key or os.environ.get("ZEROSERVE_API_KEY")
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> Any:
        if response.is_success:
            return response.json()
        try:
            message = response.json().get("error", response.text)
        except (ValueError, AttributeError):
            message = response.text
        raise ApiError(response.status_code, message)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self._check(self._http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach zeroserve at {self.url}: {exc}") from None

    def upload(self, path: Path, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        size = path.stat().st_size

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    if progress:
                        progress(len(chunk))
                    yield chunk

        headers = {"content-type": "application/octet-stream", "content-length": str(size)}
        result: dict[str, Any] = self.request(
            "PUT", "/api/artifacts", content=chunks(), headers=headers
        )
        return result

    def deploy(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/api/models/{name}/versions", json=request)
        return result

    def models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/api/models")["models"]
        return result

    def status(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/api/models/{name}")
        return result

    def remove(self, name: str) -> None:
        self.request("DELETE", f"/api/models/{name}")

    def invoke(self, name: str, body: dict[str, Any], version: int | None = None) -> Any:
        """V2 when the body has a list of tensors under 'inputs'; V1 otherwise."""
        if isinstance(body.get("inputs"), list) and all(
            isinstance(t, dict) and "datatype" in t for t in body["inputs"]
        ):
            path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
        else:
            if version:
                raise ApiError(400, "the V1 protocol has no versions; send a V2 body to pick one")
            path = f"/v1/models/{name}:predict"
        return self.request(
            "POST",
            path,
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )

    # -- jobs --------------------------------------------------------------------------------

    def submit_job(
        self,
        name: str,
        body: bytes,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        path = f"/api/models/{name}" + (f"/versions/{version}" if version else "") + "/jobs"
        headers = {"content-type": "application/json"}
        if idempotency_key:
            headers["idempotency-key"] = idempotency_key
        result: dict[str, Any] = self.request("POST", path, content=body, headers=headers)
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/api/jobs/{job_id}")
        return result

    def jobs(self, path: str = "/api/jobs", **params: Any) -> dict[str, Any]:
        query = {k: v for k, v in params.items() if v is not None}
        result: dict[str, Any] = self.request("GET", path, params=query)
        return result
