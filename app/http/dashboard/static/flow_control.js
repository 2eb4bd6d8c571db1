// Dataloader dashboard, flow control: a queue's rate limits (shown, set, cleared through
// PUT /api/v1/queues/{queue}/limits) and why a queued job waits. Text only, never innerHTML.
"use strict";

(() => {
  const { h, api, enc, notice, errorNotice } = window.dataloader;

  // dl_jobs.waiting_for (the server's WaitReason) in words.
  const WAIT_REASONS = {
    lock_key: "its lock key",
    concurrency_group: "its concurrency group",
    rate_limit: "rate limit",
    queue_paused: "queue resume",
    trigger_open: "a joining trigger's commit",
  };

  /** 1 -> "1s", 0.5 -> "500ms", 60 -> "1m", 7200 -> "2h", 1.5 -> "1.5s". */
  function periodText(sec) {
    for (const [unit, size] of [
      ["h", 3600],
      ["m", 60],
      ["s", 1],
    ]) {
      const amount = sec / size;
      if (amount >= 1 && Math.abs(amount - Math.round(amount)) < 1e-9) {
        return `${Math.round(amount)}${unit}`;
      }
    }
    return sec < 1 ? `${+(sec * 1000).toPrecision(6)}ms` : `${sec}s`;
  }

  const rateText = (limit) => `${limit.count}/${periodText(limit.period_sec)}`;

  /** "20/1s · 5/1s per key", or "" when the queue has no limit. */
  function limitsText(limits) {
    const parts = [];
    if (limits && limits.start) parts.push(rateText(limits.start));
    if (limits && limits.per_rate_key) parts.push(`${rateText(limits.per_rate_key)} per key`);
    return parts.join(" · ");
  }

  /** Why a queued job a worker held back waits, or null: "rate limit", "queue resume", … */
  function waitingText(job) {
    if (!job || job.status !== "queued" || !job.waiting_for) return null;
    return WAIT_REASONS[job.waiting_for] || job.waiting_for;
  }

  /**
   * The form that sets a queue's limits (admin scope). It lives outside the refreshed table,
   * so a refresh never wipes what is being typed; `edit(queue, limits)` loads a row into it.
   */
  function limitsForm(onSaved) {
    const inputs = {};
    function limitInputs(name, label, hint) {
      inputs[`${name}_count`] = h("input", {
        id: `limits-${name}-count`,
        type: "number",
        min: 1,
        step: 1,
        placeholder: "none",
        title: "starts; empty for no limit",
      });
      inputs[`${name}_period`] = h("input", {
        id: `limits-${name}-period`,
        type: "number",
        min: 0.01,
        step: "any",
        value: "1",
        title: "seconds",
      });
      return h(
        "fieldset",
        { class: "limit" },
        h("legend", {}, label),
        h("label", {}, "at most", inputs[`${name}_count`]),
        h("label", {}, "starts per", inputs[`${name}_period`], "s"),
        h("span", { class: "hint" }, hint),
      );
    }
    const queue = h("input", {
      id: "limits-queue",
      name: "queue",
      required: true,
      placeholder: "etl.default",
      spellcheck: "false",
    });
    const result = h("div", { id: "limits-result" });
    const save = h("button", { type: "submit", class: "primary", id: "limits-save" }, "Save");
    const clear = h("button", { type: "button", id: "limits-clear" }, "Clear both");
    const form = h(
      "form",
      { class: "limits-form", id: "limits-form" },
      h("label", {}, "Queue", queue),
      limitInputs("start", "Queue", "all of the queue's jobs together"),
      limitInputs("per_rate_key", "Per rate_key", "the jobs of each rate_key"),
      h("div", { class: "actions flush" }, save, clear),
    );
    const panel = h(
      "details",
      { class: "panel", id: "limits-panel" },
      h("summary", {}, "Rate limits (starts per period, across the fleet)"),
      h("div", { class: "panel-body" }, form, result),
    );

    /** One limit from its inputs: null when the count is empty. */
    function limitFrom(name) {
      const count = inputs[`${name}_count`].value.trim();
      if (!count) return null;
      return {
        count: Number(count),
        period_sec: Number(inputs[`${name}_period`].value.trim() || "1"),
      };
    }

    async function put(body, done) {
      const name = queue.value.trim();
      save.disabled = true;
      clear.disabled = true;
      try {
        const stored = await api("PUT", `/queues/${enc(name)}/limits`, body);
        edit(name, stored);
        const text = limitsText(stored);
        result.replaceChildren(notice("ok", `Queue ${name}: ${text ? `limits ${text}` : done}.`));
        onSaved();
      } catch (error) {
        result.replaceChildren(errorNotice(error));
      } finally {
        save.disabled = false;
        clear.disabled = false;
      }
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      // The body replaces both limits: what the form shows is what the queue gets.
      put({ start: limitFrom("start"), per_rate_key: limitFrom("per_rate_key") }, "no limits");
    });
    clear.addEventListener("click", () => {
      if (!form.reportValidity()) return;
      put({}, "limits cleared");
    });

    function edit(name, limits) {
      queue.value = name;
      for (const key of ["start", "per_rate_key"]) {
        const limit = limits && limits[key];
        inputs[`${key}_count`].value = limit ? String(limit.count) : "";
        inputs[`${key}_period`].value = limit ? String(limit.period_sec) : "1";
      }
    }

    return {
      panel,
      edit(name, limits) {
        edit(name, limits);
        result.replaceChildren();
        panel.open = true;
        panel.scrollIntoView({ block: "nearest" });
        inputs.start_count.focus();
      },
    };
  }

  Object.assign(window.dataloader, { limitsText, limitsForm, waitingText, periodText });
})();
