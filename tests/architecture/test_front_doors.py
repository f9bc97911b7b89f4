"""The library's front doors: everything they export exists, is documented, and loads lightly.

``ordersaga.saga`` (the engine), ``ordersaga.participant`` (the participant kit) and
``ordersaga.saga.testing`` (test helpers) are what a user imports; the modules behind them may
move. Heavy optional parts (the HTTP transport's aiohttp, the HTTP app's FastAPI) load only when
their names are first used.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

FRONT_DOORS = ("ordersaga.saga", "ordersaga.participant", "ordersaga.saga.testing")


@pytest.mark.parametrize("name", FRONT_DOORS)
def test_every_exported_name_exists_and_has_its_own_docstring(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__
    missing = []
    for export in module.__all__:
        value = getattr(module, export)
        doc = inspect.getdoc(value) if inspect.ismodule(value) else value.__doc__
        # A dataclass without a docstring gets its signature as one: that does not count.
        if not doc or doc.startswith(f"{export}("):
            missing.append(export)
    assert missing == [], f"{name}: undocumented exports {missing}"
    assert len(set(module.__all__)) == len(module.__all__)


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_heavy_parts_load_only_when_asked_for() -> None:
    loaded = _loaded_after("import ordersaga.saga, ordersaga.participant")
    assert "fastapi" not in loaded and "ordersaga.transport.http" not in loaded
    assert "ordersaga.orders" not in loaded and "ordersaga.services" not in loaded
    loaded = _loaded_after(
        "import ordersaga.saga as s, ordersaga.participant as p; s.HttpTransport; p.create_app"
    )
    assert {"fastapi", "ordersaga.transport.http", "ordersaga.participant.http"} <= loaded


def test_an_unknown_name_is_an_attribute_error() -> None:
    import ordersaga.participant
    import ordersaga.saga

    for module in (ordersaga.saga, ordersaga.participant):
        with pytest.raises(AttributeError):
            module.NoSuchThing  # noqa: B018


def test_the_testing_helpers_import_without_pytest() -> None:
    loaded = _loaded_after("import ordersaga.saga.testing")
    assert "pytest" not in loaded and "_pytest" not in loaded
