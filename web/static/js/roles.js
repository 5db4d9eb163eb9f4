// The account page's enterprise roles: a person's invitations to answer and the enterprises they
// can act for (switching, leaving); the enterprise's staff with their periods, inviting and
// revoking (the enterprise's own login, or its legal representative acting for it).
import { LoginError, el, explain, formatTime, gateway, showMessage, t } from "./common.js";

let csrf = null;
let session = null;

function fail(region, error) {
  showMessage(region, explain(error instanceof LoginError ? error : new LoginError("unknown")));
}

function fact(list, label, value) {
  if (!value) return;
  list.append(el("dt", { text: label }), el("dd", { text: value }));
}

function item(title, facts, ...buttons) {
  return el("li", { className: "item" }, el("div", { className: "item-main" }, title, facts), ...buttons);
}

function button(text, onClick, className = "secondary small") {
  const node = el("button", { type: "button", className, text });
  node.addEventListener("click", onClick);
  return node;
}

async function post(path, json = {}) {
  return gateway(path, { method: "POST", json, csrf });
}

// --- a person: invitations and roles ------------------------------------------------------------

const rolesError = document.getElementById("roles-error");
const rolesStatus = document.getElementById("roles-status");

async function act(enterprise) {
  try {
    await post("/api/v1/session/act-as", { enterprise_id: enterprise.id });
    rolesStatus.textContent = t("roles.switched", { name: enterprise.name });
    window.location.reload(); // every part of the page, and the banner, as the enterprise
  } catch (error) {
    fail(rolesError, error);
  }
}

async function loadInvitations() {
  const region = document.getElementById("roles-invitations");
  const { invitations } = await gateway("/api/v1/account/invitations");
  if (!invitations.length) {
    region.replaceChildren(el("p", { className: "muted", text: t("roles.invitations.none") }));
    return;
  }
  const items = invitations.map((entry) => {
    const facts = el("dl", { className: "facts compact" });
    fact(facts, t("account.uscc"), entry.enterprise.uscc);
    fact(facts, t("roles.valid_until"), formatTime(entry.valid_until));
    fact(facts, t("roles.answer_by"), formatTime(entry.expires_at));
    const answer = (verb, done) => async () => {
      try {
        await post(`/api/v1/account/invitations/${encodeURIComponent(entry.id)}/${verb}`);
        rolesStatus.textContent = t(done);
        await loadRoles();
      } catch (error) {
        fail(rolesError, error);
      }
    };
    return item(
      el("h3", {}, entry.enterprise.name, el("span", { className: "tag", text: t("role.staff") })),
      facts,
      button(t("roles.accept"), answer("accept", "roles.accepted"), "primary small"),
      button(t("roles.decline"), answer("decline", "roles.declined")),
    );
  });
  region.replaceChildren(el("ul", { className: "items", id: "invitation-items" }, ...items));
}

async function loadRoleList() {
  const region = document.getElementById("roles-list");
  const { roles, pending_verification: waiting } = await gateway("/api/v1/account/roles");
  const acting = session.acting_for;
  const parts = [];
  if (!roles.length) parts.push(el("p", { className: "muted", text: t("roles.none") }));
  const items = roles.map((entry) => {
    const facts = el("dl", { className: "facts compact" });
    fact(facts, t("account.uscc"), entry.enterprise.uscc);
    fact(facts, t("roles.valid_until"), entry.valid_until ? formatTime(entry.valid_until) : t("roles.no_end"));
    const current = acting && acting.id === entry.enterprise.id;
    const buttons = [];
    if (!current) buttons.push(button(t("roles.act"), () => act(entry.enterprise), "primary small"));
    if (entry.role === "staff") {
      buttons.push(
        button(t("roles.leave"), async () => {
          if (!window.confirm(t("roles.leave.confirm"))) return;
          try {
            await post(`/api/v1/account/roles/${encodeURIComponent(entry.enterprise.id)}/leave`);
            if (current) return window.location.reload();
            rolesStatus.textContent = t("roles.left");
            await loadRoles();
          } catch (error) {
            fail(rolesError, error);
          }
        }),
      );
    }
    const heading = el(
      "h3",
      {},
      entry.enterprise.name,
      el("span", { className: "tag", text: t(`role.${entry.role}`) }),
      current ? el("span", { className: "tag current", text: t("roles.acting") }) : null,
    );
    return item(heading, facts, ...buttons);
  });
  if (items.length) parts.push(el("ul", { className: "items", id: "role-items" }, ...items));
  if (waiting && waiting.length) {
    parts.push(el("p", { className: "help", text: t("roles.pending_verification") }));
    parts.push(el("ul", {}, ...waiting.map((entry) => el("li", { text: `${entry.name}（${entry.uscc}）` }))));
  }
  region.replaceChildren(...parts);
}

