"""CEL values in Python and the semantics of CEL's operators over them.

CEL value  -> Python value: bool -> bool, int -> int, uint -> `UInt`, double -> float,
string -> str, bytes -> bytes, null -> None, list -> list, map -> dict.

Python's `bool` is a subclass of `int` and `True == 1`, while in CEL `true != 1`; every operator
here therefore dispatches on the exact `type()` of its operands. Where the reference CEL
implementation (the `cel` package) departs from the CEL specification, these functions follow the
reference, so that a rule means the same thing under both; each such place is marked.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any, Final

from .errors import ExpressionEvalError

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
UINT_MAX: Final = 2**64 - 1


class UInt(int):
    """A CEL `uint`: an int kept apart from CEL `int` by its Python type."""

    __slots__ = ()


_NUMERIC: Final = (int, UInt, float)
_KEY_TYPES: Final = (str, int, UInt, bool)
_INT_TEXT: Final = re.compile(r"[+-]?[0-9]+")
_DOUBLE_TEXT: Final = re.compile(
    r"[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)", re.IGNORECASE
)


def type_name(value: object) -> str:
    """The CEL name of the type of `value`, for error messages."""
    kind = type(value)
    if kind is bool:
        return "bool"
    if kind is int:
        return "int"
    if kind is UInt:
        return "uint"
    if kind is float:
        return "double"
    if kind is str:
        return "string"
    if kind is bytes:
        return "bytes"
    if value is None:
        return "null"
    if kind is list:
        return "list"
    if kind is dict:
        return "map"
    return kind.__name__


def no_overload(operation: str, *operands: object) -> ExpressionEvalError:
    """The error for an operator or function applied to operand types it is not defined for."""
    types = ", ".join(type_name(operand) for operand in operands)
    return ExpressionEvalError(
        f"no such overload: {operation}({types}); CEL does not convert between types, "
        "convert explicitly with int(), double() or string()"
    )


def _check_int(value: int, operation: str) -> int:
    if INT_MIN <= value <= INT_MAX:
        return value
    raise ExpressionEvalError(f"int overflow in {operation}: the result {value} is out of range")


def _check_uint(value: int, operation: str) -> UInt:
    if 0 <= value <= UINT_MAX:
        return UInt(value)
    raise ExpressionEvalError(f"uint overflow in {operation}: the result {value} is out of range")


# --- equality and ordering ---------------------------------------------------------------------


def equals(left: Any, right: Any) -> bool:
    """CEL `==`: numbers compare by value across int, uint and double; other types never equal."""
    kind = type(left)
    if kind is type(right):
        if kind is list:
            return len(left) == len(right) and all(map(equals, left, right))
        if kind is dict:
            return _maps_equal(left, right)
        return bool(left == right)
    if kind in _NUMERIC and type(right) in _NUMERIC:
        # The reference converts to double when an int meets a double.
        if kind is float or type(right) is float:
            return float(left) == float(right)
        return bool(left == right)
    return False


def _maps_equal(left: dict[Any, Any], right: dict[Any, Any]) -> bool:
    if len(left) != len(right):
        return False
    for key, value in left.items():
        found, other = map_lookup(right, key)
        if not found or not equals(value, other):
            return False
    return True


def less(left: Any, right: Any) -> bool:
    """CEL `<` over numbers (across int, uint, double), strings, bytes and bools."""
    kind = type(left)
    other = type(right)
    if kind in _NUMERIC and other in _NUMERIC:
        if kind is float or other is float:
            a, b = float(left), float(right)
            if math.isnan(a) or math.isnan(b):
                # The reference has no ordering for NaN.
                raise no_overload("_<_", left, right)
            return a < b
        return bool(left < right)
    if kind is other and kind in (str, bytes, bool):
        return bool(left < right)
    raise no_overload("_<_", left, right)


def less_equal(left: Any, right: Any) -> bool:
    """CEL `<=`."""
    return less(left, right) or equals(left, right)


def greater(left: Any, right: Any) -> bool:
    """CEL `>`."""
    return less(right, left)


def greater_equal(left: Any, right: Any) -> bool:
    """CEL `>=`."""
    return less(right, left) or equals(left, right)


# --- maps, lists, membership --------------------------------------------------------------------


def check_map_key(key: Any) -> None:
    """Raise unless `key` can be a CEL map key (int, uint, bool or string)."""
    if type(key) not in _KEY_TYPES:
        raise ExpressionEvalError(
            f"a value of type {type_name(key)} cannot be a map key; "
            "keys are int, uint, bool or string"
        )


def map_lookup(mapping: dict[Any, Any], key: Any) -> tuple[bool, Any]:
    """Find `key` in a CEL map with CEL's strict key typing (`1`, `1u` and `true` differ)."""
    if type(key) is str:
        if key in mapping:
            return True, mapping[key]
        return False, None
    check_map_key(key)
    for candidate, value in mapping.items():
        if type(candidate) is type(key) and candidate == key:
            return True, value
    return False, None


