"""Map labels in Bahasa Indonesia (default) and English, plus time and number formatting."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from types import MappingProxyType

from service.events.types import EventType

DEFAULT_LANG = "id"
EN_DASH = "\u2013"  # between the ends of a range

_ID: dict[str, str] = {
    "title": "Peta Cakupan Patroli",
    "route": "Rute patroli",
    "corridor": "Koridor",
    "segment": "Segmen",
    "visited": "Segmen dikunjungi",
    "unvisited": "Segmen belum dikunjungi",
    "geofence": "Area pengamanan",
    "critical_site": "Objek vital",
    "track": "Jejak unit",
    "position": "Posisi terakhir",
    "last_visited": "Terakhir dikunjungi",
    "never": "Belum pernah",
    "window": "Periode",
    "coverage": "Cakupan",
    "unit": "Unit",
    "units": "Unit",
    "speed": "Kecepatan",
    "points": "titik",
    "more": "lainnya",
    "base_map": "Peta dasar",
    "legend": "Keterangan",
    "no_data": "Tidak ada data pada periode ini",
    "seg_fresh": "Dikunjungi < 30 menit lalu",
    "seg_stale": "Dikunjungi < batas kunjungan ulang",
    "seg_overdue": "Terlambat / belum dikunjungi",
    "revisit_note": "batas kunjungan ulang rute, atau 60 menit",
    "presence": "Kehadiran",
    "presence_good": "Kehadiran \u2265 90%",
    "presence_fair": "Kehadiran 50\u201390%",
    "presence_poor": "Kehadiran < 50%",
    "longest_gap": "Kekosongan terlama",
    "none": "Tidak ada",
    "minutes": "menit",
    "heat": "Kepadatan posisi (sel 50 m)",
    "from": "Dari",
    "to": "Sampai",
    "show": "Tampilkan",
}

_EN: dict[str, str] = {
    "title": "Patrol coverage map",
    "route": "Patrol route",
    "corridor": "Corridor",
    "segment": "Segment",
    "visited": "Visited segment",
    "unvisited": "Segment not visited",
    "geofence": "Geofence",
    "critical_site": "Critical site",
    "track": "Unit track",
    "position": "Latest position",
    "last_visited": "Last visited",
    "never": "Never",
    "window": "Window",
    "coverage": "Coverage",
    "unit": "Unit",
    "units": "Units",
    "speed": "Speed",
    "points": "points",
    "more": "more",
    "base_map": "Base map",
    "legend": "Legend",
    "no_data": "No data in this window",
    "seg_fresh": "Visited < 30 min ago",
    "seg_stale": "Visited < revisit interval ago",
    "seg_overdue": "Overdue / not visited",
    "revisit_note": "the route's revisit interval, or 60 min",
    "presence": "Presence",
    "presence_good": "Presence \u2265 90%",
    "presence_fair": "Presence 50\u201390%",
    "presence_poor": "Presence < 50%",
    "longest_gap": "Longest gap",
    "none": "None",
    "minutes": "min",
    "heat": "Position density (50 m cells)",
    "from": "From",
    "to": "To",
    "show": "Show",
}

_LABELS: dict[str, Mapping[str, str]] = {
    "id": MappingProxyType(_ID),
    "en": MappingProxyType(_EN),
}

# Geofence kinds with a translated name; any other kind is shown as stored.
_KIND_KEYS = {"critical_site": "critical_site"}

# IANA zones of Indonesia and their customary abbreviations.
_ZONE_ABBREVIATIONS = {
    "Asia/Jakarta": "WIB",
    "Asia/Pontianak": "WIB",
    "Asia/Makassar": "WITA",
    "Asia/Ujung_Pandang": "WITA",
    "Asia/Jayapura": "WIT",
}


def normalize_lang(lang: str | None) -> str:
    """Supported language code for `lang` ("en-US" → "en"); unknown codes fall back to "id"."""
    code = (lang or DEFAULT_LANG).strip().lower().replace("_", "-").split("-")[0]
    return code if code in _LABELS else DEFAULT_LANG


def labels(lang: str) -> Mapping[str, str]:
    """Read-only label dictionary for `lang` ("id" or "en"; others fall back to "id")."""
    return _LABELS[normalize_lang(lang)]


def kind_label(kind: str, lang: str) -> str:
    """Display name of a geofence kind (e.g. critical_site → "Objek vital")."""
    key = _KIND_KEYS.get(kind)
    return labels(lang)[key] if key else kind.replace("_", " ")


def zone_label(tz: tzinfo | str) -> str:
    """Short zone name for display: WIB, WITA or WIT for Indonesian zones, else the zone key."""
    key = tz if isinstance(tz, str) else getattr(tz, "key", None) or str(tz)
    return _ZONE_ABBREVIATIONS.get(key, key)


def to_local(ts: datetime, tz: tzinfo) -> datetime:
    """`ts` in zone `tz`; a naive `ts` is taken to be UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(tz)


