// The account page's part of the account's life: the unread-messages badge, binding a USB key
// (the certificate helper signs a fresh challenge, like a USB-key login), and cancellation.
import { LoginError, agent, certificateHolder, el, explain, formatDate, gateway, maskNumber, showMessage, sortCertificates, t } from "./common.js";

let csrf = null;

async function session() {
  if (!csrf) csrf = (await gateway("/api/v1/session")).csrf_token;
  return csrf;
}

function fail(region, error) {
  showMessage(region, explain(error instanceof LoginError ? error : new LoginError("unknown")));
}

// --- unread messages ---------------------------------------------------------------------------

async function showUnread() {
  const badge = document.getElementById("messages-unread");
  try {
    const { unread } = await gateway("/api/v1/account/messages");
    badge.textContent = t("messages.unread", { count: unread });
    badge.hidden = unread === 0;
  } catch {
    badge.hidden = true; // the account part of the page reports session problems
  }
}

// --- binding a USB key -------------------------------------------------------------------------

const bindForm = document.getElementById("bind-form");
const bindStart = document.getElementById("bind-start");
const bindError = document.getElementById("bind-error");
const bindStatus = document.getElementById("bind-status");
const bindList = document.getElementById("bind-certificates");
const bindPin = document.getElementById("bind-pin");

async function openBinding() {
  bindError.hidden = true;
  bindForm.hidden = false;
  bindStart.hidden = true;
  bindStatus.textContent = t("token.searching");
  bindList.replaceChildren();
  let entries;
  try {
    entries = await agent("/v1/certificates");
  } catch (error) {
    bindStatus.textContent = "";
    fail(bindError, error);
    return;
  }
  bindStatus.textContent = "";
  if (!entries.length) return fail(bindError, new LoginError("no_certificates"));
  // A stable order: organisation certificates first, then by holder, expiry and place on the key.
  sortCertificates(entries, "enterprise").forEach((entry, index) => {
    const id = `bind-certificate-${index}`;
    const { kind, number, name } = certificateHolder(entry.subject, entry.certificate);
    bindList.append(
      el(
        "div",
        { className: "certificate-option" },
        el("input", { type: "radio", name: "bind-certificate", id, checked: index === 0, "data-cert-id": entry.cert_id, "data-token-label": entry.token_label }),
        el(
          "label",
          { for: id },
          el("span", { className: `tag kind ${kind}`, "data-kind": kind, text: t(`bind.kind.${kind}`) }),
          " ",
          name,
          number ? el("span", { className: "number", text: ` ${maskNumber(number)}` }) : null,
          " · ",
          formatDate(entry.not_after),
        ),
      ),
    );
  });
  bindPin.focus();
}

async function bind(event) {
  event.preventDefault();
  bindError.hidden = true;
  const chosen = bindList.querySelector('input[name="bind-certificate"]:checked');
  if (!chosen) return fail(bindError, new LoginError("choose_certificate"));
  if (!bindPin.value) return fail(bindError, new LoginError("pin_required"));
  bindStatus.textContent = t("token.signing");
  try {
    const token = await session();
    const challenge = await gateway("/api/v1/login/challenge", { method: "POST", json: {} });
    let signed;
    try {
      signed = await agent("/v1/sign", {
        json: { cert_id: chosen.dataset.certId, token_label: chosen.dataset.tokenLabel, pin: bindPin.value, challenge_id: challenge.challenge_id, nonce: challenge.nonce },
      });
    } finally {
      bindPin.value = "";
    }
    const result = await gateway("/api/v1/account/certificates/bind", {
      method: "POST",
      csrf: token,
      json: {
        challenge_id: challenge.challenge_id,
        certificate: signed.certificate,
        chain: signed.chain || [],
        signature: signed.signature,
        signature_algorithm: signed.signature_algorithm,
        label: chosen.dataset.tokenLabel,
      },
    });
    bindForm.hidden = true;
    bindStart.hidden = false;
    document.getElementById("account-status").textContent = result.already_bound ? t("bind.already") : result.real_name_level >= 2 ? t("bind.done.level", { level: result.real_name_level }) : t("bind.done");
    document.dispatchEvent(new CustomEvent("certgate:certificates-changed"));
    showUnread();
  } catch (error) {
    bindStatus.textContent = "";
    fail(bindError, error);
  }
}

bindStart.addEventListener("click", openBinding);
document.getElementById("bind-cancel").addEventListener("click", () => {
  bindForm.hidden = true;
  bindStart.hidden = false;
  bindPin.value = "";
});
bindForm.addEventListener("submit", bind);

// --- cancellation --------------------------------------------------------------------------------

const cancelForm = document.getElementById("cancel-form");
const cancelConfirm = document.getElementById("cancel-confirm");
const cancelSubmit = document.getElementById("cancel-submit");
const cancelError = document.getElementById("cancel-error");

cancelConfirm.addEventListener("change", () => {
  cancelSubmit.disabled = !cancelConfirm.checked;
});
cancelForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  cancelError.hidden = true;
  if (!cancelConfirm.checked || !window.confirm(t("cancel.confirm"))) return;
  try {
    await gateway("/api/v1/account/cancel", { method: "POST", csrf: await session(), json: { confirm: true } });
    window.location.replace("/login?reason=cancelled");
  } catch (error) {
    if (error instanceof LoginError && error.code === "reauthentication_required") {
      const again = el("a", { href: "/login?next=/account", text: t("cancel.reauthenticate") });
      showMessage(cancelError, explain(error));
      cancelError.append(" ", again);
      return;
    }
    fail(cancelError, error);
  }
});

document.documentElement.dataset.accountLife = "ready"; // handlers attached (tests wait for this)
showUnread();
