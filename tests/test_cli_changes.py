"""Working a deal from the terminal: the same writer, guards and roles as the API."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner

from hub.cli import main
from tests.test_cli import config, seed  # noqa: F401  (the fixture)


def hub(path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(path), *args])
    return result.exit_code, result.output


def test_a_deal_is_worked_from_the_terminal_and_its_card_shows_every_step(config):  # noqa: F811
    seed(config)
    code, out = hub(config, "deals", "move", "1", "qualified", "--as", "anna@example.com")
    assert code == 1  # the example pipeline's stage rules: the card first
    assert "Этап «Собрать требования» требует: сегмент" in out
    assert hub(config, "deals", "set", "1", "--segment", "Розница", "--amount", "90 000")[0] == 0
    assert hub(config, "deals", "move", "1", "qualified", "--as", "anna@example.com") == (
        0,
        "deal 1 moved to qualified\n",
    )
    code, out = hub(config, "tasks", "add", "1", "Отправить КП", "--due", "+2h")
    assert code == 0 and "task 2 added to deal 1" in out
    assert hub(config, "tasks", "done", "1", "--result", "дозвонились")[0] == 0
    assert hub(config, "notes", "add", "1", "Сравнивает с конкурентом")[0] == 0
    code, out = hub(config, "deals", "lost", "1", "--reason", "Выбрали конкурента")
    assert code == 1 and "требует указать конкурента" in out
    code, out = hub(
        config, "deals", "lost", "1", "--reason", "Выбрали конкурента", "--competitor", "Керама"
    )
    assert code == 0, out
    code, card = hub(config, "deals", "show", "1")
    assert code == 0, card
    assert "(lost)" in card and "lost: Выбрали конкурента; competitor Керама" in card
    assert "8 (912) 345-67-89  (+79123456789)" in card  # as entered, and normalized
    assert "new → qualified  anna@example.com" in card
    assert "#1 Связаться с клиентом (done" in card and "— дозвонились" in card
    assert "Сравнивает с конкурентом" in card
    events = card.split("events:")[1]
    assert [line.split()[2] for line in events.strip().splitlines()] == [
        "deal.created",
        "task.created",
        "activity.logged",
        "deal.updated",
        "deal.stage_changed",
        "task.created",
        "task.completed",
        "note.added",
        "deal.lost",
        "task.completed",  # the lost stage's on_enter closes the open task
    ]


def test_a_refused_command_prints_every_reason_and_exits_1(config):  # noqa: F811
    seed(config)
    code, out = hub(config, "deals", "move", "1", "won")
    assert code == 1 and "a deal is closed as won with its own action" in out
    code, out = hub(config, "deals", "move", "1", "nowhere")
    assert code == 1 and "has no stage 'nowhere'" in out
    code, out = hub(config, "deals", "won", "1")  # two rules at once
    assert code == 1
    assert "Выиграть сделку можно с этапа «Договор обсуждаем»" in out
    assert "Сделку нельзя выиграть без суммы" in out
    code, out = hub(config, "deals", "won", "1", "--amount", "120 000,50")
    assert code == 1 and "Сделку нельзя выиграть без суммы" not in out
    code, out = hub(
        config,
        "deals",
        "won",
        "1",
        "--amount",
        "120000",
        "--override",
        "оплата пришла сразу",
        "--as",
        "anna@example.com",
    )
    assert code == 1 and "Обойти правило может руководитель" in out
    code, out = hub(
        config,
        "deals",
        "won",
        "1",
        "--amount",
        "120000",
        "--override",
        "оплата пришла сразу",
        "--as",
        "olga@example.com",
    )
    assert code == 0, out
    assert "правило обойдено: оплата пришла сразу" in hub(config, "deals", "show", "1")[1]


def test_a_manager_cannot_touch_another_managers_deal_from_the_terminal(config):  # noqa: F811
    seed(config)  # the one deal is anna's (round-robin starts with her)
    code, out = hub(config, "deals", "set", "1", "--segment", "Опт", "--as", "dmitry@example.com")
    assert code == 1 and "no deal 1" in out
    code, out = hub(config, "notes", "add", "1", "x", "--as", "dmitry@example.com")
    assert code == 1 and "no deal 1" in out
    code, out = hub(config, "deals", "show", "1", "--as", "dmitry@example.com")
    assert code == 1 and "no deal 1" in out
    code, out = hub(config, "deals", "move", "1", "qualified", "--as", "nobody@example.com")
    assert code != 0 and "no active user nobody@example.com" in out


def test_users_list_reads_the_store_and_writes_nothing(config):  # noqa: F811
    seed(config)
    database = config.parent / "var" / "hub.db"
    before = sqlite3.connect(database).execute("PRAGMA data_version").fetchone()
    mtime = database.stat().st_mtime_ns
    code, out = hub(config, "users", "list")
    assert code == 0 and "anna@example.com" in out
    assert database.stat().st_mtime_ns == mtime
    assert sqlite3.connect(database).execute("PRAGMA data_version").fetchone() == before


def test_companies_are_listed_with_their_people_and_deals(config):  # noqa: F811
    seed(config)
    code, out = hub(config, "companies", "list")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["ID", "NAME", "TAX"]
