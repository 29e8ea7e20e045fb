-- 002_ratelimiting: Kong's table of the rate-limiting plugin's `cluster`
-- policy, one row per (identifier, period, window start, plugin scope),
-- shared by every node; `ttl` lets old windows be deleted.

CREATE TABLE IF NOT EXISTS ratelimiting_metrics (
  identifier   text                     NOT NULL,
  period       text                     NOT NULL,
  period_date  timestamp with time zone NOT NULL,
  service_id   uuid                     NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'::uuid,
  route_id     uuid                     NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'::uuid,
  value        integer,
  ttl          timestamp with time zone,
  PRIMARY KEY (identifier, period, period_date, service_id, route_id)
);

CREATE INDEX IF NOT EXISTS ratelimiting_metrics_idx
  ON ratelimiting_metrics (service_id, route_id, period_date, period);
CREATE INDEX IF NOT EXISTS ratelimiting_metrics_ttl_idx
  ON ratelimiting_metrics (ttl);
