// picron: small enhancements; every page works without this file.
// - the task form previews the next runs while the interval is typed (GET /api/preview)
// - choosing another module re-renders the form with that module's option fields
// - rows and pages of runs still running refresh themselves in place
"use strict";

var REFRESH_MS = 3000;

document.documentElement.classList.add("js");

document.addEventListener("DOMContentLoaded", function () {
  setUpModuleSelect();
  setUpPreview();
  scheduleRefresh();
});

// Every element marked data-refresh (with an id) is replaced by its new version from the
// same page, fetched again, while any of them is still running. Nothing else changes, so
// a half-typed filter or a focused button stays as it is.
function scheduleRefresh() {
  if (!document.querySelector("[data-refresh]")) return;
  window.setTimeout(refresh, REFRESH_MS);
}

function refresh() {
  fetch(window.location.href, {credentials: "same-origin"})
    .then(function (response) { return response.ok ? response.text() : null; })
    .then(function (text) {
      if (text === null) return;
      var fresh = new DOMParser().parseFromString(text, "text/html");
      document.querySelectorAll("[data-refresh]").forEach(function (old) {
        var replacement = old.id ? fresh.getElementById(old.id) : null;
        if (replacement) old.replaceWith(document.importNode(replacement, true));
        else old.removeAttribute("data-refresh");
      });
      scheduleRefresh();
    })
    .catch(function () { /* try again with the next page load */ });
}

function setUpModuleSelect() {
  var select = document.querySelector("select[data-module]");
  if (!select) return;
  var button = select.form.querySelector("button[name=change_module]");
  select.addEventListener("change", function () {
    if (select.form.requestSubmit) select.form.requestSubmit(button);
    else button.click();
  });
}

function setUpPreview() {
  var interval = document.getElementById("f-interval");
  var zone = document.getElementById("f-timezone");
  var body = document.getElementById("preview-body");
  var reading = document.getElementById("interval-reading");
  if (!interval || !body) return;
  var count = document.getElementById("preview").getAttribute("data-count") || "5";
  var timer = null;
  var latest = 0;

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(update, 250);
  }

  function update() {
    var text = interval.value.trim();
    var tz = zone ? zone.value.trim() : "";
    var ticket = ++latest;
    if (!text) {
      show([message("Enter an interval to see when it runs.", "hint")], "");
      return;
    }
    var url = "/api/preview?interval=" + encodeURIComponent(text) +
      "&timezone=" + encodeURIComponent(tz) + "&count=" + encodeURIComponent(count);
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        return response.json().then(function (data) { return {ok: response.ok, data: data}; });
      })
      .then(function (result) {
        if (ticket !== latest) return;  // a newer request is under way
        if (!result.ok) {
          var error = result.data && result.data.error ? result.data.error.message : "invalid";
          show([message(error, "field-error")], null, true);
          return;
        }
        clearFieldError();
        show([timesList(result.data)], result.data.description);
      })
      .catch(function () {
        if (ticket === latest) show([message("The preview is unavailable right now.", "hint")], null);
      });
  }

  // description: text to show as the reading, "" to clear it, null to leave it as it is
  function show(nodes, description, isError) {
    body.replaceChildren.apply(body, nodes);
    if (!reading) return;
    if (isError) {
      reading.replaceChildren();
    } else if (description !== null && description !== undefined) {
      if (description && description !== interval.value.trim()) {
        var div = document.createElement("div");
        div.className = "reading";
        div.textContent = description;
        reading.replaceChildren(div);
      } else {
        reading.replaceChildren();
      }
    }
  }

  // The server's message about the interval is stale once the preview finds it valid.
  function clearFieldError() {
    var field = interval.closest(".field");
    var error = document.getElementById("error-interval");
    if (error) error.remove();
    if (field) field.classList.remove("invalid");
    interval.removeAttribute("aria-invalid");
    interval.removeAttribute("aria-describedby");
  }

  interval.addEventListener("input", schedule);
  if (zone) zone.addEventListener("input", schedule);
}

function message(text, className) {
  var p = document.createElement("p");
  p.className = className;
  p.textContent = text;
  return p;
}

// The times as the server shows them ("2026-03-29 03:00 CEST"), noting offset changes.
function timesList(data) {
  var list = document.createElement("ol");
  list.className = "times";
  var previous = null;
  (data.display || []).forEach(function (text, index) {
    var name = text.slice(17);  // after "YYYY-MM-DD HH:MM "
    var item = document.createElement("li");
    var time = document.createElement("time");
    time.setAttribute("datetime", data.next[index]);
    time.textContent = text;
    item.appendChild(time);
    if (previous !== null && name !== previous) {
      var note = document.createElement("span");
      note.className = "dst";
      note.textContent = "clocks change: " + previous + " → " + name;
      item.appendChild(document.createTextNode(" "));
      item.appendChild(note);
    }
    previous = name;
    list.appendChild(item);
  });
  return list;
}
