// The in-site messages page: security notices and operators' decisions, newest first.
import { LoginError, el, explain, formatTime, gateway, showMessage, t } from "./common.js";

const region = document.getElementById("messages");
const errorRegion = document.getElementById("messages-error");
let csrf = null;

function problem(error) {
  if (error instanceof LoginError && error.code === "credentials_invalid") {
    window.location.replace("/login?next=/messages");
    return;
  }
  showMessage(errorRegion, explain(error instanceof LoginError ? error : new LoginError("unknown")));
}

async function markRead(body) {
  csrf = csrf || (await gateway("/api/v1/session")).csrf_token;
  await gateway("/api/v1/account/messages/read", { method: "POST", csrf, json: body });
  await load();
}

async function load() {
  const { messages } = await gateway("/api/v1/account/messages");
  if (!messages.length) {
    region.replaceChildren(el("p", { className: "muted", text: t("messages.none") }));
    return;
  }
  const items = messages.map((entry) => {
    const title = t(`notice.${entry.kind}`) === `notice.${entry.kind}` ? entry.title : t(`notice.${entry.kind}`);
    const action = entry.read
      ? el("span", { className: "tag muted", text: t("messages.read") })
      : el("button", { type: "button", className: "secondary small", text: t("messages.mark_read") });
    if (!entry.read) action.addEventListener("click", () => markRead({ ids: [entry.id] }).catch(problem));
    return el(
      "li",
      { className: entry.read ? "item read" : "item unread", "data-kind": entry.kind },
      el("div", { className: "item-main" }, el("h3", { text: title }), el("p", { className: "muted", text: formatTime(entry.created_at) }), el("p", { lang: "zh-CN", text: entry.text })),
      action,
    );
  });
  region.replaceChildren(el("ul", { className: "items" }, ...items));
}

document.getElementById("messages-mark-all").addEventListener("click", () => markRead({ all: true }).catch(problem));
document.documentElement.dataset.ready = "messages";
load().catch(problem);
