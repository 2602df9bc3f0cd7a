"""``jf.shell``: a command-line tool as an op, with files as typed inputs and outputs.

    sorted_ = jf.shell("sort {input} -o {output}", inputs={"input": "data.txt"},
                       outputs={"output": "sorted.txt"})
    counted = jf.shell("wc -l < {input}", inputs={"input": sorted_["output"]})

Input files enter the cache key by content; output files are recorded with their sha256
and size, and a cache hit is used only while those files are still there, unchanged.
stdout/stderr are captured (and streamed) like any op's; a non-zero exit code fails the
op. ``env`` runs the command in a conda environment, after ``module load`` lines, or in an
apptainer/singularity image; what was used is recorded in provenance.
"""

from __future__ import annotations

import inspect
import os
import re
import selectors
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from . import command_template
from .errors import FlowError, OpTimeout
from .files import FlowFile, file_hash
from .op import Node, Op, OutputRef
from .secrets import is_secret, looks_secret

_NAME = re.compile(r"[^\w.\-]+")
ENV_KEYS = ("conda", "conda_prefix", "modules", "container", "variables")


class ShellCommandFailed(FlowError):
    """A shell op's command exited with a non-zero code."""


class OutputFile(FlowFile):
    """A file a shell op wrote: its path (a ``str``), with the sha256 and size it had then."""

    def __new__(cls, path: str | os.PathLike, sha256: str, size: int):
        made = super().__new__(cls, path)
        made.sha256 = sha256
        made.size = size
        return made

    def __reduce__(self):
        return (OutputFile, (str(self), self.sha256, self.size))

    def unchanged(self) -> bool:
        """Whether the file is still there with the content it was recorded with."""
        try:
            return os.path.getsize(self) == self.size and file_hash(str(self)) == self.sha256
        except (OSError, FlowError):
            return False


class ShellOp(Op):
    """The op behind ``jf.shell``: runs a command template on a worker."""

    def __init__(self, command: str, *, name: str, outputs: list[str], retries: int = 0,
                 timeout: float | None = None, resources: dict | None = None, cache: bool = True,
                 stdout: str | None = None, absolute_outputs: tuple[str, ...] = ()):
        # The command enforces its own timeout (and kills the process), so the engine's
        # thread-based one is not used; a timeout is not part of the cache key.
        files = list(outputs)
        super().__init__(run_command, name=name, retries=retries, timeout=None, cache=cache,
                         resources=resources, outputs=files + ([stdout] if stdout else []) or None)
        self.command = command
        self.stdout_output = stdout
        # Outputs that may be written outside the working directory (absolute paths).
        self.absolute_outputs = tuple(absolute_outputs)
        self.command_timeout = timeout
        self.func = self.run
        self.signature = inspect.signature(self.run)
        if timeout is not None:
            Op(run_command, name=name, timeout=timeout)  # the same validation and message

    def run(self, command: str, inputs: dict, outputs: dict, params: dict, environment: dict,
            cwd: str | None) -> Any:
        return run_command(command, inputs, outputs, params, environment, cwd, timeout=self.command_timeout,
                           stdout_as=self.stdout_output, absolute_outputs=self.absolute_outputs, label=self.name)

    def __reduce__(self):
        files = [o for o in self.outputs if o != self.stdout_output] if self.multi_output else []
        return (_rebuild_shell, (self.command, self.name, files, self.retries, self.command_timeout,
                                 self.resources, self.cache, self.stdout_output, self.absolute_outputs))

    def cached_value_usable(self, value: Any) -> bool:
        """A cache hit stands only while the output files it recorded are unchanged."""
        values = value.values() if isinstance(value, dict) else [value]
        return all(v.unchanged() for v in values if isinstance(v, OutputFile))


def _rebuild_shell(command, name, outputs, retries, timeout, resources, cache, stdout=None, absolute_outputs=()):
    return ShellOp(command, name=name, outputs=outputs, retries=retries, timeout=timeout,
                   resources=resources, cache=cache, stdout=stdout, absolute_outputs=absolute_outputs)


