// The operator console: sign-in with password and TOTP, then trust anchors and the mapping
// tester, accounts and decisions, the real-name review queue, enterprise roles, SSO clients and
// the audit trail. Every change is a POST to /admin/api with the console session's CSRF token.
import { LoginError, el, explain, formatTime, gateway, lang, showMessage, t } from "./common.js";

const errorRegion = document.getElementById("admin-error");
const statusRegion = document.getElementById("admin-status");
const loginCard = document.getElementById("admin-login");
const consoleRoot = document.getElementById("admin-console");
// Role -> what its pages may show (the server checks every call again: 403 forbidden).
const ALLOWED = {
  admin: ["read", "change", "review", "audit"],
  auditor: ["read", "audit"],
  reviewer: ["review"],
};
let csrf = null;
let role = null;

const api = (path, options = {}) => gateway(`/admin/api${path}`, { ...options, csrf });
const post = (path, json = {}) => api(path, { method: "POST", json });
const status = (text) => { statusRegion.textContent = text; };

function problem(error) {
  if (error instanceof LoginError && error.code === "credentials_invalid" && csrf) return signedOut();
  showMessage(errorRegion, explain(error instanceof LoginError ? error : new LoginError("unknown")));
}

async function run(action) {
  showMessage(errorRegion, "");
  try {
    await action();
  } catch (error) {
    problem(error);
  }
}

function signedOut() {
  csrf = null;
  role = null;
  consoleRoot.hidden = true;
  loginCard.hidden = false;
}

function signedIn(data) {
  csrf = data.csrf_token;
  role = data.operator.role;
  document.getElementById("admin-operator").textContent = `${data.operator.name} · ${t(`admin.role.${role}`)}`;
  for (const node of document.querySelectorAll("[data-role]")) {
    node.hidden = !ALLOWED[role].includes(node.dataset.role);
  }
  loginCard.hidden = true;
  consoleRoot.hidden = false;
  refresh();
}

function can(what) {
  return role !== null && ALLOWED[role].includes(what);
}

async function refresh() {
  const loads = [];
  if (can("read")) loads.push(loadTrust(), loadClients());
  if (can("review")) loads.push(loadReviews());
  if (can("audit")) loads.push(loadAudit());
  await run(() => Promise.all(loads));
}

// --- sign-in -------------------------------------------------------------------------------------

document.getElementById("admin-login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  run(async () => {
    const data = await gateway("/admin/api/login", {
      method: "POST",
      json: {
        name: document.getElementById("admin-name").value.trim(),
        password: document.getElementById("admin-password").value,
        totp: document.getElementById("admin-totp").value.trim(),
      },
    });
    document.getElementById("admin-password").value = "";
    document.getElementById("admin-totp").value = "";
    signedIn(data);
  });
});

document.getElementById("admin-logout").addEventListener("click", () => {
  run(async () => {
    await post("/logout");
    signedOut();
  });
});

// --- trust anchors -------------------------------------------------------------------------------

function crlText(crl) {
  if (!crl.loaded) return `${crl.source}: ${t("admin.trust.crl.missing")}`;
  const hours = Math.round(crl.age_seconds / 360) / 10;
  return `${crl.source}: ${t("admin.trust.crl.state", {
    age: hours,
    next: crl.next_update ? formatTime(crl.next_update) : "—",
  })}${crl.fresh ? "" : ` · ${t("admin.trust.crl.stale")}`}`;
}

