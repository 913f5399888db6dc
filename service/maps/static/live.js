/* Live map: unit markers moved by the server's event stream (SSE), trails, alerts, overdue segments. */
(function () {
  "use strict";

  var C = window.PatroliCommon;
  // After an error response the stream is reopened by the page: first after RETRY_MIN_MS, then
  // twice as long each time it fails again, at most RETRY_MAX_MS (plus up to 25 % at random);
  // a successful open resets it.
  var RETRY_MIN_MS = 1000;
  var RETRY_MAX_MS = 30000;

  function start(map, cfg) {
    var t = cfg.labels;
    var fmt = C.formatter(cfg, false);
    var state = {
      positions: {},
      events: [],
      offRoute: {},
      offline: {},
      overdue: {},
      alarms: {}, // alarm events shown in the banner, by event id, until dismissed here
      connected: false,
      status: "connecting",
      messages: 0,
      retries: 0, // streams reopened by the page after an error response
      cursor: cfg.cursor || "", // the stream position after the last message handled
    };
    window.patroliLive = state;

    var trailLayer = L.layerGroup().addTo(map);
    var overdueLayer = L.layerGroup().addTo(map);
    var unitLayer = L.layerGroup().addTo(map);
    var markers = {};
    var trails = {};

    // ---- panels -----------------------------------------------------------------------
    C.box(
      map,
      "topleft",
      "patroli-title",
      "<h1>" + C.esc(t.live_title) + "</h1>" +
        '<div id="patroli-status" class="patroli-status patroli-connecting">' +
        C.esc(t.connecting) + "</div>"
    );
    var panel = C.box(
      map,
      "topright",
      "patroli-alerts",
      "<h2>" + C.esc(t.alerts) + '</h2><div class="patroli-empty-alerts">' +
        C.esc(t.no_alerts) + '</div><ol class="patroli-alarm-list"></ol>' +
        '<ol class="patroli-alert-list"></ol>'
    );
    // Alarms stay pinned above every other alert; the other alerts scroll below them.
    var alarmList = panel.querySelector(".patroli-alarm-list");
    var list = panel.querySelector(".patroli-alert-list");
    var empty = panel.querySelector(".patroli-empty-alerts");
    var status = document.getElementById("patroli-status");
    // The alarm banner: one line per live alarm until it is dismissed on this screen. Its state
    // lives only in this page (a reload forgets it); acknowledging alarms is not stored yet.
    var banner = document.createElement("div");
    banner.id = "patroli-alarm-banner";
    banner.setAttribute("role", "alert");
    banner.hidden = true;
    map.getContainer().appendChild(banner);
    L.DomEvent.disableClickPropagation(banner);
    L.control.scale({ position: "bottomleft", imperial: false }).addTo(map);

    function setStatus(kind) {
      status.className = "patroli-status patroli-" + kind;
      status.textContent = t[kind] || kind;
      state.connected = kind === "connected";
      state.status = kind;
    }

    // ---- units ------------------------------------------------------------------------
    function isOffRoute(unitId) {
      var routes = state.offRoute[unitId];
      return !!routes && Object.keys(routes).length > 0;
    }

    function hasAlarm(unitId) {
      return Object.keys(state.alarms).some(function (id) {
        return String(state.alarms[id].unit_id) === String(unitId);
      });
    }

    function styleMarker(unitId) {
      var marker = markers[unitId];
      if (!marker) {
        return;
      }
      var off = isOffRoute(unitId);
      marker.setStyle(off ? { color: "#d7191c", weight: 4, radius: 9 } : { color: "#ffffff", weight: 2 });
      marker.setRadius(off ? 9 : 7);
      var el = marker.getElement();
      if (el) {
        el.classList.toggle("patroli-alarm", hasAlarm(unitId));
        el.classList.toggle("patroli-offroute", off);
        el.classList.toggle("patroli-offline", !!state.offline[unitId]);
      }
    }

    function popupHtml(p) {
      var html = "<b>" + C.esc(p.unit_name) + "</b><br>" + C.esc(t.position) + ": " + C.esc(fmt(p.ts));
      if (typeof p.speed_mps === "number" && isFinite(p.speed_mps)) {
        html += "<br>" + C.esc(t.speed) + ": " + Math.round(p.speed_mps * 3.6) + (cfg.lang === "en" ? " km/h" : " km/jam");
      }
      if (isOffRoute(p.unit_id)) {
        html += '<br><b class="patroli-warn">' + C.esc(t.off_route_now) + "</b>";
      }
      if (state.offline[String(p.unit_id)]) {
        html += "<br><b>" + C.esc(t.offline_now) + "</b>";
      }
      return html;
    }

    function place(p) {
      var id = String(p.unit_id);
      if (typeof p.lat !== "number" || typeof p.lon !== "number" || !isFinite(p.lat) || !isFinite(p.lon)) {
        return;
      }
      var prev = state.positions[id];
      if (prev && prev.ts && p.ts && new Date(p.ts) < new Date(prev.ts)) {
        return; // a late, older fix: the marker stays at the newest one
      }
      var latlng = [p.lat, p.lon];
      state.positions[id] = {
        unit_id: p.unit_id,
        unit_name: p.unit_name,
        lon: p.lon,
        lat: p.lat,
        ts: p.ts,
        speed_mps: p.speed_mps,
      };
      var color = C.color(cfg, p.unit_id);
      var trail = trails[id];
      if (!trail) {
        // Starts with the unit's recent good fixes, as the page was rendered with them.
        var seed = (cfg.trails && cfg.trails[id]) || [];
        trail = trails[id] = L.polyline(
          seed.map(function (c) {
            return L.latLng(c[1], c[0]);
          }),
          { color: color, weight: 3, opacity: 0.7, className: "patroli-trail" }
        ).addTo(trailLayer);
      }
      var pts = trail.getLatLngs();
      var end = pts[pts.length - 1];
      if (!end || end.lat !== p.lat || end.lng !== p.lon) {
        pts.push(L.latLng(latlng));
      }
      while (pts.length > cfg.trailLength) {
        pts.shift();
      }
      trail.setLatLngs(pts);
      var marker = markers[id];
      if (!marker) {
        marker = markers[id] = C.unitMarker(unitLayer, latlng, color, p.unit_id, p.unit_name);
        marker.bindPopup("");
        marker.on("popupopen", function () {
          marker.setPopupContent(popupHtml(state.positions[id]));
        });
      } else {
        marker.setLatLng(latlng);
      }
      delete state.offline[id]; // a new fix: the unit is back (its online event follows)
      styleMarker(id);
      var el = marker.getElement();
      if (el) {
        el.setAttribute("data-ts", p.ts || "");
      }
    }

    // The unit's trail as [lon, lat] pairs, oldest first (for tests and debugging).
    state.trail = function (unitId) {
      var trail = trails[String(unitId)];
      return trail
        ? trail.getLatLngs().map(function (ll) {
            return [ll.lng, ll.lat];
          })
        : [];
    };

    // ---- events -----------------------------------------------------------------------
    // Overdue stretches are keyed by route and segment index: the chainage of a mark read at
    // page load and of a live event for the same segment may differ by rounding.
    var overdueLines = {};

    function overdueKey(routeId, segment) {
      return routeId + ":" + segment;
    }

    function drawOverdue(routeId, segment, startM, endM) {
      var route = cfg.routes[String(routeId)];
      if (!route) {
        return;
      }
      var key = overdueKey(routeId, segment);
      if (state.overdue[key]) {
        return;
      }
      var latlngs = C.cutRoute(route, Number(startM), Number(endM));
      if (latlngs.length < 2) {
        return;
      }
      var line = L.polyline(latlngs, {
        color: cfg.overdueColor,
        weight: 7,
        opacity: 0.95,
        className: "patroli-overdue",
      }).addTo(overdueLayer);
      C.tag(line, { "route-id": routeId, segment: segment, "start-m": startM, "end-m": endM });
      line.bindTooltip(
        "<b>" + C.esc(t.overdue) + "</b><br>" + C.esc(route.name) + ", " +
          Math.round(startM) + "\u2013" + Math.round(endM) + " m",
        { sticky: true }
      );
      overdueLines[key] = line;
      state.overdue[key] = { patrol_route_id: routeId, segment: segment, start_m: startM, end_m: endM };
    }

    function clearOverdue(routeId, segment, startM, endM) {
      var key = overdueKey(routeId, segment);
      var line = overdueLines[key];
      if (line) {
        overdueLayer.removeLayer(line);
      }
      delete overdueLines[key];
      delete state.overdue[key];
    }

    function where(ev) {
      var parts = [];
      if (ev.patrol_route_id !== null && ev.patrol_route_id !== undefined) {
        var route = cfg.routes[String(ev.patrol_route_id)];
        parts.push(C.esc(t.route) + " " + C.esc(route ? route.name : "#" + ev.patrol_route_id));
      }
      if (ev.geofence_id !== null && ev.geofence_id !== undefined) {
        var fence = cfg.fences[String(ev.geofence_id)];
        parts.push(C.esc(fence || "#" + ev.geofence_id));
      }
      var d = ev.details || {};
      if ((ev.type === "revisit_overdue" || ev.type === "revisited") && typeof d.start_m === "number") {
        parts.push(C.esc(t.segment) + " " + Math.round(d.start_m) + "\u2013" + Math.round(d.end_m) + " m");
      }
      if (ev.type === "alarm" && d.alarm) {
        parts.push(C.esc(d.alarm));
      }
      if (ev.type === "low_battery" && typeof d.battery === "number") {
        parts.push(Math.round(d.battery) + " %");
      }
      return parts.join(", ");
    }

    function applyEffects(ev) {
      var unitId = ev.unit_id === null || ev.unit_id === undefined ? null : String(ev.unit_id);
      if (unitId !== null && (ev.type === "off_route" || ev.type === "on_route")) {
        var routes = (state.offRoute[unitId] = state.offRoute[unitId] || {});
        if (ev.type === "off_route") {
          routes[String(ev.patrol_route_id)] = true;
        } else {
          delete routes[String(ev.patrol_route_id)];
        }
        styleMarker(unitId);
      } else if (unitId !== null && (ev.type === "offline" || ev.type === "online")) {
        if (ev.type === "offline") {
          state.offline[unitId] = true;
        } else {
          delete state.offline[unitId];
        }
        styleMarker(unitId);
      } else if (
        (ev.type === "revisit_overdue" || ev.type === "revisited") &&
        ev.patrol_route_id !== null && ev.patrol_route_id !== undefined
      ) {
        var d = ev.details || {};
        if (typeof d.start_m === "number" && typeof d.end_m === "number") {
          if (ev.type === "revisited") {
            clearOverdue(ev.patrol_route_id, d.segment, d.start_m, d.end_m);
          } else {
            drawOverdue(ev.patrol_route_id, d.segment, d.start_m, d.end_m);
          }
        }
      }
    }

    function alarmText(ev) {
      var d = ev.details || {};
      return (ev.unit_name || "#" + ev.unit_id) + ": " + (d.alarm || "") + ", " + fmt(ev.ts);
    }

    function showBanner() {
      var ids = Object.keys(state.alarms).sort(function (a, b) {
        return Number(b) - Number(a);
      });
      banner.hidden = ids.length === 0;
      banner.innerHTML = ids
        .map(function (id) {
          return (
            '<div class="patroli-alarm-line" data-event-id="' + C.esc(id) + '"><b>' +
            C.esc(t.alarm_banner) + "</b> " + C.esc(alarmText(state.alarms[id])) +
            ' <button type="button" class="patroli-dismiss">' + C.esc(t.dismiss) + "</button></div>"
          );
        })
        .join("");
      Array.prototype.forEach.call(banner.querySelectorAll(".patroli-dismiss"), function (button) {
        button.addEventListener("click", function () {
          var id = button.parentNode.getAttribute("data-event-id");
          var ev = state.alarms[id];
          delete state.alarms[id];
          showBanner();
          if (ev) {
            styleMarker(String(ev.unit_id));
          }
        });
      });
    }

    // A live alarm raises the banner; alarms already in the log when the page loaded are listed
    // (pinned at the top) but raise no banner.
    function raiseAlarm(ev) {
      state.alarms[String(ev.id)] = ev;
      showBanner();
      if (ev.unit_id !== null && ev.unit_id !== undefined) {
        styleMarker(String(ev.unit_id));
      }
    }

    function addAlert(ev, live) {
      if (state.events.some(function (e) { return e.id === ev.id; })) {
        return;
      }
      state.events.unshift(ev);
      if (state.events.length > cfg.alertsMax) {
        state.events.length = cfg.alertsMax;
      }
      var li = document.createElement("li");
      li.className = "patroli-alert patroli-alert-" + ev.type + (live ? " patroli-alert-new" : "");
      li.setAttribute("data-type", ev.type);
      li.setAttribute("data-event-id", ev.id);
      if (ev.unit_id !== null && ev.unit_id !== undefined) {
        li.setAttribute("data-unit-id", ev.unit_id);
      }
      var label = cfg.eventLabels[ev.type] || ev.type;
      var place = where(ev);
      li.innerHTML =
        '<time datetime="' + C.esc(ev.ts) + '">' + C.esc(fmt(ev.ts)) + "</time> " +
        '<b class="patroli-alert-type">' + C.esc(label) + "</b>" +
        (ev.unit_name ? ' <span class="patroli-alert-unit">' + C.esc(ev.unit_name) + "</span>" : "") +
        (place ? '<div class="patroli-alert-where">' + place + "</div>" : "");
      if (ev.position && ev.position.coordinates) {
        var c = ev.position.coordinates;
        li.addEventListener("click", function () {
          map.setView([c[1], c[0]], Math.max(map.getZoom(), 16));
        });
      }
      var target = ev.type === "alarm" ? alarmList : list;
      target.insertBefore(li, target.firstChild);
      while (target.children.length > cfg.alertsMax) {
        target.removeChild(target.lastChild);
      }
      empty.style.display = "none";
    }

    // Handles one live event as if it came from the stream (also a hook for tests).
    state.handle = function (ev) {
      var known = state.events.some(function (e) { return e.id === ev.id; });
      addAlert(ev, true);
      applyEffects(ev);
      if (ev.type === "alarm" && !known) {
        raiseAlarm(ev);
      }
    };

    // ---- initial state ----------------------------------------------------------------
    Object.keys(cfg.positions).forEach(function (id) {
      place(cfg.positions[id]);
    });
    Object.keys(cfg.offRoute).forEach(function (unitId) {
      var routes = (state.offRoute[unitId] = {});
      cfg.offRoute[unitId].forEach(function (r) {
        routes[String(r)] = true;
      });
      styleMarker(unitId);
    });
    (cfg.offline || []).forEach(function (unitId) {
      state.offline[String(unitId)] = true;
      styleMarker(String(unitId));
    });
    cfg.overdue.forEach(function (o) {
      drawOverdue(o.patrol_route_id, o.segment, o.start_m, o.end_m);
    });
    cfg.events.forEach(function (ev) {
      addAlert(ev, false);
    });
    C.fit(map, cfg);

    // ---- the stream -------------------------------------------------------------------
    if (typeof window.EventSource !== "function") {
      setStatus("disconnected");
      return;
    }
    var key = new URLSearchParams(window.location.search).get("key");
    var retryMs = RETRY_MIN_MS;

    // Each stream starts right after the last message handled (at first: what the page was
    // rendered with). EventSource's own reconnects send Last-Event-ID, which the server prefers.
    function streamUrl() {
      var query = new URLSearchParams();
      if (key) {
        query.set("key", key);
      }
      if (state.cursor) {
        query.set("last_event_id", state.cursor);
      }
      var qs = query.toString();
      return cfg.streamPath + (qs ? "?" + qs : "");
    }

    function seen(msg) {
      state.messages += 1;
      if (msg.lastEventId) {
        state.cursor = msg.lastEventId;
      }
    }

    function connect() {
      var source = new EventSource(streamUrl());
      state.source = source;
      source.onopen = function () {
        retryMs = RETRY_MIN_MS;
        setStatus("connected");
      };
      source.onerror = function () {
        if (source.readyState !== EventSource.CLOSED) {
          // The stream ended (as it does every few minutes) or the connection failed: EventSource
          // reconnects by itself after the server's retry delay.
          setStatus("connecting");
          return;
        }
        // An error response (503 while the database is down, 502 from a proxy during a deploy)
        // closes an EventSource for good: open a new one, resuming after the last message.
        source.close();
        setStatus("reconnecting");
        state.retries += 1;
        // Up to a quarter more, at random, so many screens do not all retry at the same moment.
        window.setTimeout(connect, retryMs * (1 + Math.random() / 4));
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      };
      source.addEventListener("position", function (msg) {
        seen(msg);
        try {
          place(JSON.parse(msg.data));
        } catch (e) {
          /* a malformed message is skipped */
        }
      });
      Object.keys(cfg.eventLabels).forEach(function (type) {
        source.addEventListener(type, function (msg) {
          seen(msg);
          var ev;
          try {
            ev = JSON.parse(msg.data);
          } catch (e) {
            return;
          }
          state.handle(ev);
        });
      });
    }

    connect();
  }

  window.PatroliLive = { start: start };
})();
