"""Cache keys: sha256 over an op's code, what it reads, its inputs and its environment.

A task's key is computed before anything runs (Merkle style: upstream keys stand in for
upstream values), so a whole graph's keys are known at submission and a fully cached
rerun is a single indexed lookup. The components are kept with the task so ``reason``
can say why it reran.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import inspect
import json
import re
import os
import sys
import sysconfig
import textwrap
import types
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Mapping

from .errors import FlowError
from .files import FlowFile
from .op import MapOp, Node, Op, OutputRef
from .secrets import SECRET_WORDS, is_secret, keyed_hash, looks_secret, redact  # noqa: F401  (part of this module's API)

_SCALARS = (int, float, str, bool, type(None))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- source


class _Normalizer(ast.NodeTransformer):
    """Drop what does not change behaviour: docstrings, decorators, the def's own name."""

    def _strip_docstring(self, node):
        body = node.body
        first = body[0] if body else None
        if (isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant)
                and isinstance(first.value.value, str)):
            node.body = body[1:] or [ast.Pass()]
        return node

    def visit_FunctionDef(self, node):
        self.generic_visit(node)
        node.decorator_list = []
        node.name = "_"
        return self._strip_docstring(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.generic_visit(node)
        node.decorator_list = []
        node.name = "_"
        return self._strip_docstring(node)

    def visit_Module(self, node):
        self.generic_visit(node)
        return self._strip_docstring(node)


def normalize_source(source: str) -> str:
    """A canonical text of ``source``: its AST without comments, docstrings or def names.

    >>> normalize_source("def f(x):\\n    'doc'\\n    return x  # hi") == normalize_source("def g(x):\\n    return x")
    True
    """
    tree = ast.parse(textwrap.dedent(source))
    tree = _Normalizer().visit(tree)
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _code_fingerprint(code: types.CodeType) -> str:
    """Stable text of a code object, for functions whose source cannot be read (lambdas)."""
    parts = [code.co_code.hex(), repr(code.co_names), repr(code.co_varnames)]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            parts.append(_code_fingerprint(const))
        elif const is not None and not (isinstance(const, str) and const == code.co_consts[0] and const):
            parts.append(repr(const))
    return "|".join(parts)


def _class_functions(cls: type) -> list[types.FunctionType]:
    """The functions a class defines itself (methods, static/class methods, properties)."""
    found = []
    for _, value in sorted(vars(cls).items()):
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            found.extend(f for f in (value.fget, value.fset, value.fdel) if isinstance(f, types.FunctionType))
        elif isinstance(value, types.FunctionType):
            found.append(value)
    return found


def _class_fingerprint(cls: type) -> str:
    """Stable text of a class whose source cannot be read (classes defined in notebook
    cells): its bases, its methods' code and its plain attributes, so editing any of
    them changes the key."""
    parts = [cls.__qualname__, repr([b.__qualname__ for b in cls.__bases__])]
    for name, value in sorted(vars(cls).items()):
        if name in ("__dict__", "__weakref__", "__module__", "__doc__", "__qualname__"):
            continue
        raw = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        if isinstance(raw, types.FunctionType):
            parts.append(f"{name}:{_code_fingerprint(raw.__code__)}:{raw.__defaults__!r}")
        elif isinstance(raw, property):
            parts.append(name + ":" + "|".join(_code_fingerprint(f.__code__) for f in (raw.fget, raw.fset, raw.fdel)
                                               if isinstance(f, types.FunctionType)))
        elif type(raw) in _SCALARS or isinstance(raw, (tuple, frozenset)):
            parts.append(f"{name}={raw!r}")
        else:
            parts.append(f"{name}:{type(raw).__qualname__}")
    return "\n".join(parts)


def function_source(func: Callable) -> str | None:
    try:
        return textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return None


def _function_tree(func: Callable) -> ast.AST | None:
    """The AST of ``func``'s own definition (None for lambdas and unreadable sources)."""
    if getattr(func, "__name__", "") == "<lambda>":
        return None
    source = function_source(func)
    if source is None:
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return node
    return None


# ---------------------------------------------------------------- name resolution


@lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update(p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p))
    return tuple(sorted(os.path.realpath(r) for r in roots if r))


