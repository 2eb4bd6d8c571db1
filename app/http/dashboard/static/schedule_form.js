// Dataloader dashboard, schedule create/edit form with the next fire times previewed.
// The preview comes from GET /api/v1/cron/preview: the server's own cron parser and zone
// rules, so what the form shows is what the scheduler will fire. Text only, never innerHTML.
"use strict";

(() => {
  const { h, api, enc, notice, errorNotice } = window.dataloader;
  const PREVIEW_DELAY_MS = 300;
  const FIELDS = [
    ["name", "Name", "nightly-report", "letters, digits and . _ : -"],
    ["cron", "Cron", "0 2 * * *", "minute hour day month weekday (6 fields: seconds first)"],
    ["timezone", "Time zone", "UTC", "IANA name, e.g. Europe/Berlin"],
    ["queue", "Queue", "etl.default", ""],
    ["task", "Task", "noop", ""],
    ["lock_key", "Lock key", "nightly-report", ""],
  ];

  /** "2026-12-04 02:00:00 Europe/Berlin": ISO-like (sv-SE), in the schedule's own zone. */
  function inZone(iso, zone) {
    try {
      const text = new Intl.DateTimeFormat("sv-SE", {
        timeZone: zone,
        year: "numeric",
        month: "2-digit",
        day: "2-digit",
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
      }).format(new Date(iso));
      return `${text} ${zone}`;
    } catch {
      return iso; // a zone the server knows and this browser does not
    }
  }

  /** The form; `edit(schedule)` loads one to change, `reset()` goes back to creating. */
  function scheduleForm(onSaved) {
    const inputs = {};
    const labels = FIELDS.map(([name, label, placeholder, hint]) => {
      inputs[name] = h("input", {
        name,
        id: `schedule-${name.replace("_", "-")}`,
        placeholder,
        title: hint || label,
        required: true,
        spellcheck: "false",
      });
      return h("label", {}, label, inputs[name], hint ? h("span", { class: "hint" }, hint) : "");
    });
    inputs.timezone.value = "UTC";
    const args = h("textarea", { name: "args", id: "schedule-args", spellcheck: "false" }, "{}");
    const enabled = h("input", { type: "checkbox", id: "schedule-enabled", checked: true });
    const preview = h("ol", { class: "preview", id: "schedule-preview" });
    const previewNote = h("div", { class: "muted", id: "schedule-preview-note" }, "");
    const result = h("div", { id: "schedule-result" });
    const title = h("summary", {}, "New schedule");
    const submit = h("button", { type: "submit", class: "primary", id: "schedule-submit" }, "Create");
    const cancelEdit = h("button", { type: "button", id: "schedule-new", hidden: true }, "New instead");
    let editing = null;

    const form = h(
      "form",
      { class: "trigger schedule-form", id: "schedule-form" },
      labels,
      h("label", { class: "wide" }, "Args (JSON object)", args),
      h("label", { class: "inline" }, enabled, "Enabled"),
      h(
        "div",
        { class: "preview-box" },
        h("strong", {}, "Next fire times"),
        previewNote,
        preview,
      ),
      h("div", { class: "actions" }, submit, cancelEdit),
    );

    let previewTimer = null;
    let previewSeq = 0;
    async function updatePreview() {
      const cron = inputs.cron.value.trim();
      const zone = inputs.timezone.value.trim() || "UTC";
      const seq = ++previewSeq;
      if (!cron) {
        preview.replaceChildren();
        previewNote.textContent = "Enter a cron expression.";
        return;
      }
      try {
        const data = await api(
          "GET",
          `/cron/preview?cron=${enc(cron)}&timezone=${enc(zone)}&count=5`,
        );
        if (seq !== previewSeq) return;
        previewNote.textContent = `${data.cron}, read in ${data.timezone} (UTC on hover):`;
        preview.replaceChildren(
          ...data.next.map((at) =>
            h("li", {}, h("time", { datetime: at, title: at }, inZone(at, data.timezone))),
          ),
        );
        inputs.cron.setCustomValidity("");
      } catch (error) {
        if (seq !== previewSeq) return;
        preview.replaceChildren();
        previewNote.replaceChildren(errorNotice(error));
      }
    }
    function schedulePreview() {
      clearTimeout(previewTimer);
      previewTimer = setTimeout(updatePreview, PREVIEW_DELAY_MS);
    }
    inputs.cron.addEventListener("input", schedulePreview);
    inputs.timezone.addEventListener("input", schedulePreview);

    function body() {
      let parsedArgs;
      try {
        parsedArgs = JSON.parse(args.value || "{}");
      } catch (error) {
        throw new Error(`args is not valid JSON: ${error.message}`);
      }
      const fields = { enabled: enabled.checked, args: parsedArgs };
      for (const [name] of FIELDS) fields[name] = inputs[name].value.trim();
      if (editing) delete fields.name;
      return fields;
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      let fields;
      try {
        fields = body();
      } catch (error) {
        result.replaceChildren(notice("error", error.message));
        return;
      }
      submit.disabled = true;
      try {
        const saved = editing
          ? await api("PATCH", `/schedules/${enc(editing)}`, fields)
          : await api("POST", "/schedules", fields);
        result.replaceChildren(
          notice("ok", `Schedule ${saved.name} ${editing ? "saved" : "created"}.`),
        );
        onSaved(saved);
      } catch (error) {
        result.replaceChildren(errorNotice(error));
      } finally {
        submit.disabled = false;
      }
    });

    const panel = h(
      "details",
      { class: "panel", id: "schedule-panel" },
      title,
      h("div", { class: "panel-body" }, form, result),
    );

    function reset() {
      editing = null;
      form.reset();
      inputs.name.disabled = false;
      inputs.timezone.value = "UTC";
      args.value = "{}";
      enabled.checked = true;
      title.textContent = "New schedule";
      submit.textContent = "Create";
      cancelEdit.hidden = true;
      preview.replaceChildren();
      previewNote.textContent = "";
    }
    cancelEdit.addEventListener("click", reset);

    function edit(schedule) {
      editing = schedule.name;
      for (const [name] of FIELDS) inputs[name].value = schedule[name] ?? "";
      inputs.name.disabled = true; // the name cannot change (PATCH keeps it)
      args.value = JSON.stringify(schedule.args || {}, null, 2);
      enabled.checked = Boolean(schedule.enabled);
      title.textContent = `Edit schedule ${schedule.name}`;
      submit.textContent = "Save";
      cancelEdit.hidden = false;
      result.replaceChildren();
      panel.open = true;
      panel.scrollIntoView({ block: "start" });
      updatePreview();
    }

    return { panel, edit, reset };
  }

  window.dataloader.scheduleForm = scheduleForm;
})();
