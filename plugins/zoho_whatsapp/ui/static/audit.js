/* The audit page: reads /whatsapp-audit/api/* (same origin, Airflow's login cookie) and draws it.
 * Text from the ledger is only ever set with textContent; charts are Chart.js (vendored). */
(function () {
  "use strict";

  const CONFIG = JSON.parse(document.getElementById("audit-config").textContent);
  const params = new URLSearchParams(location.search);
  const state = {
    org: params.get("org") || "", from: params.get("from") || "", to: params.get("to") || "",
    kind: params.get("kind") || "all", dag_id: params.get("dag_id") || "", run_id: params.get("run_id") || "",
    customer_id: params.get("customer_id") || "", tab: "unknown",
  };
  let summary = null;
  const charts = {};
  const int = new Intl.NumberFormat("en-IN");

  // -- small helpers ------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const n = (v) => (v === null || v === undefined ? "—" : int.format(v));
  const dash = (v) => (v === null || v === undefined || v === "" ? "—" : String(v));
  const amounts = (list) => (list && list.length ? list.map((a) => a.text).join(" + ") : "—");
  const byCount = (obj) => Object.entries(obj || {}).sort((a, b) => b[1] - a[1]);
  const breakdown = (obj) => byCount(obj).map(([k, v]) => `${k} ${int.format(v)}`).join(", ");
  const localTime = (iso) => (iso ? iso.replace("T", " ").slice(0, 16) + " IST" : "—");

  function query(extra) {
    const q = new URLSearchParams();
    for (const key of ["org", "from", "to", "kind", "dag_id", "run_id"]) if (state[key]) q.set(key, state[key]);
    for (const [key, value] of Object.entries(extra || {})) if (value) q.set(key, value);
    return q.toString();
  }

  async function getJSON(path, extra, started) {
    const response = await (started ||
      fetch(`${path}?${query(extra)}`, { credentials: "same-origin", headers: { Accept: "application/json" } }));
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(response.status === 401 || response.status === 403
        ? `Not allowed (${response.status}): log in to Airflow again. ${detail}` : `${response.status}: ${detail}`);
    }
    return response.json();
  }

  function showError(message) {
    const box = document.getElementById("error");
    box.hidden = !message;
    box.textContent = message || "";
  }

  // Links to the Airflow UI: inside Airflow's iframe (sandboxed, no top navigation) the page asks the
  // Airflow app itself to route, through the History API it listens to; standalone, a plain link.
  function airflowLink(href, label, title) {
    return el("a", {
      href, target: "_top", title, class: "af-link",
      onclick: (event) => {
        try {
          const top = window.top;
          if (top !== window && top.location.origin === location.origin) {
            event.preventDefault();
            const idx = ((top.history.state && top.history.state.idx) || 0) + 1;
            top.history.pushState({ usr: null, key: Math.random().toString(36).slice(2, 10), idx }, "", href);
            top.dispatchEvent(new PopStateEvent("popstate", { state: top.history.state }));
          }
        } catch (e) { /* another origin: the link opens normally */ }
      },
    }, label);
  }

  function links(row) {
    const out = [];
    if (row.links && row.links.run) out.push(airflowLink(row.links.run, "run", `DAG run ${row.run_id}`));
    if (row.links && row.links.task) {
      out.push(" · ", airflowLink(row.links.task, row.map_index !== null && row.map_index >= 0 ? `task [${row.map_index}]` : "task",
        "the send task instance"));
    }
    return out.length ? out : ["—"];
  }

  function statusBadge(row) {
    let status = row.status;
    const d = row.delivery || {};
    if (status === "sent" && ["delivered", "read", "failed"].includes(d.status)) status = d.status;
    return el("span", { class: `badge ${status}`, "data-status": status }, status);
  }

  function table(node, columns, rows, emptyText) {
    node.replaceChildren();
    node.append(el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null }, c.label)))));
    const body = el("tbody");
    if (!rows.length) body.append(el("tr", {}, el("td", { colspan: columns.length, class: "empty" }, emptyText || "Nothing here.")));
    for (const row of rows) {
      body.append(el("tr", row._attrs || {}, columns.map((c) => {
        const value = c.value(row);
        return el("td", { class: c.num ? "num" : c.cls || null, "data-col": c.key || null }, value);
      })));
    }
    node.append(body);
  }

  // -- the theme follows the Airflow UI around the iframe --------------------------------------------
  function applyTheme() {
    let dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    try {
      const root = window.top.document.documentElement;
      if (root.classList.contains("dark")) dark = true;
      else if (root.classList.contains("light")) dark = false;
    } catch (e) { /* standalone or another origin */ }
    document.documentElement.dataset.theme = dark ? "dark" : "light";
  }

  // -- rendering ------------------------------------------------------------------------------------
  function sumFamilies(counts) {
    const families = state.kind === "reminders" ? ["reminders"] : state.kind === "alerts" ? ["alerts"] : ["reminders", "alerts"];
    const out = { sent: 0, delivered: 0, read: 0, failed: 0, failed_late: 0, skipped: 0, unknown: 0, open: 0 };
    let receipts = true;
    for (const f of families) {
      const c = counts[f];
      for (const key of Object.keys(out)) {
        if (c[key] === null || c[key] === undefined) { if (key === "delivered" || key === "read") receipts = false; continue; }
        out[key] += c[key];
      }
    }
    if (!receipts) { out.delivered = null; out.read = null; }
    return out;
  }

  function kpi(cls, label, value, sub, testid) {
    return el("div", { class: `kpi ${cls}`, "data-testid": testid },
      el("div", { class: "label" }, label), el("div", { class: "value", "data-testid": `${testid}-value` }, value),
      sub ? el("div", { class: "sub" }, sub) : null);
  }

  const pct = (part, whole) => (whole ? `${Math.round((100 * part) / whole)}%` : "—");

  function compact(a) {
    try {
      return new Intl.NumberFormat("en-IN", { style: "currency", currency: a.currency, notation: "compact",
        maximumFractionDigits: 2 }).format(Number(a.amount));
    } catch (e) { return a.text; }
  }

  function paidKpi(label, w, extra, testid) {
    const [first, ...others] = w.amounts;
    const sub = [`${n(w.invoices)} invoices`, ...others.map((a) => `+ ${compact(a)}`), extra].filter(Boolean).join(" · ");
    const card = kpi("money", label, first ? compact(first) : "—", sub, testid);
    card.title = amounts(w.amounts);
    return card;
  }

  function renderKpis() {
    const r = summary.daily.totals.reminders;
    const a = summary.daily.totals.alerts;
    const col = summary.collections;
    const w7 = col.windows.find((w) => w.days === 7);
    const w14 = col.windows.find((w) => w.days === 14);
    const reasons = byCount(r.skipped_by_reason).slice(0, 3).map(([k, v]) => `${k} ${n(v)}`).join(", ");
    document.getElementById("kpis").replaceChildren(
      kpi("sent", "Reminders sent", n(r.sent), r.open ? `${n(r.open)} still open` : "accepted by WhatsApp", "kpi-reminders-sent"),
      kpi("ok", "Delivered", summary.receipts ? n(r.delivered) : "—",
        summary.receipts ? `${pct(r.delivered, r.sent)} of sent · read ${n(r.read)} (${pct(r.read, r.sent)})`
          : "delivery receipts not recorded", "kpi-delivered"),
      kpi("bad", "Failed", n(r.failed), breakdown(r.failed_by_code) || "none", "kpi-failed"),
      kpi("skip", "Skipped", n(r.skipped), reasons || "none", "kpi-skipped"),
      kpi("warn", "Unknown", n(r.unknown), r.unknown ? "check before resending" : "none", "kpi-unknown"),
      kpi("sent", "Alerts sent", n(a.sent), `${n(a.failed)} failed · ${n(a.unknown)} unknown`, "kpi-alerts-sent"),
      paidKpi("Paid ≤ 7 days after", w7, null, "kpi-paid-7"),
      paidKpi("Paid ≤ 14 days after", w14, `median ${col.median_days === null ? "—" : col.median_days} d`, "kpi-paid-14"),
    );
  }

  function chart(id, config) {
    if (charts[id]) charts[id].destroy();
    if (!window.Chart) return;
    const style = getComputedStyle(document.documentElement);
    window.Chart.defaults.color = style.getPropertyValue("--muted").trim();
    window.Chart.defaults.borderColor = style.getPropertyValue("--line").trim();
    charts[id] = new window.Chart(document.getElementById(id), config);
  }

  function renderDaily() {
    const days = summary.daily.days;
    const rows = days.map((d) => ({ day: d.day, ...sumFamilies(d) }));
    const style = getComputedStyle(document.documentElement);
    const color = (name) => style.getPropertyValue(name).trim();
    const receipts = summary.receipts;
    const datasets = [];
    if (receipts) {
      datasets.push({ label: "Read", data: rows.map((r) => r.read), backgroundColor: color("--ok") });
      datasets.push({ label: "Delivered", data: rows.map((r) => r.delivered - r.read), backgroundColor: color("--ok2") });
      datasets.push({ label: "Sent, no receipt yet", data: rows.map((r) => r.sent - r.delivered - r.failed_late), backgroundColor: color("--sent") });
    } else {
      datasets.push({ label: "Sent", data: rows.map((r) => r.sent), backgroundColor: color("--sent") });
    }
    datasets.push({ label: "Failed", data: rows.map((r) => r.failed), backgroundColor: color("--bad") });
    datasets.push({ label: "Unknown", data: rows.map((r) => r.unknown), backgroundColor: color("--warn") });
    datasets.push({ label: "Skipped", data: rows.map((r) => r.skipped), backgroundColor: color("--skip"), hidden: true });
    for (const d of datasets) d.maxBarThickness = 48;
    chart("daily-chart", {
      type: "bar",
      data: { labels: rows.map((r) => r.day.slice(5)), datasets },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        scales: { x: { stacked: true, grid: { display: false } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: { callbacks: { title: (items) => rows[items[0].dataIndex].day } } },
      },
    });
    document.getElementById("daily-hint").textContent = receipts
      ? "Skipped is hidden: click it in the legend to show it."
      : "Delivery receipts are not recorded yet: delivered and read show —.";
    const families = state.kind === "all" ? ["reminders", "alerts"] : [state.kind];
    const tableRows = [];
    for (const d of days.slice().reverse()) {
      for (const f of families) {
        const c = d[f];
        if (!c.total) continue;
        tableRows.push({ day: d.day, family: f, ...c, _attrs: { "data-day": d.day, "data-family": f } });
      }
    }
    table(document.getElementById("daily-table"), [
      { label: "Day", value: (r) => r.day, key: "day" },
      { label: "", value: (r) => r.family, key: "family" },
      { label: "Sent", value: (r) => n(r.sent), num: true, key: "sent" },
      { label: "Delivered", value: (r) => n(r.delivered), num: true, key: "delivered" },
      { label: "Read", value: (r) => n(r.read), num: true, key: "read" },
      { label: "Failed", value: (r) => n(r.failed), num: true, key: "failed" },
      { label: "by code", value: (r) => breakdown(r.failed_by_code), key: "failed_by_code", cls: "muted" },
      { label: "Skipped", value: (r) => n(r.skipped), num: true, key: "skipped" },
      { label: "by reason", value: (r) => breakdown(r.skipped_by_reason), key: "skipped_by_reason", cls: "muted" },
      { label: "Unknown", value: (r) => n(r.unknown), num: true, key: "unknown" },
      { label: "Open", value: (r) => n(r.open), num: true, key: "open" },
    ], tableRows, "No message in this period.");
  }

  function renderAgeing() {
    const buckets = summary.ageing;
    const currencies = [...new Set(buckets.flatMap((b) => b.amounts.map((a) => a.currency)))];
    const main = currencies[0] || "INR";
    const style = getComputedStyle(document.documentElement);
    chart("ageing-chart", {
      type: "bar",
      data: {
        labels: buckets.map((b) => b.bucket),
        datasets: [{
          label: `Balance reminded (${main})`,
          data: buckets.map((b) => Number((b.amounts.find((a) => a.currency === main) || { amount: 0 }).amount)),
          backgroundColor: style.getPropertyValue("--accent").trim(),
          maxBarThickness: 72,
        }],
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: false },
          tooltip: { callbacks: { label: (item) => amounts(buckets[item.dataIndex].amounts) } } },
        scales: { y: { beginAtZero: true, ticks: { callback: (v) => new Intl.NumberFormat("en-IN", { notation: "compact" }).format(v) } } },
      },
    });
    table(document.getElementById("ageing-table"), [
      { label: "Days past due", value: (b) => b.bucket, key: "bucket" },
      { label: "Reminders", value: (b) => n(b.reminders), num: true, key: "reminders" },
      { label: "Balance", value: (b) => amounts(b.amounts), num: true, key: "amount" },
    ], buckets.map((b) => ({ ...b, _attrs: { "data-bucket": b.bucket } })));
  }

  function renderCollections() {
    const col = summary.collections;
    document.getElementById("collections-hint").textContent =
      `Of ${n(col.reminded_invoices)} invoices reminded in the period: paid (left Zoho's overdue list, or a payment ` +
      `webhook) within 7 and 14 days of their latest reminder.` + (col.as_of ? ` Known up to the run of ${col.as_of}.` : "");
    table(document.getElementById("collections-table"), [
      { label: "Within", value: (w) => `${w.days} days`, key: "days" },
      { label: "Invoices paid", value: (w) => n(w.invoices), num: true, key: "invoices" },
      { label: "Amount", value: (w) => amounts(w.amounts), num: true, key: "amount" },
    ], col.windows.map((w) => ({ ...w, _attrs: { "data-window": w.days } })));
    table(document.getElementById("paid-table"), [
      { label: "Invoice", value: (p) => dash(p.invoice_number), cls: "nowrap" },
      { label: "Customer", value: (p) => customerButton(p.customer_id, p.customer_name) },
      { label: "Reminded", value: (p) => p.reminded_on, cls: "nowrap" },
      { label: "Paid by", value: (p) => p.paid_on, cls: "nowrap" },
      { label: "Days", value: (p) => n(p.days), num: true },
      { label: "Amount", value: (p) => dash(p.amount_text), num: true },
    ], col.paid, "No payment seen after a reminder in this period yet.");
  }

  function customerButton(id, name) {
    if (!id) return dash(name);
    return el("a", { href: "#", onclick: (e) => { e.preventDefault(); openCustomer(id); } }, dash(name));
  }

  const ATTENTION = [
    { key: "unknown", label: "Unknown", total: "unknown_total" },
    { key: "failed", label: "Failed", total: "failed_total" },
    { key: "replies", label: "Replies", total: "replies_total", recorded: "replies_recorded" },
    { key: "opt_outs", label: "Opt-outs", total: "opt_outs_total", recorded: "replies_recorded" },
  ];

  function renderAttention() {
    const att = summary.attention;
    const tabs = document.getElementById("attention-tabs");
    tabs.replaceChildren(...ATTENTION.map((t) => el("button", {
      role: "tab", type: "button", "aria-selected": String(state.tab === t.key), "data-testid": `tab-${t.key}`,
      onclick: () => { state.tab = t.key; renderAttention(); },
    }, `${t.label} (${t.recorded && !att[t.recorded] ? "—" : n(att[t.total])})`)));
    const body = document.getElementById("attention-body");
    const current = ATTENTION.find((t) => t.key === state.tab);
    if (current.recorded && !att[current.recorded]) {
      body.replaceChildren(el("p", { class: "empty" }, "Not recorded yet: WhatsApp's webhooks (replies, opt-outs) are not set up in this ledger."));
      return;
    }
    const rows = att[state.tab];
    const node = el("table", { "data-testid": `attention-${state.tab}` });
    if (state.tab === "replies" || state.tab === "opt_outs") {
      table(node, [
        { label: "When", value: (r) => localTime(r.at) },
        { label: "Customer", value: (r) => customerButton(r.customer_id, r.customer_name) },
        { label: "From", value: (r) => dash(r.phone_masked), cls: "mono" },
        { label: "Invoice", value: (r) => dash(r.invoice_number) },
        { label: state.tab === "replies" ? "Text" : "What", value: (r) => state.tab === "replies" ? dash(r.text)
          : `${r.consent_action === "opt_in" ? "opted back in" : "opted out"}: “${dash(r.text)}”` },
      ], rows, "Nothing in this period.");
    } else {
      table(node, [
        { label: "Day", value: (r) => dash(r.occasion || r.day), cls: "nowrap" },
        { label: "Kind", value: (r) => r.kind.replace("_", " ") },
        { label: "Invoice", value: (r) => dash(r.invoice_number), cls: "nowrap" },
        { label: "Customer", value: (r) => customerButton(r.customer_id, r.customer_name) },
        { label: "To", value: (r) => dash(r.phone), cls: "mono nowrap" },
        { label: state.tab === "failed" ? "Error and fix" : "Why", value: (r) => state.tab === "failed"
          ? el("div", {}, el("div", {}, `${dash(r.error_code)} ${r.error_class || ""}`), el("div", { class: "fix" }, dash(r.fix)),
            r.error ? el("div", { class: "fix" }, r.error) : null)
          : el("div", { class: "fix" }, dash(r.error || r.reason)) },
        { label: "Airflow", value: (r) => el("span", {}, links(r)) },
      ], rows, state.tab === "unknown" ? "No send with an unknown outcome." : "No failure.");
    }
    body.replaceChildren(node);
  }

  function renderMessages() {
    document.getElementById("messages-hint").textContent =
      summary.messages_total > summary.messages.length ? `newest ${n(summary.messages.length)} of ${n(summary.messages_total)}` : "";
    table(document.getElementById("messages-table"), [
      { label: "When", value: (r) => localTime(r.at), cls: "nowrap" },
      { label: "Kind", value: (r) => r.kind.replace("_", " ") },
      { label: "Invoice", value: (r) => dash(r.invoice_number), cls: "nowrap" },
      { label: "Customer", value: (r) => customerButton(r.customer_id, r.customer_name) },
      { label: "To", value: (r) => dash(r.phone), cls: "mono nowrap" },
      { label: "Amount", value: (r) => dash(r.amount), num: true },
      { label: "Status", value: (r) => statusBadge(r) },
      { label: "Airflow", value: (r) => el("span", {}, links(r)) },
    ], summary.messages.map((r) => ({ ...r, _attrs: { "data-row-id": r.id } })), "No message sent in this period.");
  }

  function renderCustomers(list) {
    const ul = document.getElementById("customer-list");
    ul.replaceChildren(...list.map((c) => el("li", {}, el("button", {
      type: "button", "data-customer-id": c.customer_id, "aria-current": String(c.customer_id === state.customer_id),
      onclick: () => openCustomer(c.customer_id),
    }, el("span", {}, dash(c.customer_name)), el("span", { class: "muted" }, n(c.messages))))));
    if (!list.length) ul.append(el("li", { class: "empty" }, "No customer messaged in this period."));
  }

  async function openCustomer(customerId, chosen = true) {
    if (chosen) { state.customer_id = customerId; syncUrl(); }
    for (const b of document.querySelectorAll("#customer-list button")) b.setAttribute("aria-current", String(b.dataset.customerId === customerId));
    const list = document.getElementById("timeline");
    list.setAttribute("aria-busy", "true");
    try {
      const data = await getJSON("api/timeline", { customer_id: customerId });
      document.getElementById("timeline-title").textContent = `Timeline · ${data.customer_name || customerId}`;
      const csv = document.getElementById("timeline-csv");
      csv.hidden = false;
      csv.href = `api/export.csv?${query({ section: "timeline", customer_id: customerId })}`;
      document.getElementById("timeline-hint").textContent =
        `${n(data.events.length)} events` + (data.cadence_skips ? ` · ${n(data.cadence_skips)} days not reminded again (cadence)` : "") +
        (data.replies_recorded ? "" : " · replies and opt-outs not recorded yet");
      list.replaceChildren(...data.events.map(timelineItem));
      if (!data.events.length) list.append(el("li", { class: "empty" }, "Nothing for this customer in the period."));
      document.body.dataset.timeline = customerId;
      if (chosen) document.getElementById("timeline-card").scrollIntoView({ block: "nearest" });
    } catch (error) {
      showError(error.message);
    } finally {
      list.removeAttribute("aria-busy");
    }
  }

  function timelineItem(e) {
    if (e.type === "reply" || e.type === "opt_out") {
      return el("li", { class: e.type, "data-type": e.type },
        el("div", { class: "when" }, localTime(e.at)),
        el("div", { class: "what" }, el("span", { class: `badge ${e.type}` },
          e.type === "reply" ? "reply" : e.consent_action === "opt_in" ? "opted back in" : "opted out"), " from ",
          el("span", { class: "mono" }, dash(e.phone_masked))),
        e.text ? el("div", { class: "quote" }, e.text) : null);
    }
    const d = e.delivery || {};
    const receipts = [d.delivered_at ? `delivered ${localTime(d.delivered_at)}` : null, d.read_at ? `read ${localTime(d.read_at)}` : null]
      .filter(Boolean).join(" · ");
    return el("li", { class: e.status, "data-type": "message", "data-row-id": e.id, "data-invoice": e.invoice_number || "",
      "data-status": e.status },
      el("div", { class: "when" }, localTime(e.at), e.occasion ? ` · reminder of ${e.occasion}` : ""),
      el("div", { class: "what" }, el("strong", {}, e.kind.replace("_", " ")), " · ", dash(e.invoice_number), " · ", dash(e.amount),
        " · to ", el("span", { class: "mono" }, dash(e.phone)), " ", statusBadge(e),
        e.reason ? el("span", { class: "muted" }, ` ${e.reason}`) : null),
      receipts ? el("div", { class: "muted" }, receipts) : null,
      e.fix ? el("div", { class: "fix" }, `${dash(e.error_code)} ${e.error_class || ""}: ${e.fix}`) : null,
      el("div", { class: "muted" }, links(e)));
  }

  function renderFoot() {
    const t = summary.timings_ms || {};
    document.getElementById("foot").textContent =
      `Read from the send ledger in ${summary.elapsed_ms} ms (` + Object.entries(t).map(([k, v]) => `${k} ${v}`).join(", ") +
      `). Numbers are masked; CSV exports hold what is on screen.`;
  }

  function renderScope() {
    const s = summary.scope;
    const label = `${s.organization_id} · ${s.from} → ${s.to} (IST)` + (CONFIG.user ? ` · ${CONFIG.user}` : "");
    document.getElementById("scope-label").textContent = label;
    const banner = document.getElementById("run-banner");
    if (s.run_id) {
      banner.hidden = false;
      banner.textContent = `This DAG run only: ${s.dag_id || ""} ${s.run_id}`;
    } else if (s.dag_id) {
      banner.hidden = false;
      banner.textContent = `Messages recorded by DAG ${s.dag_id} only.`;
    } else {
      banner.hidden = true;
    }
  }

  function fillFilters() {
    const s = summary ? summary.scope : null;
    if (s) {
      state.org = s.organization_id; state.from = s.from; state.to = s.to;
    }
    document.getElementById("f-from").value = state.from;
    document.getElementById("f-to").value = state.to;
    document.getElementById("f-kind").value = state.kind;
    document.getElementById("f-org").value = state.org;
  }

  function syncUrl() {
    const q = query({ customer_id: state.customer_id });
    history.replaceState(null, "", `${location.pathname}${q ? "?" + q : ""}`);
  }

  async function load() {
    const main = document.getElementById("content");
    main.setAttribute("aria-busy", "true");
    showError("");
    try {
      const prefetched = window.auditSummary;  // the page's own URL, asked for by audit.html's head
      window.auditSummary = null;
      const data = await getJSON("api/summary", null, prefetched);
      if (data.empty) {
        document.getElementById("scope-label").textContent = state.run_id
          ? "No WhatsApp message was recorded by this DAG run." : "The send ledger holds no message yet.";
        return;
      }
      summary = data;
      fillFilters();
      renderScope();
      renderKpis();
      renderDaily();
      renderAgeing();
      renderCollections();
      renderAttention();
      renderMessages();
      renderCustomers(summary.customers);
      renderFoot();
      for (const link of document.querySelectorAll("a.csv[data-section]")) {
        if (link.dataset.section !== "timeline") link.href = `api/export.csv?${query({ section: link.dataset.section })}`;
      }
      syncUrl();
      // The busiest customer's timeline until the person picks another.
      const first = state.customer_id || (summary.customers[0] && summary.customers[0].customer_id);
      if (first) openCustomer(first, false);
      document.body.dataset.loaded = "true";
    } catch (error) {
      showError(error.message);
    } finally {
      main.setAttribute("aria-busy", "false");
    }
  }

  async function loadOrganizations() {
    const select = document.getElementById("f-org");
    try {
      const data = await getJSON("api/organizations");
      select.replaceChildren(...data.organizations.map((o) => el("option", { value: o }, o)));
      select.value = state.org || data.default || "";
    } catch (error) {
      showError(error.message);
    }
  }

  function isoDay(d) { return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 10); }

  function bind() {
    const form = document.getElementById("filters");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      state.org = document.getElementById("f-org").value;
      state.from = document.getElementById("f-from").value;
      state.to = document.getElementById("f-to").value;
      state.kind = document.getElementById("f-kind").value;
      state.run_id = ""; state.dag_id = ""; state.customer_id = "";
      load();
    });
    for (const button of document.querySelectorAll(".quick button")) {
      button.addEventListener("click", () => {
        const to = document.getElementById("f-to").value ? new Date(document.getElementById("f-to").value + "T00:00:00") : new Date();
        const from = new Date(to.getTime() - (Number(button.dataset.days) - 1) * 86400000);
        document.getElementById("f-from").value = isoDay(from);
        document.getElementById("f-to").value = isoDay(to);
        form.requestSubmit();
      });
    }
    let timer = null;
    document.getElementById("customer-search").addEventListener("input", (event) => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        try { renderCustomers((await getJSON("api/customers", { q: event.target.value.trim() })).customers); }
        catch (error) { showError(error.message); }
      }, 250);
    });
  }

  applyTheme();
  bind();
  // Both at once: the summary picks the default organization itself.
  loadOrganizations();
  load();
})();
