/* Coverage map: title and legend boxes, the window form, unit labels hidden when zoomed out. */
(function () {
  "use strict";

  var C = window.PatroliCommon;

  /* Minutes the display zone `zone` is ahead of UTC at instant ms (`fallback` if unknown). */
  function offsetMin(zone, ms, fallback) {
    try {
      var v = {};
      new Intl.DateTimeFormat("en-US", {
        timeZone: zone,
        hourCycle: "h23",
        year: "numeric",
        month: "2-digit",
        day: "2-digit",
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
      })
        .formatToParts(new Date(ms))
        .forEach(function (p) {
          v[p.type] = Number(p.value);
        });
      return (Date.UTC(v.year, v.month - 1, v.day, v.hour % 24, v.minute, v.second) - ms) / 60000;
    } catch (e) {
      return fallback;
    }
  }

  /* A datetime-local value in the display zone as ISO 8601 UTC (null if it is not one). */
  function toUtc(value, zone, fallback) {
    var m = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?/.exec(value || "");
    if (!m) {
      return null;
    }
    var naive = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
    var ms = naive - offsetMin(zone, naive, fallback) * 60000;
    ms = naive - offsetMin(zone, ms, fallback) * 60000;
    return new Date(ms).toISOString().replace(".000Z", "Z");
  }

  /* The window form loads the page again for the picked window (keeping key and lang). */
  function windowForm(form, zone, fallback) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var from = toUtc(form.elements["from"].value, zone, fallback);
      var to = toUtc(form.elements["to"].value, zone, fallback);
      if (!from || !to || from >= to) {
        form.classList.add("patroli-invalid");
        return;
      }
      var here = new URLSearchParams(window.location.search);
      var next = new URLSearchParams();
      next.set("from", from);
      next.set("to", to);
      ["key", "lang"].forEach(function (k) {
        if (here.has(k)) {
          next.set(k, here.get(k));
        }
      });
      window.location.assign(window.location.pathname + "?" + next.toString());
    });
  }

  function start(map, cfg) {
    // Title and legend are HTML made by the server with every name escaped; like all text
    // from users they come from the page data, never from a script's source.
    var chrome = C.data().chrome;
    var title = C.box(map, "topleft", "patroli-title", chrome.title);
    var legend = C.box(map, "bottomright", "patroli-legend", chrome.legend);
    C.paint(title);
    C.paint(legend);
    var form = document.getElementById("patroli-window");
    if (form) {
      windowForm(form, chrome.zone, cfg.offsetMin);
    }
    function toggleLabels() {
      var hide = cfg.manyUnits && map.getZoom() < cfg.labelsMinZoom;
      map.getContainer().classList.toggle("patroli-hide-labels", hide);
    }
    map.on("zoomend", toggleLabels);
    L.control.scale({ position: "bottomleft", imperial: false }).addTo(map);
    if (cfg.bounds) {
      // Fit the data, keeping it clear of the title (top left) and legend (bottom right).
      var size = map.getSize();
      var top = Math.min(title.offsetHeight + 20, size.y / 4);
      var right = Math.min(legend.offsetWidth + 20, size.x / 3);
      map.fitBounds(cfg.bounds, {
        paddingTopLeft: [20, top],
        paddingBottomRight: [right, 20],
        maxZoom: cfg.maxZoom,
        animate: false,
      });
    }
    toggleLabels();
  }

  window.PatroliCoverage = { start: start };
})();