def is_local_module(module_name: str | None) -> bool:
    """True for code the user is editing: ``__main__``, notebook cells, non-installed files."""
    if not module_name or module_name in ("__main__", "__mp_main__"):
        return True
    if module_name.startswith("jupyter_flow"):
        return False
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if path is None:
        return module_name not in sys.builtin_module_names and module is not None and not hasattr(module, "__path__")
    real = os.path.realpath(path)
    return not any(real.startswith(root + os.sep) for root in _library_roots())


def _names_read(tree: ast.AST) -> tuple[list[str], list[list[str]]]:
    """Free names a definition reads, and attribute chains rooted at them (``np.linalg.norm``)."""
    bound: set[str] = set()
    loads: list[str] = []
    chains: list[list[str]] = []
    # Decorators (``@jf.op``) are not what the op's body reads.
    skip: set[int] = set()
    for top in ([tree] + list(getattr(tree, "body", []))):
        if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for decorator in top.decorator_list:
                skip.update(id(n) for n in ast.walk(decorator))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loads.append(node.id)
            else:
                bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not tree:
            bound.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            chain = []
            cur: ast.AST = node
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                chain.append(cur.id)
                chains.append(list(reversed(chain)))
    free = [n for n in dict.fromkeys(loads) if n not in bound]
    free_set = set(free)
    return free, [c for c in chains if c[0] in free_set]


@lru_cache(maxsize=1)
def _distributions() -> Mapping[str, list[str]]:
    from importlib.metadata import packages_distributions

    return packages_distributions()


