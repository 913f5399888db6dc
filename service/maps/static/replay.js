/* Replay map: a time slider, play/pause and speed that move unit markers along their tracks. */
(function () {
  "use strict";

  var C = window.PatroliCommon;

  /* [lat, lng] of a track ([[t, lon, lat], ...], t ascending) at time t, linearly interpolated. */
  function positionAt(track, t) {
    var n = track.length;
    if (!n) {
      return null;
    }
    if (t <= track[0][0]) {
      return { lat: track[0][2], lng: track[0][1], before: t < track[0][0], after: false };
    }
    if (t >= track[n - 1][0]) {
      return { lat: track[n - 1][2], lng: track[n - 1][1], before: false, after: t > track[n - 1][0] };
    }
    var lo = 0;
    var hi = n - 1;
    while (hi - lo > 1) {
      var mid = (lo + hi) >> 1;
      if (track[mid][0] <= t) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    var a = track[lo];
    var b = track[hi];
    var f = b[0] > a[0] ? (t - a[0]) / (b[0] - a[0]) : 0;
    return { lat: a[2] + f * (b[2] - a[2]), lng: a[1] + f * (b[1] - a[1]), before: false, after: false };
  }

  function start(map, cfg) {
    var t = cfg.labels;
    var fmt = C.formatter(cfg, true);
    var state = { t: 0, playing: false, speed: cfg.speed, positions: {} };
    window.patroliReplay = state;

    C.box(
      map,
      "topleft",
      "patroli-title",
      "<h1>" + C.esc(t.replay_title) + "</h1>" +
        '<div class="patroli-window">' + C.esc(t.window) + ": " + C.esc(cfg.window) + "</div>" +
        (cfg.units.length ? "" : '<div class="patroli-empty">' + C.esc(t.no_data) + "</div>")
    );
    L.control.scale({ position: "bottomleft", imperial: false }).addTo(map);

    var trackLayer = L.layerGroup().addTo(map);
    var unitLayer = L.layerGroup().addTo(map);
    var markers = {};
    var first = cfg.duration;
    cfg.units.forEach(function (u) {
      var color = C.color(cfg, u.id);
      if (u.track.length > 1) {
        var line = L.polyline(
          u.track.map(function (p) { return [p[2], p[1]]; }),
          { color: color, weight: 3, opacity: 0.55, className: "patroli-track" }
        ).addTo(trackLayer);
        line.bindTooltip(C.esc(u.name), { sticky: true });
        C.tag(line, { "unit-id": u.id, points: u.n });
      }
      var p0 = u.track[0];
      first = Math.min(first, p0[0]);
      markers[u.id] = C.unitMarker(unitLayer, [p0[2], p0[1]], color, u.id, u.name);
    });

    // ---- the player -------------------------------------------------------------------
    var speedOptions = cfg.speeds.map(function (s) {
      return '<option value="' + s + '"' + (s === cfg.speed ? " selected" : "") + ">" + s + "\u00d7</option>";
    }).join("");
    var player = C.box(
      map,
      "bottomright",
      "patroli-player",
      '<button type="button" id="patroli-play">' + C.esc(t.play) + "</button>" +
        '<input type="range" id="patroli-slider" min="0" max="' + cfg.duration + '" step="1" value="0" aria-label="' +
        C.esc(t.time) + '">' +
        '<label>' + C.esc(t.speed) + ' <select id="patroli-speed">' + speedOptions + "</select></label>" +
        '<span id="patroli-time"></span>'
    );
    var slider = player.querySelector("#patroli-slider");
    var button = player.querySelector("#patroli-play");
    var speedSelect = player.querySelector("#patroli-speed");
    var clock = player.querySelector("#patroli-time");

    function show(sec) {
      sec = Math.min(Math.max(Number(sec) || 0, 0), cfg.duration);
      state.t = sec;
      state.time = new Date((cfg.t0 + sec) * 1000).toISOString();
      clock.textContent = fmt(new Date((cfg.t0 + sec) * 1000));
      cfg.units.forEach(function (u) {
        var p = positionAt(u.track, sec);
        var marker = markers[u.id];
        if (!p || !marker) {
          return;
        }
        marker.setLatLng([p.lat, p.lng]);
        var el = marker.getElement();
        if (el) {
          el.classList.toggle("patroli-stale", p.before || p.after);
        }
        state.positions[u.id] = { lat: p.lat, lon: p.lng, before: p.before, after: p.after };
      });
    }

    var last = null;
    function frame(now) {
      if (!state.playing) {
        return;
      }
      if (last !== null) {
        var next = state.t + ((now - last) / 1000) * state.speed;
        if (next >= cfg.duration) {
          next = cfg.duration;
          pause();
        }
        slider.value = String(Math.round(next));
        show(next);
      }
      last = now;
      if (state.playing) {
        window.requestAnimationFrame(frame);
      }
    }
    function play() {
      if (state.t >= cfg.duration) {
        show(0);
      }
      state.playing = true;
      button.textContent = t.pause;
      last = null;
      window.requestAnimationFrame(frame);
    }
    function pause() {
      state.playing = false;
      button.textContent = t.play;
    }
    button.addEventListener("click", function () {
      if (state.playing) {
        pause();
      } else {
        play();
      }
    });
    slider.addEventListener("input", function () {
      show(slider.value);
    });
    speedSelect.addEventListener("change", function () {
      state.speed = Number(speedSelect.value) || 1;
    });

    var initial = cfg.units.length ? first : 0;
    slider.value = String(initial);
    show(initial);
    C.fit(map, cfg);
  }

  window.PatroliReplay = { start: start, positionAt: positionAt };
})();
