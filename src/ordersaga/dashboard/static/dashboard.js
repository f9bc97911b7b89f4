// The ordersaga dashboard's behaviour: the live overview, signing in, and operator actions.
// Plain browser JavaScript, no library: every request goes to this same server.
"use strict";

(function () {
  const body = document.body;
  const base = body.dataset.base || "";

  async function post(path, data) {
    const response = await fetch(base + path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(data),
      credentials: "same-origin",
    });
    let payload = {};
    try {
      payload = await response.json();
    } catch (_) {
      payload = { error: response.statusText };
    }
    if (!response.ok) {
      throw new Error(payload.error || "HTTP " + response.status);
    }
    return payload;
  }

  function pick(object, path) {
    return path.split(".").reduce((value, key) => (value == null ? value : value[key]), object);
  }

  // -- the overview, refreshed live ------------------------------------------------------------
  function renderOverview(section, data) {
    section.querySelectorAll("[data-stat]").forEach((node) => {
      const value = pick(data, node.dataset.stat);
      if (value !== undefined) node.textContent = String(value);
    });
    const chart = section.querySelector("svg.throughput");
    if (chart) {
      const counts = data.throughput.per_minute;
      const peak = Math.max(1, ...counts);
      counts.forEach((n, i) => {
        const bar = chart.querySelector('rect[data-bucket="' + i + '"]');
        if (!bar) return;
        const height = (n / peak) * 74;
        bar.setAttribute("y", (78 - height).toFixed(1));
        bar.setAttribute("height", height.toFixed(1));
        const title = bar.querySelector("title");
        if (title) title.textContent = String(n);
      });
    }
    data.services.forEach((service) => {
      const row = section.querySelector('tr[data-service="' + service.service + '"]');
      if (!row) return;
      ["calls", "retried", "unknown"].forEach((field) => {
        row.querySelector('[data-field="' + field + '"]').textContent = String(service[field]);
      });
      const state = row.querySelector('[data-field="state"]');
      state.textContent = service.state;
      state.className = "badge state-" + service.state;
    });
    const list = section.querySelector("#attention");
    if (list) {
      list.replaceChildren();
      data.needs_attention.sagas.forEach((row) => {
        const item = document.createElement("li");
        const link = document.createElement("a");
        link.href = base + "/sagas/" + encodeURIComponent(row.order_id);
        link.textContent = row.order_id;
        const detail = document.createElement("span");
        detail.className = "muted";
        detail.textContent = " " + row.status + (row.reason ? " · " + row.reason : "");
        item.append(link, detail);
        list.append(item);
      });
      if (!data.needs_attention.sagas.length) {
        const none = document.createElement("li");
        none.className = "muted";
        none.textContent = "none";
        list.append(none);
      }
    }
    const stamp = document.getElementById("refreshed");
    if (stamp) stamp.textContent = "refreshed " + new Date().toLocaleTimeString();
  }

  function startOverview() {
    const section = document.getElementById("overview");
    if (!section) return;
    const every = Number(body.dataset.refresh) || 3000;
    async function refresh() {
      if (!document.hidden) {
        try {
          const response = await fetch(section.dataset.url, { credentials: "same-origin" });
          if (response.ok) {
            renderOverview(section, await response.json());
            section.classList.remove("stale");
          } else {
            section.classList.add("stale");
          }
        } catch (_) {
          section.classList.add("stale");
        }
      }
      window.setTimeout(refresh, every);
    }
    window.setTimeout(refresh, every);
  }

  // -- signing in and out ----------------------------------------------------------------------
  function startSignIn() {
    const form = document.getElementById("sign-in");
    if (form) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const error = document.getElementById("sign-in-error");
        error.textContent = "";
        try {
          await post("/api/session", { name: form.name.value, token: form.token.value });
          window.location.reload();
        } catch (failure) {
          error.textContent = failure.message;
        }
      });
    }
    const out = document.getElementById("sign-out");
    if (out) {
      out.addEventListener("click", async () => {
        await post("/api/session/end", {});
        window.location.reload();
      });
    }
  }

  // -- operator actions, behind a confirmation -------------------------------------------------
  const EXPLAIN = {
    retry: "Resume this saga now: clear its attention flag and release its lease.",
    cancel: "Compensate this saga: it has not been decided yet. This cannot be undone.",
    "resolve confirmed": "Close this saga as confirmed: a person completed it by hand.",
    "resolve failed": "Close this saga as failed: a person undid it by hand.",
  };

  function startActions() {
    const facts = document.getElementById("facts");
    const dialog = document.getElementById("confirm");
    if (!facts || !dialog) return;
    const sagaId = facts.dataset.saga;
    const form = document.getElementById("confirm-form");
    const error = document.getElementById("act-error");
    let chosen = null;
    document.querySelectorAll("button.act").forEach((button) => {
      button.addEventListener("click", () => {
        chosen = button.dataset.action;
        document.getElementById("confirm-title").textContent =
          chosen.charAt(0).toUpperCase() + chosen.slice(1) + " saga " + sagaId + "?";
        document.getElementById("confirm-text").textContent = EXPLAIN[chosen] || "";
        form.note.required = chosen.startsWith("resolve");
        form.note.value = "";
        dialog.showModal();
      });
    });
    document.getElementById("confirm-no").addEventListener("click", () => dialog.close());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!chosen) return;
      const [action, outcome] = chosen.split(" ");
      const request = { action: action, saga_id: sagaId, note: form.note.value };
      if (outcome) request.outcome = outcome;
      dialog.close();
      error.textContent = "";
      try {
        await post("/api/action", request);
        window.location.reload();
      } catch (failure) {
        error.textContent = failure.message;
      }
    });
  }

  startOverview();
  startSignIn();
  startActions();
})();
