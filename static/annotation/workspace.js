/* Annotator workspace: keyboard-first compare, rank and demonstrate pages.
 *
 * Plain JavaScript, no build step, no network access of its own. The pages work without it
 * (ordinary form posts); this file adds the keyboard map, ranking by keys and by drag and drop,
 * the measured time, the demonstration diff, the skip dialog and the help overlay.
 * Untrusted text is only ever inserted with textContent.
 */
(function () {
  "use strict";

  if (window.htmx) {
    // A refused submit (403 / 409 / 422) carries its reasons; swap them into #form-errors.
    window.htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[23]..", swap: true },
      { code: "(403|409|422)", swap: true, error: false },
      { code: "[45]..", swap: false, error: true },
      { code: "...", swap: false },
    ];
  }

  let form = null;
  let focusIdx = -1;
  let selectedSlot = null;
  let dragSlot = null;
  let startedAt = 0;
  let hiddenSince = 0;
  let hiddenMs = 0;
  let demoBase = null;
  let diffTimer = 0;

  const q = (sel, root) => (root || document).querySelector(sel);
  const qa = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const kind = () => (form ? form.dataset.kind : "");
  const slotCount = () => (form ? parseInt(form.dataset.slots || "0", 10) : 0);
  const LETTERS = "ABCDEFGH";

  // ------------------------------------------------------------------ set-up per task

  function init() {
    const f = q("form[data-ws]");
    if (f === form) return;
    form = f;
    focusIdx = -1;
    selectedSlot = null;
    demoBase = null;
    startedAt = performance.now();
    hiddenMs = 0;
    hiddenSince = document.hidden ? performance.now() : 0;
    if (!form) return;
    qa(".principle", form).forEach((row, i) => {
      row.addEventListener("click", (e) => {
        if (e.target.closest("summary")) return;
        setFocus(i);
      });
    });
    if (kind() === "rank") initRanking();
    if (kind() === "demonstrate") initDemo();
    if (kind() === "compare") syncChosen();
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) hiddenSince = performance.now();
    else if (hiddenSince) {
      hiddenMs += performance.now() - hiddenSince;
      hiddenSince = 0;
    }
  });

  function elapsedMs() {
    const hidden = hiddenMs + (hiddenSince ? performance.now() - hiddenSince : 0);
    return Math.max(0, Math.round(performance.now() - startedAt - hidden));
  }

  // ------------------------------------------------------------------ small helpers

  function input(name, value) {
    const sel = value === undefined ? `[name="${name}"]` : `[name="${name}"][value="${value}"]`;
    return q(sel, form);
  }

  function check(name, value) {
    const el = input(name, value);
    if (el) {
      el.checked = true;
      el.dispatchEvent(new Event("change", { bubbles: true }));
    }
    return el;
  }

  function toggle(name) {
    const el = input(name);
    if (el) {
      el.checked = !el.checked;
      el.dispatchEvent(new Event("change", { bubbles: true }));
    }
  }

  function checkedValue(name) {
    const el = q(`[name="${name}"]:checked`, form);
    return el ? el.value : null;
  }

  function say(message) {
    const box = q("#form-errors", form);
    if (!box) return;
    box.textContent = "";
    if (!message) return;
    const ul = document.createElement("ul");
    ul.className = "errors";
    const li = document.createElement("li");
    li.textContent = message;
    ul.appendChild(li);
    box.appendChild(ul);
  }

  function isTyping(el) {
    if (!el || !el.tagName) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" && !["radio", "checkbox", "button", "submit"].includes(el.type);
  }

  // ------------------------------------------------------------------ principles

  function rows() {
    return form ? qa(".principle", form) : [];
  }

  function setFocus(i) {
    const all = rows();
    all.forEach((r) => r.classList.remove("focused"));
    focusIdx = i >= 0 && all.length ? Math.min(i, all.length - 1) : -1;
    if (focusIdx >= 0) {
      all[focusIdx].classList.add("focused");
      all[focusIdx].scrollIntoView({ block: "nearest" });
    }
    form.classList.toggle("mode-principles", kind() === "rank" && focusIdx >= 0);
  }

  function movePrinciple(delta) {
    const n = rows().length;
    if (!n) return;
    setFocus(focusIdx < 0 ? (delta > 0 ? 0 : n - 1) : (focusIdx + delta + n) % n);
  }

  function focusedRow() {
    if (focusIdx < 0) setFocus(0);
    return rows()[focusIdx];
  }

  function verdict(value) {
    const row = focusedRow();
    if (!row) return;
    check(`v-${row.dataset.key}`, value);
  }

  function toggleDecisive() {
    const row = focusedRow();
    if (!row) return;
    const box = q('input[name="decisive"]', row);
    if (box) box.checked = !box.checked;
  }

  function toggleCite() {
    const row = focusedRow();
    if (!row) return;
    const box = q('input[name="cited"]', row);
    if (box) box.checked = !box.checked;
  }

  function toggleDetails() {
    const row = focusedRow();
    const details = row && q("details", row);
    if (details) details.open = !details.open;
  }

  // ------------------------------------------------------------------ compare

  function syncChosen() {
    const choice = checkedValue("choice");
    qa(".response", form).forEach((card) =>
      card.classList.toggle("chosen", choice !== null && card.dataset.slot === choice),
    );
  }

  function strength(delta) {
    if (checkedValue("choice") === "tie") {
      say("A tie has no strength.");
      return;
    }
    const current = parseInt(checkedValue("strength") || "0", 10);
    const next = Math.max(0, Math.min(3, current + delta));
    if (next === 0) qa('[name="strength"]', form).forEach((el) => (el.checked = false));
    else check("strength", String(next));
  }

  function compareKey(k) {
    const n = parseInt(k, 10);
    if (k === "0") {
      check("choice", "tie");
      qa('[name="strength"]', form).forEach((el) => (el.checked = false));
    } else if (n >= 1 && n <= slotCount()) check("choice", String(n - 1));
    else if (k === "b") toggle("both_bad");
    else if (k === "ArrowLeft") strength(-1);
    else if (k === "ArrowRight") strength(1);
    else if (k === "a") verdict("0");
    else if (k === "s") verdict("1");
    else if (k === "t") verdict("tie");
    else if (k === "n") verdict("na");
    else return false;
    syncChosen();
    return true;
  }

  // ------------------------------------------------------------------ rank

  function rankSelects() {
    return qa("select[data-rank-slot]", form);
  }

  function readBuckets() {
    const byRank = new Map();
    rankSelects().forEach((s) => {
      const r = parseInt(s.value, 10);
      if (!byRank.has(r)) byRank.set(r, []);
      byRank.get(r).push(parseInt(s.dataset.rankSlot, 10));
    });
    return Array.from(byRank.keys())
      .sort((a, b) => a - b)
      .map((r) => byRank.get(r));
  }

  function writeBuckets(buckets) {
    const dense = buckets.filter((b) => b.length);
    dense.forEach((bucket, i) =>
      bucket.forEach((slot) => {
        const sel = q(`select[data-rank-slot="${slot}"]`, form);
        if (sel) sel.value = String(i + 1);
      }),
    );
    renderBuckets();
  }

  function snippet(slot) {
    const card = q(`.response[data-slot="${slot}"] .md`, form);
    const text = card ? card.textContent.replace(/\s+/g, " ").trim() : "";
    return text.length > 70 ? text.slice(0, 70) + "…" : text;
  }

  function renderBuckets() {
    const list = q("[data-buckets]", form);
    if (!list) return;
    const buckets = readBuckets();
    list.textContent = "";
    const gap = (i) => {
      const li = document.createElement("li");
      li.className = "gap";
      li.dataset.gap = String(i);
      return li;
    };
    buckets.forEach((bucket, i) => {
      list.appendChild(gap(i));
      const li = document.createElement("li");
      li.className = "bucket" + (bucket.length > 1 ? " tied" : "");
      li.dataset.bucket = String(i);
      const rank = document.createElement("span");
      rank.className = "rank";
      rank.textContent = `${i + 1}.`;
      li.appendChild(rank);
      bucket
        .slice()
        .sort((a, b) => a - b)
        .forEach((slot) => {
          const chip = document.createElement("span");
          chip.className = "chip" + (slot === selectedSlot ? " selected" : "");
          chip.draggable = true;
          chip.dataset.slot = String(slot);
          chip.setAttribute("role", "button");
          chip.setAttribute("aria-label", `Response ${LETTERS[slot]}, rank ${i + 1}`);
          const badge = document.createElement("span");
          badge.className = "badge";
          badge.textContent = LETTERS[slot];
          const snip = document.createElement("span");
          snip.className = "snip";
          snip.textContent = snippet(slot);
          chip.append(badge, snip);
          li.appendChild(chip);
        });
      list.appendChild(li);
    });
    list.appendChild(gap(buckets.length));
  }

  function selectChip(slot) {
    selectedSlot = slot;
    renderBuckets();
  }

  function moveSelected(dir) {
    if (selectedSlot === null) {
      selectChip(readBuckets()[0][0]);
      return;
    }
    const b = readBuckets();
    const i = b.findIndex((bucket) => bucket.includes(selectedSlot));
    const alone = b[i].length === 1;
    if (dir < 0) {
      if (alone) {
        if (i === 0) return;
        b.splice(i, 1);
        b[i - 1].push(selectedSlot); // joins the bucket above: tied with it
      } else {
        b[i] = b[i].filter((s) => s !== selectedSlot);
        b.splice(i, 0, [selectedSlot]); // leaves the tie, just above it
      }
    } else if (alone) {
      if (i === b.length - 1) return;
      b.splice(i, 1);
      b[i].push(selectedSlot);
    } else {
      b[i] = b[i].filter((s) => s !== selectedSlot);
      b.splice(i + 1, 0, [selectedSlot]);
    }
    writeBuckets(b);
  }

  function dropAt(slot, target) {
    const b = readBuckets().map((bucket) => bucket.filter((s) => s !== slot));
    if (target.dataset.bucket !== undefined) b[parseInt(target.dataset.bucket, 10)].push(slot);
    else b.splice(parseInt(target.dataset.gap, 10), 0, [slot]);
    selectedSlot = slot;
    writeBuckets(b);
  }

  function initRanking() {
    const list = q("[data-buckets]", form);
    if (!list) return;
    // The rank selects stay visible: an accessible alternative that the chips mirror.
    rankSelects().forEach((sel) => sel.addEventListener("change", renderBuckets));
    const clearOver = () => qa(".over", list).forEach((el) => el.classList.remove("over"));
    list.addEventListener("click", (e) => {
      const chip = e.target.closest(".chip");
      if (chip) selectChip(parseInt(chip.dataset.slot, 10));
    });
    list.addEventListener("dragstart", (e) => {
      const chip = e.target.closest(".chip");
      if (!chip) return;
      dragSlot = parseInt(chip.dataset.slot, 10);
      e.dataTransfer.setData("text/plain", chip.dataset.slot);
      e.dataTransfer.effectAllowed = "move";
    });
    list.addEventListener("dragover", (e) => {
      const target = e.target.closest(".bucket, .gap");
      if (!target) return;
      e.preventDefault();
      clearOver();
      target.classList.add("over");
    });
    list.addEventListener("dragleave", (e) => {
      if (!list.contains(e.relatedTarget)) clearOver();
    });
    list.addEventListener("drop", (e) => {
      const target = e.target.closest(".bucket, .gap");
      clearOver();
      if (!target) return;
      e.preventDefault();
      const slot = dragSlot !== null ? dragSlot : parseInt(e.dataTransfer.getData("text/plain"), 10);
      dragSlot = null;
      if (!Number.isNaN(slot)) dropAt(slot, target);
    });
    list.addEventListener("dragend", () => {
      dragSlot = null;
      clearOver();
    });
    renderBuckets();
  }

  function rankKey(k) {
    const n = parseInt(k, 10);
    if (focusIdx >= 0) {
      // principle mode: name the focused principle's best response
      if (n >= 1 && n <= slotCount()) verdict(String(n - 1));
      else if (k === "t") verdict("tie");
      else if (k === "n") verdict("na");
      else if (k === "Escape") setFocus(-1);
      else return false;
      return true;
    }
    if (n >= 1 && n <= slotCount()) selectChip(n - 1);
    else if (k === "ArrowUp") moveSelected(-1);
    else if (k === "ArrowDown") moveSelected(1);
    else return false;
    return true;
  }

  // ------------------------------------------------------------------ demonstrate

  function sources() {
    const el = q("#demo-sources", form);
    try {
      return el ? JSON.parse(el.textContent) : [];
    } catch (_) {
      return [];
    }
  }

  function initDemo() {
    const text = q("#demo-text", form);
    qa("[data-start]", form).forEach((btn) =>
      btn.addEventListener("click", () => startFrom(parseInt(btn.dataset.start, 10))),
    );
    if (text) {
      text.addEventListener("input", () => {
        clearTimeout(diffTimer);
        diffTimer = setTimeout(showDiff, 120);
      });
    }
  }

  function startFrom(slot) {
    const texts = sources();
    const text = q("#demo-text", form);
    if (!text || slot < 0 || slot >= texts.length) return;
    demoBase = texts[slot];
    text.value = demoBase;
    input("based_on").value = String(slot);
    const label = q("[data-based-on-label]", form);
    label.hidden = false;
    label.textContent = `Starting from response ${LETTERS[slot]}: your changes are shown below.`;
    text.focus();
    showDiff();
  }

  function tokens(s) {
    return s.split(/(\s+)/).filter((t) => t.length);
  }

  // Word-level diff (LCS), with common prefix/suffix trimmed first.
  function diff(a, b) {
    let start = 0;
    while (start < a.length && start < b.length && a[start] === b[start]) start++;
    let endA = a.length;
    let endB = b.length;
    while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
      endA--;
      endB--;
    }
    const ops = [];
    if (start) ops.push(["=", a.slice(0, start).join("")]);
    const x = a.slice(start, endA);
    const y = b.slice(start, endB);
    const n = x.length;
    const m = y.length;
    if (n * m > 4000000) {
      if (n) ops.push(["-", x.join("")]);
      if (m) ops.push(["+", y.join("")]);
    } else {
      const w = m + 1;
      const dp = new Uint32Array((n + 1) * w);
      for (let i = n - 1; i >= 0; i--) {
        for (let j = m - 1; j >= 0; j--) {
          dp[i * w + j] =
            x[i] === y[j] ? dp[(i + 1) * w + j + 1] + 1 : Math.max(dp[(i + 1) * w + j], dp[i * w + j + 1]);
        }
      }
      let i = 0;
      let j = 0;
      while (i < n || j < m) {
        if (i < n && j < m && x[i] === y[j]) {
          ops.push(["=", x[i++]]);
          j++;
        } else if (j < m && (i === n || dp[i * w + j + 1] >= dp[(i + 1) * w + j])) ops.push(["+", y[j++]]);
        else ops.push(["-", x[i++]]);
      }
    }
    if (endA < a.length) ops.push(["=", a.slice(endA).join("")]);
    const merged = [];
    ops.forEach(([op, t]) => {
      const last = merged[merged.length - 1];
      if (last && last[0] === op) last[1] += t;
      else merged.push([op, t]);
    });
    return merged;
  }

  function showDiff() {
    const box = q("[data-diff]", form);
    const text = q("#demo-text", form);
    if (!box || !text) return;
    if (demoBase === null) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    box.textContent = "";
    const ops = diff(tokens(demoBase), tokens(text.value));
    let changes = 0;
    ops.forEach(([op, t]) => {
      const el = document.createElement(op === "+" ? "ins" : op === "-" ? "del" : "span");
      el.textContent = t;
      if (op !== "=") changes++;
      box.appendChild(el);
    });
    box.dataset.changes = String(changes);
  }

  function demoKey(k) {
    const n = parseInt(k, 10);
    if (n >= 1 && n <= slotCount()) startFrom(n - 1);
    else if (k === "w") q("#demo-text", form).focus();
    else return false;
    return true;
  }

  // ------------------------------------------------------------------ submit, skip, help

  function validate() {
    if (kind() === "compare" && !checkedValue("choice") && !input("both_bad").checked) {
      return "Choose A, B or tie first (keys 1, 2 or 0).";
    }
    if (kind() === "demonstrate" && !q("#demo-text", form).value.trim()) {
      return "Write the answer first (w focuses the editor).";
    }
    if (kind() !== "demonstrate") {
      const slots = new Set(Array.from({ length: slotCount() }, (_, i) => String(i)));
      for (const row of rows()) {
        const box = q('input[name="decisive"]', row);
        if (box && box.checked && !slots.has(checkedValue(`v-${row.dataset.key}`))) {
          return `Decisive principle “${row.dataset.key}” must favour a response (a/s or a digit).`;
        }
      }
      if (input("discretion").checked && qa('input[name="decisive"]:checked', form).length) {
        return "“My own judgment” means no principle decided: clear the decisive marks or the flag.";
      }
    }
    return "";
  }

  // Runs before htmx sees the submit (capture phase on the document).
  document.addEventListener(
    "submit",
    (e) => {
      if (!form || e.target !== form) return;
      const problem = validate();
      if (problem) {
        e.preventDefault();
        e.stopPropagation();
        say(problem);
        return;
      }
      say("");
      const spent = input("time_spent_ms");
      if (spent) spent.value = String(elapsedMs());
    },
    true,
  );

  function submit() {
    if (form && document.body.contains(form)) form.requestSubmit();
  }

  function skipDialog() {
    return q("#skip-dialog");
  }

  function openSkip() {
    const dialog = skipDialog();
    if (!dialog) return;
    dialog.showModal();
    const first = q('input[name="reason"]:checked', dialog) || q('input[name="reason"]', dialog);
    if (first) first.focus();
  }

  function skipKey(e, dialog) {
    const skipForm = q("form", dialog);
    if (e.key === "Enter") {
      e.preventDefault();
      skipForm.requestSubmit();
    } else if (e.key === "Escape") {
      e.preventDefault();
      dialog.close();
    } else if (!isTyping(e.target) && /^[1-9]$/.test(e.key)) {
      const reasons = qa('input[name="reason"]', dialog);
      const r = reasons[parseInt(e.key, 10) - 1];
      if (r) {
        r.checked = true;
        r.focus();
        e.preventDefault();
      }
    }
  }

  function help() {
    return q("#help");
  }

  function toggleHelp(open) {
    const h = help();
    if (h) h.hidden = open === undefined ? !h.hidden : !open;
  }

  document.addEventListener("click", (e) => {
    const action = e.target.closest("[data-action]");
    if (!action) {
      if (e.target === help()) toggleHelp(false);
      return;
    }
    const what = action.dataset.action;
    if (what === "help") toggleHelp();
    else if (what === "skip") openSkip();
    else if (what === "close") {
      const dialog = action.closest("dialog");
      if (dialog) dialog.close();
    }
  });

  document.addEventListener("change", (e) => {
    if (form && e.target.name === "choice") syncChosen();
  });

  // ------------------------------------------------------------------ the keyboard map

  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || e.isComposing) return;
    const h = help();
    if (h && !h.hidden) {
      if (e.key === "Escape" || e.key === "?") {
        toggleHelp(false);
        e.preventDefault();
      }
      return;
    }
    const dialog = skipDialog();
    if (dialog && dialog.open) {
      skipKey(e, dialog);
      return;
    }
    if (!form || !document.body.contains(form)) init();
    if (!form) return;
    const target = e.target;
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
      e.preventDefault();
      submit();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (isTyping(target)) {
      if (e.key === "Escape") {
        target.blur();
        e.preventDefault();
      }
      return;
    }
    const k = e.key;
    if (k === "Enter" && target.closest && target.closest("button, summary, a")) return;
    let handled = true;
    if (k === "?") toggleHelp();
    else if (k === "Enter") submit();
    else if (k === "x" && !form.hasAttribute("data-editing")) openSkip();
    else if (k === "j" || (k === "ArrowDown" && focusIdx >= 0 && kind() !== "rank")) movePrinciple(1);
    else if (k === "k" || (k === "ArrowUp" && focusIdx >= 0 && kind() !== "rank")) movePrinciple(-1);
    else if (k === "e") toggleDetails();
    else if (k === "d" && kind() !== "demonstrate") toggleDecisive();
    else if (k === "m" && kind() !== "demonstrate") toggle("discretion");
    else if (k === "r" && kind() !== "demonstrate") input("rationale").focus();
    else if (k === "c" && kind() === "demonstrate") toggleCite();
    else if (k === "c") {
      const current = parseInt(checkedValue("confidence") || "0", 10);
      check("confidence", String((current % 5) + 1));
    } else if (kind() === "compare") handled = compareKey(k);
    else if (kind() === "rank") handled = rankKey(k);
    else if (kind() === "demonstrate") handled = demoKey(k);
    else handled = false;
    if (handled) e.preventDefault();
  });

  // ------------------------------------------------------------------ htmx life cycle

  document.addEventListener("htmx:afterSettle", init);
  document.addEventListener("htmx:sendError", () =>
    say("Could not reach the server. Press Enter to retry: your answer is kept and is never saved twice."),
  );
  document.addEventListener("htmx:responseError", (e) =>
    say(`The server refused this (${e.detail.xhr.status}). Press Enter to retry.`),
  );
  document.addEventListener("htmx:afterSwap", (e) => {
    if (e.detail.target && e.detail.target.id === "form-errors") {
      e.detail.target.scrollIntoView({ block: "nearest" });
    }
  });

  init();
})();
