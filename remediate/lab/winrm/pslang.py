"""The lab's PowerShell language: a tokenizer and a parser for the subset the product emits.

The subset (see `remediate.genesys.powershell` for the scripts themselves): statements separated by
newlines or `;`; `$var = <pipeline>`; `exit <n>`; pipelines of commands (`Name -Param value ...`,
`& 'program' args`) whose first element may be an expression; expressions made of single-quoted
strings (with `''` escapes, and the typographic quotes PowerShell also accepts), numbers, bare words
in command arguments, variables, member access, method calls, `[type]::Method(...)`, `(...)`
sub-pipelines, `{...}` script blocks, comma lists, and the `-f` and comparison operators. Anything
outside it is a parse error, reported as PowerShell reports one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# PowerShell accepts these as single quotes too (and doubles any of them to escape it).
SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
_WORD_STOP = set(" \t\r\n;|(){},=\"$'\u2018\u2019\u201a\u201b")
BINARY_OPERATORS = frozenset(
    {"-f", "-eq", "-ne", "-ge", "-gt", "-le", "-lt", "-like", "-notlike", "-match", "-and", "-or"}
)


class ParseError(Exception):
    """The script is not in the supported subset (or not PowerShell at all)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


@dataclass(frozen=True)
class Token:
    kind: str  # string number variable word dash type newline ; | ( ) { } , = . :: & [ ]
    text: str
    position: int
    spaced: bool  # whitespace precedes it: `$a.b` is member access, `$a .b` is not


def _read_single_quoted(script: str, start: int) -> tuple[str, int]:
    """Return the value of the single-quoted string opening at `start` and the index after it."""
    value: list[str] = []
    index = start + 1
    while index < len(script):
        char = script[index]
        if char in SINGLE_QUOTES:
            if index + 1 < len(script) and script[index + 1] in SINGLE_QUOTES:
                value.append(script[index + 1])
                index += 2
                continue
            return "".join(value), index + 1
        value.append(char)
        index += 1
    raise ParseError("The string is missing the terminator: '.", start)


def tokenize(script: str) -> list[Token]:
    tokens: list[Token] = []
    index = 0
    spaced = True
    while index < len(script):
        char = script[index]
        if char in " \t":
            index += 1
            spaced = True
            continue
        if char == "#":
            while index < len(script) and script[index] not in "\r\n":
                index += 1
            continue
        start = index
        if char in "\r\n":
            while index < len(script) and script[index] in "\r\n \t":
                index += 1
            tokens.append(Token("newline", "\n", start, spaced))
        elif char in SINGLE_QUOTES:
            value, index = _read_single_quoted(script, index)
            tokens.append(Token("string", value, start, spaced))
        elif char == '"':
            end = script.find('"', index + 1)
            if end < 0:
                raise ParseError('The string is missing the terminator: ".', start)
            value = script[index + 1 : end]
            if "$" in value or "`" in value:
                raise ParseError("expandable strings are outside the lab's PowerShell", start)
            tokens.append(Token("string", value, start, spaced))
            index = end + 1
        elif char == "$":
            index += 1
            while index < len(script) and (script[index].isalnum() or script[index] in "_?"):
                index += 1
            name = script[start + 1 : index]
            if not name:
                raise ParseError("Variable reference is not valid.", start)
            tokens.append(Token("variable", name, start, spaced))
        elif char == ":" and script.startswith("::", index):
            tokens.append(Token("::", "::", start, spaced))
            index += 2
        elif char == "[" and tokens and not spaced and tokens[-1].kind == "word":
            raise ParseError("Unexpected token '['.", start)
        elif char == "[":
            end = script.find("]", index)
            if end < 0:
                raise ParseError("Missing ] at end of type token.", start)
            tokens.append(Token("type", script[index + 1 : end].strip(), start, spaced))
            index = end + 1
        elif char in ";|(){},=&.":
            tokens.append(Token(char, char, start, spaced))
            index += 1
        else:
            member_name = bool(tokens) and tokens[-1].kind == "." and not spaced
            while index < len(script) and script[index] not in _WORD_STOP:
                if member_name and not (script[index].isalnum() or script[index] == "_"):
                    break
                index += 1
            if index == start:
                raise ParseError(f"Unexpected character '{char}'.", start)
            text = script[start:index]
            if text.startswith("-") and len(text) > 1 and not text[1].isdigit():
                tokens.append(Token("dash", text, start, spaced))
            elif text.lstrip("-").isdigit():
                tokens.append(Token("number", text, start, spaced))
            else:
                tokens.append(Token("word", text, start, spaced))
        spaced = False
    return tokens


