"""``jf.param``: typed notebook parameters that papermill can override.

Papermill injects ``name = value`` lines after the ``parameters`` cell; ``jf.param`` then
finds the injected value in the namespace and returns it, coerced to the declared type and
checked against its bounds, so flow cells capture the injected value.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..core.errors import FlowError

_MISSING = object()


@dataclass
class Parameter:
    """One declared parameter and the value it has now."""

    name: str
    default: Any
    type: type
    min: Any = None
    max: Any = None
    choices: Sequence | None = None
    help: str | None = None
    value: Any = None
    injected: bool = False
    namespace: dict = field(default_factory=dict, repr=False)

    def coerce(self, value: Any) -> Any:
        """``value`` as this parameter's type, within its bounds; FlowError otherwise."""
        label = f"parameter {self.name!r}"
        try:
            if self.type is bool and isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = lowered in ("true", "1", "yes")
            elif self.type is int and isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(value)
                value = int(value)
            elif self.type in (int, float) and isinstance(value, bool):
                raise ValueError(value)
            elif not isinstance(value, self.type):
                value = self.type(value)
        except (TypeError, ValueError):
            raise FlowError(f"{label} must be {self.type.__name__}, got {value!r}") from None
        if self.choices is not None and value not in self.choices:
            raise FlowError(f"{label} must be one of {list(self.choices)}, got {value!r}")
        if self.min is not None and value < self.min:
            raise FlowError(f"{label} = {value!r} is below its minimum {self.min!r}")
        if self.max is not None and value > self.max:
            raise FlowError(f"{label} = {value!r} is above its maximum {self.max!r}")
        return value

    def set(self, value: Any) -> Any:
        """Change the value (from the form): validated, then written to the namespace."""
        self.value = self.coerce(value)
        self.namespace[self.name] = self.value
        return self.value


PARAMETERS: dict[str, Parameter] = {}


def _user_namespace(depth: int) -> dict:
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: the caller's module globals
        get_ipython = None
    shell = get_ipython() if get_ipython else None
    if shell is not None:
        return shell.user_ns
    return sys._getframe(depth + 1).f_globals