async function loadTrust() {
  const data = await api("/trust-anchors");
  const rows = data.trust_anchors.map((anchor) => {
    const actions = el("td");
    if (anchor.ocsp) {
      const check = el("button", { type: "button", className: "secondary small", text: t("admin.trust.ocsp.check") });
      const result = el("span", { className: "status" });
      check.addEventListener("click", () => run(async () => {
        const answer = await post(`/trust-anchors/${anchor.sha256}/ocsp-check`);
        result.textContent = answer.ocsp.reachable
          ? t("admin.trust.ocsp.up", { status: answer.ocsp.status, ms: answer.ocsp.milliseconds })
          : t("admin.trust.ocsp.down", { status: answer.ocsp.status });
      }));
      actions.append(check, result);
    }
    if (anchor.source === "database" && can("change")) {
      const remove = el("button", { type: "button", className: "secondary small", text: t("admin.trust.remove") });
      remove.addEventListener("click", () => run(async () => {
        await post(`/trust-anchors/${anchor.sha256}/remove`);
        status(t("admin.trust.removed", { name: anchor.name }));
        await loadTrust();
      }));
      actions.append(remove);
    }
    return el(
      "tr",
      { "data-anchor": anchor.name },
      el("td", {}, el("strong", { text: anchor.name }), el("br"), el("small", { text: anchor.subject })),
      el("td", { text: `${anchor.revocation}${anchor.active ? "" : ` · ${t("admin.trust.pending")}`}` }),
      el("td", {}, ...anchor.crl.map((crl) => el("div", { text: crlText(crl) }))),
      el("td", { text: anchor.ocsp || t("admin.trust.ocsp.none") }),
      el("td", { text: anchor.mapping ? JSON.stringify(anchor.mapping) : t("admin.trust.mapping.default") }),
      actions,
    );
  });
  const head = el("tr", {}, ...["name", "revocation", "crl", "ocsp", "mapping", "actions"].map(
    (key) => el("th", { scope: "col", text: t(`admin.trust.col.${key}`) }),
  ));
  document.getElementById("trust-list").replaceChildren(
    el("table", { className: "admin-table" }, el("thead", {}, head), el("tbody", {}, ...rows)),
  );
}

document.getElementById("trust-add").addEventListener("submit", (event) => {
  event.preventDefault();
  run(async () => {
    const crl = document.getElementById("trust-crl").value.split(/[\s,]+/).filter(Boolean);
    const name = document.getElementById("trust-name").value.trim();
    const data = await post("/trust-anchors", {
      pem: document.getElementById("trust-pem").value,
      name: name || null,
      revocation: document.getElementById("trust-revocation").value,
      crl,
    });
    status(t("admin.trust.added", { name: data.trust_anchor.name }));
    document.getElementById("trust-pem").value = "";
    await loadTrust();
  });
});

document.getElementById("mapping-test").addEventListener("submit", (event) => {
  event.preventDefault();
  run(async () => {
    const data = await post("/mapping/test", { pem: document.getElementById("mapping-pem").value });
    const result = data.result;
    const region = document.getElementById("mapping-result");
    region.replaceChildren(
      result.reaches
        ? el("p", { text: t("admin.mapping.reaches", {
            name: result.reaches.display_name,
            id: result.reaches.id,
            by: result.matched_by,
            anchor: result.trust_anchor,
          }) })
        : el("p", { text: t("admin.mapping.none", { code: result.code, message: result.message }) }),
    );
    region.dataset.code = result.code;
    region.hidden = false;
  });
});

// --- accounts ------------------------------------------------------------------------------------

const DECISIONS = ["freeze", "suspend", "terminate", "unfreeze", "unlock"];

function accountReason() {
  const reason = document.getElementById("account-reason").value.trim();
  if (!reason) throw new LoginError("reason_required", { message: t("admin.reason.required") });
  return reason;
}

function renderAccount(account) {
  const facts = el("dl", { className: "facts" });
  for (const key of ["status", "real_name_level", "login_name", "uscc", "id_card_number", "phone", "email", "legal_representative", "locked_until"]) {
    const value = account[key];
    if (value === null || value === undefined || value === "") continue;
    facts.append(el("dt", { text: t(`admin.account.${key}`) }), el("dd", { text: String(value) }));
  }
  const actions = el("div", { className: "admin-actions" });
  if (can("change")) {
    const unmask = el("button", { type: "button", className: "secondary small", text: t("admin.account.unmask") });
    unmask.addEventListener("click", () => run(async () => {
      const data = await post(`/accounts/${account.id}/unmask`, { reason: accountReason() });
      item.replaceWith(renderAccount(data.account));
    }));
    actions.append(unmask);
    for (const decision of DECISIONS) {
      const button = el("button", { type: "button", className: "secondary small", "data-decision": decision, text: t(`admin.decision.${decision}`) });
      button.addEventListener("click", () => run(async () => {
        const data = await post(`/accounts/${account.id}/${decision}`, { reason: accountReason() });
        status(t("admin.decision.done", { decision: t(`admin.decision.${decision}`), name: data.account.display_name }));
        item.replaceWith(renderAccount(data.account));
      }));
      actions.append(button);
    }
  }
  if (account.kind === "enterprise") {
    const roles = el("button", { type: "button", className: "secondary small", text: t("admin.roles.show") });
    roles.addEventListener("click", () => run(() => showRoles(account.id)));
    actions.append(roles);
  }
  const item = el(
    "li",
    { className: "item", "data-account": account.id },
    el("div", { className: "item-main" },
      el("strong", { text: account.display_name }),
      el("span", { className: "tag", text: t(`admin.kind.${account.kind}`) }),
      el("small", { text: ` ${account.id}` }),
      facts),
    actions,
  );
  return item;
}