def shell(
    command: str,
    *,
    inputs: Mapping[str, Any] | None = None,
    outputs: Mapping[str, str | os.PathLike] | None = None,
    params: Mapping[str, Any] | None = None,
    env: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike | None = None,
    name: str | None = None,
    retries: int = 0,
    timeout: float | None = None,
    resources: dict | None = None,
    cache: bool = True,
    stdout: str | None = None,
    absolute_outputs: list[str] | tuple[str, ...] = (),
) -> Node:
    """A command-line step: ``{name}`` fields in ``command`` are filled (shell-quoted) from
    ``inputs`` (files: paths, ``jf.file``s or other shell ops' outputs), ``outputs`` (files
    the command writes) and ``params`` (plain values).

    The node's value is the dict of its output files (``node["output"]`` passes one on),
    or the command's stdout when it declares no outputs; ``stdout="name"`` adds the stdout
    to the dict under that name. ``env`` may hold ``conda`` (an
    environment name), ``conda_prefix`` (its path), ``modules`` (names to ``module load``),
    ``container`` (an apptainer/singularity image) and ``variables`` (environment variables).
    The command runs in ``cwd`` (default: this process's working directory, wherever the
    worker is), so relative paths work as they do here. Output files must lie inside
    ``cwd``; name an output in ``absolute_outputs`` to let it be an absolute path elsewhere
    (``outputs={"bam": "/scratch/me/x.bam"}, absolute_outputs=["bam"]``).

    A field's value is quoted so that it stays one word; a field inside the template's own
    quotes, a heredoc, backquotes or a comment is refused (the message shows the fix).
    Values of secret-looking fields (``{api_token}``, a URL with a password) are shown as
    ``***`` wherever the command line is logged or quoted.

    >>> node = shell("sort {input} -o {output}",
    ...              inputs={"input": "setup.py"}, outputs={"output": "s.txt"})  # doctest: +SKIP
    """
    if not isinstance(command, str) or not command.strip():
        raise FlowError("jf.shell: give the command as a non-empty string, e.g. \"sort {input} -o {output}\"")
    inputs, outputs, params = dict(inputs or {}), dict(outputs or {}), dict(params or {})
    label = name or _default_name(command)
    trouble = command_template.problem(command)
    if trouble:
        raise FlowError(f"jf.shell {label!r}: {trouble}")
    fields = {**{k: "inputs" for k in inputs}, **{k: "outputs" for k in outputs}, **{k: "params" for k in params}}
    if len(fields) != len(inputs) + len(outputs) + len(params):
        clash = sorted((set(inputs) & set(outputs)) | (set(inputs) & set(params)) | (set(outputs) & set(params)))
        raise FlowError(f"jf.shell {label!r}: {clash} given more than once among inputs, outputs and params")
    unknown = [f for f in command_template.fields(command) if f not in fields]
    if unknown:
        raise FlowError(
            f"jf.shell {label!r}: the command uses {{{unknown[0]}}}, which is none of its inputs, outputs or "
            f"params ({sorted(fields) or 'none given'}); add it, or double the braces ({{{{...}}}}) for a literal"
        )
    typed_inputs = {key: _input_file(label, key, value) for key, value in inputs.items()}
    for key, value in outputs.items():
        if not isinstance(value, (str, os.PathLike)):
            raise FlowError(f"jf.shell {label!r}: output {key!r} must be a path, got {type(value).__name__}")
    absolute_outputs = _check_absolute(label, absolute_outputs, outputs)
    where = os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd())
    for key, value in outputs.items():
        confine_output(label, key, os.fspath(value), where, allowed=key in absolute_outputs)
    environment = _check_env(label, env)
    if stdout is not None and (not isinstance(stdout, str) or stdout in outputs):
        raise FlowError(f"jf.shell {label!r}: stdout= names the output holding the command's stdout; "
                        "give a name that is not one of its output files")
    op = ShellOp(command, name=label, outputs=list(outputs), retries=retries, timeout=timeout,
                 resources=resources, cache=cache, stdout=stdout, absolute_outputs=absolute_outputs)
    return op(command=command, inputs=typed_inputs, outputs={k: os.fspath(v) for k, v in outputs.items()},
              params=params, environment=environment,
              # Relative paths mean what they mean here, not in a worker's own directory.
              cwd=where)


def _check_absolute(label: str, names: Any, outputs: Mapping[str, Any]) -> tuple[str, ...]:
    if isinstance(names, str) or not all(isinstance(n, str) for n in names or ()):
        raise FlowError(f"jf.shell {label!r}: absolute_outputs= is a list of output names, e.g. [\"bam\"]")
    unknown = sorted(set(names or ()) - set(outputs))
    if unknown:
        raise FlowError(f"jf.shell {label!r}: absolute_outputs names {unknown}, which are not among its "
                        f"outputs ({sorted(outputs) or 'none given'})")
    return tuple(names or ())