def build_map(entries: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A CEL map literal; a repeated key keeps its last value, as in the reference."""
    out: dict[Any, Any] = {}
    for key, value in entries:
        check_map_key(key)
        if type(key) is not str and key in out:
            found, _ = map_lookup(out, key)
            if not found:
                raise ExpressionEvalError(
                    f"map literal mixes keys of different types that Python cannot keep apart "
                    f"({type_name(key)} {key!r}); use keys of one type"
                )
        out[key] = value
    return out


def index(container: Any, key: Any) -> Any:
    """CEL `container[key]` on a map or a list."""
    kind = type(container)
    if kind is dict:
        found, value = map_lookup(container, key)
        if found:
            return value
        raise ExpressionEvalError(f"no such key: {key!r}")
    if kind is list:
        if type(key) is int or type(key) is UInt:
            if 0 <= key < len(container):
                return container[key]
            raise ExpressionEvalError(
                f"index {key} out of range for a list of size {len(container)}"
            )
        raise no_overload("_[_]", container, key)
    raise no_overload("_[_]", container, key)


def select(container: Any, name: str) -> Any:
    """CEL `container.name`: a map lookup of the string key `name`."""
    if type(container) is dict:
        if name in container:
            return container[name]
        raise ExpressionEvalError(f"no such key: {name!r}")
    raise ExpressionEvalError(f"cannot select field {name!r} on a {type_name(container)}")


def has(container: Any, name: str) -> bool:
    """CEL `has(container.name)`: whether the map has the key `name`."""
    if type(container) is dict:
        return name in container
    raise ExpressionEvalError(f"has() needs a map, got a {type_name(container)}")


def contains(container: Any, item: Any) -> bool:
    """CEL `item in container`: list membership or map key presence."""
    kind = type(container)
    if kind is list:
        if type(item) is str:
            return any(type(element) is str and element == item for element in container)
        return any(equals(item, element) for element in container)
    if kind is dict:
        return map_lookup(container, item)[0]
    raise no_overload("@in", item, container)


def iteration_range(container: Any) -> Any:
    """The elements a comprehension macro visits: a list's items or a map's keys."""
    kind = type(container)
    if kind is list:
        return container
    if kind is dict:
        return list(container)
    raise ExpressionEvalError(
        f"a comprehension needs a list or a map to iterate over, got a {type_name(container)}"
    )


def size(value: Any) -> int:
    """CEL `size()`. For strings it counts UTF-8 bytes, as the reference does."""
    kind = type(value)
    if kind is str:
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    if kind is list or kind is dict or kind is bytes:
        return len(value)
    raise no_overload("size", value)


# --- arithmetic ---------------------------------------------------------------------------------


def add(left: Any, right: Any) -> Any:
    """CEL `+` on numbers of one type, strings, bytes and lists."""
    kind = type(left)
    if kind is type(right):
        if kind is int:
            return _check_int(left + right, "+")
        if kind is float or kind is str or kind is bytes:
            return left + right
        if kind is list:
            return [*left, *right]
        if kind is UInt:
            return _check_uint(left + right, "+")
    raise no_overload("_+_", left, right)


def subtract(left: Any, right: Any) -> Any:
    """CEL `-` on numbers of one type."""
    kind = type(left)
    if kind is type(right):
        if kind is int:
            return _check_int(left - right, "-")
        if kind is float:
            return left - right
        if kind is UInt:
            return _check_uint(left - right, "-")
    raise no_overload("_-_", left, right)


def multiply(left: Any, right: Any) -> Any:
    """CEL `*` on numbers of one type."""
    kind = type(left)
    if kind is type(right):
        if kind is int:
            return _check_int(left * right, "*")
        if kind is float:
            return left * right
        if kind is UInt:
            return _check_uint(left * right, "*")
    raise no_overload("_*_", left, right)


def divide(left: Any, right: Any) -> Any:
    """CEL `/`: integer division truncates toward zero; double division follows IEEE 754."""
    kind = type(left)
    if kind is type(right):
        if kind is int or kind is UInt:
            if right == 0:
                raise ExpressionEvalError("division by zero")
            quotient = abs(left) // abs(right)
            if (left < 0) != (right < 0):
                quotient = -quotient
            return _check_int(quotient, "/") if kind is int else UInt(quotient)
        if kind is float:
            if right == 0.0:
                if left == 0.0 or math.isnan(left):
                    return math.nan
                return math.copysign(math.inf, left) * math.copysign(1.0, right)
            return left / right
    raise no_overload("_/_", left, right)


def modulo(left: Any, right: Any) -> Any:
    """CEL `%` on ints and uints: the remainder takes the sign of the dividend."""
    kind = type(left)
    if kind is type(right) and (kind is int or kind is UInt):
        if right == 0:
            raise ExpressionEvalError("modulo by zero")
        if kind is int and left == INT_MIN and right == -1:
            # The reference reports this as an overflow.
            raise ExpressionEvalError("int overflow in %")
        remainder = abs(left) % abs(right)
        if left < 0:
            remainder = -remainder
        return remainder if kind is int else UInt(remainder)
    raise no_overload("_%_", left, right)


def negate(value: Any) -> Any:
    """CEL unary `-` on int and double."""
    kind = type(value)
    if kind is int:
        # The reference wraps -(INT_MIN) around to INT_MIN instead of reporting an overflow.
        return value if value == INT_MIN else -value
    if kind is float:
        return -value
    raise no_overload("-_", value)


def logical_not(value: Any) -> bool:
    """CEL `!` on bool."""
    if value is True:
        return False
    if value is False:
        return True
    raise no_overload("!_", value)


# --- conversions --------------------------------------------------------------------------------


def to_int(value: Any) -> Any:
    """CEL `int()` from int, uint, double (truncating) or a decimal string."""
    kind = type(value)
    if kind is int:
        return value
    if kind is UInt:
        return _check_int(int(value), "int()")
    if kind is float:
        if math.isnan(value) or not (float(INT_MIN) < value < float(INT_MAX)):
            raise ExpressionEvalError(f"int() overflow: {value} is out of the int range")
        return int(value)
    if kind is str:
        if _INT_TEXT.fullmatch(value) is None:
            raise ExpressionEvalError(f"int() cannot parse {value!r} as a decimal integer")
        return _check_int(int(value), "int()")
    raise no_overload("int", value)


def to_double(value: Any) -> Any:
    """CEL `double()` from int, uint, double or a decimal string (`inf` and `nan` accepted)."""
    kind = type(value)
    if kind is float:
        return value
    if kind is int or kind is UInt:
        return float(value)
    if kind is str:
        if _DOUBLE_TEXT.fullmatch(value) is None:
            raise ExpressionEvalError(f"double() cannot parse {value!r} as a number")
        return float(value)
    raise no_overload("double", value)


def to_string(value: Any) -> Any:
    """CEL `string()` from string, int, uint, double or bytes (invalid UTF-8 is replaced)."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int or kind is UInt:
        return str(int(value))
    if kind is float:
        return format_double(value)
    if kind is bytes:
        return value.decode("utf-8", errors="replace")
    # The reference has no string() for bool or null.
    raise no_overload("string", value)


def format_double(value: float) -> str:
    """A double as the reference writes it: shortest round-trip digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
