"""Kalshi spec checks shared by the client and simulator tests: the spec files, and
openapi-core adapters for the httpx requests/responses a test captured."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict


class ApiRequest:
    def __init__(self, r: httpx.Request) -> None:
        u = urlsplit(str(r.url))
        self.host_url = f"{u.scheme}://{u.netloc}"
        self.path = u.path
        self.method = r.method.lower()
        self.body = r.content or None
        self.content_type = r.headers.get("Content-Type", "application/json")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(r.url.params.multi_items())),
            header=Headers(dict(r.headers)),
            cookie=ImmutableMultiDict(),
        )


class ApiResponse:
    def __init__(self, r: httpx.Response) -> None:
        self.data = r.content
        self.status_code = r.status_code
        self.content_type = r.headers.get("Content-Type", "")
        self.headers = Headers(dict(r.headers))


def load_spec(path: Path) -> dict[str, Any]:
    """A Kalshi OpenAPI / AsyncAPI YAML file as a dict."""
    with open(path) as f:
        d: dict[str, Any] = yaml.safe_load(f)
    return d
