-- 000_base: Kong's core entities, cluster events and cluster nodes.
-- Each entity is stored whole as jsonb in Kong's output shape; the columns
-- beside it carry what the database must enforce or index.

CREATE TABLE services (
  seq        bigserial UNIQUE,
  id         uuid PRIMARY KEY,
  name       text UNIQUE,
  tags       text[],
  entity     jsonb NOT NULL
);

CREATE TABLE routes (
  seq        bigserial UNIQUE,
  id         uuid PRIMARY KEY,
  name       text UNIQUE,
  service_id uuid REFERENCES services (id),
  tags       text[],
  entity     jsonb NOT NULL
);
CREATE INDEX routes_service_id_idx ON routes (service_id);

CREATE TABLE consumers (
  seq        bigserial UNIQUE,
  id         uuid PRIMARY KEY,
  username   text UNIQUE,
  custom_id  text UNIQUE,
  tags       text[],
  entity     jsonb NOT NULL
);

CREATE TABLE upstreams (
  seq        bigserial UNIQUE,
  id         uuid PRIMARY KEY,
  name       text UNIQUE,
  tags       text[],
  entity     jsonb NOT NULL
);

CREATE TABLE targets (
  seq         bigserial UNIQUE,
  id          uuid PRIMARY KEY,
  upstream_id uuid NOT NULL REFERENCES upstreams (id) ON DELETE CASCADE,
  target      text NOT NULL,
  tags        text[],
  entity      jsonb NOT NULL,
  UNIQUE (upstream_id, target)
);

CREATE TABLE certificates (
  seq        bigserial UNIQUE,
  id         uuid PRIMARY KEY,
  tags       text[],
  entity     jsonb NOT NULL
);

CREATE TABLE plugins (
  seq         bigserial UNIQUE,
  id          uuid PRIMARY KEY,
  name        text NOT NULL,
  service_id  uuid REFERENCES services (id) ON DELETE CASCADE,
  route_id    uuid REFERENCES routes (id) ON DELETE CASCADE,
  consumer_id uuid REFERENCES consumers (id) ON DELETE CASCADE,
  -- One plugin of a name per service/route/consumer combination, as in Kong.
  cache_key   text UNIQUE,
  tags        text[],
  entity      jsonb NOT NULL
);
CREATE INDEX plugins_service_id_idx ON plugins (service_id);
CREATE INDEX plugins_route_id_idx ON plugins (route_id);
CREATE INDEX plugins_consumer_id_idx ON plugins (consumer_id);

-- Every configuration change; nodes are told by NOTIFY and poll as a fallback.
CREATE TABLE cluster_events (
  id        bigserial PRIMARY KEY,
  node_id   uuid,
  at        timestamptz NOT NULL DEFAULT now(),
  entity    text NOT NULL,
  operation text NOT NULL,
  entity_id uuid
);
CREATE INDEX cluster_events_at_idx ON cluster_events (at);

CREATE TABLE cluster_nodes (
  id         uuid PRIMARY KEY,
  hostname   text NOT NULL,
  address    text NOT NULL,
  version    text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  last_seen  timestamptz NOT NULL DEFAULT now(),
  status     text NOT NULL DEFAULT 'active'
);