# The syntax tree


@dataclass(frozen=True)
class Literal:
    value: object


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class Member:
    target: Expression
    name: str


@dataclass(frozen=True)
class MethodCall:
    target: Expression
    name: str
    arguments: tuple[Expression, ...]


@dataclass(frozen=True)
class StaticCall:
    type_name: str
    name: str
    arguments: tuple[Expression, ...]


@dataclass(frozen=True)
class ArrayLiteral:
    items: tuple[Expression, ...]


@dataclass(frozen=True)
class BinaryOperation:
    operator: str
    left: Expression
    right: Expression


@dataclass(frozen=True)
class SubPipeline:
    pipeline: Pipeline


@dataclass(frozen=True)
class ScriptBlock:
    statements: tuple[Statement, ...]


Expression = (
    Literal
    | Variable
    | Member
    | MethodCall
    | StaticCall
    | ArrayLiteral
    | BinaryOperation
    | SubPipeline
    | ScriptBlock
)


@dataclass(frozen=True)
class Parameter:
    name: str  # without the dash, as written


@dataclass(frozen=True)
class Command:
    name: str
    arguments: tuple[Parameter | Expression, ...]
    invoked: bool = False  # `& 'program'`: always an external program or command by name
    position: int = 0


@dataclass(frozen=True)
class Pipeline:
    elements: tuple[Command | Expression, ...]


@dataclass(frozen=True)
class Assignment:
    variable: str
    value: Pipeline


@dataclass(frozen=True)
class Exit:
    code: Expression | None


Statement = Assignment | Exit | Pipeline


