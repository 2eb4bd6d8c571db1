// Dataloader dashboard: plain JavaScript, no framework, no build step.
// Every number comes from the JSON API under /api/v1; all text goes into the page as text
// nodes (never innerHTML), so nothing a job carries can inject markup.
"use strict";

(() => {
  const API = "/api/v1";
  const TOKEN_KEY = "dataloader.token";
  const STATUSES = ["queued", "running", "succeeded", "failed", "canceled", "lost"];
  const FINAL = new Set(["succeeded", "failed", "canceled", "lost"]);
  const RETRYABLE = new Set(["failed", "lost", "canceled"]);
  const FINISHED_KINDS = ["succeeded", "failed", "canceled", "lost"];
  const JOB_FILTERS = [
    ["queue", "Queue"],
    ["task", "Task"],
    ["lock_key", "Lock key"],
    ["partition_key", "Partition key"],
    ["producer", "Producer"],
    ["consumer_group", "Consumer group"],
  ];
  const TIME_FILTERS = [
    ["created_after", "Created after"],
    ["created_before", "Created before"],
    ["finished_after", "Finished after"],
    ["finished_before", "Finished before"],
  ];
  const QUEUES_REFRESH_MS = 5000;
  const JOBS_REFRESH_MS = 5000;
  const SCHEDULES_REFRESH_MS = 10000;
  const POLL_MS = 1000;
  const EVENT_PAGES_MAX = 5;
  const PAGE_SIZES = ["25", "50", "100", "200", "500"];

  const main = document.getElementById("main");

  // ---------------------------------------------------------------- DOM helpers

  /** Build an element; strings and numbers among the children become text nodes. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    appendAll(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.setAttribute("class", value);
      else if (key.startsWith("on") && typeof value === "function") {
        el.addEventListener(key.slice(2), value);
      } else if (key === "value" || key === "checked" || key === "disabled") el[key] = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
  }

  function appendAll(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
  }

  const SVG_NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
    appendAll(el, children);
    return el;
  }

  function notice(kind, ...children) {
    return h(
      "div",
      { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" },
      children,
    );
  }

  function badge(text, kind) {
    return h("span", { class: `badge ${kind || text}` }, text);
  }

  function jobLink(jobId, full) {
    if (!jobId) return "";
    return h(
      "a",
      { href: `#/jobs/${encodeURIComponent(jobId)}`, title: jobId, class: "mono job-link" },
      full ? jobId : String(jobId).slice(0, 8),
    );
  }

  function jobsHref(params) {
    const query = new URLSearchParams(params).toString();
    return query ? `#/jobs?${query}` : "#/jobs";
  }

  function formatTime(value) {
    if (!value) return "";
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    const pad = (n) => String(n).padStart(2, "0");
    return (
      `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
      `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
    );
  }

  function timeCell(value) {
    return value ? h("time", { datetime: value, title: value }, formatTime(value)) : "";
  }

  function formatAge(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.max(0, Number(seconds));
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function json(value) {
    return JSON.stringify(value, null, 2);
  }

  /** A datetime-local input's value (local time) as RFC 3339 UTC, or "" when empty. */
  function localInputToIso(value) {
    if (!value) return "";
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? "" : date.toISOString();
  }

  /** RFC 3339 back to a datetime-local value in local time. */
  function isoToLocalInput(value) {
    if (!value) return "";
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return "";
    const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
    return local.toISOString().slice(0, 19);
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, detail, body) {
      super(status ? `${status}: ${detail}` : detail);
      this.status = status;
      this.detail = detail;
      this.body = body;
    }
  }

  function authHeaders(extra) {
    const headers = { ...extra };
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  /** One JSON API call; throws ApiError with the server's `detail` on any failure. */
  async function api(method, path, body, signal) {
    const init = { method, headers: authHeaders({ Accept: "application/json" }), signal };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, `the API is unreachable (${error.message})`);
    }
    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      let detail = data && data.detail !== undefined ? data.detail : text.slice(0, 300);
      if (typeof detail !== "string") detail = JSON.stringify(detail);
      if (response.status === 401) {
        const stored = localStorage.getItem(TOKEN_KEY);
        detail = stored
          ? `API token rejected: enter a valid token at the top right (${detail || "401"})`
          : `API token required: enter one at the top right (${detail || "401"})`;
      } else if (response.status === 403) {
        detail = `this API token may not do that: ${detail || "forbidden"}`;
      }
      throw new ApiError(response.status, detail || response.statusText, data);
    }
    return data;
  }

  function errorNotice(error, what) {
    if (error instanceof ApiError && error.status === 404 && what) {
      return notice("error", `${what} is not available: `, h("code", {}, error.message));
    }
    return notice("error", error instanceof ApiError ? error.message : String(error));
  }

  const enc = encodeURIComponent;

  /**
   * Wrap a loader so that calls never overlap (a slow answer does not pile up timer calls),
   * while a call made during a load still gets a load that starts after it (fresh data).
   */
  function singleFlight(fn) {
    let running = null;
    let queued = null;
    const run = () => {
      running = fn().finally(() => {
        running = null;
      });
      return running;
    };
    return () => {
      if (!running) return run();
      if (!queued) {
        queued = running
          .catch(() => {})
          .then(() => {
            queued = null;
            return run();
          });
      }
      return queued;
    };
  }

  // ---------------------------------------------------------------- routing

  let leaveHandlers = [];

  /** Run `fn` when the user leaves the current page (stop timers and streams). */
  function onLeave(fn) {
    leaveHandlers.push(fn);
  }

  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/queues";
    const cut = raw.indexOf("?");
    const path = cut >= 0 ? raw.slice(0, cut) : raw;
    const query = cut >= 0 ? raw.slice(cut + 1) : "";
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { parts, params: new URLSearchParams(query) };
  }

  function route() {
    for (const fn of leaveHandlers.splice(0)) {
      try {
        fn();
      } catch (error) {
        console.error(error);
      }
    }
    const { parts, params } = parseHash();
    const section = parts[0] || "queues";
    for (const link of document.querySelectorAll("#nav a")) {
      link.classList.toggle("active", link.dataset.route === section);
    }
    const root = h("section", { id: `page-${section}` });
    main.replaceChildren(root);
    if (section === "jobs" && parts[1]) renderJob(root, parts[1]);
    else if (section === "jobs") renderJobs(root, params);
    else if (section === "schedules") renderSchedules(root, params);
    else renderQueues(root);
  }

  // ---------------------------------------------------------------- queues page

  const CHART_COLORS = {
    succeeded: "#16a34a",
    failed: "#dc2626",
    canceled: "#9ca3af",
    lost: "#ea580c",
  };

  /** Stacked bars, one per minute of the last hour, drawn as inline SVG. */
  function throughputChart(points) {
    const width = 260;
    const height = 56;
    const top = 10;
    const bottom = 12;
    const series = points || [];
    const totals = series.map((p) => FINISHED_KINDS.reduce((sum, k) => sum + (p[k] || 0), 0));
    const peak = Math.max(1, ...totals);
    const sum = totals.reduce((a, b) => a + b, 0);
    const slot = width / Math.max(series.length, 60);
    const plot = height - top - bottom;
    const chart = svg("svg", {
      class: "chart",
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `${sum} jobs finished in the last hour, at most ${peak} a minute`,
    });
    chart.append(svg("title", {}, `${sum} finished in the last hour (peak ${peak}/min)`));
    series.forEach((point, index) => {
      let y = top + plot;
      const x = index * slot;
      const group = svg("g", {});
      const parts = [];
      for (const kind of FINISHED_KINDS) {
        const n = point[kind] || 0;
        if (!n) continue;
        parts.push(`${n} ${kind}`);
        const barHeight = Math.max(1, (n / peak) * plot);
        y -= barHeight;
        group.append(
          svg("rect", {
            x: x + 0.5,
            y,
            width: Math.max(1, slot - 1),
            height: barHeight,
            fill: CHART_COLORS[kind],
          }),
        );
      }
      if (parts.length) {
        group.prepend(svg("title", {}, `${formatTime(point.minute)}: ${parts.join(", ")}`));
        chart.append(group);
      }
    });
    if (!sum) {
      chart.append(
        svg(
          "text",
          { class: "axis", x: width / 2, y: top + plot / 2 + 3, "text-anchor": "middle" },
          "nothing finished",
        ),
      );
    }
    chart.append(
      svg("line", {
        x1: 0,
        x2: width,
        y1: top + plot + 0.5,
        y2: top + plot + 0.5,
        stroke: "#d1d5db",
      }),
      svg("text", { class: "axis", x: 2, y: 8 }, `${peak}/min`),
      svg("text", { class: "axis", x: 2, y: height - 2 }, "-60 min"),
      svg("text", { class: "axis", x: width - 2, y: height - 2, "text-anchor": "end" }, "now"),
    );
    return chart;
  }

  function chartLegend() {
    return h(
      "div",
      { class: "legend" },
      FINISHED_KINDS.map((kind) =>
        h("span", {}, h("i", { class: `swatch-${kind}` }), kind),
      ),
    );
  }

  function renderQueues(root) {
    const status = h("span", { class: "live" }, "loading…");
    const message = h("div");
    const body = h("div");
    root.append(h("h1", {}, "Queues", status), message, chartLegend(), body);
    let stopped = false;

    async function act(queue, action) {
      try {
        await api("POST", `/queues/${enc(queue)}/${action}`);
        message.replaceChildren(notice("ok", `Queue ${queue} ${action}d.`));
      } catch (error) {
        message.replaceChildren(errorNotice(error));
      }
      await load();
    }

    function row(q) {
      const done = q.finished_last_hour || {};
      const base = { queue: q.queue };
      return h(
        "tr",
        { "data-queue": q.queue, "data-paused": String(Boolean(q.paused)) },
        h("td", {}, h("a", { href: jobsHref(base) }, q.queue)),
        h("td", {}, q.paused ? badge("paused") : badge("active")),
        h(
          "td",
          { class: "num" },
          h("a", { href: jobsHref({ ...base, status: "queued" }) }, q.queued),
        ),
        h(
          "td",
          { class: "num" },
          h("a", { href: jobsHref({ ...base, status: "running" }) }, q.running),
        ),
        h("td", { class: "num" }, formatAge(q.oldest_queued_age_sec)),
        FINISHED_KINDS.map((kind) =>
          h(
            "td",
            { class: "num" },
            h("a", { href: jobsHref({ ...base, status: kind }) }, done[kind] || 0),
          ),
        ),
        h("td", {}, throughputChart(q.throughput)),
        h(
          "td",
          {},
          q.paused
            ? h("button", { class: "resume", onclick: () => act(q.queue, "resume") }, "Resume")
            : h("button", { class: "pause", onclick: () => act(q.queue, "pause") }, "Pause"),
        ),
      );
    }

    const load = singleFlight(async () => {
      try {
        const data = await api("GET", "/queues");
        if (stopped) return;
        const queues = data.queues || [];
        if (!queues.length) {
          body.replaceChildren(
            notice(
              "info",
              "No queues yet: a queue shows up once it has jobs. Trigger one on the ",
              h("a", { href: "#/jobs" }, "Jobs"),
              " page.",
            ),
          );
        } else {
          body.replaceChildren(
            h(
              "table",
              { id: "queues-table" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  h("th", {}, "Queue"),
                  h("th", {}, "State"),
                  h("th", { class: "num" }, "Queued"),
                  h("th", { class: "num" }, "Running"),
                  h("th", { class: "num" }, "Oldest queued"),
                  FINISHED_KINDS.map((k) => h("th", { class: "num" }, `${k} 1h`)),
                  h("th", {}, "Throughput, last hour"),
                  h("th", {}, ""),
                ),
              ),
              h("tbody", {}, queues.map(row)),
            ),
          );
        }
        status.className = "live on";
        status.textContent = `updated ${formatTime(new Date().toISOString())}`;
      } catch (error) {
        if (stopped) return;
        status.className = "live";
        status.textContent = "";
        body.replaceChildren(errorNotice(error, "The queue overview (GET /api/v1/queues)"));
      }
    });

    load();
    const timer = setInterval(load, QUEUES_REFRESH_MS);
    onLeave(() => {
      stopped = true;
      clearInterval(timer);
    });
  }

  // ---------------------------------------------------------------- jobs page

  function progressOf(job) {
    const p = job && job.progress;
    if (!p || typeof p !== "object") return null;
    const processed = Number(p.processed);
    const total = Number(p.total);
    if (!Number.isFinite(processed)) return null;
    return { processed, total: Number.isFinite(total) && total > 0 ? total : null };
  }

  function miniProgress(job) {
    const p = progressOf(job);
    if (!p) return job.status === "succeeded" ? "done" : "";
    if (!p.total) return String(p.processed);
    return h(
      "span",
      { title: `${p.processed} / ${p.total}` },
      h("progress", {
        class: "mini-progress",
        max: p.total,
        value: Math.min(p.processed, p.total),
      }),
      ` ${p.processed}/${p.total}`,
    );
  }

  function jobsFilterForm(params) {
    const selected = new Set((params.get("status") || "").split(",").filter(Boolean));
    const textInputs = JOB_FILTERS.map(([name, label]) =>
      h(
        "label",
        {},
        label,
        h("input", { name, id: `filter-${name}`, value: params.get(name) || "", type: "search" }),
      ),
    );
    const timeInputs = TIME_FILTERS.map(([name, label]) =>
      h(
        "label",
        {},
        label,
        h("input", {
          name,
          id: `filter-${name}`,
          type: "datetime-local",
          step: 1,
          value: isoToLocalInput(params.get(name)),
        }),
      ),
    );
    const limit = params.get("limit") || "50";
    const form = h(
      "form",
      { class: "panel", id: "jobs-filters" },
      h(
        "div",
        { class: "filters" },
        h(
          "div",
          { class: "statuses" },
          h("span", { class: "muted" }, "Status:"),
          STATUSES.map((s) =>
            h(
              "label",
              {},
              h("input", {
                type: "checkbox",
                name: "status",
                value: s,
                checked: selected.has(s),
                id: `filter-status-${s}`,
              }),
              badge(s),
            ),
          ),
        ),
        textInputs,
        timeInputs,
        h(
          "label",
          {},
          "Page size",
          h(
            "select",
            { name: "limit", id: "filter-limit" },
            (PAGE_SIZES.includes(limit) ? PAGE_SIZES : [limit, ...PAGE_SIZES]).map((n) =>
              h("option", { value: n, selected: n === limit }, n),
            ),
          ),
        ),
      ),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary", id: "filter-apply" }, "Apply filters"),
        h("a", { href: "#/jobs", class: "button", id: "filter-clear" }, "Clear"),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const next = new URLSearchParams();
      const statuses = [...form.querySelectorAll("input[name=status]:checked")].map((i) => i.value);
      if (statuses.length) next.set("status", statuses.join(","));
      for (const [name] of JOB_FILTERS) {
        const value = form.elements[name].value.trim();
        if (value) next.set(name, value);
      }
      for (const [name] of TIME_FILTERS) {
        const value = localInputToIso(form.elements[name].value);
        if (value) next.set(name, value);
      }
      if (form.elements.limit.value !== "50") next.set("limit", form.elements.limit.value);
      location.hash = jobsHref(next);
    });
    return form;
  }

  function triggerForm(onCreated) {
    const result = h("div", { id: "trigger-result" });
    const form = h(
      "form",
      { class: "trigger", id: "trigger-form" },
      h(
        "label",
        {},
        "Queue",
        h("input", { name: "queue", id: "trigger-queue", value: "etl.default", required: true }),
      ),
      h(
        "label",
        {},
        "Task",
        h("input", { name: "task", id: "trigger-task", value: "noop", required: true }),
      ),
      h(
        "label",
        {},
        "Lock key",
        h("input", {
          name: "lock_key",
          id: "trigger-lock-key",
          value: "dashboard",
          required: true,
        }),
      ),
      h(
        "label",
        {},
        "Args (JSON object)",
        h(
          "textarea",
          { name: "args", id: "trigger-args", spellcheck: "false" },
          '{"steps": 10, "sleep": 1}',
        ),
      ),
      h("button", { type: "submit", class: "primary", id: "trigger-submit" }, "Trigger"),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      let args;
      try {
        args = JSON.parse(form.elements.args.value || "{}");
      } catch (error) {
        result.replaceChildren(notice("error", `args is not valid JSON: ${error.message}`));
        return;
      }
      const body = {
        queue: form.elements.queue.value.trim(),
        task: form.elements.task.value.trim(),
        lock_key: form.elements.lock_key.value.trim(),
        args,
        producer: "dashboard",
      };
      const submit = form.elements.namedItem("trigger-submit") || form.querySelector("button");
      submit.disabled = true;
      try {
        const created = await api("POST", "/jobs/trigger", body);
        result.replaceChildren(
          notice(
            "ok",
            created.created ? "Created job " : "Existing job ",
            jobLink(created.job_id, true),
            ` (${created.status})`,
          ),
        );
        onCreated(created);
      } catch (error) {
        result.replaceChildren(errorNotice(error));
      } finally {
        submit.disabled = false;
      }
    });
    return h(
      "details",
      { class: "panel", id: "trigger-panel", open: true },
      h("summary", {}, "Trigger a job"),
      h("div", { class: "panel-body" }, form, result),
    );
  }

  function renderJobs(root, params) {
    const apiParams = new URLSearchParams();
    for (const [key, value] of params) if (value) apiParams.set(key, value);
    const summary = h("span", { class: "live" });
    const message = h("div");
    const tableBox = h("div", { id: "jobs-results" }, h("p", { class: "muted" }, "Loading…"));
    const pager = h("div", { class: "pager" });
    root.append(
      h("h1", {}, "Jobs", summary),
      triggerForm(() => load()),
      jobsFilterForm(params),
      message,
      tableBox,
      pager,
    );
    let stopped = false;
    onLeave(() => {
      stopped = true;
    });

    function row(job) {
      return h(
        "tr",
        { "data-job-id": job.job_id, "data-status": job.status },
        h("td", {}, jobLink(job.job_id)),
        h(
          "td",
          {},
          badge(job.status),
          job.cancel_requested && !FINAL.has(job.status)
            ? [" ", badge("cancel requested", "flag")]
            : "",
        ),
        h("td", {}, h("a", { href: jobsHref({ queue: job.queue }) }, job.queue)),
        h("td", {}, h("a", { href: jobsHref({ task: job.task }) }, job.task)),
        h(
          "td",
          { class: "mono" },
          h("a", { href: jobsHref({ lock_key: job.lock_key }) }, job.lock_key),
        ),
        h("td", { class: "mono" }, job.partition_key || ""),
        h("td", { class: "num" }, `${job.attempt}/${job.max_attempts}`),
        h("td", {}, miniProgress(job)),
        h("td", {}, timeCell(job.created_at)),
        h("td", {}, timeCell(job.finished_at)),
        h("td", { class: "muted" }, job.producer || ""),
      );
    }

    const load = singleFlight(async () => {
      try {
        const query = apiParams.toString();
        const data = await api("GET", `/jobs${query ? `?${query}` : ""}`);
        if (stopped) return;
        const jobs = data.jobs || [];
        summary.textContent = `${jobs.length} shown${params.get("cursor") ? " (later page)" : ""}`;
        if (!jobs.length) {
          tableBox.replaceChildren(notice("info", "No jobs match these filters."));
        } else {
          tableBox.replaceChildren(
            h(
              "table",
              { id: "jobs-table" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  [
                    "Job",
                    "Status",
                    "Queue",
                    "Task",
                    "Lock key",
                    "Partition",
                    "Attempt",
                    "Progress",
                    "Created",
                    "Finished",
                    "Producer",
                  ].map((t) => h("th", { class: t === "Attempt" ? "num" : null }, t)),
                ),
              ),
              h("tbody", {}, jobs.map(row)),
            ),
          );
        }
        const first = new URLSearchParams(params);
        first.delete("cursor");
        const controls = [];
        if (params.get("cursor")) {
          controls.push(
            h("a", { class: "button", href: jobsHref(first), id: "jobs-first" }, "« First page"),
          );
        }
        if (data.next_cursor) {
          const next = new URLSearchParams(params);
          next.set("cursor", data.next_cursor);
          controls.push(
            h("a", { class: "button", href: jobsHref(next), id: "jobs-next" }, "Next page »"),
          );
        }
        controls.push(
          h("button", { type: "button", id: "jobs-refresh", onclick: () => load() }, "Refresh"),
        );
        pager.replaceChildren(...controls);
      } catch (error) {
        if (stopped) return;
        tableBox.replaceChildren(errorNotice(error, "The job list (GET /api/v1/jobs)"));
        pager.replaceChildren(h("button", { type: "button", onclick: () => load() }, "Retry"));
      }
    });

    load();
    // The first page follows new jobs by itself; a later page stays put while being read.
    if (!params.get("cursor")) {
      const timer = setInterval(load, JOBS_REFRESH_MS);
      onLeave(() => clearInterval(timer));
    }
  }

  // ---------------------------------------------------------------- job detail page

  /**
   * Parse text/event-stream off a fetch() body. fetch, unlike EventSource, can send the
   * Authorization header, which the API will require once auth lands.
   */
  async function readEventStream(response, onEvent) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let heldCR = "";
    let eventName = "";
    let dataLines = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let text = heldCR + value;
      heldCR = text.endsWith("\r") ? "\r" : "";
      if (heldCR) text = text.slice(0, -1);
      buffer += text.replace(/\r\n?/g, "\n");
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line === "") {
          if (dataLines.length) onEvent(eventName || "message", dataLines.join("\n"));
          eventName = "";
          dataLines = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon >= 0 ? line.slice(0, colon) : line;
          let data = colon >= 0 ? line.slice(colon + 1) : "";
          if (data.startsWith(" ")) data = data.slice(1);
          if (field === "event") eventName = data;
          else if (field === "data") dataLines.push(data);
        }
      }
    }
  }

  /**
   * Follow a job live: the SSE stream, or GET /jobs/{id} every second when the stream
   * cannot be had. Calls onJob(view, mode) with each new view; returns a stop function.
   */
  function watchJob(jobId, onJob) {
    const controller = new AbortController();
    let stopped = false;
    let pollTimer = null;

    async function poll() {
      if (stopped) return;
      try {
        const job = await api("GET", `/jobs/${enc(jobId)}`, undefined, controller.signal);
        if (stopped) return;
        onJob(job, "polling");
        if (FINAL.has(job.status)) return;
      } catch (error) {
        if (stopped || error.name === "AbortError") return;
        onJob(null, "polling", error);
      }
      pollTimer = setTimeout(poll, POLL_MS);
    }

    async function stream() {
      let last = null;
      try {
        const response = await fetch(`${API}/jobs/${enc(jobId)}/stream`, {
          headers: authHeaders({ Accept: "text/event-stream" }),
          signal: controller.signal,
          cache: "no-store",
        });
        const type = response.headers.get("content-type") || "";
        if (!response.ok || !response.body || !type.startsWith("text/event-stream")) {
          throw new Error(`the stream answered ${response.status}`);
        }
        await readEventStream(response, (name, data) => {
          if (stopped || (name !== "job" && name !== "message")) return;
          try {
            last = JSON.parse(data);
          } catch {
            return;
          }
          onJob(last, "live");
        });
      } catch (error) {
        if (stopped || error.name === "AbortError") return;
        console.info("dashboard: job stream unavailable, polling instead:", error.message);
      }
      if (stopped || (last && FINAL.has(last.status))) return;
      poll(); // the stream failed or ended early: poll until the job is final
    }

    stream();
    return () => {
      stopped = true;
      controller.abort();
      if (pollTimer) clearTimeout(pollTimer);
    };
  }

  function progressBlock() {
    const bar = h("progress", { id: "job-progress", max: 1 });
    const label = h("span", { id: "job-progress-label", class: "mono" });
    const block = h("div", { class: "progress" }, bar, label);
    function update(job) {
      const p = progressOf(job);
      if (p && p.total) {
        bar.max = p.total;
        bar.value = Math.min(p.processed, p.total);
        const percent = Math.floor((100 * p.processed) / p.total);
        label.textContent = `${p.processed} / ${p.total} (${percent}%)`;
      } else if (p) {
        bar.removeAttribute("value");
        label.textContent = `${p.processed} processed`;
      } else if (job.status === "succeeded") {
        bar.max = 1;
        bar.value = 1;
        label.textContent = "done";
      } else {
        bar.max = 1;
        if (job.status === "running") bar.removeAttribute("value");
        else bar.value = 0;
        label.textContent =
          job.status === "running" ? "running, no progress reported" : "no progress yet";
      }
      bar.dataset.processed = p ? String(p.processed) : "";
    }
    return { block, update };
  }

  const FIELD_ROWS = [
    ["job_id", "Job id", "mono"],
    ["queue", "Queue"],
    ["task", "Task"],
    ["lock_key", "Lock key", "mono"],
    ["idempotency_key", "Idempotency key", "mono"],
    ["partition_key", "Partition key", "mono"],
    ["producer", "Producer"],
    ["consumer_group", "Consumer group"],
    ["priority", "Priority"],
    ["attempt", "Attempt"],
    ["lease_ttl_sec", "Lease TTL (s)"],
    ["worker_id", "Worker"],
    ["cancel_requested", "Cancel requested"],
    ["available_at", "Available at", "time"],
    ["created_at", "Created", "time"],
    ["started_at", "Started", "time"],
    ["heartbeat_at", "Heartbeat", "time"],
    ["lease_expires_at", "Lease expires", "time"],
    ["finished_at", "Finished", "time"],
  ];

  function fieldValue(job, key, kind) {
    const value = job[key];
    if (key === "attempt") return `${job.attempt} of ${job.max_attempts}`;
    if (key === "queue" || key === "task" || key === "lock_key") {
      return h("a", { href: jobsHref({ [key]: value }) }, value);
    }
    if (value === null || value === undefined || value === "")
      return h("span", { class: "muted" }, "–");
    if (kind === "time") return timeCell(value);
    if (typeof value === "boolean") return value ? "yes" : "no";
    return h("span", { class: kind || "" }, String(value));
  }

  function eventItem(event) {
    const details =
      event.details && typeof event.details === "object" ? { ...event.details } : null;
    const error = details && details.error;
    const traceback = details && details.traceback;
    if (details) {
      delete details.error;
      delete details.traceback;
    }
    const rest = details ? Object.entries(details) : [];
    return h(
      "li",
      { class: `${event.event}${error ? " error" : ""}`, "data-event": event.event },
      h(
        "div",
        { class: "event-head" },
        h("span", { class: "event-name" }, event.event),
        h("span", { class: "muted" }, `attempt ${event.attempt}`),
        timeCell(event.at),
      ),
      rest.length
        ? h(
            "div",
            { class: "kv" },
            rest.map(([k, v]) =>
              h("span", {}, `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`),
            ),
          )
        : "",
      error ? h("pre", { class: "event-error" }, String(error)) : "",
      traceback
        ? h(
            "details",
            {},
            h("summary", {}, "Traceback"),
            h("pre", { class: "traceback" }, String(traceback)),
          )
        : "",
    );
  }

  function renderJob(root, jobId) {
    const statusBadge = h("span", { id: "job-status" });
    const liveLabel = h("span", { class: "live", id: "job-live" });
    const message = h("div", { id: "job-message" });
    const progress = progressBlock();
    const cancelButton = h(
      "button",
      { class: "danger", id: "job-cancel", disabled: true },
      "Cancel",
    );
    const retryButton = h("button", { id: "job-retry", disabled: true }, "Retry");
    const fields = h("dl", { class: "fields", id: "job-fields" });
    const args = h("pre", { class: "light", id: "job-args" });
    const errorBox = h("div", { id: "job-error" });
    const timeline = h("ol", { class: "timeline", id: "job-events" });
    const timelineNote = h("div");
    root.append(
      h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")),
      h("h1", {}, "Job ", h("span", { class: "mono" }, jobId), statusBadge, liveLabel),
      message,
      h(
        "div",
        { class: "panel" },
        progress.block,
        h("div", { class: "actions" }, cancelButton, retryButton),
      ),
      errorBox,
      h("div", { class: "panel" }, h("h2", {}, "Fields"), fields, h("h2", {}, "Args"), args),
      h("div", { class: "panel" }, h("h2", {}, "Timeline"), timelineNote, timeline),
    );

    let current = null;
    let lastTraceback = null;
    let cancelPending = false;
    let stopWatch = null;
    let eventsKey = "";
    let stopped = false;
    onLeave(() => {
      stopped = true;
      if (stopWatch) stopWatch();
    });

    /** The job's error, with the traceback of the last failed attempt from the timeline. */
    function showError() {
      if (!current || !current.error) {
        errorBox.replaceChildren();
        return;
      }
      errorBox.replaceChildren(
        h(
          "div",
          { class: "panel" },
          h("h2", {}, "Error"),
          h("pre", { id: "job-error-text" }, current.error),
          lastTraceback
            ? h(
                "details",
                { open: true },
                h("summary", {}, "Traceback"),
                h("pre", { id: "job-traceback" }, lastTraceback),
              )
            : "",
        ),
      );
    }

    async function loadEvents() {
      try {
        // Pages of up to 1,000 events; a job that waited long on a busy lock has many.
        const events = [];
        let after = null;
        for (let page = 0; page < EVENT_PAGES_MAX; page += 1) {
          const query = after === null ? "" : `?after=${enc(after)}`;
          const data = await api("GET", `/jobs/${enc(jobId)}/events${query}`);
          events.push(...(data.events || []));
          after = data.next_after ?? null;
          if (after === null) break;
        }
        if (stopped) return;
        timelineNote.replaceChildren(
          after === null ? "" : notice("info", `Showing the first ${events.length} events.`),
        );
        timeline.replaceChildren(...events.map(eventItem));
        const withTrace = events.filter((e) => e.details && e.details.traceback).pop();
        lastTraceback = withTrace ? String(withTrace.details.traceback) : null;
        showError();
      } catch (error) {
        if (stopped) return;
        timelineNote.replaceChildren(
          errorNotice(error, "The event timeline (GET /api/v1/jobs/{id}/events)"),
        );
      }
    }

    function show(job) {
      current = job;
      if (cancelPending && FINAL.has(job.status)) {
        cancelPending = false;
        message.replaceChildren(notice("info", `Cancel requested; the job ended ${job.status}.`));
      }
      statusBadge.replaceChildren(
        badge(job.status),
        job.cancel_requested && !FINAL.has(job.status)
          ? [" ", badge("cancel requested", "flag")]
          : "",
      );
      statusBadge.dataset.status = job.status;
      progress.update(job);
      cancelButton.disabled = FINAL.has(job.status) || job.cancel_requested;
      retryButton.disabled = !RETRYABLE.has(job.status);
      fields.replaceChildren(
        ...FIELD_ROWS.flatMap(([key, label, kind]) => [
          h("dt", {}, label),
          h("dd", { "data-field": key }, fieldValue(job, key, kind)),
        ]),
      );
      args.textContent = json(job.args);
      showError();
      // The timeline changes with transitions, not with progress: reload it only then.
      const key = `${job.status}|${job.attempt}|${job.cancel_requested}|${job.finished_at}`;
      if (key !== eventsKey) {
        eventsKey = key;
        loadEvents();
      }
    }

    function watch() {
      if (stopWatch) stopWatch();
      stopWatch = watchJob(jobId, (job, mode, error) => {
        if (stopped) return;
        if (error) {
          liveLabel.className = "live";
          liveLabel.textContent = `update failed: ${error.message}`;
          return;
        }
        show(job);
        const final = FINAL.has(job.status);
        liveLabel.className = final ? "live" : "live on";
        liveLabel.textContent = final
          ? "finished"
          : mode === "live"
            ? "live"
            : "polling every second";
        liveLabel.dataset.mode = mode;
      });
    }

    cancelButton.addEventListener("click", async () => {
      cancelButton.disabled = true;
      try {
        const job = await api("POST", `/jobs/${enc(jobId)}/cancel`);
        cancelPending = !FINAL.has(job.status);
        message.replaceChildren(
          notice(
            "info",
            cancelPending
              ? "Cancel requested: the worker stops the job at its next checkpoint."
              : `Job ${job.status}.`,
          ),
        );
        show(job);
      } catch (error) {
        message.replaceChildren(errorNotice(error));
        if (current) show(current);
      }
    });

    retryButton.addEventListener("click", async () => {
      retryButton.disabled = true;
      try {
        const job = await api("POST", `/jobs/${enc(jobId)}/retry`);
        show(job);
        message.replaceChildren(
          notice("ok", `Job queued again (attempt budget now ${job.max_attempts}).`),
        );
        watch();
      } catch (error) {
        message.replaceChildren(errorNotice(error, "Retry (POST /api/v1/jobs/{id}/retry)"));
        if (current) show(current);
      }
    });

    (async () => {
      try {
        show(await api("GET", `/jobs/${enc(jobId)}`));
      } catch (error) {
        if (stopped) return;
        message.replaceChildren(errorNotice(error));
        if (error instanceof ApiError && (error.status === 404 || error.status === 400)) return;
      }
      if (!stopped && !(current && FINAL.has(current.status))) watch();
      else if (current) liveLabel.textContent = "finished";
    })();
  }

  // ---------------------------------------------------------------- schedules page

  function renderSchedules(root, params) {
    const after = params.get("after") || "";
    const message = h("div", { id: "schedules-message" });
    const body = h("div", { id: "schedules-results" }, h("p", { class: "muted" }, "Loading…"));
    const pager = h("div", { class: "pager" });
    const status = h("span", { class: "live" });
    root.append(h("h1", {}, "Schedules", status), message, body, pager);
    let stopped = false;

    async function act(name, action) {
      try {
        const result = await api("POST", `/schedules/${enc(name)}/${action}`);
        if (action === "run") {
          message.replaceChildren(
            notice(
              "ok",
              `Schedule ${name} ran now: job `,
              jobLink(result.job.job_id, true),
              ` (${result.job.status})`,
            ),
          );
        } else {
          message.replaceChildren(notice("ok", `Schedule ${name} ${action}d.`));
        }
      } catch (error) {
        message.replaceChildren(errorNotice(error));
      }
      await load();
    }

    function row(s) {
      return h(
        "tr",
        { "data-schedule": s.name, "data-enabled": String(s.enabled) },
        h(
          "td",
          {},
          h("strong", {}, s.name),
          s.source === "code" ? h("div", { class: "muted" }, "from code") : "",
        ),
        h("td", { class: "mono" }, s.cron, h("div", { class: "muted" }, s.timezone)),
        h("td", {}, s.enabled ? badge("enabled", "active") : badge("disabled")),
        h(
          "td",
          {},
          h("a", { href: jobsHref({ queue: s.queue }) }, s.queue),
          h("div", { class: "muted" }, s.task),
        ),
        h("td", { class: "mono" }, s.lock_key),
        h("td", {}, timeCell(s.next_run_at)),
        h("td", {}, timeCell(s.last_run_at)),
        h("td", {}, jobLink(s.last_job_id)),
        h("td", {}, s.last_error ? h("pre", { class: "light" }, s.last_error) : ""),
        h(
          "td",
          {},
          h(
            "div",
            { class: "actions flush" },
            s.enabled
              ? h("button", { class: "disable", onclick: () => act(s.name, "disable") }, "Disable")
              : h("button", { class: "enable", onclick: () => act(s.name, "enable") }, "Enable"),
            h("button", { class: "run", onclick: () => act(s.name, "run") }, "Run now"),
          ),
        ),
      );
    }

    const load = singleFlight(async () => {
      try {
        const query = new URLSearchParams({ limit: "100" });
        if (after) query.set("after", after);
        const data = await api("GET", `/schedules?${query}`);
        if (stopped) return;
        const schedules = data.schedules || [];
        if (!schedules.length) {
          body.replaceChildren(
            notice("info", "No schedules. Create one with POST /api/v1/schedules."),
          );
        } else {
          body.replaceChildren(
            h(
              "table",
              { id: "schedules-table" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  [
                    "Name",
                    "Cron",
                    "State",
                    "Queue / task",
                    "Lock key",
                    "Next run",
                    "Last run",
                    "Last job",
                    "Last error",
                    "",
                  ].map((t) => h("th", {}, t)),
                ),
              ),
              h("tbody", {}, schedules.map(row)),
            ),
          );
        }
        const controls = [];
        if (after) controls.push(h("a", { class: "button", href: "#/schedules" }, "« First page"));
        if (data.next_after) {
          controls.push(
            h(
              "a",
              { class: "button", href: `#/schedules?after=${enc(data.next_after)}` },
              "Next page »",
            ),
          );
        }
        pager.replaceChildren(...controls);
        status.className = "live on";
        status.textContent = `updated ${formatTime(new Date().toISOString())}`;
      } catch (error) {
        if (stopped) return;
        body.replaceChildren(errorNotice(error, "Schedules (GET /api/v1/schedules)"));
      }
    });

    load();
    const timer = setInterval(load, SCHEDULES_REFRESH_MS);
    onLeave(() => {
      stopped = true;
      clearInterval(timer);
    });
  }

  // ---------------------------------------------------------------- start

  function setupToken() {
    const form = document.getElementById("token-form");
    const input = document.getElementById("token-input");
    input.value = localStorage.getItem(TOKEN_KEY) || "";
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (token) localStorage.setItem(TOKEN_KEY, token);
      else localStorage.removeItem(TOKEN_KEY);
      route();
    });
  }

  function setupTimeZoneNote() {
    const minutes = -new Date().getTimezoneOffset();
    const sign = minutes < 0 ? "-" : "+";
    const abs = Math.abs(minutes);
    const pad = (n) => String(n).padStart(2, "0");
    const offset = `UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    document.getElementById("tz-note").textContent = `times in ${zone ? `${zone}, ` : ""}${offset}`;
  }

  setupTimeZoneNote();
  setupToken();
  window.addEventListener("hashchange", route);
  route();
})();