def confine_output(label: str, key: str, path: str, cwd: str, *, allowed: bool) -> str:
    """The full path of output ``key``; FlowError unless it lies inside ``cwd`` (symlinks
    followed) or is an absolute path the op declared (``allowed``)."""
    if allowed and os.path.isabs(path):
        return path
    if inside(cwd, path):
        return os.path.join(cwd, path)
    where = "an absolute path" if os.path.isabs(path) else "a path that leads"
    raise FlowError(
        f"jf.shell {label!r}: output {key!r} is {path!r}, {where} outside the working directory {cwd}; "
        "write outputs under it (a relative path such as 'results/out.txt'), or, to write elsewhere, "
        f"give an absolute path and declare it: absolute_outputs=[{key!r}]"
    )


def inside(cwd: str, path: str) -> bool:
    """Whether ``path`` (relative to ``cwd``, or absolute) lies inside ``cwd``, symlinks followed."""
    root = os.path.realpath(cwd)
    return os.path.commonpath([root, os.path.realpath(os.path.join(cwd, path))]) == root


def _default_name(command: str) -> str:
    try:
        words = shlex.split(command, comments=False, posix=True) if command else []
    except ValueError:  # an unclosed quote: command_template.problem says so
        words = command.split()
    first = next((w for w in words if "=" not in w), "shell")
    return _NAME.sub("_", os.path.basename(first)) or "shell"


def _input_file(label: str, key: str, value: Any) -> Any:
    if isinstance(value, (Node, OutputRef, FlowFile)):
        return value
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not os.path.exists(path):
            raise FlowError(f"jf.shell {label!r}: input {key!r} is {path!r}, which does not exist")
        return FlowFile(path)  # its content enters the cache key
    raise FlowError(
        f"jf.shell {label!r}: input {key!r} must be a path, a jf.file or another op's output, "
        f"got {type(value).__name__}; plain values go in params="
    )


def _check_env(label: str, env: Mapping[str, Any] | None) -> dict:
    env = dict(env or {})
    unknown = sorted(set(env) - set(ENV_KEYS))
    if unknown:
        raise FlowError(f"jf.shell {label!r}: unknown env setting(s) {unknown}; use {list(ENV_KEYS)}")
    if env.get("conda") and env.get("conda_prefix"):
        raise FlowError(f"jf.shell {label!r}: give env conda (a name) or conda_prefix (a path), not both")
    modules = env.get("modules") or []
    if isinstance(modules, str):
        modules = [modules]
    if not all(isinstance(m, str) and m.strip() for m in modules):
        raise FlowError(f"jf.shell {label!r}: env modules must be module names, e.g. ['gcc/12', 'samtools']")
    if modules:
        env["modules"] = list(modules)
    variables = env.get("variables") or {}
    if not isinstance(variables, Mapping) or not all(isinstance(k, str) for k in variables):
        raise FlowError(f"jf.shell {label!r}: env variables must be a dict of names to values")
    if variables:
        env["variables"] = {k: str(v) for k, v in variables.items()}
    return env


# ------------------------------------------------------------------ on the worker


def run_command(command: str, inputs: dict, outputs: dict, params: dict, environment: dict,
                cwd: str | None, timeout: float | None = None, stdout_as: str | None = None,
                absolute_outputs: tuple[str, ...] = (), label: str = "shell") -> Any:
    """Run the command (on a worker): fill it in, wrap it in its environment, stream its
    output, check its exit code and its output files. What is shown of the command line
    (the log line, error messages) has its secret values as ``***``."""
    base = Path(cwd) if cwd else Path.cwd()
    values: dict[str, str] = {}
    for key, value in inputs.items():
        path = os.fspath(value)
        if not (base / path).exists():
            raise FlowError(f"input {key!r} ({path}) does not exist on {os.uname().nodename}; "
                            "inputs must be on a filesystem the workers share")
        values[key] = path
    for key, path in outputs.items():
        # Checked again here: symlinks on the worker's filesystem, graphs built elsewhere.
        full = confine_output(label, key, path, str(base), allowed=key in absolute_outputs)
        Path(full).parent.mkdir(parents=True, exist_ok=True)
        values[key] = path
    values.update({k: str(v) for k, v in params.items()})
    # Secret-named fields are shown as ***; the secret parts of others (a URL's password) too.
    secret = {k for k in values if looks_secret(k) and is_secret(k, values[k])}
    text = command_template.fill(command, values)
    shown = command_template.shown(command, values, secret)
    argv, described = wrap(text, environment)
    print(f"[jupyter_flow] $ {shown}", file=sys.stderr)
    if described:
        print(f"[jupyter_flow] environment: {described}", file=sys.stderr)
    env = dict(os.environ)
    env.update(environment.get("variables") or {})
    if environment.get("conda_prefix") and not _conda():
        # No conda here: activate the prefix the way conda's own activation does first.
        prefix = os.path.abspath(environment["conda_prefix"])
        env["PATH"] = os.path.join(prefix, "bin") + os.pathsep + env.get("PATH", "")
        env["CONDA_PREFIX"] = prefix
    code, stdout = _stream(argv, cwd=str(base), env=env, timeout=timeout, text=shown)
    if code != 0:
        raise ShellCommandFailed(f"`{shown[:300]}` exited with code {code} (its stderr is in the op's logs)")
    produced = {}
    for key, path in outputs.items():
        full = base / path
        if not full.exists():
            raise FlowError(f"the command exited 0 but did not write its output {key!r} ({path})")
        produced[key] = OutputFile(str(full), file_hash(str(full)), full.stat().st_size)
    if stdout_as:
        produced[stdout_as] = stdout
    return produced if produced else stdout


