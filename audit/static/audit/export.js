// The evidence export form: download with a progress bar. The server says how many entries
// follow (X-Payflow-Entries); the bundle holds one entry per line and the CSV one row per
// entry, so counting line breaks while the response streams in tells how far it is.
// Without this script the form still works: the browser downloads the response itself.
"use strict";
(function () {
  const form = document.getElementById("export-form");
  const bar = document.getElementById("export-progress");
  const status = document.getElementById("export-status");
  const file = document.getElementById("trusted-file");
  const trusted = document.getElementById("trusted");
  if (file && trusted && window.FileReader) {
    // a saved checkpoint's file goes into the box, as if pasted (the form sends text)
    file.addEventListener("change", function () {
      if (!file.files.length) return;
      const reader = new FileReader();
      reader.onload = function () { trusted.value = String(reader.result); };
      reader.readAsText(file.files[0]);
    });
  }
  if (!form || !bar || !window.fetch || !window.ReadableStream) return;

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const url = form.action + "?" + new URLSearchParams(new FormData(form)).toString();
    status.textContent = "Preparing…";
    bar.hidden = false;
    bar.removeAttribute("value");
    let response;
    const controller = new AbortController();
    try {
      response = await fetch(url, { credentials: "same-origin", signal: controller.signal });
    } catch (error) {
      status.textContent = "The download failed: " + error;
      return;
    }
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok || type.startsWith("text/html")) {
      // a refusal is the form again with the reason: let the browser load it as a page
      // (form.submit() does not fire this listener again)
      form.submit();
      return;
    }
    const total = parseInt(response.headers.get("X-Payflow-Entries") || "0", 10);
    const large = parseInt(form.dataset.large || "0", 10);
    if (large && total > large) {
      // too large to hold in this page: the browser saves it to disk as it comes
      controller.abort();
      status.textContent = total + " entries: your browser downloads them and shows the progress.";
      bar.hidden = true;
      form.submit();
      return;
    }
    const reader = response.body.getReader();
    const parts = [];
    let lines = 0;
    let received = 0;
    bar.max = Math.max(total, 1);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      received += value.length;
      for (let i = 0; i < value.length; i++) if (value[i] === 10) lines++;
      const entries = Math.min(Math.max(lines - 1, 0), total);
      bar.value = entries;
      status.textContent = entries + " of " + total + " entries (" + Math.round(received / 1024) + " KiB)";
    }
    const tail = new TextDecoder().decode(parts.length ? parts[parts.length - 1].slice(-600) : new Uint8Array());
    const failed = tail.lastIndexOf("EXPORT FAILED");
    if (failed >= 0 || lines - 1 < total) {
      // the server could not finish (see the failure line); nothing is saved
      status.textContent = "The export stopped: " +
        (failed >= 0 ? tail.slice(failed).trim() : (Math.max(lines - 1, 0) + " of " + total + " entries arrived")) +
        ". Nothing was saved; try again.";
      status.setAttribute("role", "alert");
      return;
    }
    bar.value = bar.max;
    status.textContent = total + " entries downloaded.";
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename="([^"]+)"/.exec(disposition);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob(parts, { type: type }));
    link.download = match ? match[1] : "evidence";
    document.body.appendChild(link);
    link.click();
    link.remove();
  });
})();
