// The account page: who is signed in and how, bound certificates, sessions, login history; and,
// after a USB-key login, signing out when that key is pulled out.
import {
  LoginError,
  TOKEN_KEY,
  agentUrl,
  dnAttribute,
  dnFields,
  el,
  isIdCardNumber,
  maskNumber,
  explain,
  formatDate,
  formatTime,
  gateway,
  showMessage,
  t,
} from "./common.js";

const errorRegion = document.getElementById("account-error");
const statusRegion = document.getElementById("account-status");
let csrf = null;
let leaving = false;

function toLogin(reason) {
  leaving = true;
  localStorage.removeItem(TOKEN_KEY);
  window.location.replace(reason ? `/login?reason=${encodeURIComponent(reason)}` : "/login");
}

function problem(error) {
  if (error instanceof LoginError && error.code === "credentials_invalid") return toLogin("");
  showMessage(errorRegion, explain(error instanceof LoginError ? error : new LoginError("unknown")));
}

async function logout(reason) {
  if (leaving) return;
  leaving = true;
  try {
    await gateway("/api/v1/logout", { method: "POST", csrf });
  } catch {
    // Already signed out (or the session expired): the login page is where to go either way.
  }
  toLogin(reason);
}

// --- who -------------------------------------------------------------------------------------

function fact(list, label, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", { text: label }), el("dd", { text: value }));
}

// "mfa" sums up the others (hwk + pin); the page names the factors themselves.
function describeAmr(amr) {
  return amr
    .filter((value) => value !== "mfa")
    .map((value) => t(`amr.${value}`))
    .join(" + ");
}

function renderAccount(data) {
  const account = data.account;
  document.getElementById("account-kind").textContent = t(`account.kind.${account.kind}`);
  document.getElementById("account-name").textContent = account.display_name;
  const facts = document.getElementById("account-facts");
  facts.replaceChildren();
  if (account.kind === "enterprise") {
    fact(facts, t("account.uscc"), account.uscc);
    fact(facts, t("account.legal_representative"), account.legal_representative);
  } else {
    fact(facts, t("account.id_card"), account.id_card_number_masked);
    fact(facts, t("account.phone"), account.phone_masked);
  }
  fact(facts, t("account.login_name"), account.login_name);
  fact(facts, t("account.how"), describeAmr(data.amr));
  fact(
    facts,
    t("account.agreement"),
    account.agreement_version
      ? t("account.agreement.value", { version: account.agreement_version, at: formatTime(account.agreement_consented_at) })
      : t("account.agreement.none"),
  );
}

// --- key removal -----------------------------------------------------------------------------

function watchKey(data) {
  // Every USB-key login (the agent signed after the token checked the PIN), whether or not its
  // trust anchor vouches for hardware keys ("hwk" or "swk").
  if (!data.amr.includes("pin")) return;
  const note = document.getElementById("key-watch");
  const label = localStorage.getItem(TOKEN_KEY);
  const events = new EventSource(`${agentUrl}/v1/events`);
  const pulled = (tokenLabel) => !label || tokenLabel === label;
  events.addEventListener("ready", (event) => {
    note.textContent = t("account.key_watch");
    note.hidden = false;
    const ready = JSON.parse(event.data || "{}");
    // Pulled while this page was not listening (closed, or the agent restarting).
    if (label && Array.isArray(ready.tokens) && !ready.tokens.includes(label)) {
      events.close();
      logout("key_removed");
    }
  });
  events.addEventListener("token_removed", (event) => {
    const removed = JSON.parse(event.data || "{}");
    if (removed.source === "pkcs11" && pulled(removed.token_label)) {
      events.close();
      logout("key_removed");
    }
  });
  events.addEventListener("error", () => {
    if (leaving) return;
    note.textContent = t("account.key_watch_off");
    note.hidden = false;
  });
}

// --- certificates ----------------------------------------------------------------------------

