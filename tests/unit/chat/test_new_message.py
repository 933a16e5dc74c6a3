# SPDX-License-Identifier: Apache-2.0
"""A message about to be stored carries exactly the columns of ``chat_messages``."""

from __future__ import annotations

from dataclasses import fields

from bastion.chat.models import ChatMessage, NewMessage


def test_a_new_message_has_every_column_of_the_table_and_nothing_else() -> None:
    # The chat path inserts a NewMessage column by column: a column added to the table and not
    # here would be missed (or refused) on every insert.
    assert {f.name for f in fields(NewMessage)} == {column.key for column in ChatMessage.__table__.c}
