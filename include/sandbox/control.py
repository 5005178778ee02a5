"""``/_sandbox/...`` control and inspection endpoints (for tests in another process, ``make demo``).

GET  /_sandbox/health                       {"status":"ok"}
GET  /_sandbox/credentials                  {"credentials":{...}, "connections":{...}}
GET  /_sandbox/messages                     {"messages":[...]}
GET  /_sandbox/requests?service=...         {"requests":[...]}
GET  /_sandbox/faults                       {"faults":{...}}
POST /_sandbox/faults        {name: value}  {"faults":{...}}            (400 on unknown names)
POST /_sandbox/reset         {"faults_only": false}
POST /_sandbox/zoho/grant-code  {"scope": "...", "ttl_seconds": 180}  -> {"code": "1000...."}
POST /_sandbox/zoho/expire-tokens           {"expired": n}
GET  /_sandbox/zoho/overdue-invoices        {"invoices":[...]}   (ground truth, no duplicate)
GET  /_sandbox/zoho/invoices/{id}           {"invoice":{...}}
POST /_sandbox/zoho/invoices/{id}  {patch}  {"invoice":{list row}}
GET  /_sandbox/zoho/invoices/{id}/comments  {"comments":[...]}
GET  /_sandbox/zoho/contacts/{id}           {"contact":{...}}
POST /_sandbox/zoho/contacts/{id}  {patch}  {"contact":{...}}
POST /_sandbox/zoho/payments  {"invoice_id", "amount"?, "date"?, "payment_mode"?}  {"payment":{...}}
POST /_sandbox/zoho/organizations  {"name"?} | {"count": n}     {"organization":{...}} | {"organizations":[...]}
POST /_sandbox/whatsapp/status-webhook  {"wamid", "status", "error_code"?}  {"body", "headers"}
POST /_sandbox/whatsapp/inbound-webhook {"from", "text", "name"?}             {"body", "headers"}
GET  /_sandbox/whatsapp/callbacks           {"callbacks":[...], "webhook_extras":{...}}  (set callback_url via /faults)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .wire import JSON_ZOHO, Reply, Request

if TYPE_CHECKING:
    from .server import Sandbox

_INVOICE = re.compile(r"/zoho/invoices/(\d+)")
_COMMENTS = re.compile(r"/zoho/invoices/(\d+)/comments")
_CONTACT = re.compile(r"/zoho/contacts/(\d+)")


def _ok(body: dict[str, Any]) -> Reply:
    return Reply(200, body, JSON_ZOHO)


def _bad(message: str, status: int = 400) -> Reply:
    return Reply(status, {"error": message}, JSON_ZOHO)


def _body(req: Request) -> dict[str, Any]:
    if not req.body.strip():
        return {}
    data = req.json()
    if not isinstance(data, dict):
        raise ValueError("JSON object expected")
    return data


def handle_control(sb: Sandbox, req: Request) -> Reply:
    path = req.path[len("/_sandbox"):].rstrip("/") or "/"
    method = req.method
    try:
        body = _body(req) if method == "POST" else {}
    except ValueError as exc:
        return _bad(f"invalid JSON body: {exc}")
    try:
        return _route(sb, method, path, body, req)
    except KeyError as exc:
        return _bad(f"not found: {exc.args[0]}", 404)
    except (ValueError, TypeError) as exc:
        return _bad(str(exc))


def _route(sb: Sandbox, method: str, path: str, body: dict[str, Any], req: Request) -> Reply:
    if method == "GET":
        if path == "/health":
            return _ok({"status": "ok"})
        if path == "/credentials":
            return _ok({"credentials": dict(sb.credentials), "connections": sb.connections()})
        if path == "/messages":
            return _ok({"messages": sb.messages()})
        if path == "/requests":
            return _ok({"requests": sb.requests(req.query.get("service") or None)})
        if path == "/faults":
            return _ok({"faults": sb.get_faults()})
        if path == "/whatsapp/callbacks":
            return _ok({"callbacks": sb.callback_log(), "webhook_extras": sb.webhook_extras()})
        if path == "/zoho/overdue-invoices":
            return _ok({"invoices": sb.overdue_invoices()})
        m = _COMMENTS.fullmatch(path)
        if m:
            return _ok({"comments": sb.comments(m.group(1))})
        m = _INVOICE.fullmatch(path)
        if m:
            inv = sb.invoice(m.group(1))
            return _ok({"invoice": inv}) if inv else _bad("invoice not found", 404)
        m = _CONTACT.fullmatch(path)
        if m:
            con = sb.contact(m.group(1))
            return _ok({"contact": con}) if con else _bad("contact not found", 404)
    elif method == "POST":
        if path == "/faults":
            return _ok({"faults": sb.set_faults(**body)})
        if path == "/reset":
            sb.reset(faults_only=bool(body.get("faults_only")))
            return _ok({"status": "reset"})
        if path == "/zoho/grant-code":
            ttl = body.get("ttl_seconds")
            code = sb.issue_grant_code(body.get("scope") or "ZohoBooks.fullaccess.all",
                                       float(ttl) if ttl is not None else None)
            return _ok({"code": code})
        if path == "/zoho/expire-tokens":
            return _ok({"expired": sb.expire_tokens()})
        if path == "/zoho/payments":
            if "invoice_id" not in body:
                return _bad("invoice_id is required")
            return _ok({"payment": sb.add_payment(str(body["invoice_id"]), body.get("amount"),
                                                  body.get("date"), body.get("payment_mode") or "banktransfer")})
        if path == "/zoho/organizations":
            if "count" in body:
                return _ok({"organizations": sb.set_organizations(int(body["count"]))})
            return _ok({"organization": sb.add_organization(body.get("name"))})
        if path == "/whatsapp/status-webhook":
            raw, headers = sb.status_webhook(str(body["wamid"]), body.get("status") or "delivered",
                                             body.get("error_code"))
            return _ok({"body": raw.decode(), "headers": headers})
        if path == "/whatsapp/inbound-webhook":
            raw, headers = sb.inbound_webhook(str(body["from"]), str(body["text"]), body.get("name") or "")
            return _ok({"body": raw.decode(), "headers": headers})
        m = _INVOICE.fullmatch(path)
        if m:
            return _ok({"invoice": sb.patch_invoice(m.group(1), body)})
        m = _CONTACT.fullmatch(path)
        if m:
            return _ok({"contact": sb.patch_contact(m.group(1), body)})
    return _bad(f"no control endpoint {method} /_sandbox{path}", 404)
