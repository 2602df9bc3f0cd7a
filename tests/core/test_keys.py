"""Cache keys: stable across processes, sensitive to each component, explained by reason."""

import json
import subprocess
import sys
import textwrap

import pytest

from jupyter_flow.core import keys
from jupyter_flow.core.files import file
from jupyter_flow.core.op import Op


def _key_in_fresh_process(tmp_path, body: str, expr: str) -> str:
    script = tmp_path / "keyscript.py"
    script.write_text(textwrap.dedent(body) + textwrap.dedent(f"""
        from jupyter_flow.core.keys import task_key
        print(task_key({expr}, {{}}).key)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True, cwd=tmp_path)
    return out.stdout.strip()


MODULE = """
import jupyter_flow as jf
SCALE = {scale}

def helper(x):
    return x * SCALE

@jf.op
def work(x, lr=0.1):
    '''{doc}'''
    return helper(x) + {const}  # {comment}
"""


def key_for(tmp_path, **fmt):
    values = dict(scale=2, doc="doc", const=1, comment="c", call="work(3)")
    values.update(fmt)
    call = values.pop("call")
    return _key_in_fresh_process(tmp_path, MODULE.format(**values), call)


def test_key_is_stable_across_processes(tmp_path):
    assert key_for(tmp_path) == key_for(tmp_path)


def test_key_ignores_docstrings_comments_and_names(tmp_path):
    base = key_for(tmp_path)
    assert key_for(tmp_path, doc="other doc", comment="other comment") == base
    renamed = MODULE.format(scale=2, doc="doc", const=1, comment="c").replace("def work", "def renamed")
    assert _key_in_fresh_process(tmp_path, renamed, "renamed(3)") == base


@pytest.mark.parametrize("change", [
    {"const": 2},            # op code
    {"scale": 3},            # a captured global read by a local helper
    {"call": "work(4)"},     # an argument
    {"call": "work(3, lr=0.2)"},  # a parameter
])
def test_key_changes_with_each_component(tmp_path, change):
    assert key_for(tmp_path, **change) != key_for(tmp_path)


def test_explicit_default_equals_omitted(tmp_path):
    assert key_for(tmp_path, call="work(3, lr=0.1)") == key_for(tmp_path)


def _op(src_globals: dict, source: str, name="f") -> Op:
    namespace = dict(src_globals)
    exec(compile(textwrap.dedent(source), "<cell>", "exec"), namespace)
    return Op(namespace[name], source=textwrap.dedent(source))


def test_helper_change_changes_key_and_reason():
    ns = {}
    exec("def helper(x):\n    return x + 1\n", ns)
    op1 = _op(ns, "def f(x):\n    return helper(x)\n")
    k1 = keys.task_key(op1(1), {})
    ns2 = {}
    exec("def helper(x):\n    return x + 2\n", ns2)
    op2 = _op(ns2, "def f(x):\n    return helper(x)\n")
    k2 = keys.task_key(op2(1), {})
    assert k1.key != k2.key
    assert keys.explain(k2.components, k1.components) == "code changed"


def test_reasons_name_the_component():
    op1 = _op({}, "def f(x, y=1):\n    return x + y\n")
    base = keys.task_key(op1(1), {})
    assert keys.explain(base.components, None) == "no cache entry"
    assert keys.explain(keys.task_key(op1(1, y=2), {}).components, base.components) == "params changed"
    env_changed = json.loads(json.dumps(base.components))
    env_changed["env"]["python"] = "2.7.0"
    assert keys.explain(base.components, env_changed) == "env changed"


def test_upstream_keys_are_merkle_inputs():
    up = _op({}, "def up():\n    return 1\n", "up")
    down = _op({}, "def down(x):\n    return x\n", "down")
    node_up = up()
    n = down(node_up)
    k1 = keys.task_key(n, {node_up: "a" * 64})
    k2 = keys.task_key(n, {node_up: "b" * 64})
    assert k1.key != k2.key
    assert keys.explain(k2.components, k1.components) == "input changed"


def test_file_content_enters_the_key(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    reader = _op({}, "def read(p):\n    return open(p).read()\n", "read")
    k1 = keys.task_key(reader(file(path)), {})
    path.write_text("a,b\n1,3\n")
    k2 = keys.task_key(reader(file(path)), {})
    assert k1.key != k2.key
    assert keys.explain(k2.components, k1.components) == "file changed"


def test_untokenizable_value_disables_cache_with_reason():
    import threading

    op1 = _op({}, "def f(lock):\n    return 1\n")
    tk = keys.task_key(op1(threading.Lock()), {})
    assert tk.disabled_reason and "cache disabled" in tk.disabled_reason and "lock" in tk.disabled_reason


def test_package_versions_enter_the_environment():
    op1 = _op({"json": json}, "def f(x):\n    return json.dumps(x)\n")
    import numpy as np

    op2 = _op({"np": np}, "def f(x):\n    return np.sum(x)\n")
    env = keys.task_key(op2(1), {}).components["env"]
    assert env["packages"]["numpy"] == np.__version__
    assert "json" not in keys.task_key(op1(1), {}).components["env"]["packages"]  # stdlib has no version


def test_secret_looking_params_are_hashed():
    op1 = _op({}, "def f(api_token, n):\n    return n\n")
    comps = keys.task_key(op1("hunter2", 3), {}).components
    assert comps["params"]["n"] == 3
    assert "hunter2" not in json.dumps(comps)


def test_a_class_without_readable_source_is_keyed_by_its_code():
    # Classes defined in notebook cells: inspect cannot read their source.
    def build(method_body: str, attr: int) -> Op:
        ns = {"__name__": "__main__"}
        exec(f"class Model:\n    scale = {attr}\n    def fit(self, x):\n        return {method_body}\n", ns)
        return _op(ns, "def f(x):\n    return Model().fit(x)\n")

    base = keys.task_key(build("x * self.scale", 2)(1), {})
    assert keys.task_key(build("x * self.scale", 2)(1), {}).key == base.key
    edited = keys.task_key(build("x + self.scale", 2)(1), {})
    assert edited.key != base.key and keys.explain(edited.components, base.components) == "code changed"
    assert keys.task_key(build("x * self.scale", 3)(1), {}).key != base.key