document.getElementById("account-search").addEventListener("submit", (event) => {
  event.preventDefault();
  run(async () => {
    const q = document.getElementById("account-q").value.trim();
    const data = await api(`/accounts?q=${encodeURIComponent(q)}`);
    const list = document.getElementById("account-results");
    list.replaceChildren(...data.accounts.map(renderAccount));
    if (!data.accounts.length) list.append(el("li", { className: "item", text: t("admin.accounts.none") }));
  });
});

// --- real-name review queue ----------------------------------------------------------------------

async function loadReviews() {
  const data = await api("/reviews?state=pending");
  const list = document.getElementById("review-list");
  list.replaceChildren(...data.reviews.map((review) => {
    const buttons = ["approve", "reject"].map((decision) => {
      const button = el("button", { type: "button", className: "secondary small", text: t(`admin.reviews.${decision}`) });
      button.addEventListener("click", () => run(async () => {
        const reason = document.getElementById("review-reason").value.trim();
        if (!reason) throw new LoginError("reason_required", { message: t("admin.reason.required") });
        await post(`/reviews/${review.id}/${decision}`, { reason });
        status(t(`admin.reviews.${decision}d`, { name: review.account.display_name }));
        await loadReviews();
      }));
      return button;
    });
    return el("li", { className: "item", "data-review": review.id },
      el("div", { className: "item-main" },
        el("strong", { text: review.account.display_name }),
        el("small", { text: ` ${review.account.id} · ${formatTime(review.requested_at)}` }),
        review.note ? el("p", { text: review.note }) : null),
      el("div", { className: "admin-actions" }, ...buttons));
  }));
  if (!data.reviews.length) list.append(el("li", { className: "item", text: t("admin.reviews.none") }));
}

// --- enterprise roles ----------------------------------------------------------------------------

async function showRoles(id) {
  const data = await api(`/enterprises/${id}/roles`);
  const view = document.getElementById("roles-view");
  const parts = [
    el("p", {}, el("strong", { text: data.enterprise.name }), el("small", { text: ` ${data.enterprise.uscc || ""}` })),
    el("p", { text: t("admin.roles.legal", { name: data.legal_representative || "—" }) }),
  ];
  if (data.installed) {
    parts.push(el("ul", { className: "items" }, ...data.staff.map((entry) => el("li", { className: "item", text: JSON.stringify(entry) }))));
  } else {
    parts.push(el("p", { className: "notice", id: "roles-not-installed", text: t("admin.roles.not_installed") }));
  }
  view.replaceChildren(...parts);
  document.getElementById("roles").scrollIntoView();
}

// --- SSO clients ---------------------------------------------------------------------------------

function showSecret(clientId, secret) {
  const region = document.getElementById("client-secret");
  region.replaceChildren(
    el("p", { text: t("admin.clients.secret", { client: clientId }) }),
    el("pre", {}, el("code", { text: secret })),
  );
  region.hidden = false;
}

async function loadClients() {
  const data = await api("/clients");
  const list = document.getElementById("client-list");
  list.replaceChildren(...data.clients.map((client) => {
    const actions = el("div", { className: "admin-actions" });
    if (can("change") && client.protocol === "oidc") {
      if (!client.public) {
        const rotate = el("button", { type: "button", className: "secondary small", text: t("admin.clients.rotate") });
        rotate.addEventListener("click", () => run(async () => {
          const answer = await post(`/clients/${client.client_id}/rotate-secret`);
          showSecret(client.client_id, answer.client_secret);
        }));
        actions.append(rotate);
      }
      const consent = el("button", { type: "button", className: "secondary small",
        text: t("admin.clients.consent.set", { mode: client.consent === "ask" ? "skip" : "ask" }) });
      consent.addEventListener("click", () => run(async () => {
        await post(`/clients/${client.client_id}/settings`, { consent: client.consent === "ask" ? "skip" : "ask" });
        await loadClients();
      }));
      actions.append(consent);
    }
    const uris = client.protocol === "oidc"
      ? [...client.redirect_uris, ...(client.backchannel_logout_uri ? [`${t("admin.clients.backchannel")}: ${client.backchannel_logout_uri}`] : [])]
      : client.services;
    return el("li", { className: "item", "data-client": client.client_id },
      el("div", { className: "item-main" },
        el("strong", { text: client.name }),
        el("span", { className: "tag", text: client.protocol }),
        el("small", { text: ` ${client.client_id}${client.consent ? ` · consent ${client.consent}` : ""}` }),
        ...uris.map((uri) => el("div", { text: uri }))),
      actions);
  }));
}

