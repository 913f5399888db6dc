/* Live map: unit markers, labels and the unit board moved by the server's event stream (SSE),
   trails, alerts (high-priority ones pinned until acknowledged), overdue segments. Text from
   users (unit names, notes) is only ever set as textContent. */
(function () {
  "use strict";

  var C = window.PatroliCommon;
  // After an error response the stream is reopened by the page: first after RETRY_MIN_MS, then
  // twice as long each time it fails again, at most RETRY_MAX_MS (plus up to 25 % at random);
  // a successful open resets it.
  var RETRY_MIN_MS = 1000;
  var RETRY_MAX_MS = 30000;
  // Unit statuses, most urgent first: the board's order and the markers' colours.
  var STATUSES = ["alarm", "off_route", "offline", "stopped", "moving"];
  var STATUS_COLORS = {
    alarm: "#b10026",
    off_route: "#d7191c",
    offline: "#7f7f7f",
    stopped: "#f5a623",
    moving: "#1a9641",
  };
  var PHONE_WIDTH = 700; // narrower viewports start with the panels collapsed
  var LABEL_GAP = 2; // px between stacked labels

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  function byTimeDesc(a, b) {
    var ta = Date.parse(a.ts) || 0;
    var tb = Date.parse(b.ts) || 0;
    return tb - ta || Number(b.id) - Number(a.id);
  }

  function start(map, cfg) {
    var t = cfg.labels;
    var fmt = C.formatter(cfg, false);
    var pinnedTypes = {};
    (cfg.pinnedTypes || []).forEach(function (type) {
      pinnedTypes[type] = true;
    });
    var state = {
      positions: {},
      units: {},
      events: [], // alerts, newest first by event time
      offRoute: {},
      offline: {},
      stopped: {},
      overdue: {},
      alarms: {}, // alarm events shown in the banner, by event id, until dismissed or acknowledged
      follow: null, // the unit the map follows
      connected: false,
      status: "connecting",
      messages: 0,
      retries: 0, // streams reopened by the page after an error response
      cursor: cfg.cursor || "", // the stream position after the last message handled
    };
    window.patroliLive = state;
    state.map = map; // for tests and debugging
    var baseTitle = document.title || t.live_title;
    var ackKey = null; // the operator key typed once in this tab (never stored)

    var trailLayer = L.layerGroup().addTo(map);
    var overdueLayer = L.layerGroup().addTo(map);
    var unitLayer = L.layerGroup().addTo(map);
    var headingLayer = L.layerGroup().addTo(map);
    var markers = {};
    var arrows = {};
    var trails = {};

    // ---- panels -----------------------------------------------------------------------
    var titleBox = C.box(map, "topleft", "patroli-title");
    titleBox.appendChild(el("h1", null, t.live_title));
    var status = el("div", "patroli-status patroli-connecting", t.connecting);
    status.id = "patroli-status";
    titleBox.appendChild(status);

    var phone = window.innerWidth < PHONE_WIDTH;

    // A panel with a heading and a button that folds its body away (phones start folded).
    function panel(position, id, title) {
      var box = C.box(map, position, id);
      var head = el("div", "patroli-panel-head");
      var h2 = el("h2", null, title);
      var count = el("span", "patroli-count");
      h2.appendChild(document.createTextNode(" "));
      h2.appendChild(count);
      var toggle = el("button", "patroli-toggle");
      toggle.type = "button";
      var body = el("div", "patroli-panel-body");
      head.appendChild(h2);
      head.appendChild(toggle);
      box.appendChild(head);
      box.appendChild(body);
      function fold(folded) {
        box.classList.toggle("patroli-collapsed", folded);
        body.hidden = folded;
        toggle.textContent = folded ? t.panel_show : t.panel_hide;
        toggle.setAttribute("aria-expanded", folded ? "false" : "true");
      }
      toggle.addEventListener("click", function () {
        fold(!body.hidden);
      });
      fold(phone);
      return { box: box, body: body, count: count, fold: fold };
    }

    var boardPanel = panel("topleft", "patroli-board", t.board);
    var alertsPanel = panel("topright", "patroli-alerts", t.alerts);

    var filterText = el("input", "patroli-filter");
    filterText.type = "search";
    filterText.placeholder = t.search_units;
    filterText.setAttribute("aria-label", t.search_units);
    var filterStatus = el("select", "patroli-filter-status");
    filterStatus.setAttribute("aria-label", t.all_statuses);
    filterStatus.appendChild(new Option(t.all_statuses, ""));
    STATUSES.forEach(function (s) {
      filterStatus.appendChild(new Option(t["status_" + s], s));
    });
    var filters = el("div", "patroli-filters");
    filters.appendChild(filterText);
    filters.appendChild(filterStatus);
    var followBar = el("div", "patroli-follow");
    followBar.hidden = true;
    var followText = el("span");
    var followStop = el("button", null, t.stop_follow);
    followStop.type = "button";
    followBar.appendChild(followText);
    followBar.appendChild(followStop);
    var boardList = el("ol", "patroli-board-list");
    var boardEmpty = el("div", "patroli-empty-alerts", t.no_units);
    boardPanel.body.appendChild(filters);
    boardPanel.body.appendChild(followBar);
    boardPanel.body.appendChild(boardList);
    boardPanel.body.appendChild(boardEmpty);

    var empty = el("div", "patroli-empty-alerts", t.no_alerts);
    var pinnedList = el("ol", "patroli-pinned-list");
    pinnedList.setAttribute("aria-label", t.pinned);
    var list = el("ol", "patroli-alert-list");
    alertsPanel.body.appendChild(empty);
    alertsPanel.body.appendChild(pinnedList);
    alertsPanel.body.appendChild(list);

    // The alarm banner: one line per live alarm until it is dismissed on this screen or
    // acknowledged (anywhere).
    var banner = el("div");
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

    // Work triggered by many messages at once (board order, label layout) runs once after them.
    var pending = {};
    function later(name, fn) {
      if (pending[name]) {
        return;
      }
      pending[name] = true;
      window.setTimeout(function () {
        pending[name] = false;
        fn();
      }, 0);
    }

    // ---- unit status ------------------------------------------------------------------
    function isOffRoute(unitId) {
      var routes = state.offRoute[unitId];
      return !!routes && Object.keys(routes).length > 0;
    }

    function isPinned(ev) {
      return !!pinnedTypes[ev.type] && !ev.acked_at;
    }

    function hasOpenAlarm(unitId) {
      return state.events.some(function (ev) {
        return ev.type === "alarm" && !ev.acked_at && String(ev.unit_id) === String(unitId);
      });
    }

    function hasBannerAlarm(unitId) {
      return Object.keys(state.alarms).some(function (id) {
        return String(state.alarms[id].unit_id) === String(unitId);
      });
    }

    function unitStatus(unitId) {
      if (hasOpenAlarm(unitId)) {
        return "alarm";
      }
      if (isOffRoute(unitId)) {
        return "off_route";
      }
      if (state.offline[unitId] || !state.positions[unitId]) {
        return "offline";
      }
      return state.stopped[unitId] ? "stopped" : "moving";
    }
    state.unitStatus = unitStatus;

    function knowUnit(unitId, name) {
      var id = String(unitId);
      if (!state.units[id]) {
        state.units[id] = { unit_id: Number(unitId), unit_name: name || "#" + id, kind: "", routes: [] };
      } else if (name) {
        state.units[id].unit_name = name;
      }
      return state.units[id];
    }

    function styleMarker(unitId) {
      unitId = String(unitId);
      var marker = markers[unitId];
      if (marker) {
        var off = isOffRoute(unitId);
        var s = unitStatus(unitId);
        marker.setStyle({
          color: off ? "#d7191c" : "#ffffff",
          weight: off ? 4 : 2,
          fillColor: STATUS_COLORS[s],
        });
        marker.setRadius(off || s === "alarm" ? 9 : 7);
        var elm = marker.getElement();
        if (elm) {
          elm.classList.toggle("patroli-alarm", hasBannerAlarm(unitId));
          elm.classList.toggle("patroli-offroute", off);
          elm.classList.toggle("patroli-offline", !!state.offline[unitId]);
          elm.setAttribute("data-status", s);
        }
      }
      later("board", renderBoard);
    }

    function refreshAllUnits() {
      Object.keys(state.units).forEach(styleMarker);
      later("board", renderBoard);
    }

    function popupContent(p) {
      var box = el("div");
      box.appendChild(el("b", null, p.unit_name));
      box.appendChild(el("br"));
      box.appendChild(document.createTextNode(t.position + ": " + fmt(p.ts)));
      if (typeof p.speed_mps === "number" && isFinite(p.speed_mps)) {
        box.appendChild(el("br"));
        box.appendChild(document.createTextNode(t.speed + ": " + Math.round(p.speed_mps * 3.6) + " " + t.kmh));
      }
      if (isOffRoute(p.unit_id)) {
        box.appendChild(el("br"));
        box.appendChild(el("b", "patroli-warn", t.off_route_now));
      }
      if (state.offline[String(p.unit_id)]) {
        box.appendChild(el("br"));
        box.appendChild(el("b", null, t.offline_now));
      }
      return box;
    }

    // ---- unit labels: de-cluttered so that close units' names never overlap --------------
    var labelPane = map.createPane("patroli-labels");
    labelPane.classList.add("patroli-label-pane");
    var leaderSvg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    leaderSvg.setAttribute("class", "patroli-leaders");
    leaderSvg.setAttribute("width", "1");
    leaderSvg.setAttribute("height", "1");
    labelPane.appendChild(leaderSvg);
    var labels = {};

    function labelFor(unitId) {
      var label = labels[unitId];
      if (!label) {
        label = labels[unitId] = el("div", "patroli-label patroli-unit-label");
        label.setAttribute("data-unit-id", unitId);
        labelPane.appendChild(label);
      }
      var name = state.units[unitId] ? state.units[unitId].unit_name : "#" + unitId;
      if (label.textContent !== name) {
        label.textContent = name;
      }
      return label;
    }

    function overlaps(a, list) {
      for (var i = 0; i < list.length; i++) {
        var b = list[i];
        if (a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h) {
          return true;
        }
      }
      return false;
    }

    // Each label goes right of its marker if free, else left, else stacked above or below on
    // either side with a leader line to its marker. Urgent units are placed first.
    function placeLabels() {
      if (map._animatingZoom) {
        return;
      }
      while (leaderSvg.firstChild) {
        leaderSvg.removeChild(leaderSvg.firstChild);
      }
      var ids = Object.keys(markers).sort(function (a, b) {
        return STATUSES.indexOf(unitStatus(a)) - STATUSES.indexOf(unitStatus(b)) || Number(a) - Number(b);
      });
      var points = {};
      var dots = ids.map(function (id) {
        var p = (points[id] = map.latLngToLayerPoint(markers[id].getLatLng()));
        return { x: p.x - 9, y: p.y - 9, w: 18, h: 18 };
      });
      var placed = [];
      ids.forEach(function (id) {
        var label = labelFor(id);
        var p = points[id];
        var w = label.offsetWidth;
        var h = label.offsetHeight;
        var candidates = [
          [12, -h / 2],
          [-12 - w, -h / 2],
        ];
        for (var k = 1; k <= 10; k++) {
          var dy = k * (h + LABEL_GAP);
          candidates.push([16, -h / 2 - dy], [16, -h / 2 + dy], [-16 - w, -h / 2 - dy], [-16 - w, -h / 2 + dy]);
        }
        var boxes = candidates.map(function (c) {
          return { x: p.x + c[0], y: p.y + c[1], w: w, h: h };
        });
        var chosen = -1;
        for (var i = 0; i < boxes.length && chosen < 0; i++) {
          if (!overlaps(boxes[i], placed) && !overlaps(boxes[i], dots)) {
            chosen = i;
          }
        }
        for (var j = 0; j < boxes.length && chosen < 0; j++) {
          if (!overlaps(boxes[j], placed)) {
            chosen = j;
          }
        }
        if (chosen < 0) {
          chosen = boxes.length - 1;
        }
        var box = boxes[chosen];
        placed.push(box);
        L.DomUtil.setPosition(label, L.point(Math.round(box.x), Math.round(box.y)));
        label.classList.toggle("patroli-label-offset", chosen > 1);
        if (chosen > 1) {
          var line = document.createElementNS("http://www.w3.org/2000/svg", "line");
          var right = box.x > p.x;
          line.setAttribute("x1", String(p.x));
          line.setAttribute("y1", String(p.y));
          line.setAttribute("x2", String(right ? box.x : box.x + box.w));
          line.setAttribute("y2", String(box.y + box.h / 2));
          line.setAttribute("data-unit-id", id);
          leaderSvg.appendChild(line);
        }
      });
    }

    function layoutLabels() {
      later("labels", placeLabels);
    }
    map.on("zoomstart", function () {
      labelPane.classList.add("patroli-hidden");
    });
    map.on("zoomend viewreset resize", function () {
      labelPane.classList.remove("patroli-hidden");
      layoutLabels();
    });

    // ---- units ------------------------------------------------------------------------
    function setHeading(id, heading) {
      var arrow = arrows[id];
      if (!arrow) {
        return;
      }
      var icon = arrow.getElement();
      var inner = icon ? icon.firstChild : null;
      var known = typeof heading === "number" && isFinite(heading);
      if (inner) {
        inner.hidden = !known;
        if (known) {
          inner.style.transform = "rotate(" + Math.round(heading) + "deg)";
        }
      }
      if (icon) {
        icon.setAttribute("data-heading", known ? String(Math.round(heading)) : "");
      }
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
      knowUnit(p.unit_id, p.unit_name);
      var battery = typeof p.battery === "number" ? p.battery : prev ? prev.battery : null;
      var latlng = [p.lat, p.lon];
      state.positions[id] = {
        unit_id: p.unit_id,
        unit_name: p.unit_name,
        lon: p.lon,
        lat: p.lat,
        ts: p.ts,
        speed_mps: p.speed_mps,
        heading: p.heading,
        battery: battery,
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
        marker = markers[id] = L.circleMarker(latlng, {
          radius: 7,
          color: "#ffffff",
          weight: 2,
          fill: true,
          fillColor: STATUS_COLORS.moving,
          fillOpacity: 0.95,
          className: "patroli-unit",
        }).addTo(unitLayer);
        C.tag(marker, { "unit-id": p.unit_id });
        marker.bindPopup("");
        marker.on("popupopen", function () {
          marker.setPopupContent(popupContent(state.positions[id]));
        });
        marker.on("click", function () {
          followUnit(id, false);
        });
        arrows[id] = L.marker(latlng, {
          interactive: false,
          keyboard: false,
          icon: L.divIcon({
            className: "patroli-heading",
            html: '<div class="patroli-heading-arrow"></div>',
            iconSize: [34, 34],
            iconAnchor: [17, 17],
          }),
        }).addTo(headingLayer);
      } else {
        marker.setLatLng(latlng);
        arrows[id].setLatLng(latlng);
      }
      setHeading(id, p.heading);
      delete state.offline[id]; // a new fix: the unit is back (its online event follows)
      styleMarker(id);
      var elm = marker.getElement();
      if (elm) {
        elm.setAttribute("data-ts", p.ts || "");
      }
      if (state.follow === id) {
        map.panTo(latlng, { animate: false });
      }
      layoutLabels();
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

    // ---- the unit board ---------------------------------------------------------------
    var rows = {};

    function ageText(ts) {
      var ms = Date.now() - Date.parse(ts);
      if (!isFinite(ms)) {
        return t.no_fix;
      }
      var s = Math.max(0, Math.floor(ms / 1000));
      var text;
      if (s < 60) {
        text = s + " " + t.age_s;
      } else if (s < 3600) {
        text = Math.floor(s / 60) + " " + t.age_m + " " + (s % 60) + " " + t.age_s;
      } else {
        text = Math.floor(s / 3600) + " " + t.age_h + " " + Math.floor((s % 3600) / 60) + " " + t.age_m;
      }
      return text + " " + t.ago;
    }

    function routeText(u) {
      if (!u.routes || !u.routes.length) {
        return t.no_route;
      }
      return u.routes
        .map(function (r) {
          var shift = r.shift_start && r.shift_end ? " (" + t.shift + " " + r.shift_start + "\u2013" + r.shift_end + ")" : "";
          return r.name + shift;
        })
        .join(", ");
    }

    function rowFor(id) {
      var row = rows[id];
      if (row) {
        return row;
      }
      var li = el("li", "patroli-board-row");
      li.setAttribute("data-unit-id", id);
      li.tabIndex = 0;
      var top = el("div", "patroli-board-top");
      var dot = el("span", "patroli-dot");
      var name = el("b", "patroli-board-name");
      var kind = el("span", "patroli-board-kind");
      top.appendChild(dot);
      top.appendChild(name);
      top.appendChild(kind);
      var mid = el("div", "patroli-board-mid");
      var st = el("span", "patroli-board-status");
      var age = el("span", "patroli-age");
      var speed = el("span", "patroli-board-speed");
      var batt = el("span", "patroli-board-battery");
      [st, age, speed, batt].forEach(function (n) {
        mid.appendChild(n);
      });
      var route = el("div", "patroli-board-route");
      li.appendChild(top);
      li.appendChild(mid);
      li.appendChild(route);
      li.addEventListener("click", function () {
        followUnit(id, state.follow === id);
      });
      li.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          followUnit(id, state.follow === id);
        }
      });
      row = rows[id] = { li: li, name: name, kind: kind, st: st, age: age, speed: speed, batt: batt, route: route };
      return row;
    }

    function setText(node, text) {
      if (node.textContent !== text) {
        node.textContent = text;
      }
    }

    function fillRow(id) {
      var row = rowFor(id);
      var u = state.units[id];
      var p = state.positions[id];
      var s = unitStatus(id);
      row.li.setAttribute("data-status", s);
      row.li.className = "patroli-board-row patroli-status-" + s + (state.follow === id ? " patroli-following" : "");
      setText(row.name, u.unit_name);
      setText(row.kind, u.kind || "");
      setText(row.st, t["status_" + s]);
      setText(row.age, p ? ageText(p.ts) : t.no_fix);
      row.age.setAttribute("data-ts", p ? p.ts : "");
      var sp = p && typeof p.speed_mps === "number" && isFinite(p.speed_mps) ? Math.round(p.speed_mps * 3.6) + " " + t.kmh : "";
      setText(row.speed, sp);
      var b = p && typeof p.battery === "number" && isFinite(p.battery) ? t.battery + " " + Math.round(p.battery) + " %" : "";
      setText(row.batt, b);
      row.batt.classList.toggle("patroli-warn", !!p && typeof p.battery === "number" && p.battery < 20);
      setText(row.route, routeText(u));
      return row;
    }

    function matches(id, s) {
      var want = filterStatus.value;
      if (want && want !== s) {
        return false;
      }
      var q = filterText.value.trim().toLowerCase();
      if (!q) {
        return true;
      }
      var u = state.units[id];
      var hay = [u.unit_name, u.kind, routeText(u), t["status_" + s]].join(" ").toLowerCase();
      return hay.indexOf(q) >= 0;
    }

    function renderBoard() {
      var ids = Object.keys(state.units);
      var statusOf = {};
      ids.forEach(function (id) {
        statusOf[id] = unitStatus(id);
      });
      ids.sort(function (a, b) {
        return (
          STATUSES.indexOf(statusOf[a]) - STATUSES.indexOf(statusOf[b]) ||
          state.units[a].unit_name.localeCompare(state.units[b].unit_name) ||
          Number(a) - Number(b)
        );
      });
      var shown = 0;
      ids.forEach(function (id) {
        var row = fillRow(id);
        var visible = matches(id, statusOf[id]);
        row.li.hidden = !visible;
        shown += visible ? 1 : 0;
        boardList.appendChild(row.li); // moves an existing row into its place
      });
      boardEmpty.hidden = shown > 0;
      boardPanel.count.textContent = "(" + ids.length + ")";
      if (state.follow && state.units[state.follow]) {
        followBar.hidden = false;
        followText.textContent = t.following + ": " + state.units[state.follow].unit_name;
      } else {
        followBar.hidden = true;
      }
      state.board = ids.map(function (id) {
        return { unit_id: Number(id), status: statusOf[id] };
      });
    }

    function tick() {
      Object.keys(rows).forEach(function (id) {
        var p = state.positions[id];
        if (p) {
          setText(rows[id].age, ageText(p.ts));
        }
      });
    }

    // Focus a unit and keep it in view as it moves (until stopped, or the map is dragged).
    function followUnit(id, stop) {
      if (stop) {
        state.follow = null;
      } else {
        state.follow = id;
        var p = state.positions[id];
        if (p) {
          map.setView([p.lat, p.lon], Math.max(map.getZoom(), 17), { animate: false });
        }
      }
      later("board", renderBoard);
    }
    followStop.addEventListener("click", function () {
      followUnit(null, true);
    });
    map.on("dragstart", function () {
      if (state.follow) {
        followUnit(null, true);
      }
    });
    filterText.addEventListener("input", renderBoard);
    filterStatus.addEventListener("change", renderBoard);

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

    function clearOverdue(routeId, segment) {
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
        var name = route ? route.name : "#" + ev.patrol_route_id;
        // "Rute Sudirman" stays as it is; a name without the word gets it in front.
        var named = name.toLowerCase().indexOf(t.route.toLowerCase() + " ") === 0;
        parts.push(named ? name : t.route + " " + name);
      }
      if (ev.geofence_id !== null && ev.geofence_id !== undefined) {
        var fence = cfg.fences[String(ev.geofence_id)];
        parts.push(fence || "#" + ev.geofence_id);
      }
      var d = ev.details || {};
      if ((ev.type === "revisit_overdue" || ev.type === "revisited") && typeof d.start_m === "number") {
        parts.push(t.segment + " " + Math.round(d.start_m) + "\u2013" + Math.round(d.end_m) + " m");
      }
      if (ev.type === "alarm" && d.alarm) {
        parts.push(String(d.alarm));
      }
      if (ev.type === "low_battery" && typeof d.battery === "number") {
        parts.push(Math.round(d.battery) + " %");
      }
      return parts.join(", ");
    }

    function applyEffects(ev) {
      var unitId = ev.unit_id === null || ev.unit_id === undefined ? null : String(ev.unit_id);
      if (unitId !== null) {
        knowUnit(ev.unit_id, ev.unit_name);
      }
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
      } else if (unitId !== null && (ev.type === "stopped" || ev.type === "moving")) {
        if (ev.type === "stopped") {
          state.stopped[unitId] = true;
        } else {
          delete state.stopped[unitId];
        }
        styleMarker(unitId);
      } else if (unitId !== null && ev.type === "alarm") {
        styleMarker(unitId);
      } else if (
        (ev.type === "revisit_overdue" || ev.type === "revisited") &&
        ev.patrol_route_id !== null && ev.patrol_route_id !== undefined
      ) {
        var d = ev.details || {};
        if (typeof d.start_m === "number" && typeof d.end_m === "number") {
          if (ev.type === "revisited") {
            clearOverdue(ev.patrol_route_id, d.segment);
          } else {
            drawOverdue(ev.patrol_route_id, d.segment, d.start_m, d.end_m);
          }
        }
      }
    }

    function showBanner() {
      var ids = Object.keys(state.alarms).sort(function (a, b) {
        return Number(b) - Number(a);
      });
      banner.hidden = ids.length === 0;
      while (banner.firstChild) {
        banner.removeChild(banner.firstChild);
      }
      ids.forEach(function (id) {
        var ev = state.alarms[id];
        var d = ev.details || {};
        var line = el("div", "patroli-alarm-line");
        line.setAttribute("data-event-id", id);
        line.appendChild(el("b", null, t.alarm_banner));
        line.appendChild(
          document.createTextNode(" " + (ev.unit_name || "#" + ev.unit_id) + ": " + (d.alarm || "") + ", " + fmt(ev.ts) + " ")
        );
        var button = el("button", "patroli-dismiss", t.dismiss);
        button.type = "button";
        button.addEventListener("click", function () {
          delete state.alarms[id];
          showBanner();
          styleMarker(String(ev.unit_id));
        });
        line.appendChild(button);
        banner.appendChild(line);
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

    // ---- alerts -----------------------------------------------------------------------
    var items = {}; // alert list items by event id, kept so an open acknowledgement form survives

    function ackLine(ev) {
      var text = t.acked_by + " " + (ev.acked_by || "") + ", " + fmt(ev.acked_at);
      return ev.ack_note ? text + ": " + ev.ack_note : text;
    }

    function openAckForm(item, ev) {
      if (item.form) {
        return;
      }
      var form = el("form", "patroli-ack-form");
      var note = el("input", "patroli-ack-note");
      note.type = "text";
      note.maxLength = 500;
      note.placeholder = t.ack_note;
      note.setAttribute("aria-label", t.ack_note);
      form.appendChild(note);
      var keyInput = null;
      if (!ackKey) {
        keyInput = el("input", "patroli-ack-key");
        keyInput.type = "password";
        keyInput.autocomplete = "off";
        keyInput.placeholder = t.ack_key;
        keyInput.setAttribute("aria-label", t.ack_key);
        keyInput.required = true;
        form.appendChild(keyInput);
      }
      var send = el("button", "patroli-ack-send", t.ack_send);
      send.type = "submit";
      var cancel = el("button", "patroli-ack-cancel", t.cancel);
      cancel.type = "button";
      var error = el("div", "patroli-ack-error");
      error.setAttribute("role", "alert");
      error.hidden = true;
      form.appendChild(send);
      form.appendChild(cancel);
      form.appendChild(error);
      form.addEventListener("click", function (e) {
        e.stopPropagation();
      });
      cancel.addEventListener("click", function () {
        item.li.removeChild(form);
        item.form = null;
      });
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        var key = keyInput ? keyInput.value.trim() : ackKey;
        if (!key) {
          return;
        }
        var body = note.value.trim() ? { note: note.value.trim() } : {};
        send.disabled = true;
        fetch(cfg.ackPath.replace("{id}", encodeURIComponent(ev.id)), {
          method: "POST",
          credentials: "omit",
          headers: { Authorization: "Bearer " + key, "Content-Type": "application/json" },
          body: JSON.stringify(body),
        })
          .then(function (r) {
            return r.json().then(
              function (data) {
                return { ok: r.ok, status: r.status, data: data };
              },
              function () {
                return { ok: r.ok, status: r.status, data: {} };
              }
            );
          })
          .then(function (res) {
            send.disabled = false;
            if (res.ok) {
              ackKey = key;
              applyAck(res.data.id, res.data.acked_at, res.data.acked_by, res.data.ack_note);
              return;
            }
            if (res.status === 401 || res.status === 403) {
              ackKey = null;
            }
            error.hidden = false;
            error.textContent = t.ack_failed + ": " + (res.data && res.data.detail ? res.data.detail : "HTTP " + res.status);
          })
          .catch(function () {
            send.disabled = false;
            error.hidden = false;
            error.textContent = t.ack_failed;
          });
      });
      item.form = form;
      item.li.appendChild(form);
      (keyInput && !ackKey ? note : note).focus();
    }

    function itemFor(ev, live) {
      var item = items[ev.id];
      if (item) {
        return item;
      }
      var li = el("li", "patroli-alert patroli-alert-" + ev.type + (live ? " patroli-alert-new" : ""));
      li.setAttribute("data-type", ev.type);
      li.setAttribute("data-event-id", ev.id);
      if (ev.unit_id !== null && ev.unit_id !== undefined) {
        li.setAttribute("data-unit-id", ev.unit_id);
      }
      var time = el("time", null, fmt(ev.ts));
      time.setAttribute("datetime", ev.ts);
      li.appendChild(time);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("b", "patroli-alert-type", cfg.eventLabels[ev.type] || ev.type));
      if (ev.unit_name) {
        li.appendChild(document.createTextNode(" "));
        li.appendChild(el("span", "patroli-alert-unit", ev.unit_name));
      }
      var place = where(ev);
      if (place) {
        li.appendChild(el("div", "patroli-alert-where", place));
      }
      var acked = el("div", "patroli-alert-acked");
      acked.hidden = true;
      li.appendChild(acked);
      item = items[ev.id] = { li: li, acked: acked, button: null, form: null };
      if (pinnedTypes[ev.type] && cfg.canAck) {
        var button = el("button", "patroli-ack", t.acknowledge);
        button.type = "button";
        button.addEventListener("click", function (e) {
          e.stopPropagation();
          openAckForm(item, ev);
        });
        li.appendChild(button);
        item.button = button;
      }
      if (ev.position && ev.position.coordinates) {
        var c = ev.position.coordinates;
        li.addEventListener("click", function () {
          map.setView([c[1], c[0]], Math.max(map.getZoom(), 16));
        });
      }
      return item;
    }

    function renderAlerts() {
      var pinned = [];
      var rest = [];
      state.events.forEach(function (ev) {
        (isPinned(ev) ? pinned : rest).push(ev);
      });
      // Alarms above every other pinned alert; newest first by event time within each.
      pinned.sort(function (a, b) {
        return (b.type === "alarm") - (a.type === "alarm") || byTimeDesc(a, b);
      });
      rest = rest.slice(0, cfg.alertsMax);
      var keep = {};
      [[pinned, pinnedList], [rest, list]].forEach(function (pair) {
        pair[0].forEach(function (ev) {
          var item = items[ev.id];
          keep[ev.id] = true;
          item.li.classList.toggle("patroli-pinned", isPinned(ev));
          if (ev.acked_at) {
            item.acked.hidden = false;
            setText(item.acked, ackLine(ev));
            item.li.classList.add("patroli-acked");
            if (item.button) {
              item.li.removeChild(item.button);
              item.button = null;
            }
            if (item.form) {
              item.li.removeChild(item.form);
              item.form = null;
            }
          }
          pair[1].appendChild(item.li);
        });
      });
      Object.keys(items).forEach(function (id) {
        if (!keep[id]) {
          var li = items[id].li;
          if (li.parentNode) {
            li.parentNode.removeChild(li);
          }
          delete items[id];
        }
      });
      empty.style.display = pinned.length || rest.length ? "none" : "";
      alertsPanel.count.textContent = pinned.length ? "(" + pinned.length + ")" : "";
      document.title = (pinned.length ? "(" + pinned.length + ") " : "") + baseTitle;
      state.pinned = pinned.map(function (ev) {
        return ev.id;
      });
    }

    function addAlert(ev, live) {
      if (ev.type === "ack" || state.events.some(function (e) { return e.id === ev.id; })) {
        return false;
      }
      itemFor(ev, live);
      state.events.push(ev);
      state.events.sort(byTimeDesc);
      // Keep what the panel shows: every pinned alert and the newest others.
      var others = 0;
      state.events = state.events.filter(function (e) {
        if (isPinned(e)) {
          return true;
        }
        others += 1;
        return others <= cfg.alertsMax;
      });
      later("alerts", renderAlerts);
      return true;
    }

    // An acknowledgement (from this page's form, or from any screen through the stream).
    function applyAck(eventId, ackedAt, ackedBy, note) {
      var ev = null;
      state.events.forEach(function (e) {
        if (String(e.id) === String(eventId)) {
          ev = e;
        }
      });
      if (ev && !ev.acked_at) {
        ev.acked_at = ackedAt;
        ev.acked_by = ackedBy;
        ev.ack_note = note;
      }
      if (state.alarms[String(eventId)]) {
        delete state.alarms[String(eventId)];
        showBanner();
      }
      if (ev && ev.unit_id !== null && ev.unit_id !== undefined) {
        styleMarker(String(ev.unit_id));
      }
      renderAlerts();
    }

    // Handles one live event as if it came from the stream (also a hook for tests).
    state.handle = function (ev) {
      if (ev.type === "ack") {
        var d = ev.details || {};
        applyAck(d.event_id, ev.ts, d.acked_by, d.note);
        return;
      }
      var added = addAlert(ev, true);
      applyEffects(ev);
      if (ev.type === "alarm" && added && !ev.acked_at) {
        raiseAlarm(ev);
      }
    };

    // ---- initial state ----------------------------------------------------------------
    (cfg.roster || []).forEach(function (u) {
      state.units[String(u.unit_id)] = {
        unit_id: u.unit_id,
        unit_name: u.unit_name,
        kind: u.kind,
        routes: u.routes || [],
      };
    });
    Object.keys(cfg.positions).forEach(function (id) {
      place(cfg.positions[id]);
    });
    Object.keys(cfg.offRoute).forEach(function (unitId) {
      var routes = (state.offRoute[unitId] = {});
      cfg.offRoute[unitId].forEach(function (r) {
        routes[String(r)] = true;
      });
    });
    (cfg.offline || []).forEach(function (unitId) {
      state.offline[String(unitId)] = true;
    });
    (cfg.stopped || []).forEach(function (unitId) {
      state.stopped[String(unitId)] = true;
    });
    cfg.overdue.forEach(function (o) {
      drawOverdue(o.patrol_route_id, o.segment, o.start_m, o.end_m);
    });
    cfg.events.concat(cfg.pinned || []).forEach(function (ev) {
      addAlert(ev, false);
    });
    renderAlerts();
    refreshAllUnits();
    renderBoard();
    if (cfg.bounds && !phone) {
      // Fit the units and routes into the part of the map the two panels leave free.
      map.fitBounds(cfg.bounds, {
        paddingTopLeft: [boardPanel.box.offsetWidth + 30, 30],
        paddingBottomRight: [alertsPanel.box.offsetWidth + 30, 30],
        maxZoom: cfg.maxZoom || 17,
        animate: false,
      });
    } else {
      C.fit(map, cfg);
    }
    placeLabels();
    window.setInterval(tick, 1000);

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
