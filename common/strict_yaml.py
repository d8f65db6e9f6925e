"""The operator's YAML files (the cameras file, the receivers file), read strictly: `load_strict_yaml`
refuses a repeated key (PyYAML keeps the last: a second receiver of one name silently replaced the
first), aliases, deep nesting and values their tags cannot hold, each as a one-line ConfigError that
names the file and where, never quoting a value (it may be a password)."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node

from common.credentials import mask_url
from common.errors import ConfigError

MAX_YAML_NESTING = 20
"""Deepest nesting of collections a file may have (a camera's roi point sits at depth 5). Deeper input
is refused before PyYAML's recursive composer can overflow the stack."""

MAX_NAME_CHARS = 40
"""A key or name from the file is shortened to this in a message."""


class YamlRefused(yaml.MarkedYAMLError):
    """Valid YAML that an operator's file may not use: a repeated key, an alias, too deep a nesting, a
    value its tag cannot hold."""


class StrictYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter:

    - a key repeated in one mapping is refused, naming the key and both lines (PyYAML keeps the last);
    - aliases (*name) are refused outright. A "billion laughs" document is a few hundred bytes of
      anchors and aliases that expand into billions of nodes once the loaded tree is walked (PyYAML
      shares the aliased objects, validation does not), so a size cap cannot stop it, and counting
      expansions is more code than the feature is worth: these files are short and written by hand
      and have no need of aliases (an anchor alone is harmless and allowed);
    - nesting deeper than MAX_YAML_NESTING is refused;
    - a scalar its tag cannot hold (2001-02-30, `!!int abc`, an empty `!!int`, an integer of more
      than 4300 digits) is a marked error instead of a ValueError or IndexError from deep inside
      the constructor.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.nesting_depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            alias = self.peek_event()
            raise YamlRefused(None, None, f"aliases (*{alias.anchor}) are not allowed here", alias.start_mark)
        starts_collection = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        if starts_collection:
            self.nesting_depth += 1
            if self.nesting_depth > MAX_YAML_NESTING:
                raise YamlRefused(
                    None, None, f"nested deeper than {MAX_YAML_NESTING} levels", self.peek_event().start_mark
                )
        try:
            return super().compose_node(parent, index)
        finally:
            if starts_collection:
                self.nesting_depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as error:
            kind = node.tag.removeprefix("tag:yaml.org,2002:")
            # Neither the value nor Python's quote of it is shown: it may be a password that no URL
            # pattern recognises (`!!float user:pw@`, found by the fuzz tests); the line and column say
            # where it is. Python's reason ("day is out of range for month") is kept unless it quotes it.
            reason = str(error).split(";")[0]
            reason = f": {reason}" if isinstance(error, ValueError | ArithmeticError) and "'" not in reason else ""
            raise YamlRefused(None, None, f"cannot read the value as {kind}{reason}", node.start_mark) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):  # `!!set` on a scalar: the safe constructor says so
            return super().construct_mapping(node, deep)
        first_line_of_key: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen_before = key in first_line_of_key
            except TypeError:
                continue  # an unhashable key: the safe constructor refuses it, with its position
            if seen_before:
                raise YamlRefused(
                    None,
                    None,
                    f"key {shorten(key)} repeated in one mapping (first at line {first_line_of_key[key]})",
                    key_node.start_mark,
                )
            first_line_of_key[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def shorten(value: Any) -> str:
    """`value` for a one-line message: its repr, URL passwords masked before it is cut to MAX_NAME_CHARS
    characters (a cut could leave a password with no '@' after it to show where it ends)."""
    shown = repr(mask_url(value) if isinstance(value, str) else value)
    return shown if len(shown) <= MAX_NAME_CHARS else shown[: MAX_NAME_CHARS - 3] + "..."


def describe_yaml_error(error: yaml.YAMLError) -> str:
    """A PyYAML error as one line, URL credentials masked: the problem (and its context) and where,
    line and column from 1."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return mask_url(" ".join(str(error).split()))
    what = error.problem or error.context or "unreadable"
    if error.context and error.problem:
        what = f"{error.problem} ({error.context})"
    mark = error.problem_mark or error.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return mask_url(" ".join(f"{what}{where}".split()))


def load_strict_yaml(text: str, origin: str) -> Any:
    """The document in `text` (the file `origin`'s), read by StrictYamlLoader; a one-line ConfigError
    naming `origin` for anything it refuses."""
    loader: StrictYamlLoader | None = None
    try:
        loader = StrictYamlLoader(text)  # its reader refuses non-printable characters at once
        return loader.get_single_data()
    except YamlRefused as error:
        raise ConfigError(f"{origin}: {describe_yaml_error(error)}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{origin}: not valid YAML: {describe_yaml_error(error)}") from None
    except RecursionError:  # defence in depth: the nesting cap should stop this first
        raise ConfigError(f"{origin}: nested too deeply") from None
    except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as error:
        # Defence in depth: the loader turns a value its tag cannot hold into a marked error; this
        # catches any construction PyYAML finishes later, outside `construct_object`.
        raise ConfigError(f"{origin}: not valid YAML: a value cannot be read ({type(error).__name__})") from None
    finally:
        if loader is not None:
            loader.dispose()
