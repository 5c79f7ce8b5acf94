// "Copy usage link" in one click (progressive: without this script the form posts and the answer
// shows the link). The form is posted by fetch, which the view answers with JSON; the link is shown
// in the read-only field and copied to the clipboard. A page that came from the plain POST is put
// back at the customer's address, so that a reload does not make another link.
(function () {
  "use strict";
  const section = document.getElementById("usage-link");
  if (!section) return;
  const field = section.querySelector("#usage-link-url");
  const shown = section.querySelector(".made-link");
  const copyButton = section.querySelector(".copy-link");
  const said = section.querySelector(".copied");
  const form = section.querySelector("form.make-link");

  if (!shown.hidden && location.pathname !== section.dataset.page) {
    history.replaceState(null, "", section.dataset.page);
  }
  if (!shown.hidden) field.select();

  async function copy() {
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
      said.textContent = "Copied";
    } catch (refused) {  // no clipboard access (an old browser, a denied permission): copy by hand
      said.textContent = "Selected: press Ctrl+C (⌘C) to copy";
    }
  }

  copyButton.hidden = false;
  copyButton.addEventListener("click", copy);
  field.addEventListener("focus", () => field.select());

  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    said.textContent = "";
    try {
      const answer = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!answer.ok) throw new Error(String(answer.status));
      const link = await answer.json();
      field.value = link.url;
      section.querySelector(".link-expiry").textContent = link.expires_at.slice(0, 16).replace("T", " ");
      shown.hidden = false;
      await copy();
    } catch (failed) {  // the JSON path failed (signed out, CSRF expired): the plain form says why
      form.submit();
    } finally {
      button.disabled = false;
    }
  });
})();
