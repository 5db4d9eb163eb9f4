// The banner shown while a person acts for an enterprise: "switch back" acts for oneself again.
import { LoginError, explain, gateway } from "./common.js";

const button = document.getElementById("acting-switch-back");
if (button) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const { csrf_token: csrf } = await gateway("/api/v1/session");
      await gateway("/api/v1/session/act-as", { method: "POST", json: { enterprise_id: null }, csrf });
      window.location.reload();
    } catch (error) {
      button.disabled = false;
      window.alert(explain(error instanceof LoginError ? error : new LoginError("unknown")));
    }
  });
}
