// Firmware upload with a progress bar: XMLHttpRequest exposes upload progress, fetch() does not.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const bar = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");

  function show(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function describeError(xhr) {
    try {
      const body = JSON.parse(xhr.responseText).error;
      const entries = Object.entries(body.fields || {}).map(([name, msgs]) => [name, [].concat(msgs)]);
      const fields = entries.map(([name, msgs]) => `${name}: ${msgs.join(" ")}`).join("\n");
      // A conflict names its field with the same sentence as the message: say it once.
      const repeated = entries.some(([, msgs]) => msgs.includes(body.message));
      if (repeated) return `${xhr.status} ${fields}`;
      return `${xhr.status} ${body.message}${fields ? "\n" + fields : ""}`;
    } catch (e) {
      return `${xhr.status} ${xhr.statusText}`;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const submit = form.querySelector("input[type=submit]");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.uploadUrl);
    xhr.setRequestHeader("X-CSRFToken", data.get("csrfmiddlewaretoken"));
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      bar.value = Math.round((e.loaded / e.total) * 100);
      show(`Uploading… ${bar.value}% (${e.loaded} of ${e.total} bytes)`);
    });
    xhr.upload.addEventListener("load", () => show("Upload complete, verifying and storing…"));
    xhr.addEventListener("load", () => {
      submit.disabled = false;
      if (xhr.status === 201) {
        const fw = JSON.parse(xhr.responseText);
        let text = `Stored ${fw.ecu_type} ${fw.version}: ${fw.size} bytes, SHA-256 ${fw.sha256}`;
        if (fw.same_bytes_as.length) {
          text += "\nSame bytes as: " + fw.same_bytes_as.map((f) => `${f.ecu_type} ${f.version}`).join(", ");
        }
        show(text, false);
        bar.value = 100;
      } else {
        show(describeError(xhr), true);
      }
    });
    xhr.addEventListener("error", () => {
      submit.disabled = false;
      show("Network error: the upload did not finish.", true);
    });
    bar.hidden = false;
    bar.value = 0;
    submit.disabled = true;
    show("Starting upload…");
    xhr.send(data);
  });
});
