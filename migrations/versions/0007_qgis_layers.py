"""QGIS layers on PostGIS: latest positions, today's tracks, coverage segments, geofences.

Four relations with one geometry column each (SRID 4326) and an integer `id` QGIS can use as
its key (README, "Opening the data in QGIS"):

- `qgis_latest_positions` (view): each unit's newest fix, with its route status;
- `qgis_tracks_today` (view): one line per unit through today's eligible fixes;
- `qgis_geofences` (view): every geofence with today's presence;
- `qgis_coverage_segments` (table): each patrol route's segments for the current shift,
  rewritten every `PATROLI_QGIS_REFRESH_S` by the service's scheduler from the same coverage
  computation the API answers with (service/analytics/qgis.py).

"Today" is the local date in the time zone of `qgis_settings` (one row, written by the same
refresh from the service settings; the defaults until then). Nothing is created on SQLite: QGIS
reads the PostGIS deployment.

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Quality flags that leave a fix out of analytics (service.quality.EXCLUDED): zero 1, future 2,
# inaccurate 8, teleport 16. `late` (32) still counts.
_EXCLUDED = 27

# The web maps' unit colours (service.maps.kit.UNIT_PALETTE), picked by unit id modulo 12.
_PALETTE = (
    "ARRAY['#1f78b4','#6a3d9a','#b15928','#01665e','#c51b7d','#2c7fb8',"
    "'#8c510a','#4d4d4d','#762a83','#35978f','#0868ac','#984ea3']"
)

_SETTINGS = """
CREATE TABLE qgis_settings (
    id integer PRIMARY KEY CHECK (id = 1),
    timezone text NOT NULL,
    max_gap_s double precision NOT NULL,
    offline_after_s double precision NOT NULL,
    default_min_dwell_s double precision NOT NULL,
    shift text,
    shift_from timestamptz,
    shift_to timestamptz,
    refreshed_at timestamptz
);
COMMENT ON TABLE qgis_settings IS
    'Settings the QGIS views read (written by the service at each refresh; one row)';
INSERT INTO qgis_settings (id, timezone, max_gap_s, offline_after_s, default_min_dwell_s)
VALUES (1, 'Asia/Makassar', 60, 300, 300);
"""

# The settings row, with the defaults should it be missing.
_CFG = """
cfg AS (
    SELECT coalesce(s.timezone, 'Asia/Makassar') AS tz,
           coalesce(s.max_gap_s, 60.0) AS max_gap_s,
           coalesce(s.offline_after_s, 300.0) AS offline_after_s,
           coalesce(s.default_min_dwell_s, 300.0) AS default_min_dwell_s
    FROM (SELECT 1) AS one LEFT JOIN qgis_settings AS s ON s.id = 1
),
day AS (
    SELECT (date_trunc('day', now() AT TIME ZONE cfg.tz))::date AS local_day,
           date_trunc('day', now() AT TIME ZONE cfg.tz) AT TIME ZONE cfg.tz AS day_from,
           (date_trunc('day', now() AT TIME ZONE cfg.tz) + interval '1 day') AT TIME ZONE cfg.tz
               AS day_to
    FROM cfg
)
"""

_LOCAL = "to_char(({col}) AT TIME ZONE cfg.tz, 'YYYY-MM-DD HH24:MI:SS')"

_LATEST_POSITIONS = f"""
CREATE VIEW qgis_latest_positions AS
WITH {_CFG},
routes AS (
    SELECT a.unit_id, string_agg(r.name, ', ' ORDER BY r.name, r.id) AS patrol_routes
    FROM unit_patrol_routes AS a JOIN patrol_routes AS r ON r.id = a.patrol_route_id
    GROUP BY a.unit_id
)
SELECT u.id AS id,
       u.name AS name,
       u.kind AS kind,
       u.device_id AS device_id,
       s.last_ts AS fix_time,
       {_LOCAL.format(col="s.last_ts")} AS fix_time_local,
       round(s.last_speed_mps::numeric, 2)::double precision AS speed_mps,
       round((s.last_speed_mps * 3.6)::numeric, 1)::double precision AS speed_kmh,
       floor(extract(epoch FROM now() - s.last_ts))::bigint AS age_s,
       date_trunc('second', now() - s.last_ts)::text AS age,
       extract(epoch FROM now() - s.last_ts) >= cfg.offline_after_s AS offline,
       CASE
           WHEN EXISTS (
               SELECT 1 FROM json_each(s.machine -> 'routes') AS r
               WHERE (r.value ->> 'off')::boolean
           ) THEN 'off_route'
           WHEN EXISTS (SELECT 1 FROM json_each(s.machine -> 'routes')) THEN 'on_route'
       END AS route_status,
       rt.patrol_routes AS patrol_routes,
       concat_ws(',',
           CASE WHEN s.last_flags & 1 <> 0 THEN 'zero' END,
           CASE WHEN s.last_flags & 2 <> 0 THEN 'future' END,
           CASE WHEN s.last_flags & 8 <> 0 THEN 'inaccurate' END,
           CASE WHEN s.last_flags & 16 <> 0 THEN 'teleport' END,
           CASE WHEN s.last_flags & 32 <> 0 THEN 'late' END) AS flags,
       ({_PALETTE})[u.id % 12 + 1] AS color,
       ST_SetSRID(ST_MakePoint(s.last_lon, s.last_lat), 4326)::geometry(Point, 4326) AS geom
