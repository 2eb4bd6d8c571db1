// Dataloader dashboard: plain JavaScript, no framework, no build step.
// Every number comes from the JSON API under /api/v1; all text goes into the page as text
// nodes (never innerHTML), so nothing a job carries can inject markup.
"use strict";

(() => {
  const API = "/api/v1";
  const TOKEN_KEY = "dataloader.token";
  const STATUSES = ["waiting", "queued", "running", "succeeded", "failed", "canceled", "lost"];
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

  /** "3 min ago" / "in 2 h": how far `value` is from now, in the largest whole unit. */
  function relativeTime(value, now) {
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    const seconds = Math.round((date.getTime() - (now || Date.now())) / 1000);
    const abs = Math.abs(seconds);
    let text;
    if (abs < 5) return "just now";
    if (abs < 60) text = `${abs} s`;
    else if (abs < 3600) text = `${Math.floor(abs / 60)} min`;
    else if (abs < 86400) text = `${Math.floor(abs / 3600)} h`;
    else if (abs < 86400 * 365) text = `${Math.floor(abs / 86400)} d`;
    else text = `${Math.floor(abs / (86400 * 365))} y`;
    return seconds < 0 ? `${text} ago` : `in ${text}`;
  }

  /** A relative time, with the absolute ISO time on hover. */
  function relTimeCell(value) {
    if (!value) return "";
    return h("time", { datetime: value, title: value, class: "rel" }, relativeTime(value));
  }

  /** "1.2 s", "3 min 4 s": how long a job ran (or has been running). */
  function duration(job) {
    if (!job.started_at) return "";
    const start = new Date(job.started_at).getTime();
    const end = job.finished_at ? new Date(job.finished_at).getTime() : Date.now();
    const text = formatAge((end - start) / 1000);
    return job.finished_at ? text : `${text} so far`;
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
  // Pages defined in other files (workers.js, ...): section name -> render(root, params).
  const pages = {};

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
    else if (pages[section]) pages[section](root, params, parts);
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
    const { limitsForm, limitsText } = window.dataloader;
    const limits = limitsForm(() => load());
    root.append(h("h1", {}, "Queues", status), message, limits.panel, chartLegend(), body);
    let stopped = false;

    const fair = (q) => Boolean(q.fairness && q.fairness.by);

    async function setFair(queue, on) {
      try {
        await api("PUT", `/queues/${enc(queue)}/fairness`, { by: on ? "partition_key" : null });
        message.replaceChildren(
          notice("ok", `Queue ${queue}: ${on ? "fair by partition_key" : "priority order"}.`),
        );
      } catch (error) {
        message.replaceChildren(errorNotice(error));
      }
      await load();
    }

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
        {
          "data-queue": q.queue,
          "data-paused": String(Boolean(q.paused)),
          "data-unserved": String(Boolean(q.unserved)),
        },
        h("td", {}, h("a", { href: jobsHref(base) }, q.queue)),
        h(
          "td",
          { class: "state-cell" },
          q.paused ? badge("paused") : badge("active"),
          fair(q)
            ? [
                " ",
                h(
                  "span",
                  { class: "badge fair", title: "jobs start round-robin over partition_key" },
                  "fair",
                ),
              ]
            : "",
          // From the worker registry (GET /api/v1/queues items carry consumers, unserved).
          q.unserved
            ? [
                " ",
                h(
                  "span",
                  {
                    class: "badge unserved",
                    title: "backlog, no consumer: no live worker serves this queue",
                  },
                  "no consumer",
                ),
              ]
            : "",
          typeof q.consumers === "number"
            ? h(
                "div",
                { class: "muted consumers" },
                `${q.consumers} consumer${q.consumers === 1 ? "" : "s"}`,
              )
            : "",
        ),
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
        h(
          "td",
          { class: "limits-cell", "data-limits": limitsText(q.limits) },
          limitsText(q.limits) || h("span", { class: "muted" }, "–"),
        ),
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
          { class: "row-actions" },
          q.paused
            ? h("button", { class: "resume", onclick: () => act(q.queue, "resume") }, "Resume")
            : h("button", { class: "pause", onclick: () => act(q.queue, "pause") }, "Pause"),
          " ",
          h(
            "button",
            { class: "edit-limits", onclick: () => limits.edit(q.queue, q.limits) },
            "Limits",
          ),
          " ",
          h(
            "button",
            {
              class: "toggle-fair",
              title: "start this queue's jobs round-robin over their partition_key, or not",
              onclick: () => setFair(q.queue, !fair(q)),
            },
            fair(q) ? "End fairness" : "Make fair",
          ),
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
              "div",
              { class: "table-scroll" },
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
                    h("th", {}, "Rate limits"),
                    FINISHED_KINDS.map((k) => h("th", { class: "num" }, `${k} 1h`)),
                    h("th", {}, "Throughput, last hour"),
                    h("th", {}, ""),
                  ),
                ),
                h("tbody", {}, queues.map(row)),
              ),
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
      { class: "panel", id: "trigger-panel" },
      h("summary", {}, "Trigger a job"),
      h("div", { class: "panel-body" }, form, result),
    );
  }

  const ISO_PATTERN =
    "\\d{4}-\\d{2}-\\d{2}([T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?)?(Z|[+-]\\d{2}:?\\d{2})?";
  const ISO_HINT = "ISO 8601, e.g. 2026-12-04T15:00:00Z (no zone = UTC)";
  const FILTER_NAMES = [
    "status",
    ...JOB_FILTERS.map(([name]) => name),
    ...TIME_FILTERS.map(([name]) => name),
    "args",
  ];

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
    // Text, not datetime-local: that one shows the browser's locale format (US dates).
    const timeInputs = TIME_FILTERS.map(([name, label]) =>
      h(
        "label",
        {},
        label,
        h("input", {
          name,
          id: `filter-${name}`,
          type: "text",
          inputmode: "numeric",
          pattern: ISO_PATTERN,
          placeholder: "2026-12-04T15:00:00Z",
          title: ISO_HINT,
          value: params.get(name) || "",
        }),
      ),
    );
    const argsInput = h(
      "label",
      { class: "wide" },
      "Args contain (JSON object)",
      h("input", {
        name: "args",
        id: "filter-args",
        type: "search",
        placeholder: '{"account": 7}',
        spellcheck: "false",
        value: params.get("args") || "",
      }),
    );
    const limit = params.get("limit") || "50";
    const formMessage = h("div", { id: "filters-message" });
    const form = h(
      "form",
      { id: "jobs-filters" },
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
      h(
        "div",
        { class: "filters" },
        textInputs,
        timeInputs,
        argsInput,
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
      h("p", { class: "muted hint" }, `Times: ${ISO_HINT}.`),
      formMessage,
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
      for (const [name] of [...JOB_FILTERS, ...TIME_FILTERS]) {
        const value = form.elements[name].value.trim();
        if (value) next.set(name, value);
      }
      const args = form.elements.args.value.trim();
      if (args) {
        let parsed;
        try {
          parsed = JSON.parse(args);
        } catch (error) {
          formMessage.replaceChildren(notice("error", `args is not valid JSON: ${error.message}`));
          return;
        }
        if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
          formMessage.replaceChildren(notice("error", 'args must be a JSON object: {"key": value}'));
          return;
        }
        next.set("args", JSON.stringify(parsed));
      }
      if (form.elements.limit.value !== "50") next.set("limit", form.elements.limit.value);
      location.hash = jobsHref(next);
    });
    const active = FILTER_NAMES.filter((name) => params.get(name)).length;
    return h(
      "details",
      { class: "panel", id: "filters-panel", open: active > 0 },
      h("summary", {}, active ? `Filters (${active} set)` : "Filters"),
      h("div", { class: "panel-body" }, form),
    );
  }

  // The states the counts bar shows; the queued ones link to the queued filter.
  const COUNT_STATES = [
    ["waiting", "waiting", "waiting for the jobs it depends on"],
    ["due", "queued", "queued, available now"],
    ["scheduled", "queued", "queued, first attempt later (available_at in the future)"],
    ["retrying", "queued", "queued again after a failed attempt"],
    ["running", "running", "running now"],
    ["succeeded", "succeeded", ""],
    ["failed", "failed", ""],
    ["canceled", "canceled", ""],
    ["lost", "lost", "lease expired on the last attempt"],
  ];

  function countsBar(params) {
    const bar = h("div", { class: "counts", id: "job-counts" });
    function update(counts) {
      const base = new URLSearchParams(params);
      base.delete("cursor");
      bar.replaceChildren(
        ...COUNT_STATES.map(([state, status, help]) => {
          const href = new URLSearchParams(base);
          href.set("status", status);
          return h(
            "a",
            {
              class: `count ${state}`,
              href: jobsHref(href),
              "data-state": state,
              title: help || state,
            },
            h("span", { class: "count-n" }, counts[state] ?? 0),
            h("span", { class: "count-label" }, state),
          );
        }),
        counts.next_due_at
          ? h(
              "span",
              { class: "count next-due", id: "next-due" },
              "next due ",
              relTimeCell(counts.next_due_at),
            )
          : "",
      );
    }
    return { bar, update };
  }

  /** Queued jobs told apart: due now, scheduled for later, waiting to retry, or held back
   * by a worker (busy lock or group, rate limit, paused queue: job.waiting_for). */
  function queuedKind(job) {
    if (job.status !== "queued") return null;
    if (job.waiting_for) return "waiting";
    if (job.attempt > 0) return "retrying";
    return new Date(job.available_at).getTime() > Date.now() ? "scheduled" : "due";
  }

  function kindBadge(job, kind) {
    const el = badge(kind, `kind ${kind}`);
    if (kind === "waiting") el.title = `waiting for ${window.dataloader.waitingText(job)}`;
    return el;
  }

  function statusCell(job) {
    const kind = queuedKind(job);
    return h(
      "td",
      { class: "status-cell" },
      badge(job.status),
      kind ? [" ", kindBadge(job, kind)] : "",
      kind && kind !== "due"
        ? h("div", { class: "muted due-at" }, "due ", relTimeCell(job.available_at))
        : "",
      job.cancel_requested && !FINAL.has(job.status)
        ? [" ", badge("cancel requested", "flag")]
        : "",
    );
  }

  function errorCell(job) {
    if (!job.error) return h("td", { class: "error-cell" });
    const firstLine = String(job.error).split("\n")[0];
    return h("td", { class: "error-cell", title: job.error }, firstLine);
  }

  /** Cancel or retry the selected jobs; a summary of the per-job outcomes. */
  function bulkSummary(verb, results) {
    const tally = {};
    for (const r of results) tally[r.outcome] = (tally[r.outcome] || 0) + 1;
    const parts = Object.entries(tally).map(([outcome, n]) => `${n} ${outcome.replace("_", " ")}`);
    const problems = results.filter((r) => r.outcome !== "canceled" && r.outcome !== "retried");
    return notice(
      problems.length ? "info" : "ok",
      `${verb}: ${parts.join(", ")}.`,
      problems.length
        ? h(
            "ul",
            { class: "bulk-problems" },
            problems
              .slice(0, 10)
              .map((r) =>
                h("li", {}, jobLink(r.job_id), `: ${r.outcome}${r.detail ? ` (${r.detail})` : ""}`),
              ),
          )
        : "",
    );
  }

  function renderJobs(root, params) {
    const apiParams = new URLSearchParams();
    for (const [key, value] of params) if (value) apiParams.set(key, value);
    const countParams = new URLSearchParams(apiParams);
    for (const key of ["limit", "cursor"]) countParams.delete(key);
    const summary = h("span", { class: "live" });
    const message = h("div", { id: "jobs-message" });
    const tableBox = h("div", { id: "jobs-results" }, h("p", { class: "muted" }, "Loading…"));
    const pager = h("div", { class: "pager" });
    const counts = countsBar(params);
    const selected = new Set();
    const selectedLabel = h("span", { class: "muted", id: "bulk-count" }, "0 selected");
    const cancelSelected = h(
      "button",
      { type: "button", class: "danger", id: "bulk-cancel", disabled: true },
      "Cancel selected",
    );
    const retrySelected = h(
      "button",
      { type: "button", id: "bulk-retry", disabled: true },
      "Retry selected",
    );
    const bulkBar = h("div", { class: "actions bulk" }, selectedLabel, cancelSelected, retrySelected);
    root.append(
      h("h1", {}, "Jobs", summary),
      counts.bar,
      triggerForm(() => load()),
      jobsFilterForm(params),
      message,
      bulkBar,
      tableBox,
      pager,
    );
    let stopped = false;
    let shown = [];
    onLeave(() => {
      stopped = true;
    });

    function selectionChanged() {
      for (const id of [...selected]) if (!shown.includes(id)) selected.delete(id);
      selectedLabel.textContent = `${selected.size} selected`;
      cancelSelected.disabled = retrySelected.disabled = selected.size === 0;
      const all = tableBox.querySelector("#jobs-select-all");
      if (all) all.checked = shown.length > 0 && selected.size === shown.length;
    }

    async function bulk(action, verb) {
      const ids = [...selected];
      cancelSelected.disabled = retrySelected.disabled = true;
      try {
        const data = await api("POST", `/jobs/${action}`, { job_ids: ids });
        message.replaceChildren(bulkSummary(verb, data.results || []));
        selected.clear();
      } catch (error) {
        message.replaceChildren(errorNotice(error, `Bulk ${action} (POST /api/v1/jobs/${action})`));
      }
      await load();
    }
    cancelSelected.addEventListener("click", () => bulk("cancel", "Cancel"));
    retrySelected.addEventListener("click", () => bulk("retry", "Retry"));

    function row(job) {
      const box = h("input", {
        type: "checkbox",
        class: "select-job",
        "aria-label": `select job ${job.job_id}`,
        checked: selected.has(job.job_id),
      });
      box.addEventListener("change", () => {
        if (box.checked) selected.add(job.job_id);
        else selected.delete(job.job_id);
        selectionChanged();
      });
      return h(
        "tr",
        { "data-job-id": job.job_id, "data-status": job.status },
        h("td", { class: "select" }, box),
        h("td", {}, jobLink(job.job_id)),
        statusCell(job),
        h("td", {}, h("a", { href: jobsHref({ queue: job.queue }) }, job.queue)),
        h("td", {}, h("a", { href: jobsHref({ task: job.task }) }, job.task)),
        h(
          "td",
          { class: "mono", title: job.lock_key },
          h("a", { href: jobsHref({ lock_key: job.lock_key }) }, job.lock_key),
        ),
        h("td", { class: "num" }, `${job.attempt}/${job.max_attempts}`),
        h("td", {}, miniProgress(job)),
        errorCell(job),
        h("td", { class: "num duration" }, duration(job)),
        h("td", {}, relTimeCell(job.created_at)),
        h("td", {}, relTimeCell(job.finished_at)),
      );
    }

    const load = singleFlight(async () => {
      try {
        const query = apiParams.toString();
        const countQuery = countParams.toString();
        const [data, countData] = await Promise.all([
          api("GET", `/jobs${query ? `?${query}` : ""}`),
          api("GET", `/jobs/counts${countQuery ? `?${countQuery}` : ""}`).catch((error) => error),
        ]);
        if (stopped) return;
        if (countData instanceof Error) {
          counts.bar.replaceChildren(errorNotice(countData, "Counts (GET /api/v1/jobs/counts)"));
        } else {
          counts.update(countData);
        }
        const jobs = data.jobs || [];
        shown = jobs.map((job) => job.job_id);
        summary.textContent = `${jobs.length} shown${params.get("cursor") ? " (later page)" : ""}`;
        if (!jobs.length) {
          tableBox.replaceChildren(notice("info", "No jobs match these filters."));
        } else {
          const all = h("input", {
            type: "checkbox",
            id: "jobs-select-all",
            "aria-label": "select every job shown",
          });
          all.addEventListener("change", () => {
            for (const id of shown) {
              if (all.checked) selected.add(id);
              else selected.delete(id);
            }
            for (const box of tableBox.querySelectorAll("input.select-job")) box.checked = all.checked;
            selectionChanged();
          });
          tableBox.replaceChildren(
            h(
              "div",
              { class: "table-scroll" },
              h(
                "table",
                { id: "jobs-table" },
                h(
                  "thead",
                  {},
                  h(
                    "tr",
                    {},
                    h("th", { class: "select" }, all),
                    [
                      "Job",
                      "Status",
                      "Queue",
                      "Task",
                      "Lock key",
                      "Attempt",
                      "Progress",
                      "Error",
                      "Duration",
                      "Created",
                      "Finished",
                    ].map((t) =>
                      h("th", { class: t === "Attempt" || t === "Duration" ? "num" : null }, t),
                    ),
                  ),
                ),
                h("tbody", {}, jobs.map(row)),
              ),
            ),
          );
        }
        selectionChanged();
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
    ["waiting_for", "Waiting for"],
    ["concurrency_key", "Concurrency group", "mono"],
    ["rate_key", "Rate key", "mono"],
    ["workflow_id", "Workflow"],
    ["depends_on", "Depends on"],
    ["canceled_by", "Canceled by"],
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
    if (key === "waiting_for") return waitingValue(job);
    if (key === "workflow_id" && value) {
      return [
        h("a", { href: `#/workflows/${encodeURIComponent(value)}`, class: "mono" }, value),
        ` (step ${job.step_name})`,
      ];
    }
    if (key === "depends_on" && value && value.length) {
      const links = value.flatMap((id, i) => (i ? [", ", jobLink(id)] : [jobLink(id)]));
      return job.run_after === "any" ? [...links, " (runs whatever their outcome)"] : links;
    }
    if (key === "canceled_by" && value) return jobLink(value);
    if (key === "concurrency_key" && value) {
      return [h("span", { class: "mono" }, value), ` (at most ${job.concurrency_limit} at once)`];
    }
    if (key === "queue" || key === "task" || key === "lock_key") {
      return h("a", { href: jobsHref({ [key]: value }) }, value);
    }
    if (value === null || value === undefined || value === "")
      return h("span", { class: "muted" }, "–");
    if (kind === "time") return timeCell(value);
    if (typeof value === "boolean") return value ? "yes" : "no";
    return h("span", { class: kind || "" }, String(value));
  }

  /** "rate limit, until <time>": why a queued job a worker held back waits, and until when. */
  function waitingValue(job) {
    const reason = window.dataloader.waitingText(job);
    if (!reason) return h("span", { class: "muted" }, "–");
    // A paused queue's job waits for the resume; its available_at says nothing then.
    if (job.waiting_for === "queue_paused") return h("span", { class: "waiting-for" }, reason);
    return [h("span", { class: "waiting-for" }, reason), ", until ", timeCell(job.available_at)];
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
    // What the pipeline returned: set once the job succeeded (docs/pipelines.md#results).
    const result = h("pre", { class: "light", id: "job-result" });
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
      h(
        "div",
        { class: "panel" },
        h("h2", {}, "Fields"),
        fields,
        h("h2", {}, "Args"),
        args,
        h("h2", {}, "Result"),
        result,
      ),
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
      result.textContent = job.result == null ? "none" : json(job.result);
      result.dataset.empty = job.result == null ? "true" : "false";
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
    const form = window.dataloader.scheduleForm(() => load());
    root.append(h("h1", {}, "Schedules", status), form.panel, message, body, pager);
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
            h("button", { class: "edit", onclick: () => form.edit(s) }, "Edit"),
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
            notice("info", "No schedules yet: create one with the form above."),
          );
        } else {
          body.replaceChildren(
            h(
              "div",
              { class: "table-scroll" },
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

  // What the page files (workers.js, schedule_form.js) share; they load after this one.
  window.dataloader = {
    h,
    svg,
    timeCell,
    api,
    enc,
    badge,
    notice,
    errorNotice,
    jobLink,
    jobsHref,
    relTimeCell,
    singleFlight,
    onLeave,
    pages,
    ApiError,
  };

  setupTimeZoneNote();
  setupToken();
  window.addEventListener("hashchange", route);
  // Deferred scripts run in order before DOMContentLoaded: every page file has registered.
  document.addEventListener("DOMContentLoaded", route);
})();
