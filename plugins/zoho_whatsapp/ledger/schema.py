"""The ledger's tables, and the versioned migrations that create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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

# -- WhatsApp's webhooks (zoho_whatsapp.ledger.delivery): what became of each message after "sent" --


class AddColumns:
    """A migration step adding columns to a table that already exists (``create`` like a Table's).

    The columns are also appended to the Table object, so a fresh database gets them when
    migration 1 creates the table, and this step then finds nothing to add.
    """

    def __init__(self, table: Table, *columns: Column) -> None:
        for column in columns:
            table.append_column(column)
        self.table, self.columns = table, columns

    def create(self, bind: object, checkfirst: bool = True) -> None:
        from sqlalchemy import inspect, text
        from sqlalchemy.schema import CreateColumn

        present = {c["name"] for c in inspect(bind).get_columns(self.table.name)}
        for column in self.columns:
            if column.name not in present:
                ddl = CreateColumn(column).compile(dialect=bind.dialect)  # type: ignore[attr-defined]
                bind.execute(text(f"ALTER TABLE {self.table.name} ADD COLUMN {ddl}"))  # type: ignore[attr-defined]


# Meta's status webhooks, on the message row: delivery only moves forward (sent < failed < delivered < read).
delivery_columns = AddColumns(
    messages,
    Column("delivery_status", String(16)),  # sent, delivered, read, failed (Meta's word; status is ours)
    Column("sent_at", DateTime(timezone=True)),  # Meta's timestamps of each status
    Column("delivered_at", DateTime(timezone=True)),
    Column("read_at", DateTime(timezone=True)),
    Column("failed_at", DateTime(timezone=True)),
    Column("delivery_error_code", Integer),
    Column("delivery_error_title", String(255)),
    Column("delivery_error_class", String(64)),  # the same error family a synchronous failure gets
    Column("delivery_updated_at", DateTime(timezone=True)),
)
ix_messages_wamid = Index("ix_messages_wamid", messages.c.wamid)
ix_messages_recipient = Index("ix_messages_recipient", messages.c.recipient)

# Every webhook item Meta delivered, once: Meta retries for days, so the event key de-duplicates.
whatsapp_events = Table(
    "whatsapp_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_key", String(255), nullable=False),  # status:<wamid>:<status>, message:<id>, preference:...
    Column("kind", String(16), nullable=False),  # status, message, preference
    Column("wamid", String(128)),
    Column("status", String(16)),
    Column("event_at", DateTime(timezone=True), nullable=False),  # Meta's timestamp
    Column("payload", Text, nullable=False),  # the validated event (JSON), enough to apply it again
    Column("body_sha256", String(64), nullable=False),  # of the first delivery's raw body
    Column("deliveries", Integer, nullable=False, default=1),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("last_delivery_at", DateTime(timezone=True), nullable=False),
    Column("applied_at", DateTime(timezone=True)),  # NULL: stored but not applied yet
    Column("outcome", String(64)),  # what applying it did, e.g. delivered, stale, resolved_unknown, unmatched
    Column("message_row_id", Integer),  # the messages row it was matched to
    UniqueConstraint("event_key", name="uq_whatsapp_events_key"),
    Index("ix_whatsapp_events_pending", "applied_at", "id"),
)

# What customers wrote back, for the accounts team to follow up: masked number, short text, who it is.
whatsapp_replies = Table(
    "whatsapp_replies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(128), nullable=False),  # Meta's id of the inbound message
    Column("phone_masked", String(32), nullable=False),
    Column("message_type", String(40), nullable=False),
    Column("text", Text),  # truncated
    Column("consent_action", String(16)),  # opt_out, opt_in, or NULL for a conversation
    Column("sent_at", DateTime(timezone=True), nullable=False),  # when the customer sent it (Meta's time)
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("ledger_message_id", Integer),  # the message it answers, or the latest one to that number
    Column("organization_id", String(32)),
    Column("customer_id", String(64)),
    Column("customer_name", String(255)),
    Column("invoice_number", String(64)),
    Column("context_wamid", String(128)),
    UniqueConstraint("message_id", name="uq_whatsapp_replies_message"),
    Index("ix_whatsapp_replies_sent", "sent_at"),
)

# Numbers not to message: opted out by a reply, not on WhatsApp (for a while), marketing stopped.
suppressions = Table(
    "suppressions",
    metadata,
    Column("recipient", String(32), primary_key=True),  # E.164, as messages.recipient
    Column("reason", String(32), primary_key=True),  # opted_out, not_on_whatsapp, marketing_stopped
    Column("state", String(16), nullable=False),  # active, lifted
    Column("phone_masked", String(32), nullable=False),
    Column("since", DateTime(timezone=True), nullable=False),  # when it last became active (or was lifted)
    Column("event_at", DateTime(timezone=True), nullable=False),  # Meta's time of the latest event: older lose
    Column("source", String(32), nullable=False),  # reply keyword, user_preferences, failed status
    Column("detail", String(255)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The audit page (zoho_whatsapp.ui.queries): a period's reminders counted by status, reason, error
# and receipt, by invoice and by customer from the index alone (a row is ~1 KB with its Zoho source,
# an entry ~100 bytes); alerts by the day they were recorded; one DAG run's messages.
ix_messages_audit = Index(
    "ix_messages_audit", messages.c.organization_id, messages.c.kind, messages.c.occasion, messages.c.status,
    messages.c.reason, messages.c.error_code, messages.c.delivery_status, messages.c.delivery_error_code,
    messages.c.invoice_id, messages.c.customer_id,
)
ix_messages_audit_day = Index("ix_messages_audit_day", messages.c.organization_id, messages.c.kind,
                              messages.c.created_at)
ix_messages_run = Index("ix_messages_run", messages.c.run_id)

# The audit page's copy of what it needs from a sent reminder's Zoho row (``source``, ~1 KB of JSON),
# written by the page the first time it shows the reminder.
audit_amounts = Table(
    "audit_amounts",
    metadata,
    Column("message_id", Integer, primary_key=True),  # messages.id
    Column("due_date", String(10)),
    Column("balance_milli", BigInteger),  # the balance in thousandths: exact sums in every currency
    Column("currency_code", String(3)),
    Column("read_at", DateTime(timezone=True), nullable=False),
)

# One message, several invoices (a customer's statement): every invoice keeps its own row, and the
# rows of one message point to its lead row (the one that holds what is sent; its own id). Claims,
# settlements and receipts move the whole group together. ``stage``: the reminder stage (days from
# the due date) that invoice reached with that message, so no stage is sent twice.
message_columns = AddColumns(
    messages,
    Column("message_id", Integer),  # the lead row's id; NULL: a message of its own (alerts, older rows)
    Column("stage", Integer),
    Column("currency_code", String(3)),  # one message never mixes currencies: the cadence tells them apart
    Column("noted_at", DateTime(timezone=True)),  # when the opt-in note on the invoice in Zoho Books was written
)
ix_messages_message = Index("ix_messages_message", messages.c.message_id)
ix_messages_customer = Index("ix_messages_customer", messages.c.organization_id, messages.c.kind,
                             messages.c.customer_id, messages.c.claimed_on)

# Migrations run in order, each once; append, never edit one that has shipped.
MIGRATIONS: list[tuple[int, str, list[Table | Index | AddColumns]]] = [
    (1, "messages ledger", [messages]),
    (2, "webhook inbox", [webhook_events]),
    (3, "delivery receipts, replies, opt-outs", [delivery_columns, ix_messages_wamid, ix_messages_recipient,
                                                   whatsapp_events, whatsapp_replies, suppressions]),
    (4, "audit page: indexes, amounts read", [ix_messages_audit, ix_messages_audit_day, ix_messages_run, audit_amounts]),
    (5, "one message per customer: message groups, stages", [message_columns, ix_messages_message,
                                                             ix_messages_customer]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