/** A certificate's subject as its fields (名称 CN, 单位 O, 证件号码 serialNumber, ...), not a raw
 * distinguished name; an ID-card number is masked like the account's own. */
function subjectFields(subject) {
  const list = el("dl", { className: "subject-fields" });
  for (const [type, value] of dnFields(subject)) {
    const label = t(`dn.${type}`) === `dn.${type}` ? type : t(`dn.${type}`);
    const personal = type === "idCardNumber" || (type === "serialNumber" && isIdCardNumber(value.toUpperCase()));
    list.append(el("dt", { text: label }), el("dd", { "data-field": type, text: personal ? maskNumber(value) : value }));
  }
  return list;
}

async function loadCertificates() {
  const region = document.getElementById("certificates");
  const { certificates } = await gateway("/api/v1/account/certificates");
  if (!certificates.length) {
    region.replaceChildren(el("p", { className: "muted", text: t("certs.none") }));
    return;
  }
  const items = certificates.map((entry) => {
    const title = dnAttribute(entry.subject, "CN") || entry.subject || entry.label || `${entry.kind}: ${entry.value.slice(0, 16)}…`;
    const facts = el("dl", { className: "facts compact" });
    if (entry.subject) facts.append(el("dt", { text: t("certs.subject") }), el("dd", {}, subjectFields(entry.subject)));
    else fact(facts, t("certs.subject"), t("certs.unknown"));
    fact(facts, t("certs.issuer"), entry.issuer ? dnAttribute(entry.issuer, "CN") || entry.issuer : "");
    fact(facts, t("certs.expiry"), formatDate(entry.not_after));
    fact(facts, t("certs.last_used"), entry.last_used_at ? formatTime(entry.last_used_at) : t("certs.never"));
    const button = el("button", { type: "button", className: "secondary small", text: t("certs.unbind") });
    button.addEventListener("click", async () => {
      if (!window.confirm(t("certs.unbind.confirm"))) return;
      try {
        await gateway("/api/v1/account/certificates/unbind", {
          method: "POST",
          json: { kind: entry.kind, value: entry.value },
          csrf,
        });
        statusRegion.textContent = t("certs.unbound");
        await Promise.all([loadCertificates(), loadHistory()]);
      } catch (error) {
        problem(error);
      }
    });
    return el("li", { className: "item" }, el("div", { className: "item-main" }, el("h3", { text: title }), facts), button);
  });
  region.replaceChildren(el("ul", { className: "items" }, ...items));
}

// --- sessions --------------------------------------------------------------------------------

async function loadSessions() {
  const region = document.getElementById("sessions");
  const { sessions } = await gateway("/api/v1/account/sessions");
  const items = sessions.map((entry) => {
    const facts = el("dl", { className: "facts compact" });
    fact(facts, t("sessions.how"), describeAmr(entry.amr));
    fact(facts, t("sessions.started"), formatTime(entry.created_at));
    fact(facts, t("sessions.last_seen"), formatTime(entry.last_seen_at));
    const button = el("button", { type: "button", className: "secondary small", text: t("sessions.end") });
    button.addEventListener("click", async () => {
      try {
        const result = await gateway("/api/v1/account/sessions/end", { method: "POST", json: { id: entry.id }, csrf });
        if (result.current) return toLogin("signed_out");
        statusRegion.textContent = t("sessions.ended");
        await Promise.all([loadSessions(), loadHistory()]);
      } catch (error) {
        problem(error);
      }
    });
    const heading = el("h3", {}, describeAmr(entry.amr), entry.current ? el("span", { className: "tag current", text: t("sessions.current") }) : null);
    return el("li", { className: "item" }, el("div", { className: "item-main" }, heading, facts), button);
  });
  region.replaceChildren(el("ul", { className: "items" }, ...items));
}

// --- applications (single sign-on) -----------------------------------------------------------