def format_time(ts: datetime, tz: tzinfo, *, with_zone: bool = True) -> str:
    """`ts` as "28-11-2024 02:10 WITA" in zone `tz`."""
    text = to_local(ts, tz).strftime("%d-%m-%Y %H:%M")
    return f"{text} {zone_label(tz)}" if with_zone else text


def format_window(start: datetime, end: datetime, tz: tzinfo) -> str:
    """A time window as "27-11-2024 08:00 - 28-11-2024 08:00 WITA" (with an en dash)."""
    return f"{format_time(start, tz, with_zone=False)} {EN_DASH} {format_time(end, tz)}"


def format_int(value: float, lang: str) -> str:
    """`value` rounded to a whole number with the language's thousands separator."""
    text = f"{round(value):,}"
    return text.replace(",", ".") if normalize_lang(lang) == "id" else text


def format_percent(ratio: float, lang: str) -> str:
    """A 0..1 ratio as a percentage with one decimal ("63,5%" in Indonesian)."""
    text = f"{ratio * 100:.1f}"
    if normalize_lang(lang) == "id":
        text = text.replace(".", ",")
    return f"{text}%"


def format_ago(seconds: float, lang: str) -> str:
    """Elapsed time as "45 min ago" / "3 h 5 min ago" ("45 menit lalu" in Indonesian)."""
    minutes = max(0, round(seconds / 60))
    indonesian = normalize_lang(lang) == "id"
    unit_min, unit_h, suffix = ("menit", "jam", "lalu") if indonesian else ("min", "h", "ago")
    if minutes < 90:
        return f"{minutes} {unit_min} {suffix}"
    hours, rest = divmod(minutes, 60)
    return f"{format_int(hours, lang)} {unit_h} {rest} {unit_min} {suffix}"