FROM units AS u
JOIN unit_states AS s ON s.unit_id = u.id
LEFT JOIN routes AS rt ON rt.unit_id = u.id
CROSS JOIN cfg
WHERE s.last_ts IS NOT NULL AND s.last_lon IS NOT NULL AND s.last_lat IS NOT NULL;
COMMENT ON VIEW qgis_latest_positions IS
    'Each unit''s newest fix (name, kind, time, speed, age, route status); key: id (unit id)';
"""

_TRACKS_TODAY = f"""
CREATE VIEW qgis_tracks_today AS
WITH {_CFG},
lines AS (
    SELECT p.unit_id,
           count(*) AS fixes,
           min(p.ts) AS first_fix,
           max(p.ts) AS last_fix,
           ST_MakeLine(ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326) ORDER BY p.ts, p.id) AS line
    FROM pings AS p CROSS JOIN day
    WHERE p.ts >= day.day_from AND p.ts < day.day_to AND (p.flags & {_EXCLUDED}) = 0
    GROUP BY p.unit_id
)
SELECT u.id AS id,
       u.name AS name,
       u.kind AS kind,
       day.local_day AS day,
       l.fixes AS fixes,
       l.first_fix AS first_fix,
       l.last_fix AS last_fix,
       {_LOCAL.format(col="l.first_fix")} AS first_fix_local,
       {_LOCAL.format(col="l.last_fix")} AS last_fix_local,
       round(ST_Length(l.line::geography)::numeric, 1)::double precision AS length_m,
       ({_PALETTE})[u.id % 12 + 1] AS color,
       ST_RemoveRepeatedPoints(l.line)::geometry(LineString, 4326) AS geom
FROM lines AS l
JOIN units AS u ON u.id = l.unit_id
CROSS JOIN day
CROSS JOIN cfg
WHERE ST_NPoints(ST_RemoveRepeatedPoints(l.line)) >= 2;
COMMENT ON VIEW qgis_tracks_today IS
    'One line per unit through today''s eligible fixes (local date); key: id (unit id)';