async function applicationAction(path, done) {
  try {
    await gateway(path, { method: "POST", json: {}, csrf });
    statusRegion.textContent = t(done);
    await Promise.all([loadApplications(), loadHistory()]);
  } catch (error) {
    problem(error);
  }
}

async function loadApplications() {
  const region = document.getElementById("applications");
  const { applications } = await gateway("/api/v1/account/applications");
  if (!applications.length) {
    region.replaceChildren(el("p", { className: "muted", text: t("apps.none") }));
    return;
  }
  const items = applications.map((entry) => {
    const base = `/api/v1/account/applications/${encodeURIComponent(entry.client_id)}`;
    const facts = el("dl", { className: "facts compact" });
    fact(facts, t("apps.last_used"), entry.last_used_at ? formatTime(entry.last_used_at) : t("apps.never"));
    if (entry.consent) fact(facts, t("apps.consent"), entry.consent.scopes.map((scope) => t(`sso.scope.${scope}`)).join("、"));
    const buttons = [];
    if (entry.signed_in) {
      const signOut = el("button", { type: "button", className: "secondary small", text: t("apps.sign_out") });
      signOut.addEventListener("click", () => applicationAction(`${base}/sign-out`, "apps.signed_out"));
      buttons.push(signOut);
    }
    if (entry.consent) {
      const withdraw = el("button", { type: "button", className: "secondary small", text: t("apps.withdraw") });
      withdraw.addEventListener("click", () => {
        if (window.confirm(t("apps.withdraw.confirm"))) applicationAction(`${base}/consent/withdraw`, "apps.withdrawn");
      });
      buttons.push(withdraw);
    }
    const heading = el("h3", {}, entry.name, entry.signed_in ? el("span", { className: "tag current", text: t("apps.signed_in") }) : null);
    return el("li", { className: "item" }, el("div", { className: "item-main" }, heading, facts), ...buttons);
  });
  region.replaceChildren(el("ul", { className: "items" }, ...items));
}

// --- history ---------------------------------------------------------------------------------

async function loadHistory() {
  const region = document.getElementById("history");
  const { history } = await gateway("/api/v1/account/history");
  if (!history.length) {
    region.replaceChildren(el("p", { className: "muted", text: t("history.none") }));
    return;
  }
  const head = el(
    "thead",
    {},
    el("tr", {}, ...["history.time", "history.event", "history.result", "history.address"].map((key) => el("th", { scope: "col", text: t(key) }))),
  );
  const rows = history.map((entry) => {
    const event = t(`event.${entry.event}`) + (entry.method ? ` · ${t(`method.${entry.method}`)}` : "");
    const ok = entry.outcome === "ok";
    const outcome = ok ? t("history.ok") : explain(new LoginError(entry.outcome));
    return el(
      "tr",
      {},
      el("td", { text: formatTime(entry.at) }),
      el("td", { text: event }),
      el("td", { className: ok ? "ok" : "refused", text: outcome }),
      el("td", { text: entry.address || "" }),
    );
  });
  region.replaceChildren(el("table", {}, el("caption", { className: "visually-hidden", text: t("history.title") }), head, el("tbody", {}, ...rows)));
}

// --- start -----------------------------------------------------------------------------------

document.getElementById("logout").addEventListener("click", () => logout("signed_out"));
// A USB key bound from this page (account_life.js): list the certificates again.
document.addEventListener("certgate:certificates-changed", () => Promise.all([loadCertificates(), loadHistory()]).catch(problem));
document.documentElement.dataset.ready = "account"; // handlers attached (tests wait for this)

async function start() {
  let data;
  try {
    data = await gateway("/api/v1/account");
  } catch (error) {
    problem(error);
    return;
  }
  csrf = data.csrf_token;
  renderAccount(data);
  watchKey(data);
  try {
    await Promise.all([loadCertificates(), loadSessions(), loadApplications(), loadHistory()]);
  } catch (error) {
    problem(error);
  }
}

start();
