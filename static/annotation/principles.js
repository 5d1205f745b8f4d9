// "Add a row" on the principle-set forms: clone the formset's empty row in the page (the
// button also works without JS: it posts and the server adds the row).
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-add-row]");
  if (!button) return;
  const form = button.form;
  const template = form.querySelector("template[data-empty-row]");
  const total = form.querySelector('input[name$="-TOTAL_FORMS"]');
  if (!template || !total) return;
  event.preventDefault();
  const index = Number(total.value);
  const row = template.content.firstElementChild.cloneNode(true);
  row.innerHTML = row.innerHTML.replaceAll("__prefix__", String(index));
  form.querySelector("[data-rows]").appendChild(row);
  total.value = String(index + 1);
  const first = row.querySelector("input, textarea, select");
  if (first) first.focus();
});
