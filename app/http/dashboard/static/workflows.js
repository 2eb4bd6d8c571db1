// Dataloader dashboard, workflow page (#/workflows/<id>): a workflow's steps and edges drawn
// from GET /api/v1/workflows/<id>, coloured by status, redrawn every 2 s while it is active.
// Uses the helpers dashboard.js shares on window.dataloader; text only, never innerHTML.
"use strict";

(() => {
  const { h, svg, api, enc, badge, notice, errorNotice, jobLink, timeCell, singleFlight, onLeave, pages } =
    window.dataloader;
  const REFRESH_MS = 2000;
  const NODE_W = 150;
  const NODE_H = 24;
  const COL_GAP = 70;
  const ROW_GAP = 10;
  // A level (steps at the same depth) wider than this wraps into several columns.
  const ROWS_PER_COLUMN = 40;
  const STATUS_ORDER = ["waiting", "queued", "running", "succeeded", "failed", "canceled", "lost"];

  /** Each step's depth: 0 for a root, else one more than its deepest parent in the workflow. */
  function levels(steps) {
    const byName = new Map(steps.map((s) => [s.name, s]));
    const depth = new Map();
    for (const start of steps) {
      // Iterative: a chain may be as long as the workflow.
      const stack = [start.name];
      while (stack.length) {
        const name = stack[stack.length - 1];
        if (depth.has(name)) {
          stack.pop();
          continue;
        }
        const parents = (byName.get(name).depends_on || []).filter((p) => byName.has(p));
        const pending = parents.filter((p) => !depth.has(p));
        if (pending.length) {
          stack.push(...pending);
          continue;
        }
        depth.set(name, parents.length ? 1 + Math.max(...parents.map((p) => depth.get(p))) : 0);
        stack.pop();
      }
    }
    return depth;
  }

  /** Node positions: one column per level (wrapped past ROWS_PER_COLUMN), names in order. */
  function layout(steps) {
    const depth = levels(steps);
    const byLevel = [];
    for (const step of steps) {
      const d = depth.get(step.name);
      (byLevel[d] = byLevel[d] || []).push(step);
    }
    const position = new Map();
    let x = 10;
    let height = 0;
    for (const level of byLevel) {
      if (!level) continue;
      level.sort((a, b) => a.name.localeCompare(b.name));
      const columns = Math.ceil(level.length / ROWS_PER_COLUMN);
      level.forEach((step, i) => {
        const column = Math.floor(i / ROWS_PER_COLUMN);
        const row = i % ROWS_PER_COLUMN;
        const y = 10 + row * (NODE_H + ROW_GAP);
        position.set(step.name, { x: x + column * (NODE_W + 20), y });
        height = Math.max(height, y + NODE_H + 10);
      });
      x += columns * (NODE_W + 20) - 20 + COL_GAP;
    }
    return { position, width: x - COL_GAP + 10, height };
  }

  function drawGraph(workflow) {
    const steps = workflow.steps || [];
    const { position, width, height } = layout(steps);
    const graph = svg("svg", {
      id: "workflow-graph",
      class: "dag",
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `${steps.length} steps of workflow ${workflow.name}`,
    });
    const edges = svg("g", { class: "edges" });
    const nodes = svg("g", { class: "nodes" });
    for (const step of steps) {
      const to = position.get(step.name);
      for (const parent of step.depends_on || []) {
        const from = position.get(parent);
        if (!from) continue; // a job outside the workflow
        const x1 = from.x + NODE_W;
        const y1 = from.y + NODE_H / 2;
        const x2 = to.x;
        const y2 = to.y + NODE_H / 2;
        const bend = Math.max(20, (x2 - x1) / 2);
        edges.append(
          svg("path", {
            class: `edge from-${step.status}`,
            "data-from": parent,
            "data-to": step.name,
            d: `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`,
          }),
        );
      }
      const label = step.name.length > 20 ? `${step.name.slice(0, 19)}…` : step.name;
      nodes.append(
        svg(
          "a",
          { href: `#/jobs/${encodeURIComponent(step.job_id)}`, "data-step": step.name },
          svg("title", {}, `${step.name}: ${step.status}, attempt ${step.attempt}`),
          svg("rect", {
            class: `node ${step.status}`,
            x: to.x,
            y: to.y,
            width: NODE_W,
            height: NODE_H,
            rx: 5,
          }),
          svg("text", { class: "node-label", x: to.x + 8, y: to.y + NODE_H / 2 + 4 }, label),
        ),
      );
    }
    graph.append(edges, nodes);
    return h("div", { class: "dag-scroll" }, graph);
  }

  function stepsTable(workflow) {
    return h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        { id: "workflow-steps" },
        h(
          "thead",
          {},
          h("tr", {}, ["Step", "Status", "Attempt", "Depends on", "Started", "Finished", "Job", "Error"].map((t) => h("th", {}, t))),
        ),
        h(
          "tbody",
          {},
          (workflow.steps || []).map((step) =>
            h(
              "tr",
              { "data-step": step.name },
              h("td", { class: "mono" }, step.name),
              h("td", {}, badge(step.status)),
              h("td", {}, `${step.attempt} of ${step.max_attempts}`),
              h("td", { class: "mono" }, (step.depends_on || []).join(", ") + (step.run_after === "any" ? " (any outcome)" : "")),
              h("td", {}, timeCell(step.started_at)),
              h("td", {}, timeCell(step.finished_at)),
              h("td", {}, jobLink(step.job_id)),
              h("td", { class: "error-cell" }, step.error || ""),
            ),
          ),
        ),
      ),
    );
  }

  // The newest workflows (GET /api/v1/workflows), each linking to its page.
  async function renderList(list) {
    try {
      const page = await api("GET", "/workflows?limit=50");
      if (!page.workflows.length) {
        list.replaceChildren(h("p", { class: "muted" }, "No workflows yet."));
        return;
      }
      const headers = ["Workflow", "Name", "Status", "Steps", "Created"];
      const rows = page.workflows.map((workflow) =>
        h(
          "tr",
          { "data-workflow": workflow.workflow_id },
          h("td", {}, h("a", { href: `#/workflows/${enc(workflow.workflow_id)}`, class: "mono" }, workflow.workflow_id)),
          h("td", {}, workflow.name),
          h("td", {}, badge(workflow.status, workflow.status === "active" ? "running" : workflow.status)),
          h("td", {}, countChips(workflow.counts)),
          h("td", {}, timeCell(workflow.created_at)),
        ),
      );
      list.replaceChildren(
        h(
          "div",
          { class: "table-scroll" },
          h(
            "table",
            { id: "workflow-table" },
            h("thead", {}, h("tr", {}, ...headers.map((text) => h("th", {}, text)))),
            h("tbody", {}, ...rows),
          ),
        ),
        page.next_cursor ? h("p", { class: "muted" }, "The 50 newest; dataloader workflows list --cursor C goes further.") : "",
      );
    } catch (error) {
      list.replaceChildren(errorNotice(error));
    }
  }

  // One chip per status some step has, in lifecycle order.
  function countChips(counts) {
    return STATUS_ORDER.filter((s) => counts[s]).map((s) => h("span", { class: "count-chip" }, badge(s), ` ${counts[s]}`));
  }

  function renderWorkflow(root, params, parts) {
    const workflowId = parts[1];
    if (!workflowId) {
      const input = h("input", { id: "workflow-id", placeholder: "workflow id", size: 40 });
      const form = h("form", { class: "panel" }, h("label", { for: "workflow-id" }, "Workflow "), input, " ", h("button", { type: "submit" }, "Show"));
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        if (input.value.trim()) location.hash = `#/workflows/${encodeURIComponent(input.value.trim())}`;
      });
      const list = h("div", { id: "workflow-list" }, "loading…");
      root.append(h("h1", {}, "Workflows"), form, list);
      renderList(list);
      return;
    }
    const status = h("span", { id: "workflow-status" });
    const live = h("span", { class: "live", id: "workflow-live" }, "loading…");
    const summary = h("div", { id: "workflow-summary" });
    const message = h("div", { id: "workflow-message" });
    const body = h("div", { id: "workflow-body" });
    const cancelButton = h("button", { class: "danger", id: "workflow-cancel", disabled: true }, "Cancel");
    root.append(
      h("h1", {}, "Workflow ", h("span", { class: "mono" }, workflowId), status, live),
      summary,
      h("div", { class: "actions" }, cancelButton),
      message,
      body,
    );
    let stopped = false;
    let timer = null;
    onLeave(() => {
      stopped = true;
      if (timer) clearInterval(timer);
    });

    const load = singleFlight(async () => {
      try {
        const workflow = await api("GET", `/workflows/${enc(workflowId)}`);
        if (stopped) return;
        status.replaceChildren(" ", badge(workflow.status, workflow.status === "active" ? "running" : workflow.status));
        summary.replaceChildren(h("p", {}, h("strong", {}, workflow.name), " · ", timeCell(workflow.created_at), " · ", countChips(workflow.counts)));
        body.replaceChildren(h("div", { class: "panel" }, drawGraph(workflow)), stepsTable(workflow));
        cancelButton.disabled = workflow.status !== "active";
        live.className = workflow.status === "active" ? "live on" : "live";
        live.textContent = workflow.status === "active" ? "live" : "done";
        if (workflow.status !== "active" && timer) {
          clearInterval(timer);
          timer = null;
        }
      } catch (error) {
        if (!stopped) body.replaceChildren(errorNotice(error));
      }
    });
    cancelButton.addEventListener("click", async () => {
      cancelButton.disabled = true;
      try {
        const done = await api("POST", `/workflows/${enc(workflowId)}/cancel`);
        message.replaceChildren(
          notice("ok", `${done.canceled} step(s) canceled, ${done.cancel_requested} running step(s) asked to stop`),
        );
      } catch (error) {
        message.replaceChildren(errorNotice(error));
      }
      load();
    });
    load();
    timer = setInterval(load, REFRESH_MS);
  }

  pages.workflows = renderWorkflow;
})();
