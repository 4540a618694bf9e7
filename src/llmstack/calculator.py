"""The python tool the chat model may call: a restricted calculator, not a Python interpreter.

    from llmstack.calculator import calculate
    calculate("48/2")                        # "24"
    calculate("'strawberry'.count('r')")     # "3"
    calculate("__import__('os')")            # "error: name '__import__' is not allowed"

The expression is parsed with `ast` and evaluated by the small interpreter below, never by `eval`,
so nothing the model writes can reach a name, an attribute, a module or a file: only numeric and
string literals, arithmetic, comparisons, boolean logic, indexing/slicing of strings, a few pure
builtins (`len`, `abs`, `round`, `min`, `max`, `int`, `float`, `str`) and a whitelist of string
methods (`.count`, `.upper`, ...). There are no loops, comprehensions or lambdas to run, so the
work is bounded by the expression's size; each operation checks the size of what it would build
before building it (big exponents, long strings, huge integers) and a wall-clock deadline is
checked at every node. Anything else gets a one-line "error: ..." the model sees as the tool output.
"""

from __future__ import annotations

import ast
import math
import operator
import time
from collections.abc import Callable
from typing import Any

MAX_EXPR_CHARS = 1_000  # longer tool calls are refused before parsing
MAX_NODES = 200  # syntax-tree nodes: bounds the evaluation work
MAX_INT_BITS = 4_096  # ~1,233 decimal digits; int(str) conversions stay far below Python's limit
MAX_STR_CHARS = 10_000  # any intermediate string
MAX_RESULT_CHARS = 1_000  # what is fed back to the model (it costs context)
TIMEOUT_S = 0.5

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: operator.contains(b, a),
    ast.NotIn: lambda a, b: not operator.contains(b, a),
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "int": int,
    "float": float,
    "str": str,
}
# Pure str methods whose result is at most as long as the receiver (replace is checked separately).
_STR_METHODS = frozenset(
    "count upper lower title capitalize swapcase strip lstrip rstrip startswith endswith find rfind "
    "index rindex isdigit isalpha isalnum isspace isupper islower replace zfill center ljust rjust".split()
)
_PADDING_METHODS = frozenset({"zfill", "center", "ljust", "rjust"})


class CalculatorError(Exception):
    """A refusal; its message is what the model sees after "error: "."""


