"""`ordersaga run` and `ordersaga audit` through the real command line (CONTRACT sections 1-2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .conftest import EXAMPLES, ordersaga

SEED = (
    "Order 123, User 456, Items: [{A, 2}, {B, 1}], Payment: CreditCard,"
    " Address: 1 Main St, Springfield, US\n"
    "Order 456, User 789, Items: [{C, 1}], Payment: PayPal, Address: 5 Elm St, Shelbyville, US\n"
)


def test_the_original_example_prints_the_original_output(data: Path) -> None:
    result = ordersaga("run", EXAMPLES / "seed.txt", "--data-dir", data)
    assert result.code == 0, result.err
    assert result.out == "Order 123 confirmed\nOrder 456 failed\n"
    assert "orders 2: 1 confirmed, 1 failed" in result.err
    assert ordersaga("audit", "--data-dir", data).code == 0


def test_stdin_json_output_and_summary(data: Path) -> None:
    result = ordersaga("run", "--data-dir", data, "--json", input=SEED)
    assert result.code == 0, result.err
    records = [json.loads(line) for line in result.lines]
    assert [(r["order_id"], r["status"]) for r in records] == [
        ("123", "confirmed"),
        ("456", "failed"),
    ]
    assert records[0]["reason"] is None and "stock" in records[1]["reason"]
    assert {"retries", "compensations"} <= set(records[0])
    for word in ("orders", "confirmed", "failed", "retries", "compensations", "orders/s"):
        assert word in result.err


def test_resubmission_replays_and_other_content_fails_also_across_runs(data: Path) -> None:
    first = ordersaga("run", "--data-dir", data, input=SEED + SEED)
    assert first.lines == ["Order 123 confirmed", "Order 456 failed"] * 2
    changed = SEED.replace("{A, 2}", "{A, 3}")
    second = ordersaga("run", "--data-dir", data, input=SEED + changed)
    assert second.lines == [
        "Order 123 confirmed",
        "Order 456 failed",
        "Order 123 failed",  # the same id with other content
        "Order 456 failed",
    ]
    assert "2 replayed" in second.err or "replayed" in second.err
    audit = ordersaga("audit", "--data-dir", data, "--json")
    assert audit.code == 0, audit.out
    # The changed order 123 did not touch the first one's effects: 2 of A sold, not 3.
    report = json.loads(audit.out)
    assert report["ok"] is True


def test_unreadable_lines_exit_65_and_the_rest_is_processed(data: Path) -> None:
    stream = (
        b"\xef\xbb\xbf# a comment after a BOM\r\n"
        b"\r\n"
        b"garbage that names no order\n"
        b'{"order_id": "9", "user_id": 1, "items": [\n'
        + b"Order 77, User 1, Items: [{A, 0}], Payment: PayPal, Address: X, Y, US\n"
        + b"\xff\xfe invalid utf-8\n"
        + b"Order 78 "
        + b"x" * (1024 * 1024 + 10)
        + b"\n"
        + SEED.encode()
    )
    result = ordersaga("run", "--data-dir", data, input=stream)
    assert result.code == 65, result.err
    assert result.lines == ["Order 77 failed", "Order 123 confirmed", "Order 456 failed"]
    assert re.search(r"line 3\b", result.err) and re.search(r"line 4\b", result.err)
    assert re.search(r"line 5\b.*77", result.err)
    assert re.search(r"line 6\b", result.err) and re.search(r"line 7\b", result.err)
    assert "Traceback" not in result.err


def test_usage_errors_exit_2_with_one_line(data: Path, tmp_path: Path) -> None:
    bad_flag = ordersaga("run", "--no-such-flag", "--data-dir", data)
    assert bad_flag.code == 2 and len(bad_flag.err.strip().splitlines()) == 1
    missing_world = ordersaga("run", "--world", tmp_path / "nope.json", "--data-dir", data)
    assert missing_world.code == 2 and "Traceback" not in missing_world.err
    assert len(missing_world.err.strip().splitlines()) == 1
    broken = tmp_path / "broken.json"
    broken.write_text('{"items": {"A": {"price": "1.234", "stock": 1, "weight_kg": 1}}}')
    bad_world = ordersaga("run", "--world", broken, "--data-dir", data, input=SEED)
    assert bad_world.code == 2 and "Traceback" not in bad_world.err
    assert bad_world.out == ""


def test_unordered_prints_every_outcome_once(data: Path) -> None:
    result = ordersaga("run", "--data-dir", data, "--unordered", input=SEED)
    assert sorted(result.lines) == ["Order 123 confirmed", "Order 456 failed"]
