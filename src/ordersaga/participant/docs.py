"""``/docs`` served from this process: Swagger UI without a CDN.

FastAPI's own ``/docs`` page loads Swagger UI's script and stylesheet from a CDN (and ReDoc's
from another), so on a machine without internet it is blank. :func:`local_docs` turns both off
and serves the same page with the files of the ``swagger-ui-py`` package (Swagger UI's official
``dist`` build, pinned in the lock) under ``/docs/static/``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["ASSETS", "local_docs", "swagger_assets"]

ASSETS = "/docs/static"


def swagger_assets() -> Path:
    """The directory of Swagger UI's files (found without importing the package's handlers)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed (it is a dependency of ordersaga)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def local_docs(app: FastAPI) -> None:
    """Serve ``app``'s ``/docs`` with local assets; no ``/redoc`` (it would need a CDN).

    Call it on an app built with ``docs_url=None, redoc_url=None``.
    """
    from fastapi.openapi.docs import get_swagger_ui_html

    async def docs(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
        )

    app.mount(ASSETS, StaticFiles(directory=swagger_assets()), name="swagger-ui")
    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)