@dataclass
class _Parser:
    tokens: list[Token]
    script: str
    index: int = 0
    depth: int = field(default=0)

    def peek(self, offset: int = 0) -> Token | None:
        position = self.index + offset
        return self.tokens[position] if position < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise ParseError("Unexpected end of script.", len(self.script))
        self.index += 1
        return token

    def expect(self, kind: str) -> Token:
        token = self.next()
        if token.kind != kind:
            raise ParseError(f"Missing '{kind}' before '{token.text}'.", token.position)
        return token

    def at(self, *kinds: str) -> bool:
        token = self.peek()
        return token is not None and token.kind in kinds

    def statements(self, closing: str | None) -> tuple[Statement, ...]:
        result: list[Statement] = []
        while True:
            while self.at("newline", ";"):
                self.index += 1
            token = self.peek()
            if token is None:
                if closing is not None:
                    raise ParseError(
                        f"Missing closing '{closing}' in statement block.", len(self.script)
                    )
                return tuple(result)
            if closing is not None and token.kind == closing:
                self.index += 1
                return tuple(result)
            result.append(self.statement())
            if not self.at("newline", ";", closing or "newline") and self.peek() is not None:
                token = self.next()
                raise ParseError(
                    f"Unexpected token '{token.text}' in expression or statement.", token.position
                )

    def statement(self) -> Statement:
        token = self.peek()
        assert token is not None
        if token.kind == "variable" and self.peek(1) is not None and self.peek(1).kind == "=":  # type: ignore[union-attr]
            self.index += 2
            return Assignment(token.text, self.pipeline())
        if token.kind == "word" and token.text.lower() == "exit":
            self.index += 1
            if self.at("newline", ";", "}") or self.peek() is None:
                return Exit(None)
            return Exit(self.expression())
        if token.kind == "word" and token.text.lower() in {
            "if",
            "foreach",
            "while",
            "switch",
            "for",
            "function",
            "try",
        }:
            raise ParseError(
                f"'{token.text}' statements are outside the lab's PowerShell", token.position
            )
        return self.pipeline()

    def pipeline(self) -> Pipeline:
        elements: list[Command | Expression] = [self.element(first=True)]
        while self.at("|"):
            self.index += 1
            while self.at("newline"):
                self.index += 1
            elements.append(self.element(first=False))
        return Pipeline(tuple(elements))

    def element(self, first: bool) -> Command | Expression:
        token = self.peek()
        if token is None:
            raise ParseError("An empty pipe element is not allowed.", len(self.script))
        if token.kind == "&":
            self.index += 1
            name = self.primary()
            if not isinstance(name, Literal):
                raise ParseError("The call operator needs a program name.", token.position)
            return Command(
                str(name.value), self.command_arguments(), invoked=True, position=token.position
            )
        if token.kind == "word":
            self.index += 1
            return Command(token.text, self.command_arguments(), position=token.position)
        if not first:
            raise ParseError(
                "Expressions are only allowed as the first element of a pipeline.", token.position
            )
        return self.expression()

    def command_arguments(self) -> tuple[Parameter | Expression, ...]:
        arguments: list[Parameter | Expression] = []
        while not self.at("newline", ";", "|", ")", "}") and self.peek() is not None:
            token = self.peek()
            assert token is not None
            if token.kind == "dash":
                self.index += 1
                arguments.append(Parameter(token.text[1:]))
            elif token.kind in ("word", "number") and not self._continues_expression():
                self.index += 1
                value: object = int(token.text) if token.kind == "number" else token.text
                arguments.append(self._comma_tail(Literal(value)))
            else:
                arguments.append(self._comma_tail(self.postfix()))
        return tuple(arguments)

    def _continues_expression(self) -> bool:
        following = self.peek(1)
        return following is not None and following.kind == "," and not following.spaced

    def _comma_tail(self, first: Expression) -> Expression:
        if not self.at(","):
            return first
        items = [first]
        while self.at(","):
            self.index += 1
            token = self.peek()
            if token is not None and token.kind in ("word", "number"):
                self.index += 1
                items.append(Literal(int(token.text) if token.kind == "number" else token.text))
            else:
                items.append(self.postfix())
        return ArrayLiteral(tuple(items))

    def expression(self) -> Expression:
        left = self.comma_list()
        while self.at("dash") and self.peek().text.lower() in BINARY_OPERATORS:  # type: ignore[union-attr]
            operator = self.next().text.lower()
            while self.at("newline"):
                self.index += 1
            left = BinaryOperation(operator, left, self.comma_list())
        if self.at("dash"):
            token = self.next()
            raise ParseError(
                f"Unexpected token '{token.text}' in expression or statement.", token.position
            )
        return left

    def comma_list(self) -> Expression:
        items = [self.postfix()]
        while self.at(","):
            self.index += 1
            items.append(self.postfix())
        return items[0] if len(items) == 1 else ArrayLiteral(tuple(items))

    def postfix(self) -> Expression:
        target = self.primary()
        while self.at(".") and not self.peek().spaced:  # type: ignore[union-attr]
            self.index += 1
            name = self.next()
            if name.kind not in ("word", "number"):
                raise ParseError("Missing property name after reference operator.", name.position)
            if self.at("(") and not self.peek().spaced:  # type: ignore[union-attr]
                target = MethodCall(target, name.text, self.call_arguments())
            else:
                target = Member(target, name.text)
        return target

    def call_arguments(self) -> tuple[Expression, ...]:
        self.expect("(")
        arguments: list[Expression] = []
        while not self.at(")"):
            arguments.append(self.postfix_or_binary())
            if self.at(","):
                self.index += 1
            elif not self.at(")"):
                token = self.next()
                raise ParseError(
                    f"Missing ')' in method call before '{token.text}'.", token.position
                )
        self.index += 1
        return tuple(arguments)

    def postfix_or_binary(self) -> Expression:
        left = self.postfix()
        while self.at("dash") and self.peek().text.lower() in BINARY_OPERATORS:  # type: ignore[union-attr]
            operator = self.next().text.lower()
            left = BinaryOperation(operator, left, self.postfix())
        return left

    def primary(self) -> Expression:
        token = self.next()
        if token.kind == "string":
            return Literal(token.text)
        if token.kind == "number":
            return Literal(int(token.text))
        if token.kind == "variable":
            return Variable(token.text)
        if token.kind == "(":
            self.depth += 1
            inner = self.pipeline()
            self.depth -= 1
            self.expect(")")
            return SubPipeline(inner)
        if token.kind == "{":
            return ScriptBlock(self.statements("}"))
        if token.kind == "type":
            if not self.at("::"):
                raise ParseError(
                    f"Type casts ([{token.text}]) are outside the lab's PowerShell", token.position
                )
            self.index += 1
            name = self.next()
            return StaticCall(token.text, name.text, self.call_arguments())
        if token.kind == "word":
            return Literal(token.text)
        raise ParseError(
            f"Unexpected token '{token.text}' in expression or statement.", token.position
        )


def parse(script: str) -> tuple[Statement, ...]:
    parser = _Parser(tokenize(script), script)
    return parser.statements(None)
