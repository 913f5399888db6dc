// The enrolment page: on the admin's request, issue a new device secret and show the QR codes.
// The admin key goes only into this one request's Authorization header; it is not kept.
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("patroli-data").textContent);
  var form = document.getElementById("enroll-form");
  if (!form) {
    return; // PATROLI_PUBLIC_URL is unset: the page says so and offers no form
  }
  var keyInput = document.getElementById("enroll-key");
  var errorBox = document.getElementById("enroll-error");
  var result = document.getElementById("enroll-result");
  var links = document.getElementById("enroll-links");
  var notes = document.getElementById("enroll-notes");

  function text(tag, value) {
    var el = document.createElement(tag);
    el.textContent = value;
    return el;
  }

  function showError(message) {
    errorBox.textContent = data.labels.failed + ": " + message;
    errorBox.hidden = false;
  }

  function show(answer) {
    links.replaceChildren();
    notes.replaceChildren();
    answer.links.forEach(function (link) {
      var figure = document.createElement("figure");
      figure.dataset.app = link.app;
      figure.appendChild(text("figcaption", data.labels[link.app] || link.app));
      var img = document.createElement("img");
      img.src = link.qr; // an SVG data: URI, drawn as an image (no script runs in it)
      img.alt = link.url;
      figure.appendChild(img);
      var anchor = text("a", link.url);
      anchor.href = link.url;
      figure.appendChild(anchor);
      links.appendChild(figure);
    });
    answer.notes.forEach(function (note) {
      notes.appendChild(text("li", note));
    });
    document.getElementById("enroll-issued").textContent = data.labels.issued;
    result.hidden = false;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var key = keyInput.value;
    keyInput.value = "";
    errorBox.hidden = true;
    fetch(data.action, {
      method: "POST",
      headers: { Authorization: "Bearer " + key, Accept: "application/json" },
      credentials: "omit",
      cache: "no-store",
    })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) {
            throw new Error(typeof body.detail === "string" ? body.detail : String(response.status));
          }
          show(body);
        });
      })
      .catch(function (exc) {
        showError(exc.message);
      });
  });
})();
