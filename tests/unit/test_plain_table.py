"""render.plain_table: the table large outcomes are drawn as (rich is too slow per row)."""

from __future__ import annotations

from drainctl.render import plain_table


def test_columns_line_up_two_spaces_apart() -> None:
    """Each column is as wide as its widest cell; trailing blanks are dropped."""
    text = plain_table(["type", "dyno"], [["worker", "worker.1"], ["clock", ""]])
    assert text.splitlines() == ["type    dyno", "worker  worker.1", "clock"]


def test_control_characters_never_reach_the_terminal() -> None:
    """A registry entry's escape sequence is shown as '?', not interpreted."""
    text = plain_table(["dyno"], [["\x1b[31mred\x07"]])
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "?[31mred?" in text
