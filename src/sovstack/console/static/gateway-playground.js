// sovstack gateway playground: sends one chat message through /v1/chat/completions as the console user
// (session cookie + X-CSRF-Token) and streams the answer into the page.
(function () {
  "use strict";

  function $(id) { return document.getElementById(id); }

  function showError(message, reasons) {
    var box = $("pg-error");
    box.textContent = "";
    var strong = document.createElement("strong");
    strong.textContent = message;
    box.appendChild(strong);
    if (reasons && reasons.length) {
      var list = document.createElement("ul");
      list.className = "reasons";
      reasons.forEach(function (reason) {
        var item = document.createElement("li");
        item.textContent = reason;
        list.appendChild(item);
      });
      box.appendChild(list);
    }
    box.hidden = false;
  }

  function errorOf(body, fallback) {
    var err = body && body.error;
    if (!err) { return { message: fallback, reasons: [] }; }
    if (typeof err === "string") { return { message: err, reasons: [] }; }
    return { message: err.message || fallback, reasons: err.reasons || [] };
  }

  // One SSE line: a text delta is appended, an error event is shown; true once the stream says [DONE].
  function handleLine(line, output) {
    if (line.indexOf("data:") !== 0) { return false; }
    var data = line.slice(5).trim();
    if (data === "[DONE]") { return true; }
    var chunk;
    try { chunk = JSON.parse(data); } catch (e) { return false; }
    if (chunk.error) {
      var err = errorOf(chunk, "the stream failed");
      showError(err.message, err.reasons);
      return false;
    }
    (chunk.choices || []).forEach(function (choice) {
      var text = choice.delta && choice.delta.content;
      if (typeof text === "string") { output.textContent += text; }
    });
    return false;
  }

  async function readStream(response, output) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var done = false;
    for (;;) {
      var part = await reader.read();
      if (part.done) { break; }
      buffer += decoder.decode(part.value, { stream: true });
      var lines = buffer.split("\n");
      buffer = lines.pop();
      lines.forEach(function (line) { done = handleLine(line.replace(/\r$/, ""), output) || done; });
    }
    if (buffer) { done = handleLine(buffer, output) || done; }
    return done;
  }

  async function send(form) {
    var output = $("pg-output");
    var button = $("pg-send");
    var status = $("pg-status");
    $("pg-result").hidden = false;
    $("pg-error").hidden = true;
    output.textContent = "";
    ["pg-deployment", "pg-tries", "pg-level"].forEach(function (id) { $(id).textContent = "—"; });
    button.disabled = true;
    status.textContent = "Waiting for the model…";
    try {
      var headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "X-CSRF-Token": form.getAttribute("data-csrf"),
        "X-Sovstack-Classification": $("pg-classification").value
      };
      // The organisation the call is for: its limits bind it, its budget pays for it.
      if ($("pg-organisation")) { headers["X-Sovstack-Organisation"] = $("pg-organisation").value; }
      var response = await fetch(form.getAttribute("data-endpoint"), {
        method: "POST",
        credentials: "same-origin",
        headers: headers,
        body: JSON.stringify({
          model: $("pg-model").value,
          messages: [{ role: "user", content: $("pg-message").value }],
          stream: true
        })
      });
      $("pg-deployment").textContent = response.headers.get("x-sovstack-deployment") || "—";
      $("pg-tries").textContent = response.headers.get("x-sovstack-tries") || "—";
      $("pg-level").textContent = response.headers.get("x-sovstack-classification") || "—";
      if (!response.ok) {
        var body = null;
        try { body = await response.json(); } catch (e) { body = null; }
        var err = errorOf(body, "HTTP " + response.status);
        showError(err.message, err.reasons);
        status.textContent = "Refused or failed (HTTP " + response.status + ").";
        return;
      }
      status.textContent = "Streaming…";
      var finished = await readStream(response, output);
      status.textContent = finished ? "Done." : "The stream ended early.";
    } catch (e) {
      showError("The request failed: " + e.message, []);
      status.textContent = "";
    } finally {
      button.disabled = false;
    }
  }

  function onReady() {
    var form = $("playground");
    if (!form) { return; }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      send(form);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", onReady);
  } else {
    onReady();
  }
})();