@lru_cache(maxsize=512)
def package_version(top_module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    if top_module in sys.stdlib_module_names:
        return None  # covered by the Python version
    for dist in _distributions().get(top_module, []):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    module = sys.modules.get(top_module)
    return getattr(module, "__version__", None) if module else None


@dataclass
class Fingerprint:
    """What an op's code is and what it reads, computed once per op."""

    code: str
    deps: dict[str, str] = field(default_factory=dict)  # local helper qualname -> source hash
    data_names: dict[str, tuple[Callable, str]] = field(default_factory=dict)  # label -> (getter, name)
    packages: dict[str, str] = field(default_factory=dict)


def _resolve(name: str, func: Callable | None, namespace: Mapping[str, Any] | None):
    if namespace is not None and name in namespace:
        return True, namespace[name]
    if func is not None:
        code = getattr(func, "__code__", None)
        closure = getattr(func, "__closure__", None)
        if code is not None and closure and name in code.co_freevars:
            cell = closure[code.co_freevars.index(name)]
            try:
                return True, cell.cell_contents
            except ValueError:
                return False, None
        globs = getattr(func, "__globals__", {})
        if name in globs:
            return True, globs[name]
    if hasattr(builtins, name):
        return False, None
    return False, None


def fingerprint(op: Op, namespace: Mapping[str, Any] | None = None) -> Fingerprint:
    """Analyse an op's code: its normalised source, local helpers, data it reads, packages.

    Helpers can be redefined between runs (in a notebook), so this is recomputed for each
    submission; an op unpickled from a snapshot uses the analysis it carries.
    """
    carried = getattr(op, "_carried", None)
    if carried is not None and namespace is None:
        return carried
    fp = Fingerprint(code="")
    seen: set[int] = set()

    def visit_callable(obj: Callable, label: str, top: bool) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        tree = None if (top and op.source) else _function_tree(obj)
        if top and op.source:
            text = normalize_source(op.source)
            tree = ast.parse(textwrap.dedent(op.source))
        elif tree is not None:
            text = ast.dump(_Normalizer().visit(tree), annotate_fields=False, include_attributes=False)
            tree = _function_tree(obj)  # unnormalised tree again, to read names
        elif isinstance(obj, types.FunctionType):
            text = _code_fingerprint(obj.__code__)
        elif isinstance(obj, type):
            text = _class_fingerprint(obj)
        else:
            text = getattr(obj, "__qualname__", repr(obj))
        digest = sha256_text(text)
        if top:
            fp.code = digest
        else:
            fp.deps[label] = digest
        if tree is None:
            codes = [getattr(obj, "__code__", None)]
            if isinstance(obj, type):
                codes = [f.__code__ for f in _class_functions(obj)]
            names = [n for code in codes if code is not None
                     for n in (*code.co_names, *code.co_freevars)]
            chains: list[list[str]] = []
        else:
            names, chains = _names_read(tree)
        func_for_lookup = obj if isinstance(obj, types.FunctionType) else None
        if isinstance(obj, type):
            func_for_lookup = None
            module = sys.modules.get(obj.__module__)
            ns = vars(module) if module else {}
        else:
            ns = None
        lookup_ns = namespace if top and namespace is not None else ns
        for name in names:
            found, value = _resolve(name, func_for_lookup, lookup_ns)
            if not found:
                continue
            classify(name, value, getter_owner=obj)
        for chain in chains:
            found, value = _resolve(chain[0], func_for_lookup, lookup_ns)
            if not found or not isinstance(value, types.ModuleType):
                continue
            target: Any = value
            for attr in chain[1:]:
                nxt = getattr(target, attr, None)
                if nxt is None:
                    break
                target = nxt
                if not isinstance(target, types.ModuleType):
                    break
            if target is not value and (callable(target) or isinstance(target, type)):
                classify(".".join(chain), target, getter_owner=obj)

    def classify(name: str, value: Any, getter_owner: Any) -> None:
        if isinstance(value, Op):
            value = value.func
        if isinstance(value, types.ModuleType):
            top_name = value.__name__.split(".")[0]
            if not is_local_module(value.__name__):
                version = package_version(top_name)
                if version:
                    fp.packages[top_name] = version
            return
        if isinstance(value, (types.FunctionType, type)) or (
            callable(value) and hasattr(value, "__module__") and hasattr(value, "__qualname__")
        ):
            module = getattr(value, "__module__", None)
            if is_local_module(module) and isinstance(value, (types.FunctionType, type)):
                visit_callable(value, f"{module}.{getattr(value, '__qualname__', name)}", top=False)
            elif module:
                top_name = module.split(".")[0]
                if top_name not in sys.builtin_module_names and top_name != "builtins":
                    version = package_version(top_name)
                    if version:
                        fp.packages[top_name] = version
            return
        # Plain data read from the namespace: its value enters the key at submission.
        fp.data_names.setdefault(name, (getter_owner, name))

    visit_callable(op.func, op.name, top=True)
    op._fingerprint = fp
    return fp


# ------------------------------------------------------------------------- tokens


def token(value: Any) -> str:
    """Deterministic token of a value; FlowError if it has none (caching then disabled)."""
    kind = type(value)
    if kind in _SCALARS:
        text = repr(value)
        return f"{kind.__name__}:{text}" if len(text) <= 64 else f"{kind.__name__}#" + sha256_text(text)
    if isinstance(value, FlowFile):
        return "file:" + value.content_hash()
    from dask.base import tokenize

    try:
        return "dask:" + tokenize(value, ensure_deterministic=True)
    except Exception as err:  # tokenize raises RuntimeError and pickling errors alike
        raise FlowError(f"cannot be tokenized deterministically ({type(err).__name__})") from None


def named_token(name: str, value: Any) -> str:
    """``token`` for a named value. A secret (a secret-looking name, or a value that looks
    like one: ``core.secrets``) enters only as a keyed hash: the key still changes when the
    secret does, and what is stored gives nobody reading the store a hash to test guesses
    against (the hashing key is the user's own file, not in the store)."""
    tok = token(value)
    return "secret#" + keyed_hash(tok) if is_secret(name, value) else tok


def display_value(name: str, value: Any) -> Any:
    """What provenance shows of a parameter: small scalars as they are (secrets as
    ``***``, secret-looking parts of strings hidden), the type otherwise."""
    if type(value) in _SCALARS and (not isinstance(value, str) or len(value) <= 200):
        return redact(value, name)
    return {"type": type(value).__name__}


# ---------------------------------------------------------------------- task keys


@dataclass
class TaskKey:
    key: str | None  # None when caching is disabled for this task
    components: dict
    disabled_reason: str | None = None


def _bind(op: Op, node: Node) -> dict[str, Any]:
    simple = op.simple_parameters
    if simple is not None and len(node.args) <= len(simple.names):
        # The common signature, checked once per op (the call was validated when it was made).
        names, defaults = simple.names, simple.defaults
        bound = dict(zip(names, node.args))
        for name in names[len(node.args):]:
            if name in node.kwargs:
                bound[name] = node.kwargs[name]
            elif name in defaults:
                bound[name] = defaults[name]
        return bound
    if op.signature is None:
        bound = {f"arg{i}": v for i, v in enumerate(node.args)}
        bound.update(node.kwargs)
        return bound
    ba = op.signature.bind(*node.args, **node.kwargs)
    ba.apply_defaults()
    return dict(ba.arguments)


def _substitute_keys(value: Any, keys: Mapping[Node, str]) -> Any:
    if isinstance(value, Node):
        return {"@node": keys[value]}
    if isinstance(value, OutputRef):
        return {"@node": keys[value.node], "@output": value.output}
    if isinstance(value, (list, tuple)):
        return [_substitute_keys(v, keys) for v in value]
    if isinstance(value, dict):
        return {str(k): _substitute_keys(v, keys) for k, v in value.items()}
    raise TypeError


def _has_node(value: Any) -> bool:
    if isinstance(value, (Node, OutputRef)):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_node(v) for v in value)
    if isinstance(value, dict):
        return any(_has_node(v) for v in value.values())
    return False