"""

# Presence as service.geo.presence defines it: two consecutive eligible fixes of a unit, both
# inside and at most max_gap_s apart, make it present in between; an isolated inside fix is an
# instant. Fixes up to max_gap_s beyond the window's edges count; visits are clipped to it.
_GEOFENCES = f"""
CREATE FUNCTION qgis_geofences_rows() RETURNS TABLE (
    id integer, name varchar, kind varchar, radius_m double precision,
    min_dwell_s double precision, day date, inside_s double precision, inside text,
    inside_ratio double precision, presence text, visits integer, sambang integer,
    units integer, last_visit timestamptz, last_visit_local text, last_unit varchar,
    geom geometry
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
-- The planner's estimates for the geography tests would have a day of fixes JIT-compiled, which
-- takes longer than the query itself.
SET jit = off
SET work_mem = '64MB'
AS $fn$
WITH {_CFG},
win AS (
    SELECT day.local_day,
           extract(epoch FROM day.day_from)::double precision AS w_start,
           extract(epoch FROM least(now(), day.day_to))::double precision AS w_end,
           day.day_from - make_interval(secs => cfg.max_gap_s) AS read_from,
           least(now(), day.day_to) + make_interval(secs => cfg.max_gap_s) AS read_to
    FROM day CROSS JOIN cfg
),
-- Materialised: each fence's outline and box once, not once per fix.
fences AS MATERIALIZED (
    SELECT g.id, g.geom, g.radius_m, box.area,
           ST_XMin(box.area) AS xmin, ST_XMax(box.area) AS xmax,
           ST_YMin(box.area) AS ymin, ST_YMax(box.area) AS ymax
    FROM geofences AS g
    CROSS JOIN LATERAL (
        SELECT CASE WHEN g.radius_m IS NOT NULL
                    THEN ST_Buffer(g.geom::geography, g.radius_m * 1.01, 'quad_segs=18')::geometry
                    ELSE g.geom END AS area
    ) AS box
),
fixes AS (
    SELECT unit_id, lon, lat, t,
           lag(lon) OVER w AS prev_lon, lag(lat) OVER w AS prev_lat, lag(t) OVER w AS prev_t,
           lead(lon) OVER w AS next_lon, lead(lat) OVER w AS next_lat, lead(t) OVER w AS next_t
    FROM (
        -- As the API reads fixes: longitude and latitude, device time to the millisecond.
        SELECT p.unit_id, p.ts, p.id, p.lon, p.lat,
               round(date_part('epoch', p.ts) * 1000.0) / 1000.0 AS t
        FROM pings AS p CROSS JOIN win
        WHERE p.ts >= win.read_from AND p.ts <= win.read_to AND (p.flags & {_EXCLUDED}) = 0
    ) AS eligible
    WINDOW w AS (PARTITION BY unit_id ORDER BY ts, id)
),
inside AS (
    SELECT f.id AS fence_id, x.unit_id, x.t, x.prev_t, x.next_t,
           x.t - x.prev_t <= cfg.max_gap_s AND CASE
               WHEN f.radius_m IS NOT NULL
               THEN ST_DWithin(f.geom::geography,
                               ST_SetSRID(ST_MakePoint(x.prev_lon, x.prev_lat), 4326)::geography,
                               f.radius_m)
               ELSE ST_Intersects(f.geom, ST_SetSRID(ST_MakePoint(x.prev_lon, x.prev_lat), 4326))
           END AS link_prev,
           x.next_t - x.t <= cfg.max_gap_s AND CASE
               WHEN f.radius_m IS NOT NULL
               THEN ST_DWithin(f.geom::geography,
                               ST_SetSRID(ST_MakePoint(x.next_lon, x.next_lat), 4326)::geography,
                               f.radius_m)
               ELSE ST_Intersects(f.geom, ST_SetSRID(ST_MakePoint(x.next_lon, x.next_lat), 4326))
           END AS link_next
    FROM fixes AS x
    -- A box around each fence first (a circle's with 1 % to spare), then the exact test.
    JOIN fences AS f
      ON x.lon BETWEEN f.xmin AND f.xmax AND x.lat BETWEEN f.ymin AND f.ymax
    CROSS JOIN cfg
    WHERE CASE WHEN f.radius_m IS NOT NULL
               THEN ST_DWithin(f.geom::geography,
                               ST_SetSRID(ST_MakePoint(x.lon, x.lat), 4326)::geography,
                               f.radius_m)
               ELSE ST_Intersects(f.geom, ST_SetSRID(ST_MakePoint(x.lon, x.lat), 4326)) END
),
pieces AS (
    SELECT fence_id, unit_id, prev_t AS lo, t AS hi FROM inside WHERE link_prev
    UNION ALL
    SELECT fence_id, unit_id, t, t FROM inside
    WHERE NOT coalesce(link_prev, false) AND NOT coalesce(link_next, false)
),
runs AS (
    SELECT fence_id, unit_id, lo, hi,
           CASE WHEN lo <= max(hi) OVER (
                    PARTITION BY fence_id, unit_id ORDER BY lo, hi
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                THEN 0 ELSE 1 END AS new_run
    FROM pieces
),
presence AS (
    SELECT fence_id, unit_id, min(lo) AS lo, max(hi) AS hi
    FROM (SELECT *, sum(new_run) OVER (PARTITION BY fence_id, unit_id ORDER BY lo, hi) AS run
          FROM runs) AS numbered
    GROUP BY fence_id, unit_id, run
),
visits AS (
    SELECT v.fence_id, v.unit_id, greatest(v.lo, win.w_start) AS lo, least(v.hi, win.w_end) AS hi
    FROM presence AS v CROSS JOIN win
    WHERE CASE WHEN v.lo = v.hi THEN v.lo >= win.w_start AND v.lo < win.w_end
               ELSE least(v.hi, win.w_end) > greatest(v.lo, win.w_start) END
),
covered_runs AS (
    SELECT fence_id, lo, hi,
           CASE WHEN lo <= max(hi) OVER (
                    PARTITION BY fence_id ORDER BY lo, hi
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                THEN 0 ELSE 1 END AS new_run
    FROM visits
),
covered AS (
    SELECT fence_id, sum(hi - lo) AS covered_s
    FROM (SELECT fence_id, min(lo) AS lo, max(hi) AS hi
          FROM (SELECT *, sum(new_run) OVER (PARTITION BY fence_id ORDER BY lo, hi) AS run
                FROM covered_runs) AS numbered
          GROUP BY fence_id, run) AS merged
    GROUP BY fence_id
),
latest AS (
    SELECT DISTINCT ON (fence_id) fence_id, unit_id, hi
    FROM visits ORDER BY fence_id, hi DESC, unit_id
),
counts AS (
    SELECT v.fence_id, count(*) AS visits, count(DISTINCT v.unit_id) AS units,
           count(*) FILTER (
               WHERE v.hi - v.lo >= coalesce(g.min_dwell_s, cfg.default_min_dwell_s)
           ) AS sambang
    FROM visits AS v JOIN geofences AS g ON g.id = v.fence_id CROSS JOIN cfg
    GROUP BY v.fence_id
),
summary AS (
    SELECT g.id,
           coalesce(c.covered_s, 0.0) AS inside_s,
           CASE WHEN win.w_end > win.w_start
                THEN coalesce(c.covered_s, 0.0) / (win.w_end - win.w_start) END AS inside_ratio,
           coalesce(n.visits, 0) AS visits,
           coalesce(n.sambang, 0) AS sambang,
           coalesce(n.units, 0) AS units,
           CASE WHEN l.hi IS NOT NULL THEN to_timestamp(l.hi) END AS last_visit,
           l.unit_id AS last_unit_id
    FROM geofences AS g
    CROSS JOIN win
    LEFT JOIN covered AS c ON c.fence_id = g.id
    LEFT JOIN counts AS n ON n.fence_id = g.id
    LEFT JOIN latest AS l ON l.fence_id = g.id
)
SELECT g.id AS id,
       g.name AS name,
       g.kind AS kind,
       g.radius_m AS radius_m,
       coalesce(g.min_dwell_s, cfg.default_min_dwell_s) AS min_dwell_s,
       win.local_day AS day,
       round(s.inside_s::numeric, 3)::double precision AS inside_s,
       make_interval(secs => round(s.inside_s))::text AS inside,
       round(s.inside_ratio::numeric, 4)::double precision AS inside_ratio,
       CASE WHEN s.inside_ratio >= 0.9 THEN 'good'
            WHEN s.inside_ratio >= 0.5 THEN 'fair'
            ELSE 'poor' END AS presence,
       s.visits::integer AS visits,
       s.sambang::integer AS sambang,
       s.units::integer AS units,
       s.last_visit AS last_visit,
       {_LOCAL.format(col="s.last_visit")} AS last_visit_local,
       u.name AS last_unit,
       ST_Multi(CASE WHEN g.radius_m IS NOT NULL
                     THEN ST_Buffer(g.geom::geography, g.radius_m, 'quad_segs=18')::geometry
                     ELSE g.geom END) AS geom
FROM geofences AS g
JOIN summary AS s ON s.id = g.id
LEFT JOIN units AS u ON u.id = s.last_unit_id
CROSS JOIN win
CROSS JOIN cfg
$fn$;
REVOKE ALL ON FUNCTION qgis_geofences_rows() FROM PUBLIC;
CREATE VIEW qgis_geofences AS
SELECT id, name, kind, radius_m, min_dwell_s, day, inside_s, inside, inside_ratio, presence,
       visits, sambang, units, last_visit, last_visit_local, last_unit,
       geom::geometry(MultiPolygon, 4326) AS geom
FROM qgis_geofences_rows();
COMMENT ON VIEW qgis_geofences IS
    'Geofences with today''s presence (time inside, visits, last visit); key: id (geofence id)';
"""

_COVERAGE = """
CREATE TABLE qgis_coverage_segments (
    id bigint PRIMARY KEY,
    patrol_route_id integer NOT NULL
        REFERENCES patrol_routes (id) ON DELETE CASCADE,
    route_name text NOT NULL,
    segment integer NOT NULL,
    start_m double precision NOT NULL,
    end_m double precision NOT NULL,
    covered boolean NOT NULL,
    visits integer NOT NULL,
    first_visit timestamptz,
    last_visit timestamptz,
    last_visit_local text,
    status text NOT NULL,
    shift text NOT NULL,
    shift_from timestamptz NOT NULL,
    shift_to timestamptz NOT NULL,
    as_of timestamptz NOT NULL,
    geom geometry(LineString, 4326) NOT NULL
);
CREATE INDEX ix_qgis_coverage_segments_geom ON qgis_coverage_segments USING gist (geom);
COMMENT ON TABLE qgis_coverage_segments IS
    'Patrol-route segments covered in the current shift, as of as_of (rewritten by the '
    'service every PATROLI_QGIS_REFRESH_S); key: id (route id * 100000 + segment)';
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # QGIS reads the PostGIS deployment; SQLite gets none of these
    for statement in (_SETTINGS, _LATEST_POSITIONS, _TRACKS_TODAY, _GEOFENCES, _COVERAGE):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TABLE IF EXISTS qgis_coverage_segments")
    op.execute("DROP VIEW IF EXISTS qgis_geofences")
    op.execute("DROP FUNCTION IF EXISTS qgis_geofences_rows()")
    op.execute("DROP VIEW IF EXISTS qgis_tracks_today")
    op.execute("DROP VIEW IF EXISTS qgis_latest_positions")
    op.execute("DROP TABLE IF EXISTS qgis_settings")
