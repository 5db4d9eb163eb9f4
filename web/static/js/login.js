// The login page: USB key / certificate through the local signing agent, and password.
import {
  LoginError,
  TOKEN_KEY,
  agent,
  agentUrl,
  agreementVersion,
  dnAttribute,
  el,
  explain,
  formatDate,
  gateway,
  publicOrigin,
  showMessage,
  t,
} from "./common.js";

const errorRegion = document.getElementById("login-error");
const statusRegion = document.getElementById("login-status");
const list = document.getElementById("certificate-list");
const pinInput = document.getElementById("pin");
const consent = document.getElementById("consent");
const tokenSubmit = document.getElementById("token-submit");
const passwordSubmit = document.getElementById("password-submit");
let events = null;

function setStatus(text) {
  statusRegion.textContent = text;
}

function fail(error, focus = null) {
  setStatus("");
  const code = error instanceof LoginError ? error.code : "unknown";
  const command = code === "agent_unreachable" ? t("error.agent_unreachable.command", { origin: publicOrigin }) : null;
  showMessage(errorRegion, explain(error instanceof LoginError ? error : new LoginError("unknown")), { command });
  errorRegion.dataset.code = code;
  if (focus) focus.focus();
}

function clearError() {
  showMessage(errorRegion, "");
  delete errorRegion.dataset.code;
}

// --- tabs (WAI-ARIA tabs pattern: arrow keys, Home, End) -------------------------------------

const tabs = [...document.querySelectorAll('[role="tab"]')];

function selectTab(tab, focus = true) {
  for (const other of tabs) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
  }
  clearError();
  setStatus("");
  if (focus) tab.focus();
}

for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (event) => {
    const index = tabs.indexOf(tab);
    const next = {
      ArrowRight: tabs[(index + 1) % tabs.length],
      ArrowLeft: tabs[(index - 1 + tabs.length) % tabs.length],
      Home: tabs[0],
      End: tabs[tabs.length - 1],
    }[event.key];
    if (next) {
      event.preventDefault();
      selectTab(next);
    }
  });
}

// --- certificates on inserted keys -----------------------------------------------------------

function certificateOption(entry, index, checked) {
  const id = `certificate-${index}`;
  const expired = Date.parse(entry.not_after) <= Date.now();
  const holder = dnAttribute(entry.subject, "CN") || entry.subject;
  const organisation = dnAttribute(entry.subject, "O");
  const issuer = dnAttribute(entry.issuer, "CN") || entry.issuer;
  // Phrasing content only (a label may hold nothing else): spans laid out as a grid.
  const details = el(
    "span",
    { className: "certificate-details" },
    el("span", { className: "term", text: t("token.issuer") }),
    el("span", { text: issuer }),
    el("span", { className: "term", text: t("token.expiry") }),
    el("span", {}, formatDate(entry.not_after), expired ? el("span", { className: "tag", text: t("token.expired_tag") }) : null),
    el("span", { className: "term", text: t("token.on_key") }),
    el("span", { text: entry.token_label }),
  );
  return el(
    "div",
    { className: "certificate-option" },
    el("input", {
      type: "radio",
      name: "certificate",
      id,
      value: `${entry.token_label}/${entry.cert_id}`,
      "data-cert-id": entry.cert_id,
      "data-token-label": entry.token_label,
      checked,
    }),
    el(
      "label",
      { for: id },
      el("span", { className: "holder" }, holder, organisation && organisation !== holder ? el("span", { className: "organisation", text: organisation }) : null),
      details,
    ),
  );
}

async function loadCertificates() {
  clearError();
  setStatus(t("token.searching"));
  list.replaceChildren();
  let entries;
  try {
    entries = await agent("/v1/certificates");
  } catch (error) {
    fail(error);
    return;
  }
  watchKeys();
  if (!entries.length) {
    fail(new LoginError("no_certificates"));
    return;
  }
  const firstValid = Math.max(0, entries.findIndex((entry) => Date.parse(entry.not_after) > Date.now()));
  entries.forEach((entry, index) => list.append(certificateOption(entry, index, index === firstValid)));
  setStatus(t("token.found", { count: entries.length }));
}