def param(name: str, default: Any, *, min: Any = None, max: Any = None, choices: Sequence | None = None,
          type: type | None = None, help: str | None = None) -> Any:  # noqa: A002 (the names users expect)
    """Declare a typed parameter and return its value.

    The value is ``default`` unless the namespace already holds ``name`` set by someone
    else (papermill's injected cell, ``jupyter flow batch -p``): that value wins, coerced
    to the parameter's type and checked against ``min``/``max``/``choices``.

    >>> lr = param("lr", 0.1, min=0, max=1)      # doctest: +SKIP
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise FlowError(f"jf.param: the name must be a Python identifier, got {name!r}")
    kind = type or default.__class__
    if kind is int and any(isinstance(bound, float) for bound in (min, max)):
        kind = float  # param("lr", 0, max=0.5) is a float parameter
    namespace = _user_namespace(1)
    parameter = Parameter(name, default, kind, min, max, tuple(choices) if choices is not None else None, help,
                          namespace=namespace)
    parameter.default = parameter.coerce(default)
    current = namespace.get(name, _MISSING)
    previous = PARAMETERS.get(name)
    # A value we did not put there (papermill injected it) overrides the default; our own
    # earlier value does not, so editing the default and re-running the cell takes effect.
    ours = previous is not None and current is previous.value
    if current is _MISSING or ours:
        parameter.value = parameter.default
    else:
        parameter.value = parameter.coerce(current)
        parameter.injected = True
    PARAMETERS[name] = parameter
    namespace[name] = parameter.value
    return parameter.value


def sync() -> None:
    """Adopt values assigned after ``jf.param`` ran (papermill injects after the parameters
    cell), coerced and checked, so flow cells capture typed, valid values."""
    for parameter in PARAMETERS.values():
        current = parameter.namespace.get(parameter.name, _MISSING)
        if current is _MISSING or current is parameter.value:
            continue
        parameter.value = parameter.coerce(current)
        parameter.injected = True
        parameter.namespace[parameter.name] = parameter.value


def values() -> dict[str, Any]:
    """Current values of the declared parameters (recorded with each run)."""
    return {name: p.value for name, p in PARAMETERS.items()}


def form():
    """An ipywidgets form editing the declared parameters (changes go to the namespace)."""
    import ipywidgets as widgets

    rows = []
    for parameter in PARAMETERS.values():
        rows.append(_widget_for(parameter, widgets))
    if not rows:
        return widgets.HTML("No parameters declared; use <code>jf.param(name, default)</code>.")
    return widgets.VBox(rows)


def _widget_for(parameter: Parameter, widgets):
    common = {"description": parameter.name, "value": parameter.value,
              "style": {"description_width": "initial"}}
    if parameter.choices is not None:
        widget = widgets.Dropdown(options=list(parameter.choices), **common)
    elif parameter.type is bool:
        widget = widgets.Checkbox(**common)
    elif parameter.type in (int, float) and parameter.min is not None and parameter.max is not None:
        cls = widgets.IntSlider if parameter.type is int else widgets.FloatSlider
        extra = {} if parameter.type is int else {"step": (parameter.max - parameter.min) / 100 or 0.01}
        widget = cls(min=parameter.min, max=parameter.max, **extra, **common)
    elif parameter.type is int:
        widget = widgets.IntText(**common)
    elif parameter.type is float:
        widget = widgets.FloatText(**common)
    else:
        widget = widgets.Text(**{**common, "value": str(parameter.value)})
    if parameter.help:
        widget.description_tooltip = parameter.help

    def changed(change):
        try:
            parameter.set(change["new"])
        except FlowError as err:
            widget.value = change["old"]
            print(err, file=sys.stderr)

    widget.observe(changed, names="value")
    return widget


def text_table() -> str:
    if not PARAMETERS:
        return "no parameters declared (use jf.param(name, default))"
    lines = []
    for p in PARAMETERS.values():
        bounds = ", ".join(f"{k}={v!r}" for k, v in (("min", p.min), ("max", p.max), ("choices", p.choices))
                           if v is not None)
        origin = "injected" if p.injected else "default"
        lines.append(f"{p.name} = {p.value!r}  ({p.type.__name__}{', ' + bounds if bounds else ''}; {origin})")
    return "\n".join(lines)


def html_table() -> str:
    """The declared parameters as a static HTML table: what a saved notebook shows where
    the live form was (nbviewer, GitHub, a reopened notebook without its kernel)."""
    from html import escape

    if not PARAMETERS:
        return "<p>No parameters declared; use <code>jf.param(name, default)</code>.</p>"
    rows = []
    for p in PARAMETERS.values():
        bounds = ", ".join(f"{k}={v!r}" for k, v in (("min", p.min), ("max", p.max), ("choices", p.choices))
                           if v is not None)
        cells = (p.name, repr(p.value), p.type.__name__, bounds, "injected" if p.injected else "default", p.help or "")
        rows.append("<tr>" + "".join(f"<td style='padding:2px 8px;text-align:left'>{escape(str(cell))}</td>"
                                     for cell in cells) + "</tr>")
    head = "".join(f"<th style='padding:2px 8px;text-align:left'>{h}</th>"
                   for h in ("parameter", "value", "type", "bounds", "from", "help"))
    return f"<table class='jp-flow-params'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_FORMS: list[str] = []  # display ids of the live %flow params forms of this kernel


def show_form() -> None:
    """``%flow params``: the live form, with its static table as the fallback; when the
    kernel shuts down or restarts, each form still shown becomes its static table, so the
    saved notebook never says "Error displaying widget: model not found"."""
    from IPython.display import display

    from .shutdown import on_shutdown

    text = text_table()
    try:
        widget = form()
    except ImportError:
        print(text)
        return
    display_id = f"jupyter-flow-params-{widget.model_id}"
    # The Jupyter server's pre-save hook writes only the static table of an output marked
    # static_fallback (jupyter_flow.server.saving): a reopened notebook shows it.
    display({"text/plain": text, "text/html": html_table(), "application/vnd.jupyter.widget-view+json": {
        "model_id": widget.model_id, "version_major": 2, "version_minor": 0}}, raw=True, display_id=display_id,
        metadata={"jupyter_flow": {"static_fallback": True}})
    _FORMS.append(display_id)
    on_shutdown(freeze_forms)


def freeze_forms() -> None:
    """Replace every live form by its static table and text (values as they are now)."""
    from IPython.display import update_display

    try:
        sync()  # values assigned in the notebook since
    except FlowError:
        pass  # a value that fails its checks: the table shows the last valid one
    bundle = {"text/plain": text_table(), "text/html": html_table()}
    while _FORMS:
        update_display(bundle, raw=True, display_id=_FORMS.pop())