def _conda() -> str | None:
    return shutil.which("conda") or shutil.which("mamba") or shutil.which("micromamba")


def wrap(text: str, environment: Mapping[str, Any]) -> tuple[list[str], str]:
    """The argv that runs ``text`` in ``environment``, and a description for provenance.

    >>> wrap("echo hi", {})
    (['bash', '-c', 'echo hi'], '')
    """
    script = text
    described = []
    modules = environment.get("modules") or []
    login = False
    if modules:
        script = "\n".join(f"module load {shlex.quote(m)}" for m in modules) + "\n" + script
        described.append("modules " + " ".join(modules))
        login = True  # the `module` function comes from the login shell's profile
    argv = ["bash", "-lc" if login else "-c", script]
    if environment.get("conda") or environment.get("conda_prefix"):
        conda = _conda()
        name, prefix = environment.get("conda"), environment.get("conda_prefix")
        if conda:
            where = ["-n", name] if name else ["-p", os.path.abspath(prefix)]
            argv = [conda, "run", *where, "--no-capture-output", *argv]
            described.append(f"conda env {name or prefix} ({os.path.basename(conda)})")
        elif name:
            raise FlowError(f"env conda={name!r}: no conda, mamba or micromamba on this worker's PATH; "
                            "install one there or give conda_prefix= (the environment's path)")
        else:
            if not os.path.isdir(os.path.join(prefix, "bin")):
                raise FlowError(f"env conda_prefix={prefix!r} has no bin/ directory on this worker")
            described.append(f"conda prefix {os.path.abspath(prefix)} (activated via PATH)")
    image = environment.get("container")
    if image:
        runtime = shutil.which("apptainer") or shutil.which("singularity")
        if runtime is None:
            raise FlowError(f"env container={image!r}: neither apptainer nor singularity is installed on this "
                            "worker; install one, or run the op where they are")
        argv = [runtime, "exec", str(image), *argv]
        described.append(f"{os.path.basename(runtime)} image {image}")
    if environment.get("variables"):
        described.append("variables " + " ".join(sorted(environment["variables"])))
    return argv, "; ".join(described)


def _stream(argv: list[str], *, cwd: str, env: dict, timeout: float | None, text: str) -> tuple[int, str]:
    """Run ``argv``, writing its stdout/stderr to this thread's streams as they come;
    returns the exit code and the whole stdout."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as err:
        raise FlowError(f"cannot start `{text[:200]}`: {err}") from None
    deadline = None if timeout is None else time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, sys.stdout)
    selector.register(proc.stderr, selectors.EVENT_READ, sys.stderr)
    collected: list[bytes] = []
    open_streams = 2
    try:
        while open_streams:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if wait == 0.0:
                raise OpTimeout(f"timed out after {timeout:g} s (the command was killed)")
            for key, _ in selector.select(timeout=wait if wait is not None else 1.0):
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                if key.data is sys.stdout:
                    collected.append(chunk)
                key.data.write(chunk.decode(errors="replace"))
                key.data.flush()
        remaining = None if deadline is None else max(0.1, deadline - time.monotonic())
        try:
            code = proc.wait(remaining)
        except subprocess.TimeoutExpired:
            raise OpTimeout(f"timed out after {timeout:g} s (the command was killed)") from None
    finally:
        selector.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return code, b"".join(collected).decode(errors="replace")