async function loadRoles() {
  await Promise.all([loadInvitations(), loadRoleList()]);
}

// --- the enterprise: staff ------------------------------------------------------------------------

const staffError = document.getElementById("staff-error");
const staffStatus = document.getElementById("staff-status");

async function loadStaff() {
  const { staff, invitations } = await gateway("/api/v1/enterprise/staff");
  const list = document.getElementById("staff-list");
  if (!staff.length) {
    list.replaceChildren(el("p", { className: "muted", text: t("staff.none") }));
  } else {
    const items = staff.map((entry) => {
      const facts = el("dl", { className: "facts compact" });
      fact(facts, t("account.id_card"), entry.person.id_card_number_masked);
      fact(facts, t("roles.valid_until"), formatTime(entry.valid_until));
      const heading = el("h3", {}, entry.person.name, el("span", { className: `tag ${entry.state === "active" ? "current" : ""}`, text: t(`staff.state.${entry.state}`) }));
      const buttons = [];
      if (entry.state === "active") {
        buttons.push(
          button(t("staff.revoke"), async () => {
            if (!window.confirm(t("staff.revoke.confirm"))) return;
            try {
              await post(`/api/v1/enterprise/staff/${encodeURIComponent(entry.person.id)}/revoke`);
              staffStatus.textContent = t("staff.revoked");
              await loadStaff();
            } catch (error) {
              fail(staffError, error);
            }
          }),
        );
      }
      return item(heading, facts, ...buttons);
    });
    list.replaceChildren(el("ul", { className: "items", id: "staff-items" }, ...items));
  }
  const open = document.getElementById("staff-invitations");
  if (!invitations.length) {
    open.replaceChildren();
    return;
  }
  const items = invitations.map((entry) => {
    const facts = el("dl", { className: "facts compact" });
    fact(facts, t("roles.valid_until"), formatTime(entry.valid_until));
    fact(facts, t("roles.answer_by"), formatTime(entry.expires_at));
    return item(el("h3", { text: `${t("staff.invitee_masked")} ${entry.invitee.masked}` }), facts);
  });
  open.replaceChildren(el("h3", { text: t("staff.invitations") }), el("ul", { className: "items" }, ...items));
}

document.getElementById("staff-invite-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showMessage(staffError, "");
  const kind = document.getElementById("staff-invitee-kind").value;
  const body = {
    [kind]: document.getElementById("staff-invitee").value.trim(),
    valid_until: document.getElementById("staff-valid-until").value,
  };
  try {
    await post("/api/v1/enterprise/staff", body);
    staffStatus.textContent = t("staff.invited");
    document.getElementById("staff-invitee").value = "";
    await loadStaff();
  } catch (error) {
    fail(staffError, error);
  }
});

// --- start ---------------------------------------------------------------------------------------

async function start() {
  try {
    session = await gateway("/api/v1/session");
  } catch {
    return; // the account part of the page reports session problems
  }
  csrf = session.csrf_token;
  const person = session.account.kind === "person";
  const manages =
    session.account.kind === "enterprise" || (session.acting_for && session.acting_for.role === "legal_representative");
  try {
    if (person) {
      document.getElementById("roles-card").hidden = false;
      await loadRoles();
    }
    if (manages) {
      document.getElementById("staff-card").hidden = false;
      await loadStaff();
    }
  } catch (error) {
    fail(person ? rolesError : staffError, error);
  }
  document.documentElement.dataset.roles = "ready"; // tests wait for this
}

start();