def _files_in(value: Any, found: dict[str, str]) -> None:
    if isinstance(value, FlowFile):
        found[str(value)] = value.content_hash()
    elif isinstance(value, (list, tuple)):
        for v in value:
            _files_in(v, found)
    elif isinstance(value, dict):
        for v in value.values():
            _files_in(v, found)


_PYTHON = ".".join(map(str, sys.version_info[:3]))


def environment(fp: Fingerprint) -> dict:
    return {"python": _PYTHON, "packages": dict(sorted(fp.packages.items()))}


@dataclass
class _OpPart:
    """What all nodes of one op share within a submission: code, deps, env, globals."""

    fp: Fingerprint
    env: dict
    globals_tokens: dict
    globals_display: dict
    files: dict
    reason: str | None
    digest: str
    origin: str | None = None


def _op_part(op: Op, namespace: Mapping[str, Any] | None) -> _OpPart:
    fp = fingerprint(op, namespace)
    tokens: dict[str, str] = {}
    display: dict[str, Any] = {}
    files: dict[str, str] = {}
    reason = None
    for name, (owner, var) in fp.data_names.items():
        found, value = _resolve(var, owner if isinstance(owner, types.FunctionType) else None, namespace)
        if not found:
            continue
        try:
            _files_in(value, files)
            tokens[name] = named_token(name, value)
        except FlowError as err:
            reason = f"cache disabled: {name!r} {err}"
            break
        display[name] = display_value(name, value) if type(value) in _SCALARS else tokens[name]
    env = environment(fp)
    digest = sha256_text(json.dumps([fp.code, fp.deps, tokens, files, env, list(op.outputs)],
                                    sort_keys=True, separators=(",", ":"), default=str))
    return _OpPart(fp, env, tokens, display, files, reason, digest)


def task_key(
    node: Node,
    upstream_keys: Mapping[Node, str],
    *,
    captured: Mapping[str, Any] | None = None,
    namespace: Mapping[str, Any] | None = None,
    memo: dict | None = None,
) -> TaskKey:
    """Key of ``node`` given its upstream nodes' keys.

    ``captured`` are values the op reads by name (a notebook cell's inputs) taken now,
    at submission; functions among them count as code, the rest as data. ``memo`` (one
    dict per submission) shares the per-op part between the nodes of the same op.
    """
    op = node.op
    part = memo.get(op) if memo is not None else None
    if part is None:
        if isinstance(op, MapOp):
            # A dynamic map is its mapped op's code applied to a list it has yet to see.
            inner = _op_part(op.inner, namespace)
            part = _OpPart(inner.fp, inner.env, inner.globals_tokens, inner.globals_display, inner.files,
                           inner.reason, sha256_text("jf.map:" + inner.digest), op_origin(op.inner))
        else:
            part = _op_part(op, namespace)
            part.origin = op_origin(op)
        if memo is not None:
            memo[op] = part
    # The op's own dicts, copied only when this node adds to them (10,000 nodes of one op
    # share them otherwise; nothing changes components once made).
    globals_tokens = dict(part.globals_tokens) if captured else part.globals_tokens
    globals_display = dict(part.globals_display) if captured else part.globals_display
    files = dict(part.files)
    params_tokens: dict[str, str] = {}
    params_display: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    reason = part.reason
    name = ""
    try:
        for name, value in (captured or {}).items():
            _files_in(value, files)
            globals_tokens[name] = named_token(name, value)
            globals_display[name] = display_value(name, value) if type(value) in _SCALARS else globals_tokens[name]
        for name, value in _bind(op, node).items():
            if _has_node(value):
                inputs[name] = _substitute_keys(value, upstream_keys)
                continue
            if type(value) not in _SCALARS:
                _files_in(value, files)
            params_tokens[name] = named_token(name, value)
            params_display[name] = display_value(name, value)
    except FlowError as err:
        reason = reason or f"cache disabled: {name!r} {err}"
    if reason is None and not op.cache:
        reason = "cache disabled"
    payload = json.dumps(
        [part.digest, globals_tokens if captured else None, params_tokens, inputs,
         files if len(files) != len(part.files) else None],
        sort_keys=True, separators=(",", ":"),
    )
    components: dict[str, Any] = {
        "origin": part.origin,
        "code": part.fp.code,
        "deps": part.fp.deps,
        "globals": globals_display,
        "params": params_display,
        "inputs": inputs,
        "files": files,
        "env": part.env,
        "tokens": {"globals": globals_tokens, "params": params_tokens},
    }
    return TaskKey(key=hashlib.sha256(payload.encode()).hexdigest(), components=components,
                   disabled_reason=reason)


