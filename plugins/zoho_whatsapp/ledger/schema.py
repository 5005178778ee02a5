"""The ledger's tables, and the versioned migrations that create them."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# One row per message we might send: the unique key is what makes a second send impossible.
messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("organization_id", String(32), nullable=False),
    Column("invoice_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),  # payment_reminder, invoice_created, payment_received
    Column("occasion", String(64), nullable=False),  # reminder date (YYYY-MM-DD, IST) or the event's id
    Column("invoice_number", String(64)),
    Column("customer_id", String(64)),
    Column("customer_name", String(255)),
    Column("source", Text),  # the Zoho data the message was planned from (JSON)
    Column("recipient", String(32)),  # E.164, what the send uses
    Column("phone_masked", String(32)),  # what reports show
    Column("template_name", String(64)),
    Column("template_language", String(16)),
    Column("parameters", Text),  # JSON {name: text}
    Column("status", String(16), nullable=False),
    Column("reason", String(64)),
    Column("error_code", Integer),
    Column("error_message", Text),
    Column("wamid", String(128)),
    Column("batch", Integer),
    Column("dag_id", String(250)),
    Column("run_id", String(250)),
    Column("map_index", Integer),
    Column("try_number", Integer),
    Column("claim_token", String(32)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("seen_run_id", String(250)),
    Column("seen_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("claimed_at", DateTime(timezone=True)),
    Column("claimed_on", String(10)),  # IST calendar day of the claim: the cadence compares days
    Column("settled_at", DateTime(timezone=True)),
    UniqueConstraint("organization_id", "invoice_id", "kind", "occasion", name="uq_messages_occasion"),
    Index("ix_messages_cadence", "organization_id", "invoice_id", "kind", "claimed_on"),
    Index("ix_messages_batch", "organization_id", "kind", "occasion", "batch"),
    Index("ix_messages_status", "status", "occasion"),
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

# The webhook inbox: one row per Zoho Books workflow event, stored before the endpoint answers 2xx.
# The unique event key is what turns Zoho's retried (or concurrent) deliveries into one event.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_key", String(255), nullable=False),  # kind:organization:invoice or payment id
    Column("kind", String(32), nullable=False),  # invoice_created, payment_received
    Column("organization_id", String(32)),
    Column("reference", String(128)),  # the invoice or payment the event is about, as Zoho sent it
    Column("payload", Text, nullable=False),  # the validated, normalised event (JSON)
    Column("body_sha256", String(64), nullable=False),  # of the first delivery's raw body
    Column("status", String(16), nullable=False),  # received -> handled
    Column("deliveries", Integer, nullable=False, default=1),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("last_delivery_at", DateTime(timezone=True), nullable=False),
    Column("announced_at", DateTime(timezone=True)),  # when the triggerer last started a DAG run for it
    Column("announcements", Integer, nullable=False, default=0),
    Column("handled_at", DateTime(timezone=True)),
    Column("dag_id", String(250)),
    Column("run_id", String(250)),
    Column("outcome", Text),  # JSON: what became of the event's messages
    UniqueConstraint("event_key", name="uq_webhook_events_key"),
    Index("ix_webhook_events_status", "status", "id"),
)

# Migrations run in order, each once; append, never edit one that has shipped.
MIGRATIONS: list[tuple[int, str, list[Table]]] = [
    (1, "messages ledger", [messages]),
    (2, "webhook inbox", [webhook_events]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
