/*
 * Health, seen from the page. Every 2 s it asks this dashboard's /healthz, which asks the backend.
 * No answer: this server is gone, and Dash's callbacks would fail silently, so the page says so.
 * An answer without the backend: the backend banner. The backend back after an outage (or after a
 * callback found it down): `backend-epoch` changes, and every page reloads the data it could not read.
 */
(function () {
  "use strict";
  const INTERVAL_MS = 2000;
  let dashboardDown = false;
  let backendDown = false;
  let recoveredAt = 0;

  function show(id, text) {
    const el = document.getElementById(id);
    if (!el) return;
    el.textContent = text;
    el.style.display = text ? "block" : "none";
  }

  async function check() {
    let doc = null;
    try {
      const r = await fetch("/healthz", { cache: "no-store" });
      doc = r.ok ? await r.json() : null;
    } catch (e) {
      doc = null;
    }
    if (!doc) {
      dashboardDown = true;
      show("dashboard-banner", "The dashboard server is not answering — retrying every 2 s. What you see is as it was when it stopped.");
      return;
    }
    if (dashboardDown) {
      dashboardDown = false;
      show("dashboard-banner", "");
    }
    if (!doc.backend) {
      backendDown = true;
      show("backend-banner", doc.message);
      return;
    }
    const failedAt = (window.cggmBackendFailedAt || 0) * 1000;
    if (backendDown || failedAt > recoveredAt) {
      backendDown = false;
      recoveredAt = Date.now();
      show("backend-banner", "");
      if (window.dash_clientside && window.dash_clientside.set_props) {
        window.dash_clientside.set_props("backend-epoch", { data: recoveredAt });
      }
    }
  }

  window.setInterval(check, INTERVAL_MS);
  window.setTimeout(check, 300);
})();
