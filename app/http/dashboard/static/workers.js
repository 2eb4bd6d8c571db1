// Dataloader dashboard, workers page (#/workers): the live workers from GET /api/v1/workers.
// Uses the helpers dashboard.js shares on window.dataloader; text only, never innerHTML.
"use strict";

(() => {
  const { h, api, badge, notice, errorNotice, relTimeCell, singleFlight, onLeave, pages } =
    window.dataloader;
  const WORKERS_REFRESH_MS = 5000;

  function row(w) {
    return h(
      "tr",
      { "data-worker": w.worker_id, "data-leader": String(Boolean(w.leader)) },
      h(
        "td",
        {},
        h("strong", { class: "mono" }, w.worker_id),
        w.leader ? [" ", badge("leader", "active")] : "",
      ),
      h("td", {}, w.host, h("div", { class: "muted" }, `pid ${w.pid}`)),
      h("td", { class: "mono" }, w.version),
      h(
        "td",
        {},
        h(
          "ul",
          { class: "plain" },
          (w.queues || []).map((q) =>
            h("li", {}, h("a", { href: `#/jobs?queue=${encodeURIComponent(q.queue)}` }, q.queue), ` × ${q.concurrency}`),
          ),
        ),
      ),
      h("td", {}, h("ul", { class: "plain mono" }, (w.tasks || []).map((t) => h("li", {}, t)))),
      h("td", {}, relTimeCell(w.started_at)),
      h("td", {}, relTimeCell(w.last_seen_at)),
    );
  }

  function renderWorkers(root) {
    const status = h("span", { class: "live" }, "loading…");
    const body = h("div", { id: "workers-results" });
    root.append(h("h1", {}, "Workers", status), body);
    let stopped = false;

    const load = singleFlight(async () => {
      try {
        const data = await api("GET", "/workers");
        if (stopped) return;
        const workers = data.workers || [];
        status.className = "live on";
        status.textContent = `${workers.length} live`;
        if (!workers.length) {
          body.replaceChildren(
            notice("info", "No live worker is registered: start one (docs/operations.md) and it shows here within seconds."),
          );
          return;
        }
        body.replaceChildren(
          h(
            "div",
            { class: "table-scroll" },
            h(
              "table",
              { id: "workers-table" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  ["Worker", "Host", "Version", "Queues × concurrency", "Tasks", "Started", "Last seen"].map(
                    (t) => h("th", {}, t),
                  ),
                ),
              ),
              h("tbody", {}, workers.map(row)),
            ),
          ),
        );
      } catch (error) {
        if (stopped) return;
        status.className = "live";
        status.textContent = "";
        body.replaceChildren(errorNotice(error, "The worker registry (GET /api/v1/workers)"));
      }
    });

    load();
    const timer = setInterval(load, WORKERS_REFRESH_MS);
    onLeave(() => {
      stopped = true;
      clearInterval(timer);
    });
  }

  pages.workers = renderWorkers;
})();