def _format(value: Any) -> str:
    """Tool output text: integral floats print as integers, the way the training data writes them."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return repr(round(value, 10)) if math.isfinite(value) else repr(value)
    return str(value)


class _Evaluator:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def check_size(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, complex):  # e.g. (-8) ** 0.5: outside what the tool answers
            raise CalculatorError("complex result")
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise CalculatorError(f"number too large (over {MAX_INT_BITS} bits)")
        if isinstance(value, str) and len(value) > MAX_STR_CHARS:
            raise CalculatorError(f"string too long (over {MAX_STR_CHARS} characters)")
        return value

    def eval(self, node: ast.AST) -> Any:
        if time.monotonic() > self.deadline:
            raise CalculatorError("took too long")
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise CalculatorError(f"{type(node).__name__} is not allowed")
        return self.check_size(method(node))

    def visit_Expression(self, node: ast.Expression) -> Any:
        return self.eval(node.body)

    def visit_Constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, bool | int | float | str):
            return node.value
        raise CalculatorError(f"literal {type(node.value).__name__} is not allowed")

    def visit_Name(self, node: ast.Name) -> Any:
        raise CalculatorError(f"name {node.id!r} is not allowed")

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        raise CalculatorError(f"attribute access .{node.attr} is not allowed")

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        op = _UNARY.get(type(node.op))
        if op is None:
            raise CalculatorError(f"operator {type(node.op).__name__} is not allowed")
        operand = self.eval(node.operand)
        if not isinstance(operand, bool | int | float) and not isinstance(node.op, ast.Not):
            raise CalculatorError(f"unary {type(node.op).__name__} needs a number")
        return op(operand)

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        op = _BINARY.get(type(node.op))
        if op is None:
            raise CalculatorError(f"operator {type(node.op).__name__} is not allowed")
        left, right = self.eval(node.left), self.eval(node.right)
        self._check_binop_cost(node.op, left, right)
        try:
            return op(left, right)
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except OverflowError:
            raise CalculatorError("result out of range") from None
        except (TypeError, ValueError) as err:
            raise CalculatorError(str(err)) from None

    @staticmethod
    def _check_binop_cost(op: ast.operator, left: Any, right: Any) -> None:
        """Refuse before computing anything whose result would be too big to hold or to print."""
        nums = (bool, int, float)
        if isinstance(op, ast.Pow) and isinstance(left, nums) and isinstance(right, nums):
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                if abs(left) > 1 and right * math.log2(abs(left)) > MAX_INT_BITS:
                    raise CalculatorError(f"exponent too large ({left}**{right})")
            elif abs(right) > 10_000:
                raise CalculatorError(f"exponent too large ({right})")
        if isinstance(op, ast.Mult):
            for s, n in ((left, right), (right, left)):
                if isinstance(s, str) and isinstance(n, int) and len(s) * max(n, 0) > MAX_STR_CHARS:
                    raise CalculatorError(f"string too long (over {MAX_STR_CHARS} characters)")
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS + 64:
                    raise CalculatorError(f"number too large (over {MAX_INT_BITS} bits)")
        if isinstance(op, ast.Add) and isinstance(left, str) and isinstance(right, str):
            if len(left) + len(right) > MAX_STR_CHARS:
                raise CalculatorError(f"string too long (over {MAX_STR_CHARS} characters)")
        if isinstance(op, ast.Mod) and isinstance(left, str):
            raise CalculatorError("string formatting with % is not allowed")

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        is_and = isinstance(node.op, ast.And)
        value: Any = None
        for expr in node.values:
            value = self.eval(expr)
            if bool(value) != is_and:  # short-circuit like Python
                return value
        return value

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.eval(node.left)
        for op_node, right_node in zip(node.ops, node.comparators, strict=True):
            op = _COMPARE.get(type(op_node))
            if op is None:
                raise CalculatorError(f"comparison {type(op_node).__name__} is not allowed")
            right = self.eval(right_node)
            try:
                ok = op(left, right)
            except TypeError as err:
                raise CalculatorError(str(err)) from None
            if not ok:
                return False
            left = right
        return True

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        target = self.eval(node.value)
        if not isinstance(target, str):
            raise CalculatorError("only strings can be indexed")
        if isinstance(node.slice, ast.Slice):
            parts = [None if p is None else self.eval(p) for p in (node.slice.lower, node.slice.upper, node.slice.step)]
            if any(p is not None and (not isinstance(p, int) or isinstance(p, bool)) for p in parts):
                raise CalculatorError("slice bounds must be integers")
            try:
                return target[slice(*parts)]
            except ValueError as err:
                raise CalculatorError(str(err)) from None
        index = self.eval(node.slice)
        if not isinstance(index, int) or isinstance(index, bool):
            raise CalculatorError("string index must be an integer")
        try:
            return target[index]
        except IndexError:
            raise CalculatorError("string index out of range") from None

    def visit_Call(self, node: ast.Call) -> Any:
        if node.keywords:
            raise CalculatorError("keyword arguments are not allowed")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise CalculatorError("*args are not allowed")
        func = node.func
        if isinstance(func, ast.Name):
            fn = _FUNCTIONS.get(func.id)
            if fn is None:
                raise CalculatorError(f"function {func.id!r} is not allowed")
            args = [self.eval(a) for a in node.args]
            if func.id in ("int", "float") and args and isinstance(args[0], str) and len(args[0]) > 100:
                raise CalculatorError("number string too long")
            if func.id == "round" and len(args) > 1 and isinstance(args[1], int) and abs(args[1]) > 100:
                # round(5, -10**9) would compute 10**(10**9) internally
                raise CalculatorError("round digits must be between -100 and 100")
            if func.id in ("min", "max") and len(args) < 2:
                raise CalculatorError(f"{func.id} needs at least two numbers here")
            return self._apply(fn, args)
        if isinstance(func, ast.Attribute):
            if func.attr not in _STR_METHODS:
                raise CalculatorError(f"method .{func.attr} is not allowed")
            receiver = self.eval(func.value)
            if type(receiver) is not str:
                raise CalculatorError(f"method .{func.attr} is only allowed on strings")
            args = [self.eval(a) for a in node.args]
            self._check_method_cost(receiver, func.attr, args)
            return self._apply(getattr(receiver, func.attr), args)
        raise CalculatorError("only whitelisted functions and string methods may be called")

    @staticmethod
    def _check_method_cost(receiver: str, name: str, args: list[Any]) -> None:
        if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            count = len(receiver) + 1 if args[0] == "" else receiver.count(args[0])
            if len(receiver) + count * (len(args[1]) - len(args[0])) > MAX_STR_CHARS:
                raise CalculatorError(f"string too long (over {MAX_STR_CHARS} characters)")
        if name in _PADDING_METHODS and args and isinstance(args[0], int) and args[0] > MAX_STR_CHARS:
            raise CalculatorError(f"string too long (over {MAX_STR_CHARS} characters)")

    @staticmethod
    def _apply(fn: Callable[..., Any], args: list[Any]) -> Any:
        try:
            return fn(*args)
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except OverflowError:
            raise CalculatorError("result out of range") from None
        except (TypeError, ValueError) as err:
            raise CalculatorError(str(err).splitlines()[0]) from None


def calculate(expression: str, timeout_s: float = TIMEOUT_S) -> str:
    """The tool output for `expression`: its value as text, or "error: <reason>" when refused."""
    expr = expression.strip()
    if not expr:
        return "error: empty expression"
    if len(expr) > MAX_EXPR_CHARS:
        return f"error: expression longer than {MAX_EXPR_CHARS} characters"
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as err:
        return f"error: not a valid expression ({err.msg})"
    except (RecursionError, MemoryError, ValueError):  # absurd nesting, NUL bytes
        return "error: expression too deeply nested or malformed"
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        return f"error: expression has more than {MAX_NODES} parts"
    try:
        value = _Evaluator(time.monotonic() + timeout_s).eval(tree)
    except CalculatorError as err:
        return f"error: {err}"
    except RecursionError:
        return "error: expression too deeply nested"
    text = _format(value)
    if len(text) > MAX_RESULT_CHARS:
        return f"error: result longer than {MAX_RESULT_CHARS} characters"
    return text