/** Refresh the list when a key is inserted or pulled out (the agent's event stream). */
function watchKeys() {
  if (events) return;
  events = new EventSource(`${agentUrl}/v1/events`);
  const refresh = (event) => {
    const data = JSON.parse(event.data || "{}");
    if (data.source === "pkcs11") loadCertificates();
  };
  events.addEventListener("token_inserted", refresh);
  events.addEventListener("token_removed", refresh);
}

document.getElementById("token-refresh").addEventListener("click", () => loadCertificates());

// --- sign-in ---------------------------------------------------------------------------------

function consented() {
  if (consent.checked) return true;
  setStatus("");
  showMessage(errorRegion, t("consent.required"));
  errorRegion.dataset.code = "consent_required";
  consent.focus();
  return false;
}

async function signedIn(result, tokenLabel) {
  if (tokenLabel) localStorage.setItem(TOKEN_KEY, tokenLabel);
  else localStorage.removeItem(TOKEN_KEY);
  setStatus(t("status.signed_in"));
  // Record consent to the agreement version shown on this page (the agreements ask for it).
  await gateway("/api/v1/account/consent", {
    method: "POST",
    json: { version: agreementVersion },
    csrf: result.csrf_token,
  });
  // Back to where the login was asked for (an application signing in through the gateway):
  // the server put it on the page only if it is a path on this origin.
  const next = document.getElementById("login-card").dataset.next;
  window.location.assign(next && next.startsWith("/") && !next.startsWith("//") && !next.includes("\\") ? next : "/account");
}

async function tokenLogin() {
  const chosen = list.querySelector('input[name="certificate"]:checked');
  if (!chosen) return fail(new LoginError("choose_certificate"), list.querySelector("input") || document.getElementById("token-refresh"));
  if (!pinInput.value) return fail(new LoginError("pin_required"), pinInput);
  if (!consented()) return;
  clearError();
  setStatus(t("token.signing"));
  const tokenLabel = chosen.dataset.tokenLabel;
  let signed;
  try {
    const challenge = await gateway("/api/v1/login/challenge", { method: "POST", json: {} });
    const pin = pinInput.value;
    try {
      // The PIN goes to the agent on this computer, never to the gateway.
      const request = {
        cert_id: chosen.dataset.certId,
        token_label: tokenLabel,
        pin,
        challenge_id: challenge.challenge_id,
        nonce: challenge.nonce,
      };
      try {
        signed = await agent("/v1/sign", { json: request });
      } catch (error) {
        // The key has one PIN try left: the agent sends the PIN only once the person agrees.
        if (!(error instanceof LoginError && error.code === "pin_final_try")) throw error;
        if (!window.confirm(t("pin.final_try.confirm"))) throw error;
        signed = await agent("/v1/sign", { json: { ...request, confirm_final_try: true } });
      }
    } finally {
      pinInput.value = "";
    }
    setStatus(t("status.signing_in"));
    const result = await gateway("/api/v1/login/token", {
      method: "POST",
      json: {
        challenge_id: challenge.challenge_id,
        certificate: signed.certificate,
        chain: signed.chain || [],
        signature: signed.signature,
        signature_algorithm: signed.signature_algorithm,
      },
    });
    await signedIn(result, tokenLabel);
  } catch (error) {
    const pinProblem = error instanceof LoginError && error.code.startsWith("pin_");
    fail(error, pinProblem ? pinInput : null);
  }
}

async function passwordLogin() {
  const identifier = document.getElementById("identifier");
  const password = document.getElementById("password");
  if (!identifier.value.trim()) return fail(new LoginError("credentials_invalid"), identifier);
  if (!password.value) return fail(new LoginError("credentials_invalid"), password);
  if (!consented()) return;
  clearError();
  setStatus(t("status.signing_in"));
  try {
    const result = await gateway("/api/v1/login/password", {
      method: "POST",
      json: { identifier: identifier.value.trim(), password: password.value },
    });
    password.value = "";
    await signedIn(result, null);
  } catch (error) {
    password.value = "";
    fail(error, password);
  }
}

function guarded(button, action) {
  return async (event) => {
    event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await action();
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  };
}

document.getElementById("token-form").addEventListener("submit", guarded(tokenSubmit, tokenLogin));
document.getElementById("password-form").addEventListener("submit", guarded(passwordSubmit, passwordLogin));

localStorage.removeItem(TOKEN_KEY);
document.documentElement.dataset.ready = "login"; // handlers attached (tests wait for this)
loadCertificates();
