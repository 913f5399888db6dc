"""The enrolment page: QR codes that set up a unit's phone, issued on the admin's explicit request.

A GET shows the unit and a form; only the form's POST, sent by the page script with the admin
key as a bearer key (map sessions never admit a POST), issues a new device secret and answers
with the links and their QR codes. So merely opening the page revokes nothing.
"""

from __future__ import annotations

import html
from typing import Any

from service.areas.enroll import OWNTRACKS, OWNTRACKS_MQTT, TRACCAR, Enrolment
from service.maps.assets import patroli_url
from service.maps.labels import normalize_lang
from service.maps.page import DATA_ID, json_for_script

_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Enrol a phone",
        "unit": "Unit",
        "device": "Device id",
        "key": "Admin key",
        "submit": "Issue a new device secret and show the QR codes",
        "warning": "This revokes the unit's current device secret: a phone set up before stops "
        "reporting until it scans the new code.",
        "no_url": "PATROLI_PUBLIC_URL is not set: enrolment needs the service's address as "
        "phones reach it.",
        TRACCAR: "Traccar Client: Settings, scan the QR code",
        OWNTRACKS: "OwnTracks: scan with the phone's camera, or open the link on the phone",
        OWNTRACKS_MQTT: "OwnTracks in MQTT mode (through the broker): scan as above, instead "
        "of the HTTP code",
        "issued": "A new device secret was issued; the previous one no longer works.",
        "failed": "Enrolment failed",
    },
    "id": {
        "title": "Daftarkan ponsel",
        "unit": "Unit",
        "device": "ID perangkat",
        "key": "Kunci admin",
        "submit": "Terbitkan rahasia perangkat baru dan tampilkan kode QR",
        "warning": "Ini mencabut rahasia perangkat unit yang berlaku: ponsel yang dipasang "
        "sebelumnya berhenti melapor sampai memindai kode baru.",
        "no_url": "PATROLI_PUBLIC_URL belum diatur: pendaftaran memerlukan alamat layanan "
        "sebagaimana dijangkau ponsel.",
        TRACCAR: "Traccar Client: Pengaturan, pindai kode QR",
        OWNTRACKS: "OwnTracks: pindai dengan kamera ponsel, atau buka tautan di ponsel",
        OWNTRACKS_MQTT: "OwnTracks mode MQTT (melalui broker): pindai seperti di atas, sebagai "
        "ganti kode HTTP",
        "issued": "Rahasia perangkat baru telah diterbitkan; yang lama tidak berlaku lagi.",
        "failed": "Pendaftaran gagal",
    },
}

_STYLE = """
body { font: 16px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem 1.5rem; }
dl { display: grid; grid-template-columns: max-content auto; gap: .25rem 1rem; }
dt { font-weight: 600; }
form { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin: 1rem 0; }
input { font: inherit; padding: .4rem; min-width: 18rem; }
button { font: inherit; padding: .4rem .8rem; }
.warning { color: #8a4b00; }
.error { color: #b00020; font-weight: 600; }
.links { display: flex; flex-wrap: wrap; gap: 2rem; }
figure { margin: 0; max-width: 26rem; background: #fff; padding: 1rem; border-radius: 6px; }
figure img { width: 100%; height: auto; image-rendering: pixelated; }
figure a { display: block; word-break: break-all; font-size: 12px; }
"""


def enroll_data(enrolment: Enrolment) -> dict[str, Any]:
    """The JSON answer of an enrolment: the unit, its links with QR codes, and notes."""
    return {
        "unit_id": enrolment.unit_id,
        "name": enrolment.name,
        "device_id": enrolment.device_id,
        "links": [
            {"app": link.app, "url": link.url, "qr": link.svg_data_uri()}
            for link in enrolment.links
        ],
        "notes": list(enrolment.notes),
    }


def render_enroll_page(
    unit_id: int,
    name: str,
    device_id: str,
    *,
    configured: bool,
    lang: str | None,
    static_prefix: str = "/static",
) -> str:
    """The enrolment page of a unit (its texts escaped; the script's inputs in the data block)."""
    code = normalize_lang(lang)
    t = _TEXT[code]
    data = {
        "action": f"/maps/enroll/{unit_id}",
        "labels": {k: t[k] for k in (TRACCAR, OWNTRACKS, OWNTRACKS_MQTT, "issued", "failed")},
    }
    notice = (
        f'<p class="warning">{html.escape(t["warning"])}</p>'
        f'<form id="enroll-form"><label for="enroll-key">{html.escape(t["key"])}</label>'
        '<input id="enroll-key" type="password" autocomplete="off" required>'
        f'<button type="submit">{html.escape(t["submit"])}</button></form>'
        if configured
        else f'<p class="error">{html.escape(t["no_url"])}</p>'
    )
    return (
        f'<!DOCTYPE html><html lang="{code}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Patroli: {html.escape(t['title'])}</title><style>{_STYLE}</style>"
        f'<script type="application/json" id="{DATA_ID}">{json_for_script(data)}</script>'
        f'<script src="{html.escape(patroli_url(static_prefix, "enroll.js"))}" defer></script>'
        f"</head><body><main><h1>{html.escape(t['title'])}</h1>"
        f'<dl><dt>{html.escape(t["unit"])}</dt><dd id="enroll-unit">{html.escape(name)}</dd>'
        f'<dt>{html.escape(t["device"])}</dt><dd id="enroll-device">{html.escape(device_id)}</dd>'
        f"</dl>{notice}"
        '<p id="enroll-error" class="error" role="alert" hidden></p>'
        '<section id="enroll-result" hidden><p id="enroll-issued"></p>'
        '<div class="links" id="enroll-links"></div><ul id="enroll-notes"></ul></section>'
        "</main></body></html>"
    )