# Labels of the live and replay pages, and the display names of event types.
_LIVE_ID: dict[str, str] = {
    "live_title": "Peta Patroli Langsung",
    "replay_title": "Putar Ulang Patroli",
    "alerts": "Peringatan",
    "no_alerts": "Belum ada peringatan",
    "connected": "Terhubung",
    "connecting": "Menghubungkan…",
    "disconnected": "Terputus",
    "reconnecting": "Terputus, menyambung ulang…",
    "off_route_now": "Keluar rute",
    "offline_now": "Tidak terhubung",
    "overdue": "Segmen terlambat dikunjungi",
    "play": "Putar",
    "pause": "Jeda",
    "speed": "Kecepatan",
    "time": "Waktu",
    "no_data": "Tidak ada data pada periode ini",
    "window": "Periode",
    "route": "Rute",
    "geofence": "Area",
    "segment": "Segmen",
    "alarm_banner": "TANDA BAHAYA",
    "dismiss": "Tutup",
    "board": "Daftar unit",
    "status_alarm": "Tanda bahaya",
    "status_off_route": "Keluar rute",
    "status_offline": "Tidak terhubung",
    "status_stopped": "Berhenti",
    "status_moving": "Bergerak",
    "all_statuses": "Semua status",
    "search_units": "Cari unit, jenis, rute…",
    "no_units": "Tidak ada unit yang cocok",
    "no_fix": "belum ada posisi",
    "battery": "Baterai",
    "shift": "Sif",
    "no_route": "tanpa rute",
    "following": "Mengikuti",
    "stop_follow": "Berhenti mengikuti",
    "acknowledge": "Tanggapi",
    "ack_note": "Catatan (opsional)",
    "ack_key": "Kunci API operator",
    "ack_send": "Kirim",
    "cancel": "Batal",
    "acked_by": "Ditanggapi oleh",
    "ack_failed": "Gagal menanggapi",
    "pinned": "Belum ditanggapi",
    "panel_hide": "Sembunyikan",
    "panel_show": "Tampilkan",
    "age_s": "dtk",
    "age_m": "mnt",
    "age_h": "jam",
    "ago": "lalu",
    "kmh": "km/jam",
}
_LIVE_EN: dict[str, str] = {
    "live_title": "Live patrol map",
    "replay_title": "Patrol replay",
    "alerts": "Alerts",
    "no_alerts": "No alerts yet",
    "connected": "Connected",
    "connecting": "Connecting…",
    "disconnected": "Disconnected",
    "reconnecting": "Disconnected, reconnecting…",
    "off_route_now": "Off route",
    "offline_now": "Offline",
    "overdue": "Segment overdue for a visit",
    "play": "Play",
    "pause": "Pause",
    "speed": "Speed",
    "time": "Time",
    "no_data": "No data in this window",
    "window": "Window",
    "route": "Route",
    "geofence": "Area",
    "segment": "Segment",
    "alarm_banner": "ALARM",
    "dismiss": "Dismiss",
    "board": "Units",
    "status_alarm": "Alarm",
    "status_off_route": "Off route",
    "status_offline": "Offline",
    "status_stopped": "Stopped",
    "status_moving": "Moving",
    "all_statuses": "All statuses",
    "search_units": "Search unit, kind, route…",
    "no_units": "No matching units",
    "no_fix": "no fix yet",
    "battery": "Battery",
    "shift": "Shift",
    "no_route": "no route",
    "following": "Following",
    "stop_follow": "Stop following",
    "acknowledge": "Acknowledge",
    "ack_note": "Note (optional)",
    "ack_key": "Operator API key",
    "ack_send": "Send",
    "cancel": "Cancel",
    "acked_by": "Acknowledged by",
    "ack_failed": "Acknowledgement failed",
    "pinned": "Unacknowledged",
    "panel_hide": "Hide",
    "panel_show": "Show",
    "age_s": "s",
    "age_m": "min",
    "age_h": "h",
    "ago": "ago",
    "kmh": "km/h",
}
_EVENT_ID: dict[EventType, str] = {
    "geofence_enter": "Masuk area",
    "geofence_exit": "Keluar area",
    "off_route": "Keluar rute",
    "on_route": "Kembali ke rute",
    "stopped": "Berhenti",
    "moving": "Bergerak",
    "overspeed": "Melebihi batas kecepatan",
    "offline": "Tidak terhubung",
    "online": "Terhubung kembali",
    "revisit_overdue": "Terlambat dikunjungi",
    "revisited": "Dikunjungi kembali",
    "alarm": "Tanda bahaya",
    "low_battery": "Baterai lemah",
    "ack": "Ditanggapi",
}
_EVENT_EN: dict[EventType, str] = {
    "geofence_enter": "Entered area",
    "geofence_exit": "Left area",
    "off_route": "Off route",
    "on_route": "Back on route",
    "stopped": "Stopped",
    "moving": "Moving",
    "overspeed": "Overspeed",
    "offline": "Offline",
    "online": "Back online",
    "revisit_overdue": "Overdue for a visit",
    "revisited": "Visited again",
    "alarm": "Alarm",
    "low_battery": "Low battery",
    "ack": "Acknowledged",
}


def page_labels(lang: str) -> dict[str, str]:
    """Labels of the live and replay pages (coverage labels plus page-specific ones)."""
    code = normalize_lang(lang)
    out = dict(labels(code))
    out.update(_LIVE_ID if code == "id" else _LIVE_EN)
    return out


def event_labels(lang: str) -> dict[EventType, str]:
    """Display names of event types in `lang`."""
    return dict(_EVENT_ID if normalize_lang(lang) == "id" else _EVENT_EN)


