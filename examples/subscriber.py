"""A worked subscriber: consume ``assets.annotated`` (one event per fully annotated asset) with confluent-kafka.

    python examples/subscriber.py --bootstrap 127.0.0.1:19092 [--prefix PREFIX] [--group my-app] [--max 10]

What it shows (docs/interfaces.md; the topic's contract is schemas/asyncapi.yaml / schemas/json/):
- a consumer GROUP with manual commits after each handled event (at-least-once on your side too);
- ``auto.offset.reset=earliest``: never ``latest`` on the embedded broker (tansu's ListOffsets is wrong);
- a short ``session.timeout.ms``: tansu answers JoinGroup after session.timeout/2, so 6 s means a 3 s join;
- deduplication by ``event_id`` (re-emissions are byte-identical), and ``supersedes`` for updates;
- reading the schema version before anything else (reject what you do not know; never guess).
Producers compress with lz4; librdkafka (confluent-kafka) has it built in.
tests/test_asyncapi.py runs ``consume`` against the embedded broker.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError

TOPIC = "assets.annotated"


def summary(event: dict[str, Any]) -> str:
    labels = ", ".join(f"{lb['name']} {lb['score']:.2f}" for lb in event["labels"][:5])
    models = " ".join(f"{m['model']}={m['status']}" for m in event["models"])
    update = f" (update of {event['supersedes']})" if event.get("supersedes") else ""
    return f"{event['asset_id'][:12]} {event['asset']['filename']}: {models} | {labels}{update}"


def consume(bootstrap: str, handle: Callable[[dict[str, Any]], None], prefix: str = "", group: str = "my-app",
            max_events: int | None = None, timeout_s: float | None = None) -> int:
    """Call ``handle`` once per distinct event (by event_id); returns how many were handled."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
    })
    consumer.subscribe([prefix + TOPIC])
    seen: set[str] = set()  # a real subscriber keeps this in its own store (or makes handle idempotent)
    handled = 0
    end = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while (max_events is None or handled < max_events) and (end is None or time.monotonic() < end):
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    print("consumer error:", msg.error())
                continue
            event = json.loads(msg.value())
            if event.get("schema") != TOPIC or event.get("schema_version") != 1:
                print("skipping an event this subscriber does not know:", event.get("schema"),
                      event.get("schema_version"))
            elif event["event_id"] not in seen:
                handle(event)
                seen.add(event["event_id"])
                handled += 1
            consumer.commit(message=msg, asynchronous=False)  # after handling: at-least-once
    finally:
        consumer.close()
    return handled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:19092")
    ap.add_argument("--prefix", default="", help="the installation's kafka.topic_prefix")
    ap.add_argument("--group", default="my-app")
    ap.add_argument("--max", type=int, default=None, help="stop after this many events")
    args = ap.parse_args()
    consume(args.bootstrap, lambda ev: print(summary(ev)), args.prefix, args.group, args.max)


if __name__ == "__main__":
    main()