_KERNEL_FILE = re.compile(r"(^|/)ipykernel_\d+/|^<ipython-input-")


def op_origin(op: Op) -> str | None:
    """Where an op is defined, so that a rerun is explained against the same op's own
    history and not another op of the same name: ``notebook:PATH:NAME`` for a ``%%flow``
    cell or a function defined in a notebook (the kernel's file names change with every
    execution; the notebook's path does not), ``file:PATH:QUALNAME`` for a function in a
    file. None when not known (then any op of that name is compared, as before).

    >>> op_origin(Op(len, name="size")) is None
    True
    """
    func = getattr(op, "func", None)
    code = getattr(func, "__code__", None)
    if code is None:
        return None
    where = code.co_filename or ""
    qualname = getattr(func, "__qualname__", op.name)
    if where.startswith("<flow cell ") or code.co_name.startswith("<flow cell "):
        return f"notebook:{_notebook()}:{op.name}"
    if _KERNEL_FILE.search(where):
        return f"notebook:{_notebook()}:{qualname}"
    if where.startswith("<"):
        return None
    return f"file:{os.path.abspath(where)}:{qualname}"


def _notebook() -> str:
    return os.environ.get("JPY_SESSION_NAME") or os.environ.get("JUPYTER_FLOW_NOTEBOOK") or ""


def explain(components: Mapping[str, Any] | None, previous: Mapping[str, Any] | None,
            params: Mapping[str, Any] | None = None) -> str:
    """Why a task with ``components`` had no cache hit, given the last run of the same op.

    ``params`` are the run's declared parameters (``jf.param``): a captured value that is
    one of them changed means "params changed", not "input changed".

    >>> explain({"tokens": {"globals": {"lr": "b"}}}, {"tokens": {"globals": {"lr": "a"}}}, params={"lr": 0.2})
    'params changed'
    """
    if not previous:
        return "no cache entry"
    if None not in (components.get("origin"), previous.get("origin")) and components["origin"] != previous["origin"]:
        return "no cache entry"  # another op of the same name (another notebook or script)
    if components.get("code") != previous.get("code") or components.get("deps") != previous.get("deps"):
        return "code changed"
    if components.get("env") != previous.get("env"):
        return "env changed"
    if components.get("files") != previous.get("files"):
        return "file changed"
    tokens, prev_tokens = components.get("tokens", {}), previous.get("tokens", {})
    if tokens.get("params") != prev_tokens.get("params"):
        return "params changed"
    now, before = tokens.get("globals") or {}, prev_tokens.get("globals") or {}
    changed = {name for name in set(now) | set(before) if now.get(name) != before.get(name)}
    if changed and params and changed <= set(params) and components.get("inputs") == previous.get("inputs"):
        return "params changed"
    if components.get("inputs") != previous.get("inputs") or tokens.get("globals") != prev_tokens.get("globals"):
        return "input changed"
    return "no cache entry"
