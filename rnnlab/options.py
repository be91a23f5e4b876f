"""Named options with defaults and checks, and registries of components built by name.

Every configurable component (a model, an optimizer, a task) declares its options once, as a
tuple of :class:`Option`; the Python API (``make_model(kind, ..., **options)``), config files
and the command line all validate and fill defaults through the same declaration, so there is one
source of truth for what an option means, its default, and what values it allows::

    class SGD(Optimizer):
        options = (Option.number("lr", 0.01, "learning rate", minimum=0),
                   Option.number("momentum", 0.0, "momentum, in [0, 1)", minimum=0, below=1),
                   Option.flag("nesterov", False, "Nesterov momentum (needs momentum > 0)"))

A :class:`Registry` maps names to component classes (``MODELS``, ``OPTIMIZERS``, ``TASKS``); a
new capability is a new class plus ``REGISTRY.register("name", Class)``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers

from .errors import ConfigError


def _kind_of(value) -> str:
    if isinstance(value, bool):
        return "flag"
    if isinstance(value, numbers.Integral):
        return "integer"
    if isinstance(value, numbers.Real):
        return "number"
    return "text"


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a component.

    Attributes
    ----------
    name : str
        The keyword (``"lr"``); never ``"name"``, which config files use for the component.
    default : object
        The value used when the option is not given (``None`` where a component derives it).
    help : str
        One line for ``--help`` and the docs.
    check : callable ``(qualified_name, value) -> value``
        Validates (and normalises) a value, raising ConfigError that names the option.
    parse : callable ``str -> value``
        Turns command-line text into a value before ``check`` (``float``, ``int``, ...).
    kind : str
        What the value is, for help texts: "integer", "number", "flag", "choice", "text", "list".
    choices : tuple
        The allowed values of a "choice" option.
    """

    name: str
    default: object
    help: str
    check: object
    parse: object
    kind: str
    choices: tuple = ()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def integer(cls, name, default, help, minimum=None, maximum=None, allow_none=False):
        """An integer in [minimum, maximum] (either bound optional)."""
        def check(qualified, value):
            if value is None and allow_none:
                return None
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigError(f"{qualified} must be an integer{_range(minimum, maximum)}; "
                                  f"got {value!r}")
            if (minimum is not None and value < minimum) or (maximum is not None
                                                              and value > maximum):
                raise ConfigError(f"{qualified} must be an integer{_range(minimum, maximum)}; "
                                  f"got {value}")
            return int(value)
        return cls(name, default, help, check, _parse_int, "integer")

    @classmethod
    def number(cls, name, default, help, minimum=None, maximum=None, *, inclusive=False,
               below=None):
        """A finite real number: ``> minimum`` (``>= minimum`` with ``inclusive``), and
        ``< below`` or ``<= maximum`` where given."""
        lower = "" if minimum is None else f" {'>=' if inclusive else '>'} {minimum}"

        def check(qualified, value):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"{qualified} must be a finite number{lower}; got {value!r}")
            value = float(value)
            if not math.isfinite(value) or (minimum is not None and (
                    value < minimum or (value == minimum and not inclusive))):
                raise ConfigError(f"{qualified} must be a finite number{lower}; got {value}")
            if below is not None and value >= below:
                interval = (f"in [{minimum}, {below})" if minimum is not None and inclusive
                            else f"< {below}")
                raise ConfigError(f"{qualified} must be {interval}; got {value}")
            if maximum is not None and value > maximum:
                raise ConfigError(f"{qualified} must be <= {maximum}; got {value}")
            return value
        return cls(name, default, help, check, _parse_float, "number")

    @classmethod
    def flag(cls, name, default, help):
        """True or False."""
        def check(qualified, value):
            if not isinstance(value, bool):
                raise ConfigError(f"{qualified} must be true or false; got {value!r}")
            return value
        return cls(name, default, help, check, _parse_bool, "flag")

    @classmethod
    def choice(cls, name, default, help, choices):
        """One of ``choices`` (strings)."""
        choices = tuple(choices)

        def check(qualified, value):
            if value not in choices:
                raise ConfigError(f"{qualified} must be one of {', '.join(map(str, choices))}; "
                                  f"got {value!r}")
            return value
        return cls(name, default, help, check, str, "choice", choices)

    @classmethod
    def custom(cls, name, default, help, check, parse, kind="text"):
        """An option with its own check and parser (e.g. an integer or a list of integers)."""
        return cls(name, default, help, check, parse, kind)

    def describe(self) -> str:
        """``name=default`` as help texts show it."""
        return f"{self.name}={_show(self.default)}"


def _range(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "(derived)"
    return str(value)


def _parse_int(text: str):
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"expected an integer; got {text!r}") from None


def _parse_float(text: str):
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"expected a number; got {text!r}") from None


def _parse_bool(text: str):
    words = {"true": True, "1": True, "yes": True, "on": True,
             "false": False, "0": False, "no": False, "off": False}
    key = str(text).strip().lower()
    if key not in words:
        raise ConfigError(f"expected true or false; got {text!r}")
    return words[key]


def resolve(owner: str, options: tuple, given: dict) -> dict:
    """Every option of ``options`` with its value: given ones checked, the others defaulted.

    ``owner`` names the component in messages (``"optimizer 'adam'"``). An unknown key is an
    error listing the allowed ones. Returns a new dict in declaration order.
    """
    known = {o.name: o for o in options}
    unknown = [k for k in given if k not in known]
    if unknown:
        allowed = ", ".join(known) or "none"
        raise ConfigError(f"{owner} has no option {unknown[0]!r}; its options: {allowed}")
    return {o.name: o.check(o.name, given[o.name]) if o.name in given else o.default
            for o in options}


class Registry:
    """Component classes by name (each class has an ``options`` tuple of :class:`Option`).

    ``what`` names the kind of component in messages ("model", "optimizer", "task").
    """

    def __init__(self, what: str):
        self.what = what
        self._classes: dict = {}

    def register(self, name: str, cls=None):
        """Add ``cls`` under ``name`` (usable as a decorator: ``@REGISTRY.register("x")``)."""
        def add(c):
            if "name" in {o.name for o in getattr(c, "options", ())}:
                raise ConfigError(f"{self.what} {name!r} declares an option called 'name', "
                                  "which config files reserve for the component's name")
            self._classes[name] = c
            return c
        return add if cls is None else add(cls)

    def unregister(self, name: str) -> None:
        self._classes.pop(name, None)

    @contextlib.contextmanager
    def temporarily(self, name: str, cls):
        """Register ``cls`` as ``name`` for the duration of a block (tests, experiments)."""
        previous = self._classes.get(name)
        self.register(name, cls)
        try:
            yield cls
        finally:
            if previous is None:
                self.unregister(name)
            else:
                self._classes[name] = previous

    def names(self) -> tuple:
        return tuple(self._classes)

    def __contains__(self, name) -> bool:
        return name in self._classes

    def __iter__(self):
        return iter(self._classes)

    def get(self, name: str):
        """The class registered as ``name``, or a ConfigError listing the names there are."""
        if name not in self._classes:
            raise ConfigError(f"{self.what} must be one of {', '.join(self._classes)}; "
                              f"got {name!r}")
        return self._classes[name]

    def options(self, name: str) -> tuple:
        return tuple(getattr(self.get(name), "options", ()))

    def resolve(self, name: str, given: dict) -> dict:
        """``given`` options of component ``name`` checked and completed with defaults."""
        return resolve(f"{self.what} {name!r}", self.options(name), dict(given))
