/* Shared helpers of the Patroli map pages (plain JavaScript, no dependencies). */
(function () {
  "use strict";

  var P = (window.PatroliCommon = {});

  /* Text escaped for HTML: every name goes into markup through this (or as textContent). */
  P.esc = function (text) {
    return String(text === null || text === undefined ? "" : text)
      .replace(/&/g, "&amp;")
      .replace(/</g, "&lt;")
      .replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;")
      .replace(/'/g, "&#39;");
  };

  var blocks = {};

  /* The page's JSON data block (parsed once). Text from users reaches a page only this way:
     it is never part of a page's script source. */
  P.data = function (id) {
    id = id || "patroli-data";
    if (!Object.prototype.hasOwnProperty.call(blocks, id)) {
      var el = document.getElementById(id);
      blocks[id] = el ? JSON.parse(el.textContent) : {};
    }
    return blocks[id];
  };

  /* GeoJSON onEachFeature: the feature's tooltip, popup and data-* attributes from the page
     data, by feature id. Tooltip and popup texts are HTML made by the server with every name
     escaped; data-* values are set as attributes, never parsed as markup. */
  P.bindFeature = function (feature, layer) {
    var info = P.data().features || {};
    var p = Object.prototype.hasOwnProperty.call(info, feature.id) ? info[feature.id] : {};
    if (p.tip) {
      layer.bindTooltip(
        p.tip,
        p.label
          ? { permanent: true, direction: "right", offset: [8, 0], className: "patroli-label" }
          : { sticky: true, className: "patroli-tip" }
      );
    }
    if (p.popup) {
      layer.bindPopup(p.popup);
    }
    if (p.data) {
      layer.on("add", function () {
        P.tag(layer, p.data);
      });
    }
  };

  /* Colours of legend swatches, from data-color (style attributes would need 'unsafe-inline'
     in the page's Content-Security-Policy). */
  P.paint = function (root) {
    Array.prototype.forEach.call(root.querySelectorAll("[data-color]"), function (el) {
      el.style.color = el.getAttribute("data-color");
    });
  };

  P.color = function (cfg, unitId) {
    var palette = cfg.palette || ["#1f78b4"];
    return palette[Math.abs(Number(unitId) || 0) % palette.length];
  };

  /* Time as "dd-mm HH:MM:SS WITA" in the display zone. */
  P.formatter = function (cfg, withDate) {
    var opts = { timeZone: cfg.tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
    if (withDate) {
      opts.day = "2-digit";
      opts.month = "2-digit";
      opts.year = "numeric";
    }
    var fmt;
    try {
      fmt = new Intl.DateTimeFormat(cfg.lang === "en" ? "en-GB" : "id-ID", opts);
    } catch (e) {
      fmt = null;
    }
    return function (date) {
      if (!(date instanceof Date)) {
        date = new Date(date);
      }
      if (isNaN(date.getTime())) {
        return "";
      }
      var text = fmt ? fmt.format(date) : date.toISOString();
      text = text.replace(/(\d{2})\/(\d{2})\/(\d{4})/, "$1-$2-$3");
      return text.replace(/\./g, ":").replace(",", "") + " " + cfg.zone;
    };
  };

  /* A Leaflet control box with an id, kept from passing clicks and scrolls to the map. */
  P.box = function (map, position, id, html) {
    var ctl = L.control({ position: position });
    var div = L.DomUtil.create("div", "patroli-box");
    div.id = id;
    div.innerHTML = html || "";
    ctl.onAdd = function () {
      L.DomEvent.disableClickPropagation(div);
      L.DomEvent.disableScrollPropagation(div);
      return div;
    };
    ctl.addTo(map);
    return div;
  };

  /* The [lat, lng] pieces of a route centerline between two chainages (metres). */
  P.cutRoute = function (route, startM, endM) {
    var coords = route.coords;
    var ch = route.chainage;
    var out = [];
    if (!coords || coords.length < 2 || !(endM > startM)) {
      return out;
    }
    function at(m) {
      for (var i = 1; i < ch.length; i++) {
        if (m <= ch[i] || i === ch.length - 1) {
          var span = ch[i] - ch[i - 1];
          var f = span > 0 ? Math.min(Math.max((m - ch[i - 1]) / span, 0), 1) : 0;
          return [
            coords[i - 1][1] + f * (coords[i][1] - coords[i - 1][1]),
            coords[i - 1][0] + f * (coords[i][0] - coords[i - 1][0]),
          ];
        }
      }
      return [coords[0][1], coords[0][0]];
    }
    out.push(at(startM));
    for (var i = 0; i < ch.length; i++) {
      if (ch[i] > startM && ch[i] < endM) {
        out.push([coords[i][1], coords[i][0]]);
      }
    }
    out.push(at(endM));
    return out;
  };

  P.fit = function (map, cfg) {
    if (cfg.bounds) {
      map.fitBounds(cfg.bounds, { padding: [30, 30], maxZoom: cfg.maxZoom || 17, animate: false });
    }
  };

  /* A unit's circle marker on `layer`, tagged with its id and labelled with its name. */
  P.unitMarker = function (layer, latlng, color, unitId, name) {
    var marker = L.circleMarker(latlng, {
      radius: 7,
      color: "#ffffff",
      weight: 2,
      fill: true,
      fillColor: color,
      fillOpacity: 0.95,
      className: "patroli-unit",
    }).addTo(layer);
    P.tag(marker, { "unit-id": unitId });
    marker.bindTooltip(P.esc(name), {
      permanent: true,
      direction: "right",
      offset: [8, 0],
      className: "patroli-label",
    });
    return marker;
  };

  /* Set data-* attributes and extra classes on a path layer's element once it is on the map. */
  P.tag = function (layer, data) {
    var el = layer.getElement ? layer.getElement() : null;
    if (!el) {
      return;
    }
    Object.keys(data).forEach(function (k) {
      el.setAttribute("data-" + k, data[k]);
    });
  };
})();
