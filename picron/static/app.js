// picron: small enhancements; every page works without this file.
// - the task form previews the next runs while the interval is typed (GET /api/preview)
// - choosing another module re-renders the form with that module's option fields
// - the history reloads itself while a run is still running
"use strict";

document.documentElement.classList.add("js");

document.addEventListener("DOMContentLoaded", function () {
  setUpModuleSelect();
  setUpPreview();
  if (document.querySelector("tr[data-running]")) {
    window.setTimeout(function () { window.location.reload(); }, 2000);
  }
});

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

  interval.addEventListener("input", schedule);
  if (zone) zone.addEventListener("input", schedule);
}

function message(text, className) {
  var p = document.createElement("p");
  p.className = className;
  p.textContent = text;
  return p;
}

// The times as the zone's wall clock ("2026-03-29 03:00 CEST"), noting offset changes.
function timesList(data) {
  var list = document.createElement("ol");
  list.className = "times";
  var previous = null;
  (data.local || []).forEach(function (local, index) {
    var offset = local.slice(19);  // "+02:00" after "YYYY-MM-DDTHH:MM:SS"
    var name = zoneName(data.timezone, data.next[index]) || offset;
    var item = document.createElement("li");
    var time = document.createElement("time");
    time.setAttribute("datetime", data.next[index]);
    time.textContent = local.slice(0, 10) + " " + local.slice(11, 16) + " " + name;
    item.appendChild(time);
    if (previous !== null && offset !== previous.offset) {
      var note = document.createElement("span");
      note.className = "dst";
      note.textContent = "clocks change: " + previous.name + " → " + name;
      item.appendChild(document.createTextNode(" "));
      item.appendChild(note);
    }
    previous = {offset: offset, name: name};
    list.appendChild(item);
  });
  return list;
}

function zoneName(zone, instant) {
  try {
    var parts = new Intl.DateTimeFormat("en-GB", {timeZone: zone, timeZoneName: "short"})
      .formatToParts(new Date(instant));
    for (var i = 0; i < parts.length; i++) {
      if (parts[i].type === "timeZoneName") return parts[i].value;
    }
  } catch (error) {
    // not a zone the browser knows: the caller falls back to the UTC offset
  }
  return null;
}
