"""Declared parameters read from a notebook without running it, and values checked with the
rule papermill injection goes through (``jf.param``'s coercion)."""

from __future__ import annotations

import pytest

from jupyter_flow.batch.declared import declared_params, validate_params
from jupyter_flow.core.errors import FlowError
from jupyter_flow.kernel.params import Parameter

from tests.notebook_files import write_notebook
from .test_batch_secrets import write_secret_notebook

CELLS = [
    ("%load_ext jupyter_flow\nimport jupyter_flow as jf\nfrom jupyter_flow import param as p", None),
    ("# defaults\nlr = 0.1\nepochs: int = 3\nverbose = False\noptimizer = 'adam'\ndata_dir = None\n"
     "lr = jf.param('lr', lr, min=0, max=1, help='learning rate')", ["parameters"]),
    ("epochs = jupyter_flow.param('epochs', epochs, min=1, max=100)\n"
     "optimizer = jf.param('optimizer', optimizer, choices=['adam', 'sgd'])\n"
     "dropout = p('dropout', 0, max=0.5)\n"
     "seed = jf.param(name='seed', default=7, type=int)\n"
     "flag = jf.param('flag', True)", None),
    ("%%flow train\nwidth = jf.param('width', 4, min=1)\nscore = lr * epochs", None),
    ("%%bash\necho not python", None),
    ("undeclared = jf.param(some_name, 3)   # not a literal name: nothing to declare", None),
]


@pytest.fixture
def notebook(tmp_path):
    return write_notebook(tmp_path / "train.ipynb", CELLS)


def test_declarations_from_param_calls_and_the_parameters_cell(notebook):
    declared = {d["name"]: d for d in declared_params(notebook)}
    assert list(declared) == ["lr", "epochs", "verbose", "optimizer", "data_dir", "dropout", "seed", "flag", "width"]
    assert declared["lr"] == {"name": "lr", "type": "float", "default": 0.1, "min": 0, "max": 1, "choices": None,
                              "help": "learning rate"}
    assert declared["epochs"] == {"name": "epochs", "type": "int", "default": 3, "min": 1, "max": 100,
                                  "choices": None, "help": None}
    assert declared["verbose"]["type"] == "bool" and declared["verbose"]["default"] is False
    assert declared["optimizer"]["choices"] == ["adam", "sgd"] and declared["optimizer"]["type"] == "str"
    assert declared["data_dir"]["type"] is None          # None literal: any value goes
    assert declared["dropout"]["type"] == "float"        # an int default with a float bound, as jf.param decides
    assert (declared["seed"]["type"], declared["seed"]["default"]) == ("int", 7)
    assert declared["flag"]["type"] == "bool"
    assert declared["width"]["min"] == 1                 # a %%flow cell's body is read too


def test_good_values_are_coerced_like_injected_ones(notebook):
    params, grid = validate_params(notebook, {"lr": "0.5", "epochs": 2.0, "verbose": "yes", "data_dir": "/d"},
                                   {"optimizer": ["adam", "sgd"], "dropout": [0, 0.25]})
    assert params == {"lr": 0.5, "epochs": 2, "verbose": True, "data_dir": "/d"}
    assert type(params["epochs"]) is int
    assert grid == {"optimizer": ["adam", "sgd"], "dropout": [0.0, 0.25]}
    # The same rule jf.param applies to a value papermill injected into the kernel.
    assert Parameter("lr", 0.1, float, 0, 1).coerce("0.5") == params["lr"]


@pytest.mark.parametrize("params, grid, message", [
    ({"lr": 1.5}, None, "parameter 'lr' = 1.5 is above its maximum 1"),
    ({"lr": -0.1}, None, "parameter 'lr' = -0.1 is below its minimum 0"),
    ({"lr": "fast"}, None, "parameter 'lr' must be float, got 'fast'"),
    ({"epochs": 2.5}, None, "parameter 'epochs' must be int, got 2.5"),
    ({"epochs": 0}, None, "parameter 'epochs' = 0 is below its minimum 1"),
    ({"verbose": "maybe"}, None, "parameter 'verbose' must be bool, got 'maybe'"),
    ({"optimizer": "rmsprop"}, None, "parameter 'optimizer' must be one of ['adam', 'sgd'], got 'rmsprop'"),
    ({"seed": True}, None, "parameter 'seed' must be int, got True"),
    (None, {"dropout": [0.1, 0.9]}, "grid: parameter 'dropout' = 0.9 is above its maximum 0.5"),
    (None, {"optimizer": ["adam", "adagrad"]}, "grid: parameter 'optimizer' must be one of"),
    (None, {"epochs": []}, "grid: parameter 'epochs' has an empty list of values"),
    ({"momentum": 0.9}, None, "unknown parameter(s) ['momentum'] for notebook 'train.ipynb'"),
])
def test_bad_values_name_the_parameter(notebook, params, grid, message):
    with pytest.raises(FlowError) as failure:
        validate_params(notebook, params, grid)
    assert message in str(failure.value)


def test_a_secret_passed_back_redacted_is_refused(tmp_path):
    secret = write_secret_notebook(tmp_path / "secret.ipynb")
    assert [d["name"] for d in declared_params(secret)] == ["api_token", "lr"]
    with pytest.raises(FlowError, match="parameter 'api_token' is secret and was not stored; pass its value again"):
        validate_params(secret, {"api_token": "***", "lr": 0.1})


def test_a_notebook_without_parameters_cell_takes_no_values(tmp_path):
    plain = write_notebook(tmp_path / "plain.ipynb", [("x = 1", None)])
    assert declared_params(plain) == []
    assert validate_params(plain) == ({}, {})
    with pytest.raises(FlowError, match="has no cell tagged 'parameters'"):
        validate_params(plain, {"x": 2})


def test_missing_or_broken_notebook(tmp_path):
    with pytest.raises(FlowError, match="not found"):
        declared_params(tmp_path / "missing.ipynb")
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    with pytest.raises(FlowError, match="not a readable notebook"):
        validate_params(broken, {"x": 1})
