"""openapi.json and the sidebar's TypeScript types are made from the REST API's models
(``python -m jupyter_flow.server.schema``): the committed files must be what the generator
makes, so a model changed without regenerating fails here, naming the command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from jupyter_flow.server import models, schema

ROOT = Path(__file__).resolve().parents[2]


def _stale(root: Path) -> list[str]:
    return [str(relative) for relative, text in schema.generated_files().items()
            if not (root / relative).is_file() or (root / relative).read_text(encoding="utf-8") != text]


def test_the_committed_openapi_and_typescript_are_what_the_generator_makes(tmp_path):
    subprocess.run([sys.executable, "-m", "jupyter_flow.server.schema", "--root", str(tmp_path)], check=True,
                   cwd=ROOT, capture_output=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    differ = [str(relative) for relative in schema.generated_files()
              if (tmp_path / relative).read_text(encoding="utf-8") != (ROOT / relative).read_text(encoding="utf-8")]
    assert not differ, f"{', '.join(differ)} differ from the models; run `{schema.REGENERATE}` and commit the result"


def test_a_model_changed_without_regenerating_is_caught(monkeypatch):
    class Health(models.Health):
        uptime: float

    monkeypatch.setattr(models, "COMPONENTS", [Health if m is models.Health else m for m in models.COMPONENTS])
    assert _stale(ROOT) == [str(schema.OPENAPI_FILE), str(schema.TYPESCRIPT_FILE)]


def test_the_generated_document_is_valid_openapi_and_names_every_model():
    document = schema.openapi_document()
    validate(document)
    assert {m.__name__ for m in models.COMPONENTS} <= set(document["components"]["schemas"])
    # What drifted before the models: served but described nowhere.
    assert "metrics" in document["components"]["schemas"]["Task"]["properties"]
    typescript = schema.generated_files()[schema.TYPESCRIPT_FILE]
    assert "export interface Task {" in typescript and "  metrics: Record<string, unknown> | null;" in typescript
    assert "export type RunStatus = " in typescript


@pytest.mark.parametrize("model, body, words", [
    (models.BatchRequest, {"notebook": 3}, ["'notebook'", "string"]),
    (models.BatchRequest, {"notebook": "a.ipynb", "parallel": "2"}, ["'parallel'", "integer", '"2"']),
    (models.BatchRequest, {"notebook": "a.ipynb", "grid": {"lr": 0.1}}, ["'grid.lr'", "array"]),
    (models.BatchRequest, {"grid": {}}, ["'notebook'", "required"]),
    (models.ScheduleRequest, {"notebook": "a.ipynb"}, ["'cron'", "required"]),
    (models.SchedulePatch, {"paused": 1}, ["'paused'", "boolean"]),
    (models.SchedulePatch, "paused", ["JSON object", "'paused'"]),
])
def test_request_models_name_the_field_and_what_it_expects(model, body, words):
    with pytest.raises(models.Unprocessable) as caught:
        models.parse_body(model, body)
    for word in words:
        assert word in str(caught.value), str(caught.value)
