/* Librarian console: the upload form and the live-status bridge. Plain JavaScript, no build step. */
(function () {
  "use strict";
  var csrf = document.body.dataset.csrf || "";

  /* Live pages: each status event of the subject's owner (the API's SSE stream) asks htmx to
     refresh the live fragments now; their own polling covers anonymous work and lost streams. */
  var events = document.body.dataset.events;
  if (events && window.EventSource) {
    var source = new EventSource(events);
    source.addEventListener("status", function (event) {
      if (window.htmx) { window.htmx.trigger(document.body, "librarian:status", { data: event.data }); }
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  var form = document.getElementById("upload");
  if (!form) { return; }
  var maxBytes = Number(form.dataset.maxBytes), maxMb = form.dataset.maxMb, maxItems = Number(form.dataset.maxItems);
  var input = document.getElementById("files"), drop = document.getElementById("drop");
  var list = document.getElementById("chosen"), send = document.getElementById("send");
  var clear = document.getElementById("clear"), status = document.getElementById("upload-status");
  var chosen = [];

  function problem(file) {
    if (!/\.3dm$/i.test(file.name)) { return "not a .3dm file: the server will refuse it"; }
    if (file.size > maxBytes) { return "over the " + maxMb + " MB limit: the server will refuse it"; }
    if (file.size === 0) { return "empty: the server will refuse it"; }
    return "";
  }

  function sizeText(bytes) {
    return bytes >= 1048576 ? (bytes / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(bytes / 1024)) + " kB";
  }

  function show() {
    list.textContent = "";
    chosen.forEach(function (file) {
      var item = document.createElement("li"), name = document.createElement("span");
      name.textContent = file.name + " (" + sizeText(file.size) + ")";
      item.appendChild(name);
      var why = problem(file);
      if (why) {
        var note = document.createElement("span");
        note.className = "problem";
        note.textContent = why;
        item.appendChild(note);
      }
      list.appendChild(item);
    });
    var n = chosen.length;
    send.disabled = clear.disabled = n === 0;
    send.textContent = n > 1 ? "Upload " + n + " files as a batch" : "Upload";
    status.textContent = n > maxItems ? "At most " + maxItems + " files per batch." : "";
  }

  function add(files) {
    Array.prototype.forEach.call(files, function (file) { chosen.push(file); });
    show();
  }

  input.addEventListener("change", function () { add(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach(function (type) {
    drop.addEventListener(type, function (event) { event.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    drop.addEventListener(type, function () { drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer) { add(event.dataTransfer.files); }
  });
  clear.addEventListener("click", function () { chosen = []; show(); });

  function detailText(body, code) {
    var detail = body && body.detail;
    if (Array.isArray(detail)) {
      detail = detail.map(function (d) { return (d.loc || []).join(".") + ": " + d.msg; }).join("; ");
    }
    return "Refused (" + code + "): " + (detail || "no reason given");
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!chosen.length) { return; }
    var batch = chosen.length > 1, body = new FormData();
    chosen.forEach(function (file) { body.append(batch ? "files" : "file", file, file.name); });
    var owner = document.getElementById("owner");
    if (owner && owner.value.trim()) { body.append("owner", owner.value.trim()); }
    var ruleset = document.getElementById("ruleset").value;
    var url = "/ui/upload/" + (batch ? "batch" : "part") + "?ruleset=" + encodeURIComponent(ruleset);
    send.disabled = true;
    status.className = "";
    status.textContent = "Uploading " + chosen.length + (batch ? " files" : " file") + "…";
    fetch(url, { method: "POST", body: body, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (json) {
          if (response.ok) {
            window.location.assign(batch ? "/ui/batches/" + json.batch_id : "/ui/parts/" + json.part_id);
            return;
          }
          if (response.status === 401 && response.headers.get("HX-Redirect")) {
            window.location.assign(response.headers.get("HX-Redirect"));
            return;
          }
          status.className = "alert";
          status.textContent = detailText(json, response.status);
          send.disabled = false;
        });
      })
      .catch(function (error) {
        status.className = "alert";
        status.textContent = "The upload did not reach the server: " + error.message;
        send.disabled = false;
      });
  });
})();