# Labels of the printable shift report (/reports/shift).
_REPORT_ID: dict[str, str] = {
    "report_title": "Laporan Shift Patroli",
    "shift_day": "Shift siang",
    "shift_night": "Shift malam",
    "shift_span": "Shift",
    "running": "shift masih berjalan: dilaporkan sampai saat ini",
    "generated": "Dibuat",
    "summary": "Ringkasan",
    "map_title": "Peta periode",
    "route_coverage": "Cakupan rute patroli",
    "site_presence": "Kehadiran di objek vital",
    "hourly_title": "Kehadiran per jam di objek vital",
    "timeline_title": "Waktu tanpa unit di rute patroli dan objek vital",
    "timeline_note": "Merah: tidak ada unit di koridor rute / di dalam area",
    "units_title": "Kegiatan unit",
    "alerts_title": "Peringatan",
    "no_alerts": "Tidak ada peringatan pada periode ini",
    "alerts_more": "peringatan yang lebih lama tidak ditampilkan",
    "no_routes": "Tidak ada rute patroli",
    "no_sites": "Tidak ada objek vital",
    "no_units": "Tidak ada unit",
    "col_unit": "Unit",
    "col_distance": "Jarak (km)",
    "col_on_route": "Di rute",
    "col_off_route": "Di luar rute",
    "col_stops": "Berhenti",
    "col_last_fix": "Posisi terakhir",
    "col_time": "Waktu",
    "col_type": "Jenis",
    "col_place": "Lokasi",
    "col_detail": "Keterangan",
    "col_handled": "Ditanggapi",
    "by": "oleh",
    "col_route": "Rute patroli",
    "col_site": "Objek vital",
    "col_coverage": "Cakupan",
    "col_uncovered": "Waktu kosong",
    "col_longest": "Kekosongan terlama",
    "pdf": "Unduh PDF",
    "print_hint": "Cetak halaman ini dari peramban (A4, tegak).",
    "page": "Halaman",
    "battery": "baterai",
    "late": "terkirim terlambat",
    "durations": "Durasi ditulis jam:menit:detik.",
}
_REPORT_EN: dict[str, str] = {
    "report_title": "Patrol shift report",
    "shift_day": "Day shift",
    "shift_night": "Night shift",
    "shift_span": "Shift",
    "running": "the shift is still running: reported up to now",
    "generated": "Generated",
    "summary": "Summary",
    "map_title": "Map of the window",
    "route_coverage": "Patrol route coverage",
    "site_presence": "Presence at critical sites",
    "hourly_title": "Presence per hour at critical sites",
    "timeline_title": "Time with no unit on the patrol routes and at the critical sites",
    "timeline_note": "Red: no unit in the route's corridor / inside the site",
    "units_title": "Unit activity",
    "alerts_title": "Alerts",
    "no_alerts": "No alerts in this window",
    "alerts_more": "older alerts not shown",
    "no_routes": "No patrol routes",
    "no_sites": "No critical sites",
    "no_units": "No units",
    "col_unit": "Unit",
    "col_distance": "Distance (km)",
    "col_on_route": "On route",
    "col_off_route": "Off route",
    "col_stops": "Stops",
    "col_last_fix": "Last fix",
    "col_time": "Time",
    "col_type": "Type",
    "col_place": "Place",
    "col_detail": "Details",
    "col_handled": "Acknowledged",
    "by": "by",
    "col_route": "Patrol route",
    "col_site": "Critical site",
    "col_coverage": "Coverage",
    "col_uncovered": "Uncovered time",
    "col_longest": "Longest gap",
    "pdf": "Download PDF",
    "print_hint": "Print this page from the browser (A4, portrait).",
    "page": "Page",
    "battery": "battery",
    "late": "sent late",
    "durations": "Durations are hours:minutes:seconds.",
}


def report_labels(lang: str) -> dict[str, str]:
    """Labels of the shift report (coverage labels plus report-specific ones)."""
    code = normalize_lang(lang)
    out = dict(labels(code))
    out.update(_REPORT_ID if code == "id" else _REPORT_EN)
    return out


def format_decimal(value: float, digits: int, lang: str) -> str:
    """`value` with `digits` decimals and the language's separators ("1.234,50" in Indonesian)."""
    text = f"{value:,.{digits}f}"
    if normalize_lang(lang) == "id":
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text


def format_duration(seconds: float) -> str:
    """Seconds as hours:minutes:seconds, e.g. "1:05:09" (rounded to the second)."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
