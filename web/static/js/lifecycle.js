// The account's life: verification codes, registration, SMS login, password reset and change,
// consent to a new agreement version, and the consent history on the account page.
import { LoginError, el, explain, formatTime, gateway, gatewayError, normaliseTyped, showMessage, t } from "./common.js";

const $ = (id) => document.getElementById(id);
// Identifiers, phone numbers and codes as typed with an IME are sent as the ASCII they mean.
const value = (id) => {
  const input = $(id);
  if (!input) return "";
  return input.dataset.typed ? normaliseTyped(input.value) : input.value.trim();
};

function explainWithReason(error, data) {
  if (error.code === "password_weak" && data && data.reason) return t(`error.password_weak.${data.reason}`);
  if ((error.code === "identifier_invalid" || error.code === "identifier_taken") && data && data.field) {
    return t(`error.${error.code}`, { field: t(`field.${data.field}`) });
  }
  return explain(error);
}

/** POST to the gateway, keeping the error's extra fields (reason, field) for the message. */
async function post(path, json, csrf) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json", ...(csrf ? { "X-CSRF-Token": csrf } : {}) },
    body: JSON.stringify(json),
    credentials: "same-origin",
    cache: "no-store",
  }).catch(() => null);
  if (!response) throw new LoginError("network");
  const data = await response.json().catch(() => null);
  if (!response.ok || !data || data.ok === false) throw gatewayError(response, data);
  return data;
}

function reporter(errorRegion, statusRegion) {
  return {
    fail(error) {
      statusRegion.textContent = "";
      showMessage(errorRegion, explainWithReason(error, error.data));
      errorRegion.dataset.code = error.code || "unknown";
    },
    status(text) {
      showMessage(errorRegion, "");
      statusRegion.textContent = text;
    },
  };
}

function codeSender(purpose, report) {
  const button = $("send-code");
  if (!button) return;
  button.addEventListener("click", async () => {
    try {
      const answer = await post("/api/v1/codes", { channel: "sms", to: value("phone"), purpose });
      report.status(t("code.sent"));
      let left = answer.resend_after;
      button.disabled = true;
      const timer = setInterval(() => {
        left -= 1;
        button.textContent = t("code.resend_in", { seconds: left });
        if (left <= 0) {
          clearInterval(timer);
          button.disabled = false;
          button.textContent = t("code.send");
        }
      }, 1000);
    } catch (error) {
      report.fail(error);
    }
  });
}

function registerPage() {
  const report = reporter($("page-error"), $("page-status"));
  codeSender("register", report);
  $("register-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!$("consent").checked) return report.fail(new LoginError("consent_required"));
    const enterprise = $("tab-enterprise").getAttribute("aria-selected") === "true";
    const common = {
      phone: value("phone"),
      code: value("code"),
      password: $("new_password").value,
      agreement_version: $("consent").value,
      login_name: value("login_name") || null,
    };
    const body = enterprise
      ? { ...common, name: value("name"), uscc: value("uscc"), legal_representative_name: value("legal_representative_name"), legal_representative_id_number: value("legal_representative_id_number") }
      : { ...common, real_name: value("real_name"), id_card_number: value("id_card_number"), email: value("email") || null };
    try {
      await post(`/api/v1/register/${enterprise ? "enterprise" : "person"}`, body);
      window.location.assign("/account");
    } catch (error) {
      report.fail(error);
    }
  });
  const select = (tab) => {
    for (const other of document.querySelectorAll('[role="tab"]')) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      $(other.getAttribute("aria-controls")).hidden = !selected;
    }
  };
  for (const tab of document.querySelectorAll('[role="tab"]')) tab.addEventListener("click", () => select(tab));
  // The login page's 法人用户 entry links here with ?kind=enterprise.
  if (new URLSearchParams(window.location.search).get("kind") === "enterprise") select($("tab-enterprise"));
}

function smsLogin() {
  const report = reporter($("login-error"), $("login-status"));
  codeSender("login", report);
  $("sms-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!$("consent").checked) return report.fail(new LoginError("consent_required"));
    try {
      const result = await post("/api/v1/login/sms", { phone: value("phone"), code: value("code") });
      await gateway("/api/v1/account/consent", { method: "POST", json: { version: $("consent").value }, csrf: result.csrf_token }).catch(() => null);
      // Back to where the login was asked for: the server put it on the page only if it is a
      // path on this origin.
      const next = $("login-card").dataset.next;
      window.location.assign(next && next.startsWith("/") && !next.startsWith("//") && !next.includes("\\") ? next : "/account");
    } catch (error) {
      report.fail(error);
    }
  });
}

function resetPage() {
  const report = reporter($("page-error"), $("page-status"));
  codeSender("reset", report);
  $("reset-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await post("/api/v1/password/reset", { phone: value("phone"), code: value("code"), new_password: $("new_password").value });
      $("new_password").value = "";
      report.status(t("reset.done"));
    } catch (error) {
      report.fail(error);
    }
  });
}

function consentPage() {
  const report = reporter($("page-error"), $("page-status"));
  const next = new URLSearchParams(window.location.search).get("next") || "/account";
  const target = next.startsWith("/") && !next.startsWith("//") ? next : "/account";
  $("consent-accept").addEventListener("click", async () => {
    try {
      const session = await gateway("/api/v1/session");
      await post("/api/v1/account/consent", { version: $("consent-accept").dataset.version }, session.csrf_token);
      window.location.assign(target);
    } catch (error) {
      report.fail(error);
    }
  });
  $("consent-logout").addEventListener("click", async () => {
    const session = await gateway("/api/v1/session").catch(() => null);
    if (session) await post("/api/v1/logout", {}, session.csrf_token).catch(() => null);
    window.location.assign("/login?reason=signed_out");
  });
}

async function accountPage() {
  const report = reporter($("password-error"), $("password-status"));
  $("password-change-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const session = await gateway("/api/v1/session");
      await post("/api/v1/account/password", { current_password: $("current_password").value, new_password: $("changed_password").value }, session.csrf_token);
      $("current_password").value = "";
      $("changed_password").value = "";
      report.status(t("password.change.done"));
    } catch (error) {
      report.fail(error);
    }
  });
  try {
    const { consents } = await gateway("/api/v1/account/consents");
    const rows = consents.map((entry) => el("tr", {}, el("td", { text: entry.version }), el("td", { text: formatTime(entry.consented_at) }), el("td", { text: t(`consents.how.${entry.how}`) })));
    $("consents").replaceChildren(
      consents.length
        ? el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: t("consents.version") }), el("th", { text: t("consents.at") }), el("th", { text: t("consents.how") }))), el("tbody", {}, ...rows))
        : el("p", { text: t("consents.none") }),
    );
  } catch (error) {
    $("consents").replaceChildren(el("p", { text: explain(error) }));
  }
}

const pages = { register: registerPage, reset: resetPage, consent: consentPage, "sms-login": smsLogin, "password-change": accountPage };
for (const [name, start] of Object.entries(pages)) {
  if (document.querySelector(`[data-page="${name}"]`)) start();
}