document.getElementById("client-add").addEventListener("submit", (event) => {
  event.preventDefault();
  run(async () => {
    const protocol = document.getElementById("client-protocol").value;
    const uris = document.getElementById("client-uris").value.split(/[\s,]+/).filter(Boolean);
    const backchannel = document.getElementById("client-backchannel").value.trim();
    const body = { name: document.getElementById("client-name").value.trim(), protocol };
    if (protocol === "oidc") {
      Object.assign(body, { redirect_uris: uris, consent: document.getElementById("client-consent").value });
      if (backchannel) body.backchannel_logout_uri = backchannel;
    } else {
      body.services = uris;
    }
    const data = await post("/clients", body);
    if (data.client_secret) showSecret(data.client.client_id, data.client_secret);
    await loadClients();
  });
});

// --- audit trail --------------------------------------------------------------------------------

async function loadAudit() {
  const params = new URLSearchParams({ limit: "50" });
  for (const key of ["event", "operator", "account"]) {
    const value = document.getElementById(`audit-${key}`).value.trim();
    if (value) params.set(key, value);
  }
  const data = await api(`/audit?${params}`);
  const head = el("tr", {}, ...["id", "at", "event", "outcome", "account", "detail"].map(
    (key) => el("th", { scope: "col", text: t(`admin.audit.col.${key}`) }),
  ));
  const rows = data.records.map((record) => el("tr", { "data-event": record.event },
    el("td", { text: String(record.id) }),
    el("td", { text: formatTime(record.at) }),
    el("td", { text: record.event }),
    el("td", { text: record.outcome }),
    el("td", { text: record.account || "" }),
    el("td", { text: record.detail || "" })));
  document.getElementById("audit-list").replaceChildren(
    el("table", { className: "admin-table" }, el("thead", {}, head), el("tbody", {}, ...rows)),
  );
}

document.getElementById("audit-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  run(loadAudit);
});

document.getElementById("audit-verify").addEventListener("click", () => {
  run(async () => {
    // Not through gateway(): a broken trail is an answer ({"ok": false, "problems"}), not an error.
    const response = await fetch("/admin/api/audit/verify", {
      method: "POST",
      headers: { Accept: "application/json", "X-CSRF-Token": csrf, "Accept-Language": lang },
      credentials: "same-origin",
      cache: "no-store",
    });
    const data = await response.json();
    if (!response.ok && data.error) throw new LoginError(data.error, { message: data.message });
    const verdict = document.getElementById("audit-verdict");
    verdict.textContent = data.ok
      ? t("admin.audit.intact", { records: data.records })
      : t("admin.audit.broken", { records: data.records, problems: data.problems.length });
    verdict.dataset.ok = String(data.ok);
  });
});

document.getElementById("audit-export").addEventListener("submit", (event) => {
  event.preventDefault();
  run(async () => {
    const body = {};
    for (const [key, id] of [["from", "audit-from"], ["to", "audit-to"]]) {
      const value = document.getElementById(id).value.trim();
      if (value) body[key] = Number.parseInt(value, 10);
    }
    const response = await fetch("/admin/api/audit/export", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "Accept-Language": lang },
      body: JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
    if (!response.ok) {
      const data = await response.json();
      throw new LoginError(data.error, { message: data.message });
    }
    const text = await response.text();
    const lines = text.trim().split("\n");
    const checkpoint = JSON.parse(lines[lines.length - 1]).checkpoint;
    const name = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    const link = el("a", {
      href: URL.createObjectURL(new Blob([text], { type: "application/x-ndjson" })),
      download: name ? name[1] : "certgate-audit.jsonl",
      id: "audit-download",
      text: t("admin.audit.download", { records: lines.length - 1 }),
    });
    const region = document.getElementById("audit-export-result");
    region.replaceChildren(link, el("br"), el("code", { id: "audit-checkpoint", text: checkpoint }));
    region.hidden = false;
  });
});

// --- start ---------------------------------------------------------------------------------------

async function start() {
  try {
    signedIn(await gateway("/admin/api/session"));
  } catch {
    signedOut();
  }
}

document.documentElement.dataset.ready = "admin"; // handlers attached (tests wait for this)
start();
